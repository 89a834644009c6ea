"""Statistics for reading results, checked against statsmodels/scipy and closed forms on constructed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower

from ackd_bench.benchmark.stats import (
    MCNEMAR_EXACT_BELOW,
    holm,
    mcnemar_test,
    minimum_detectable_difference,
    paired_bootstrap_ci,
    paired_bootstrap_deltas,
    paired_mdd,
    pooled_std,
    sign_flip_test,
    two_sample_mdd,
)


def outcomes(gain: int, loss: int, both: int, neither: int, *, seeds: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(seeds, chips) correctness of two methods with the given cell counts per seed (chips in that order)."""
    a = np.array([True] * gain + [False] * loss + [True] * both + [False] * neither)
    b = np.array([False] * gain + [True] * loss + [True] * both + [False] * neither)
    return np.tile(a, (seeds, 1)), np.tile(b, (seeds, 1))


# --- minimum detectable differences ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
@pytest.mark.parametrize(("alpha", "power"), [(0.05, 0.8), (0.1, 0.5), (0.01, 0.8)])
def test_two_sample_mdd_matches_statsmodels_power(n, alpha, power):
    """At the MDD, statsmodels' two-sample t-test power is the target; its own solver agrees to its xtol."""
    std = 1.7
    mdd = two_sample_mdd(std, n, alpha=alpha, power=power)
    # Our root is within 1e-12 (in σ units) and the power's slope is below 10 per σ here: 1e-9 is loose.
    assert TTestIndPower().power(effect_size=mdd / std, nobs1=n, alpha=alpha) == pytest.approx(power, abs=1e-9)
    # statsmodels' brentq_expanding stops at xtol = 1e-5 (its default) in effect-size units. Its solver
    # can stop short where scipy's nct.cdf gives NaN (n = 2, α = 0.01): compare only real solutions.
    solved = TTestIndPower().solve_power(effect_size=None, nobs1=n, alpha=alpha, power=power)
    if abs(TTestIndPower().power(effect_size=solved, nobs1=n, alpha=alpha) - power) < 1e-4:
        assert abs(solved * std - mdd) <= 1e-5 * std + 1e-12


def test_two_sample_mdd_edge_cases_and_scaling():
    assert two_sample_mdd(1.0, 1) is None  # no degrees of freedom
    assert two_sample_mdd(0.0, 3) == 0.0
    assert two_sample_mdd(2.0, 5) == pytest.approx(2 * two_sample_mdd(1.0, 5), rel=1e-10)
    assert two_sample_mdd(1.0, 10) < two_sample_mdd(1.0, 5) < two_sample_mdd(1.0, 3)
    assert two_sample_mdd(1.0, 3, power=0.9) > two_sample_mdd(1.0, 3, power=0.8)
    with pytest.raises(ValueError, match="alpha"):
        two_sample_mdd(1.0, 3, alpha=0.9, power=0.8)


def connor_n(delta: float, psi: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Connor (1987): pairs McNemar's test needs to detect ``delta`` at discordance ``psi`` (restated)."""
    za, zb = sps.norm.ppf(1 - alpha / 2), sps.norm.ppf(power)
    return (za * math.sqrt(psi) + zb * math.sqrt(psi - delta ** 2)) ** 2 / delta ** 2


@pytest.mark.parametrize(("psi", "n"), [(0.05, 2000), (0.2, 1500), (0.2, 30000), (0.6, 400)])
def test_paired_mdd_inverts_connors_formula(psi, n):
    delta = paired_mdd(psi, n)
    assert 0 < delta <= psi
    # Root to 1e-12 in δ; dn/dδ ≈ 2n/δ, so n is reproduced to 2e-12/δ relative (δ ≥ 0.005 here).
    assert connor_n(delta, psi) == pytest.approx(n, rel=1e-9)


def test_paired_mdd_grows_with_discordance_and_shrinks_with_pairs():
    assert paired_mdd(0.05, 3000) < paired_mdd(0.10, 3000) < paired_mdd(0.20, 3000)
    assert paired_mdd(0.10, 6000) < paired_mdd(0.10, 3000)
    assert paired_mdd(0.0, 1000) is None  # methods that never disagree
    assert paired_mdd(0.001, 10) is None  # one discordant pair in 1000 cannot reach power 0.8 with 10 pairs
    with pytest.raises(ValueError, match="fraction"):
        paired_mdd(1.5, 10)


def test_pooled_std_matches_the_raw_values():
    rng = np.random.default_rng(0)
    groups = [rng.normal(80, 2, size=k) for k in (3, 5, 1, 4)]
    within = sum(((g - g.mean()) ** 2).sum() for g in groups)
    dof = sum(len(g) - 1 for g in groups)
    got = pooled_std([g.std(ddof=1) if len(g) > 1 else 0.0 for g in groups], [len(g) for g in groups])
    assert got == pytest.approx(math.sqrt(within / dof), rel=1e-12)
    assert pooled_std([0.0, 0.0], [1, 1]) is None


def test_minimum_detectable_difference_combines_both():
    mdd = minimum_detectable_difference(std=1.2, n_seeds=3, n_chips=500, discordance=0.1)
    assert mdd["two_sample"] == two_sample_mdd(1.2, 3)
    assert mdd["paired"] == pytest.approx(100 * paired_mdd(0.1, 1500), rel=1e-12)
    assert (mdd["alpha"], mdd["power"], mdd["n_seeds"], mdd["n_chips"]) == (0.05, 0.8, 3, 500)
    bare = minimum_detectable_difference(std=None, n_seeds=1)
    assert bare["two_sample"] is None and bare["paired"] is None


# --- McNemar, sign flips, Holm ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("gain", "loss"), [(0, 0), (3, 0), (7, 5), (12, 12), (20, 4), (30, 10), (55, 70),
                                            (100, 100), (400, 350)])
