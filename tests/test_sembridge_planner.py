"""SKA planner (CORAL, attention plans, cross-modal mixing, Sinkhorn variant) and the transport-cost diagnostic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ackd_bench.sembridge.planner import (
    SemanticPlanner,
    SinkhornPlanner,
    attention_plan,
    coral_loss,
    cross_modal_plan,
)
from ackd_bench.sembridge.transport import transport_cost

PLANNERS = (SemanticPlanner, SinkhornPlanner)


def np_coral(a: np.ndarray, b: np.ndarray) -> float:
    """Deep CORAL from Sun & Saenko (2016), eq. 1, written with explicit sums (float64)."""
    d = a.shape[1]

    def cov(x):
        n = x.shape[0]
        ones = np.ones((n, 1))
        return (x.T @ x - (x.T @ ones) @ (ones.T @ x) / n) / (n - 1)

    return float(np.sum((cov(a) - cov(b)) ** 2) / (4 * d**2))


U32 = 2.0**-24  # float32 unit roundoff


def coral_float32_bound(a: np.ndarray, b: np.ndarray) -> float:
    """Relative error bound of ``coral_loss`` on ``a``, ``b`` rounded to float32, against the float64 value.

    With m = max|x| and N rows, every centred entry is off by ≤ (N + 3)·u·m (the input's rounding,
    the column mean's N-term sum, the subtraction), so each covariance entry (an N-term sum over
    N − 1) by ≤ N/(N − 1)·(8N + 12)·u·m², and the d×d matrix by d times that in Frobenius norm.
    The loss ‖D‖²/(4d²), D = Cov(a) − Cov(b), then moves relatively by ≤ 2·(‖δCov(a)‖ + ‖δCov(b)‖)/‖D‖.
    """
    d = a.shape[1]

    def cov_error(x):
        n = x.shape[0]
        return d * n / (n - 1) * (8 * n + 12) * U32 * np.abs(x).max() ** 2

    diff = np.cov(a, rowvar=False) - np.cov(b, rowvar=False)
    return 2 * (cov_error(a) + cov_error(b)) / np.linalg.norm(diff) + 4 * U32


def maps(b=3, c_t=32, c_s=48, hw_t=(2, 2), hw_s=(3, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c_t, *hw_t, generator=g), torch.randn(b, c_s, *hw_s, generator=g)


# --------------------------------------------------------------------------------------------- CORAL


def test_coral_matches_numpy_with_different_row_counts():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(11, 5)) * 2 + 1
    got = coral_loss(torch.from_numpy(a), torch.from_numpy(b))
    assert got.ndim == 0
    assert got.item() == pytest.approx(np_coral(a, b), rel=1e-12)
    # in float32 (inputs rounded too), within float32's bound for these inputs (1.8e-4 here; 8e-8 seen)
    assert coral_loss(torch.from_numpy(a).float(), torch.from_numpy(b).float()).item() == pytest.approx(
        np_coral(a, b), rel=coral_float32_bound(a, b)
    )


def test_coral_uses_unbiased_covariance_normalised_by_4d2():
    # Duplicating every row k times keeps the scatter's shape but multiplies it by k, while the
    # unbiased denominator goes from N−1 to kN−1: a batch-size-dependent (scatter) CORAL would grow ~k².
    rng = np.random.default_rng(1)
    a, b, k, d = rng.normal(size=(4, 3)), rng.normal(size=(6, 3)), 5, 3
    scat = lambda x: (x - x.mean(0)).T @ (x - x.mean(0))  # noqa: E731
    want = np.sum((k * scat(a) / (4 * k - 1) - k * scat(b) / (6 * k - 1)) ** 2) / (4 * d * d)
    got = coral_loss(torch.from_numpy(np.repeat(a, k, 0)), torch.from_numpy(np.repeat(b, k, 0)))
    assert got.item() == pytest.approx(want, rel=1e-12)
    # Hand case: b = 2a (shifted) has Cov(b) = 4 Cov(a), so the loss is 9‖Cov(a)‖²/(4d²).
    ta = torch.from_numpy(a)
    cov_a = np.cov(a, rowvar=False)
    assert coral_loss(ta, 2 * ta + 3).item() == pytest.approx(9 * np.sum(cov_a**2) / (4 * d * d), rel=1e-12)
    assert coral_loss(ta, ta + 7).item() == pytest.approx(0.0, abs=1e-24)


def test_coral_edge_cases():
    two = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert torch.isfinite(coral_loss(two, two.flip(0) * 3))
    with pytest.raises(ValueError, match="at least 2 rows"):
        coral_loss(two[:1], two)
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        coral_loss(two, torch.zeros(2, 3))


# ------------------------------------------------------------------------------------ attention plans


def test_attention_plan_is_a_row_softmax():
    rng = np.random.default_rng(2)
    q, k = rng.normal(size=(2, 3, 4, 8)), rng.normal(size=(2, 3, 6, 8))
    got = attention_plan(torch.from_numpy(q), torch.from_numpy(k)).numpy()
    z = np.einsum("bhnd,bhmd->bhnm", q, k) / np.sqrt(8)
    want = np.exp(z - z.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    assert got.shape == (2, 3, 4, 6)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-12)


def test_cross_modal_plan_marginals_and_outer_product_limit():
    g = torch.Generator().manual_seed(3)
    w_a = torch.softmax(torch.randn(2, 4, generator=g, dtype=torch.float64), -1)
    w_b = torch.softmax(torch.randn(2, 5, generator=g, dtype=torch.float64), -1)
    q = torch.randn(2, 4, 8, generator=g, dtype=torch.float64)
    k = torch.randn(2, 5, 8, generator=g, dtype=torch.float64)
    plan = cross_modal_plan(q, k, w_a, w_b)
    torch.testing.assert_close(plan.sum(-1), w_a)
    torch.testing.assert_close(plan.sum((-2, -1)), torch.ones(2, dtype=torch.float64))
    # No cross-modal affinity (q = 0): the plan is exactly the paper's outer product of pooled plans.
    torch.testing.assert_close(cross_modal_plan(torch.zeros_like(q), k, w_a, w_b), w_a[:, :, None] * w_b[:, None, :])


# ---------------------------------------------------------------------------------------- planners


def test_student_refined_depends_on_teacher_tokens():
    torch.manual_seed(0)
    planner = SemanticPlanner(32, 48, dim=16, heads=4)
    t, s = maps()
    base = planner(t, s)
    same = planner(t.clone(), s)
    torch.testing.assert_close(same["student_refined"], base["student_refined"], rtol=0, atol=0)
    other = planner(t + torch.randn_like(t), s)
    assert not torch.allclose(other["student_refined"], base["student_refined"])
    assert not torch.allclose(other["student_weights"], base["student_weights"])
    # ...and the teacher side's weights depend on the student's tokens.
    assert not torch.allclose(planner(t, s + torch.randn_like(s))["teacher_weights"], base["teacher_weights"])
    torch.testing.assert_close(base["student_weights"].sum(-1), torch.ones(3))


@pytest.mark.parametrize("planner_cls", PLANNERS)
def test_gradients_reach_student_and_heads_not_teacher(planner_cls):
    torch.manual_seed(0)
    planner = planner_cls(32, 48, dim=16, heads=4)
    t, s = maps()
    t.requires_grad_(True)
    s.requires_grad_(True)
    losses = planner.ot_losses(planner(t, s))
    (losses["ot1"] + losses["ot2_planner"]).backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0
    for name, p in planner.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("planner_cls", PLANNERS)
@pytest.mark.parametrize(("hw_t", "hw_s"), [((1, 1), (1, 1)), ((2, 2), (2, 2)), ((2, 2), (1, 1)), ((1, 1), (3, 2))])
def test_any_backbone_pair_runs(planner_cls, hw_t, hw_s):
    """ResNet-like 512 channels vs ShuffleNet's 1024, 1×1 and 2×2 maps, n_t ≠ n_s."""
    torch.manual_seed(0)
    planner = planner_cls(512, 1024)
    t, s = maps(b=4, c_t=512, c_s=1024, hw_t=hw_t, hw_s=hw_s)
    s.requires_grad_(True)
    out = planner(t, s)
    n_t, n_s = hw_t[0] * hw_t[1], hw_s[0] * hw_s[1]
    assert out["student_refined"].shape == (4, n_s, 256)
    assert out["teacher_refined"].shape == (4, n_t if planner_cls is SemanticPlanner else n_s, 256)
    assert out["student_pooled"].shape == out["teacher_pooled"].shape == (4, 256)
    losses = planner.ot_losses(out)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert torch.isfinite(s.grad).all()


