"""Statistics for reading results: minimum detectable differences, paired bootstrap CIs, paired tests, Holm."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.8
CI_LEVEL = 0.95
# McNemar's chi-square approximation is poor for few discordant pairs; below this many the exact
# binomial test is used (the usual b + c < 25 rule of thumb, e.g. Wikipedia "McNemar's test").
MCNEMAR_EXACT_BELOW = 25
# Resamples are drawn in chunks of at most this many numbers, so memory stays bounded (~32 MB of
# int64) whatever the number of resamples and chips.
_CHUNK_NUMBERS = 4_000_000


def _chunk_rows(width: int) -> int:
    return max(1, min(128, _CHUNK_NUMBERS // max(width, 1)))


def _check_levels(alpha: float, power: float) -> None:
    if not 0.0 < alpha < power < 1.0:
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha}, power={power}")


def two_sample_mdd(std: float, n_seeds: int, *, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """Smallest true difference of means that a two-sample t-test detects with the given power.

    Two methods with ``n_seeds`` runs each and a common per-run standard deviation σ (equal
    variances, unpaired over seeds). Under a true difference δ the pooled-variance t statistic is
    noncentral t with ``df = 2n − 2`` and noncentrality ``λ = δ / (σ √(2/n))``; the two-sided test
    at level α has power ``P(T > t_{1−α/2}) + P(T < −t_{1−α/2})`` (Cohen 1988, *Statistical Power
    Analysis*, ch. 2; the same as ``statsmodels.stats.power.TTestIndPower``). Brent's method
    solves power(δ) = ``power`` for δ, to 1e-12 in units of σ.

    Args:
        std: per-run standard deviation σ (any unit; the result is in the same unit).
        n_seeds: runs per method, n.
        alpha: two-sided significance level.
        power: the power to reach.

    Returns:
        The minimum detectable difference δ, or None when ``n_seeds < 2`` (no degrees of freedom).
    """
    _check_levels(alpha, power)
    if n_seeds < 2:
        return None
    if std < 0:
        raise ValueError(f"std must be non-negative, got {std}")
    df = 2 * n_seeds - 2
    critical = stats.t.ppf(1 - alpha / 2, df)
    scale = math.sqrt(2 / n_seeds)

    def shortfall(effect: float) -> float:
        nc = effect / scale
        # P(T < −t) as P(T' > t) with noncentrality −λ: scipy's nct.cdf can return NaN far in the
        # tail, where the term is below Φ(−λ) (T < 0 needs Z < −λ) and so negligible.
        lower = float(np.nan_to_num(stats.nct.sf(critical, df, -nc), nan=0.0))
        return float(stats.nct.sf(critical, df, nc)) + lower - power

    high = 1.0
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-12)) * std


def paired_mdd(discordance: float, n_pairs: int, *, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """Smallest true difference in accuracy that a paired (McNemar) comparison detects with the given power.

    Connor (1987), "Sample size for testing differences in proportions for the paired-sample
    design", *Biometrics* 43:207–211: with ψ the probability that a pair is discordant
    (one method right, the other wrong) and δ = p₁₀ − p₀₁ the difference in accuracy, McNemar's
    test at level α (two-sided) reaches the power 1 − β with

        n = [z_{1−α/2} √ψ + z_{1−β} √(ψ − δ²)]² / δ²

    pairs. This inverts it for δ at ``n = n_pairs`` (Brent's method, to 1e-12). Here a pair is
    one (seed, test chip), so the S·N pairs of S seeds are treated as independent; a chip's
    outcome correlates across seeds, so for S > 1 this is optimistic.

    The MDD grows with ψ, so a ψ that is an upper bound (e.g. the share of chips on which two
    methods *predict* different classes) gives an upper bound on the MDD.

    Args:
        discordance: ψ, fraction of pairs that are discordant, in [0, 1].
        n_pairs: n, number of paired observations.
        alpha: two-sided significance level.
        power: the power to reach.

    Returns:
        δ as a fraction (at most ψ), or None when no δ ≤ ψ reaches the power (ψ·n too small,
        ψ = 0 included).
    """
    _check_levels(alpha, power)
    if not 0.0 <= discordance <= 1.0:
        raise ValueError(f"discordance must be a fraction in [0, 1], got {discordance}")
    if n_pairs < 1 or discordance == 0.0:
        return None
    z_alpha, z_beta = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)

    def shortfall(delta: float) -> float:
        return delta * math.sqrt(n_pairs) - z_alpha * math.sqrt(discordance) \
            - z_beta * math.sqrt(max(discordance - delta * delta, 0.0))

    # δ ≤ ψ always: a difference needs that many discordant pairs, all in one direction.
    if shortfall(discordance) < 0:
        return None
    return float(optimize.brentq(shortfall, 0.0, discordance, xtol=1e-12))


def pooled_std(stds: Sequence[float], counts: Sequence[int]) -> float | None:
    """√(Σ (nᵢ − 1) sᵢ² / Σ (nᵢ − 1)): pooled standard deviation of groups of nᵢ runs (None without df)."""
    dof = sum(n - 1 for n in counts if n > 1)
    if dof == 0:
        return None
    return math.sqrt(sum((n - 1) * s * s for s, n in zip(stds, counts) if n > 1) / dof)


def minimum_detectable_difference(*, std: float | None, n_seeds: int, n_chips: int | None = None,
                                  discordance: float | None = None, alpha: float = ALPHA,
                                  power: float = POWER) -> dict[str, float | int | None]:
    """The MDD of a results grid, unpaired over seeds and paired by test chip (OA in percentage points).

    Args:
        std: per-seed standard deviation of the score, in points (e.g. :func:`pooled_std` of a grid's rows).
        n_seeds: seeds per method.
        n_chips: test chips every run predicts (for the paired MDD).
        discordance: fraction of (seed, chip) pairs on which two methods disagree in correctness,
            or an upper bound on it (for the paired MDD).
        alpha: two-sided significance level.
        power: the power to reach.

    Returns:
        ``{"alpha", "power", "n_seeds", "std", "two_sample", "n_chips", "discordance", "paired"}``:
        ``two_sample`` from :func:`two_sample_mdd` and ``paired`` from :func:`paired_mdd` over
        ``n_seeds × n_chips`` pairs, both in points; None where not computable.
    """
    two_sample = None if std is None else two_sample_mdd(std, n_seeds, alpha=alpha, power=power)
    paired = None
    if n_chips and discordance is not None:
        paired = paired_mdd(discordance, n_seeds * n_chips, alpha=alpha, power=power)
    return {"alpha": alpha, "power": power, "n_seeds": n_seeds, "std": std, "two_sample": two_sample,
            "n_chips": n_chips, "discordance": discordance, "paired": None if paired is None else 100.0 * paired}


def _paired_arrays(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"correctness arrays must share one (seeds, chips) shape, got {a.shape} and {b.shape}")
    return a, b


def paired_bootstrap_deltas(correct_a: np.ndarray, correct_b: np.ndarray, *, n_boot: int = 2000, seed: int = 0,
                            resample_seeds: bool = True) -> np.ndarray:
    """Bootstrap replicates of ΔOA = mean(correct_a) − mean(correct_b), resampling chips and seeds.

    Each replicate draws N chips and (if ``resample_seeds``) S seeds with replacement,
    independently, and averages the per-(seed, chip) differences over the drawn grid: the
    two-way ("pigeonhole") bootstrap of Owen (2007), *Ann. Appl. Stat.* 1(2):386–411, which keeps
    both the chip-to-chip and the seed-to-seed variation. Pairs stay paired: a drawn chip brings
    both methods' outcomes on it.

    Args:
        correct_a: (S, N) booleans, whether method a got chip j right in seed s.
        correct_b: (S, N) booleans, the same for method b.
        n_boot: number of replicates.
        seed: seed of the ``numpy.random.Generator``.
        resample_seeds: also resample seeds (else the S seeds are kept fixed).

    Returns:
        (n_boot,) replicates, as fractions.
    """
    a, b = _paired_arrays(correct_a, correct_b)
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    d = a.astype(np.float64) - b.astype(np.float64)
    n_seeds, n_chips = d.shape
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    step = _chunk_rows(n_chips)
    for start in range(0, n_boot, step):
        size = min(step, n_boot - start)
        # Chip draws as counts: (size, N) multiplicities, so each replicate is one matrix product.
        draws = rng.integers(0, n_chips, size=(size, n_chips)) + n_chips * np.arange(size)[:, None]
        chip_w = np.bincount(draws.ravel(), minlength=size * n_chips).reshape(size, n_chips) / n_chips
        per_seed = chip_w @ d.T  # (size, S): each seed's mean difference over the drawn chips
        if resample_seeds:
            picks = rng.integers(0, n_seeds, size=(size, n_seeds))
            out[start:start + size] = np.take_along_axis(per_seed, picks, axis=1).mean(axis=1)
        else:
            out[start:start + size] = per_seed.mean(axis=1)
    return out


def paired_bootstrap_ci(correct_a: np.ndarray, correct_b: np.ndarray, *, n_boot: int = 2000, seed: int = 0,
                        level: float = CI_LEVEL, resample_seeds: bool = True) -> tuple[float, float]:
    """Percentile bootstrap CI of ΔOA (fractions) from :func:`paired_bootstrap_deltas`.

    Args:
        correct_a: (S, N) booleans per (seed, chip) of the method.
        correct_b: (S, N) booleans per (seed, chip) of the baseline.
        n_boot: number of replicates.
        seed: seed of the ``numpy.random.Generator``.
        level: coverage of the interval.
        resample_seeds: also resample seeds.

    Returns:
        (low, high) percentiles ``(1 − level)/2`` and ``(1 + level)/2`` of the replicates.
    """
    deltas = paired_bootstrap_deltas(correct_a, correct_b, n_boot=n_boot, seed=seed, resample_seeds=resample_seeds)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return float(low), float(high)


def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float | int | str]:
    """McNemar's test of equal accuracy, pooling the discordant pairs of every seed.

    With b pairs where only a is right and c where only b is right: the exact two-sided
    binomial test ``p = min(1, 2 P(X ≤ min(b, c)))``, X ~ Bin(b + c, ½), when
    ``b + c < MCNEMAR_EXACT_BELOW``; otherwise the chi-square test with continuity correction,
    ``χ² = max(0, |b − c| − 1)² / (b + c)`` on 1 df (McNemar 1947, *Psychometrika* 12:153–157;
    Edwards 1948). Pooling over seeds treats every (seed, chip) pair as independent.

    Args:
        correct_a: booleans, e.g. (S, N), of method a.
        correct_b: booleans of the same shape, of method b.

    Returns:
        ``{"n_gain": b, "n_loss": c, "statistic", "p", "method": "exact" | "chi2"}``.
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"correctness arrays must have one shape, got {a.shape} and {b.shape}")
    gain, loss = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = gain + loss
    if n < MCNEMAR_EXACT_BELOW:
        statistic = float(min(gain, loss))
        p = 1.0 if n == 0 else min(1.0, 2.0 * float(stats.binom.cdf(min(gain, loss), n, 0.5)))
        return {"n_gain": gain, "n_loss": loss, "statistic": statistic, "p": p, "method": "exact"}
    statistic = max(0, abs(gain - loss) - 1) ** 2 / n
    return {"n_gain": gain, "n_loss": loss, "statistic": float(statistic), "p": float(stats.chi2.sf(statistic, 1)),
            "method": "chi2"}


def sign_flip_test(correct_a: np.ndarray, correct_b: np.ndarray, *, n_perm: int = 9999,
                   seed: int = 0) -> dict[str, float | int | str]:
    """Paired permutation test of equal accuracy that keeps each chip's seeds together.

    Per chip j, ``t_j = Σ_s (a_sj − b_sj)``; the statistic is ``T = Σ_j t_j``. Under the null
    hypothesis that the two methods are exchangeable on every chip, each t_j's sign is a fair
    coin, independently across chips (Fisher 1935; Good 2005, *Permutation, Parametric and
    Bootstrap Tests of Hypotheses*, §3). Two-sided p = P(|T*| ≥ |T|). Only chips with t_j ≠ 0
    matter; with k of them, all 2^k sign patterns are enumerated when 2^k ≤ ``n_perm`` (exact),
    otherwise ``n_perm`` random patterns give ``p = (1 + #{|T*| ≥ |T|}) / (1 + n_perm)``, which
    is never 0 (Phipson & Smyth 2010, *Stat. Appl. Genet. Mol. Biol.* 9:39). With one seed
    the exact version is McNemar's exact test.

    Args:
        correct_a: (S, N) booleans per (seed, chip) of method a.
        correct_b: (S, N) booleans per (seed, chip) of method b.
        n_perm: random sign patterns when enumeration is too large.
        seed: seed of the ``numpy.random.Generator``.

    Returns:
        ``{"n_gain", "n_loss", "statistic": T, "p", "method": "exact" | "monte-carlo"}``
        (n_gain/n_loss count (seed, chip) pairs as in :func:`mcnemar_test`).
    """
    a, b = _paired_arrays(correct_a, correct_b)
    if n_perm < 1:
        raise ValueError(f"n_perm must be at least 1, got {n_perm}")
    totals = (a.astype(np.int64) - b.astype(np.int64)).sum(axis=0)
    t = totals[totals != 0]
    observed = abs(int(t.sum()))
    base = {"n_gain": int(np.sum(a & ~b)), "n_loss": int(np.sum(~a & b)), "statistic": float(t.sum())}
    k = len(t)
    if 2 ** k <= n_perm:
        patterns = ((np.arange(2 ** k)[:, None] >> np.arange(k)) & 1) * 2 - 1
        p = float(np.mean(np.abs(patterns @ t) >= observed))
        return {**base, "p": p, "method": "exact"}
    rng = np.random.default_rng(seed)
    hits = 0
    step = _chunk_rows(k)
    for start in range(0, n_perm, step):
        size = min(step, n_perm - start)
        signs = rng.integers(0, 2, size=(size, k), dtype=np.int64) * 2 - 1
        hits += int(np.sum(np.abs(signs @ t) >= observed))
    return {**base, "p": (1 + hits) / (1 + n_perm), "method": "monte-carlo"}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's (1979) step-down adjustment for multiple tests, controlling the family-wise error rate.

    Sorted ascending, ``p_(i)`` becomes ``max_{k ≤ i} min(1, (m − k + 1) p_(k))``; results are in
    the input order. Reject where the adjusted p is below α.
    """
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted.tolist()