def test_mcnemar_matches_statsmodels(gain, loss):
    a, b = outcomes(gain, loss, both=40, neither=9)
    got = mcnemar_test(a, b)
    assert (got["n_gain"], got["n_loss"]) == (gain, loss)
    table = [[40, gain], [loss, 9]]
    if gain + loss < MCNEMAR_EXACT_BELOW:
        assert got["method"] == "exact"
        want = 1.0 if gain + loss == 0 else mcnemar(table, exact=True).pvalue
    else:
        assert got["method"] == "chi2"
        # statsmodels corrects |b − c| − 1 even at b = c (χ² = 1/(b + c)); the correction cannot overshoot 0.
        want = 1.0 if gain == loss else mcnemar(table, exact=False, correction=True).pvalue
    assert got["p"] == pytest.approx(want, rel=1e-12, abs=1e-300)


def test_mcnemar_pools_seeds():
    a, b = outcomes(10, 2, both=20, neither=5, seeds=3)
    got = mcnemar_test(a, b)
    assert (got["n_gain"], got["n_loss"], got["method"]) == (30, 6, "chi2")
    assert got["p"] == pytest.approx(mcnemar([[60, 30], [6, 15]], exact=False).pvalue, rel=1e-12)


def test_sign_flip_exact_matches_scipy_permutation_test():
    rng = np.random.default_rng(3)
    a, b = rng.random((3, 11)) < 0.7, rng.random((3, 11)) < 0.5
    got = sign_flip_test(a, b)
    assert got["method"] == "exact"
    # scipy swaps the two methods' per-chip totals within each chip: a sign flip of t_j; 2^11 patterns in all.
    x, y = a.sum(axis=0).astype(float), b.sum(axis=0).astype(float)
    want = sps.permutation_test((x, y), lambda u, v, axis: np.mean(u - v, axis=axis), vectorized=True,
                                permutation_type="samples", n_resamples=np.inf).pvalue
    assert got["p"] == pytest.approx(want, rel=1e-12)
    assert got["statistic"] == (a.astype(int) - b.astype(int)).sum()


def test_sign_flip_with_one_seed_is_mcnemars_exact_test():
    for gain, loss in [(0, 0), (4, 1), (6, 6), (9, 2)]:
        a, b = outcomes(gain, loss, both=10, neither=3)
        assert sign_flip_test(a, b)["p"] == pytest.approx(mcnemar([[10, gain], [loss, 3]], exact=True).pvalue
                                                          if gain + loss else 1.0, rel=1e-12)


def test_sign_flip_monte_carlo_within_its_error():
    """200 discordant chips (2^200 patterns): random flips estimate McNemar's exact p within 5 MC errors."""
    a, b = outcomes(110, 90, both=50, neither=20)
    n_perm = 9999
    got = sign_flip_test(a, b, n_perm=n_perm, seed=1)
    exact = mcnemar([[50, 110], [90, 20]], exact=True).pvalue
    assert got["method"] == "monte-carlo"
    # p̂ = (1 + hits)/(1 + n): binomial sd √(p(1−p)/n), plus at most 1/(n+1) from the +1.
    assert abs(got["p"] - exact) <= 5 * math.sqrt(exact * (1 - exact) / n_perm) + 1 / (n_perm + 1)
    assert sign_flip_test(a, b, n_perm=n_perm, seed=1) == got