def test_sinkhorn_plan_has_uniform_marginals():
    torch.manual_seed(0)
    planner = SinkhornPlanner(32, 48, dim=16, heads=4)
    t, s = maps(hw_t=(4, 4), hw_s=(3, 3))
    out = planner(t, s)
    plan = out["plan"]
    assert plan.shape == (3, 9, 16)
    assert torch.isfinite(plan).all() and (plan >= 0).all()
    torch.testing.assert_close(plan.sum(-1), torch.full((3, 9), 1 / 9), rtol=0, atol=1e-4)
    torch.testing.assert_close(plan.sum(-2), torch.full((3, 16), 1 / 16), rtol=0, atol=1e-4)
    assert not hasattr(planner, "qk_t")  # no dead query/key parameters


def test_batched_sinkhorn_plan_equals_one_problem_at_a_time():
    """The batched solver gives, per sample, POT's single-problem log-domain Sinkhorn plan.

    The reference is POT's ``sinkhorn_log`` on the transposed problem, in float64, on the cost
    computed here in float32 from the planner's tokens. Transposed, because the single solver
    updates the row potential last and the batched one the column potential: the same iteration
    then runs in the same order (in float64 the two agree to 4e-15; untransposed they differ by
    half an iteration, up to 2e-3 of a plan entry). What remains is float32 rounding, bounded:
    the planner's batched cost and this one (normalised d-vectors, d-term dot products) differ
    by ≤ (4d + 8)·u; each half-step's log-sum-exp over arguments |g − M| ≤ S (S = max M +
    reg·log(n_s·n_t) bounds costs and potentials) rounds by ≤ 3u·S; the update is 1-Lipschitz in
    the sup norm, so after N iterations each potential is off by ≤ 6N·u·S, and each entry
    exp((f + g − M)/reg) relatively by ≤ (12N·S + S + 4d + 8)·u/reg (1.7e-3 here; ~4e-6 seen).
    A sample mixed up with another, a wrong ε or wrong marginals move entries by far more.
    """
    import ot

    torch.manual_seed(1)
    planner = SinkhornPlanner(32, 48, dim=16, heads=4)
    t, s = maps(hw_t=(4, 4), hw_s=(3, 3))
    z_t, z_s = planner.tokens(t, s)
    plans = planner.transport_plan(z_t, z_s)
    assert plans.dtype == torch.float32
    n_s, n_t = plans.shape[1:]
    for i in range(plans.shape[0]):
        cost = (1 - F.normalize(z_s[i].detach(), dim=-1) @ F.normalize(z_t[i].detach(), dim=-1).T).double()
        one = ot.sinkhorn(torch.full((n_t,), 1 / n_t, dtype=torch.float64),
                          torch.full((n_s,), 1 / n_s, dtype=torch.float64), cost.T, planner.reg,
                          method="sinkhorn_log", numItermax=planner.num_iter, stopThr=0.0, warn=False).T
        big_s = float(cost.max()) + planner.reg * np.log(n_s * n_t)
        bound = ((12 * planner.num_iter + 1) * big_s + 4 * z_s.shape[-1] + 8) * U32 / planner.reg
        torch.testing.assert_close(plans[i].double(), one, rtol=bound, atol=0)