def test_holm_matches_statsmodels():
    rng = np.random.default_rng(4)
    for p in [rng.uniform(0, 0.1, size=7), np.array([0.01, 0.01, 0.04, 0.3]), np.array([0.5]), rng.uniform(size=12)]:
        want = multipletests(p, method="holm")[1]
        assert holm(p) == pytest.approx(want.tolist(), rel=1e-12)
    assert holm([]) == []


# --- the paired bootstrap --------------------------------------------------------------------------------------

def exact_bootstrap_variance(d: np.ndarray, resample_seeds: bool) -> float:
    """Var of w_sᵀ D w_c for independent multinomial weights (the resampling distribution, not simulated).

    w_s ~ Mult(S, 1/S)/S has mean 1/S and covariance (I − 11ᵀ/S)/S² (chips alike); for independent
    x, y: Var(xᵀDy) = tr(D Σ_c Dᵀ Σ_s) + m_sᵀ D Σ_c Dᵀ m_s + m_cᵀ Dᵀ Σ_s D m_c.
    """
    s, n = d.shape
    m_s, m_c = np.full(s, 1 / s), np.full(n, 1 / n)
    cov_c = (np.eye(n) - 1 / n) / n ** 2
    cov_s = (np.eye(s) - 1 / s) / s ** 2 if resample_seeds else np.zeros((s, s))
    return float(np.trace(d @ cov_c @ d.T @ cov_s) + m_s @ d @ cov_c @ d.T @ m_s + m_c @ d.T @ cov_s @ d @ m_c)


@pytest.mark.parametrize("resample_seeds", [True, False])
def test_bootstrap_replicates_have_the_exact_resampling_mean_and_variance(resample_seeds):
    rng = np.random.default_rng(7)
    a = rng.random((4, 150)) < rng.uniform(0.6, 0.9, size=(4, 1))  # seeds differ in accuracy
    b = rng.random((4, 150)) < 0.7
    n_boot = 4000
    deltas = paired_bootstrap_deltas(a, b, n_boot=n_boot, seed=2, resample_seeds=resample_seeds)
    d = a.astype(float) - b.astype(float)
    variance = exact_bootstrap_variance(d, resample_seeds)
    # Mean: unbiased for the observed Δ, sd √(V/B). Variance: sample variance has sd √((μ4 − V²)/B).
    assert abs(deltas.mean() - d.mean()) <= 5 * math.sqrt(variance / n_boot)
    fourth = np.mean((deltas - deltas.mean()) ** 4)
    assert abs(deltas.var() - variance) <= 5 * math.sqrt((fourth - deltas.var() ** 2) / n_boot)


def test_bootstrap_ci_matches_the_normal_ci_within_monte_carlo_error():
    """One seed, 2000 chips with as many gains as losses (ψ = 0.2): the CI is Δ ± 1.96 SE up to stated errors.

    Per endpoint: 5 Monte-Carlo sd of a 2.5 % sample quantile, √(q(1−q)/B)/φ(1.96) SE; one lattice step
    1/N of the mean of {−1, 0, 1}; and twice the Cornish–Fisher kurtosis term κ|z³ − 3z|/(24N) SE
    (κ = 1/ψ − 3; the skewness term vanishes by symmetry).
    """
    n, psi, n_boot = 2000, 0.2, 4000
    a, b = outcomes(200, 200, both=1200, neither=400)
    low, high = paired_bootstrap_ci(a, b, n_boot=n_boot, seed=0)
    d = (a.astype(float) - b.astype(float)).ravel()
    se = d.std() / math.sqrt(n)  # the plug-in SE: the bootstrap's own
    z = sps.norm.ppf(0.975)
    kurtosis = 1 / psi - 3
    tol = (5 * math.sqrt(0.025 * 0.975 / n_boot) / sps.norm.pdf(z) * se + 1 / n
           + 2 * kurtosis * abs(z ** 3 - 3 * z) / (24 * n) * se)
    assert low == pytest.approx(d.mean() - z * se, abs=tol)
    assert high == pytest.approx(d.mean() + z * se, abs=tol)


def test_bootstrap_is_seeded_and_checks_shapes():
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 80)) < 0.8, rng.random((3, 80)) < 0.7
    assert paired_bootstrap_ci(a, b, seed=5) == paired_bootstrap_ci(a, b, seed=5)
    assert paired_bootstrap_ci(a, b, seed=5) != paired_bootstrap_ci(a, b, seed=6)
    assert paired_bootstrap_ci(a, a) == (0.0, 0.0)
    with pytest.raises(ValueError, match="shape"):
        paired_bootstrap_ci(a, b[:, :10])
    with pytest.raises(ValueError, match="shape"):
        paired_bootstrap_ci(a[0], b[0])