def test_planner_rejects_bad_inputs():
    with pytest.raises(ValueError, match="divisible"):
        SemanticPlanner(8, 8, dim=10, heads=4)
    with pytest.raises(ValueError, match=r"\(B, C, h, w\)"):
        SemanticPlanner(8, 8, dim=8, heads=2)(torch.zeros(2, 8, 4), torch.zeros(2, 8, 1, 1))


# ---------------------------------------------------------------------------------- transport cost


def test_transport_cost_identical_and_shifted_clouds():
    x = np.random.default_rng(4).normal(size=(60, 5))
    v = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    assert transport_cost(x, x) == pytest.approx(0.0, abs=1e-12)
    # W2² of a translation by v is |v|²: the identity coupling is optimal.
    assert transport_cost(x, x + v) == pytest.approx(float(v @ v), rel=1e-10)
    assert transport_cost(torch.from_numpy(x).float(), torch.from_numpy(x + v).float()) == pytest.approx(
        float(v @ v), rel=1e-5
    )


def test_sinkhorn_cost_is_close_to_and_not_below_exact():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(80, 4)), rng.normal(size=(70, 4)) + 1.0
    exact = transport_cost(x, y)
    entropic = transport_cost(x, y, method="sinkhorn")
    assert exact > 3.0  # the means differ by 1 in each of 4 dimensions
    assert exact - 1e-6 <= entropic <= 1.5 * exact


def test_sinkhorn_that_does_not_converge_at_its_epsilon_retries_with_a_larger_one():
    """Sparse probability vectors (8 per side) on which log-domain Sinkhorn at ε = 0.05·mean(M) still
    misses its marginals after 10,000 iterations; the cost comes from a converged, larger-ε plan."""
    import ot
    import torch

    rng = np.random.default_rng(0)
    for _ in range(2):  # the second draw is the hard one
        x, y = rng.dirichlet(np.full(5, 0.05), size=8), rng.dirichlet(np.full(5, 0.05), size=8)
    cost = ot.dist(x, y)
    _, log = ot.sinkhorn(torch.from_numpy(ot.unif(8)), torch.from_numpy(ot.unif(8)), torch.from_numpy(cost),
                         0.05 * cost.mean(), method="sinkhorn_log", numItermax=10_000, stopThr=1e-5, log=True,
                         warn=False)
    assert float(log["err"][-1]) >= 1e-5  # the case really is unconverged at the base ε
    exact = transport_cost(x, y)
    entropic = transport_cost(x, y, method="sinkhorn")  # warnings are errors in this suite
    assert exact - 1e-6 <= entropic <= 1.5 * exact


def test_transport_cost_subsampling_is_seeded():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(300, 3)), rng.normal(size=(300, 3))
    a = transport_cost(x, y, max_samples=50, seed=1)
    assert a == transport_cost(x, y, max_samples=50, seed=1)
    assert a != transport_cost(x, y, max_samples=50, seed=2)


def test_transport_cost_rejects_incomparable_inputs():
    with pytest.raises(ValueError, match="shared"):
        transport_cost(np.zeros((4, 3)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="unknown method"):
        transport_cost(np.zeros((4, 3)), np.zeros((4, 3)), method="gw")
    with pytest.raises(ValueError, match="n_samples"):
        transport_cost(np.zeros(4), np.zeros((4, 1)))
