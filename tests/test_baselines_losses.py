"""The baselines' pure loss functions against independent plain-numpy (float64) restatements and hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from ackd_bench.baselines.c2kd import kendall_tau, non_target_kl, ofsd_loss
from ackd_bench.baselines.ctkd import ctkd_decay_loops, ctkd_lambda, ctkd_temperature, scale_gradient
from ackd_bench.baselines.distilvpr import (
    cross_agent_loss,
    geodesic_relation_loss,
    mobius_add,
    poincare_distance_matrix,
    poincare_expmap0,
    to_poincare,
)
from ackd_bench.baselines.dkd import dkd_loss, dkd_parts, dkd_warmup_epochs
from ackd_bench.baselines.kd import kd_loss
from ackd_bench.benchmark.method import class_logits
from ackd_bench.baselines.logit_regression import logit_regression_loss
from ackd_bench.baselines.lskd import lskd_loss, standardize_logits
from ackd_bench.baselines.rkd import pairwise_distances, rkd_angle_loss, rkd_distance_loss

# ---------------------------------------------------------------------------------------------
# Plain-numpy restatements (float64), written from the papers' equations, not from the torch code.


def np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p ‖ q) along the last axis."""
    return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


def np_kd(zs, zt, T):
    return np.mean(np_kl(np_softmax(zt / T), np_softmax(zs / T))) * T**2


def np_tckd_nckd(zs, zt, y, T):
    ps, pt = np_softmax(zs / T), np_softmax(zt / T)
    tckd, nckd = [], []
    for b in range(len(y)):
        bs = np.array([ps[b, y[b]], 1 - ps[b, y[b]]])
        bt = np.array([pt[b, y[b]], 1 - pt[b, y[b]]])
        tckd.append(np_kl(bt, bs))
        keep = np.arange(zs.shape[1]) != y[b]  # drop the target class altogether
        nckd.append(np_kl(np_softmax(zt[b, keep] / T), np_softmax(zs[b, keep] / T)))
    return np.mean(tckd) * T**2, np.mean(nckd) * T**2


def np_huber(a, b):
    d = np.abs(a - b)
    return np.mean(np.where(d < 1, 0.5 * d**2, d - 0.5))


def np_dist(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def np_rkd_distance(fs, ft):
    out = []
    for f in (fs, ft):
        d = np_dist(f, f)
        off = ~np.eye(len(f), dtype=bool)
        out.append(d / d[off].mean())
    return np_huber(*out)


def np_angles(f):
    n = len(f)
    a = np.zeros((n, n, n))
    for i in range(n):
        for j in range(n):
            for k in range(n):
                u, v = f[j] - f[i], f[k] - f[i]
                nu, nv = np.linalg.norm(u), np.linalg.norm(v)
                if nu > 0 and nv > 0:
                    a[i, j, k] = u @ v / (nu * nv)
    return a


def np_expmap0(u, c):
    n = np.linalg.norm(u, axis=-1, keepdims=True)
    return np.tanh(np.sqrt(c) * n) * u / (np.sqrt(c) * n)


def np_mobius_add(x, y, c):
    xy, x2, y2 = x @ y, x @ x, y @ y
    return ((1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y) / (1 + 2 * c * xy + c**2 * x2 * y2)


def np_poincare_dist(x, y, c):
    """Pairwise geodesic distance through Möbius addition, one pair at a time."""
    out = np.zeros((len(x), len(y)))
    for i in range(len(x)):
        for j in range(len(y)):
            n = np.linalg.norm(np_mobius_add(-x[i], y[j], c))
            out[i, j] = 2 / np.sqrt(c) * np.arctanh(np.sqrt(c) * n)
    return out


def np_poincare_dist_arcosh(x, y, c):
    """The same distance in its arcosh form (an independent closed form)."""
    sq = ((x[:, None] - y[None]) ** 2).sum(-1)
    den = (1 - c * (x**2).sum(-1))[:, None] * (1 - c * (y**2).sum(-1))[None, :]
    return np.arccosh(1 + 2 * c * sq / den) / np.sqrt(c)


def t64(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a), dtype=torch.float64)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ---------------------------------------------------------------------------------------------
# KD


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_kd_loss_is_t_squared_kl(rng, T):
    zs, zt = rng.normal(size=(5, 6)) * 3, rng.normal(size=(5, 6)) * 3
    got = kd_loss(t64(zs), t64(zt), temperature=T).item()
    assert got == pytest.approx(np_kd(zs, zt, T), rel=1e-10)
    # the T² factor is there: at T=4 the value is 16× the plain softened KL
    plain = np.mean(np_kl(np_softmax(zt / T), np_softmax(zs / T)))
    assert got == pytest.approx(T**2 * plain, rel=1e-10)


def test_kd_loss_hand_worked_batch_of_one():
    # teacher (0, ln 3) → p_t = (1/4, 3/4); student (0, 0) → p_s = (1/2, 1/2); T = 1
    got = kd_loss(t64([[0.0, 0.0]]), t64([[0.0, math.log(3.0)]]), temperature=1.0).item()
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert got == pytest.approx(expected, rel=1e-12)


def test_kd_loss_zero_for_identical_logits_and_shift_invariant(rng):
    z = t64(rng.normal(size=(3, 4)))
    assert kd_loss(z, z, temperature=4.0).item() == pytest.approx(0.0, abs=1e-12)
    assert kd_loss(z + 7.0, z, temperature=4.0).item() == pytest.approx(0.0, abs=1e-12)


def test_class_logits_multilabel_is_normalised_sigmoid(rng):
    z = rng.normal(size=(3, 5)) * 2
    sig = 1 / (1 + np.exp(-z))
    got = torch.softmax(class_logits(t64(z), multilabel=True), dim=1).numpy()
    np.testing.assert_allclose(got, sig / sig.sum(1, keepdims=True), rtol=1e-12)
    assert torch.equal(class_logits(t64(z), multilabel=False), t64(z))


# ---------------------------------------------------------------------------------------------
# Logit regression (Ba & Caruana)


def test_logit_regression_hand_worked_and_numpy(rng):
    # ½‖(1, 2) − (0, 0)‖² = 2.5, one sample
    assert logit_regression_loss(t64([[1.0, 2.0]]), t64([[0.0, 0.0]])).item() == pytest.approx(2.5)
    zs, zt = rng.normal(size=(4, 7)), rng.normal(size=(4, 7))
    expected = np.mean(0.5 * ((zs - zt) ** 2).sum(1))
    assert logit_regression_loss(t64(zs), t64(zt)).item() == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# RKD


def test_pairwise_distances_matches_numpy(rng):
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
    np.testing.assert_allclose(pairwise_distances(t64(a), t64(b)).numpy(), np_dist(a, b), rtol=1e-9)
    self_d = pairwise_distances(t64(a)).numpy()
    np.testing.assert_allclose(self_d, np_dist(a, a), atol=1e-9)
    assert np.all(np.diag(self_d) == 0)


def test_rkd_distance_and_angle_match_numpy_with_different_widths(rng):
    fs, ft = rng.normal(size=(5, 3)), rng.normal(size=(5, 8))
    assert rkd_distance_loss(t64(fs), t64(ft)).item() == pytest.approx(np_rkd_distance(fs, ft), rel=1e-9)
    assert rkd_angle_loss(t64(fs), t64(ft)).item() == pytest.approx(np_huber(np_angles(fs), np_angles(ft)), rel=1e-9)


def test_rkd_is_zero_for_a_scaled_isometric_copy(rng):
    ft = rng.normal(size=(6, 4))
    q, _ = np.linalg.qr(rng.normal(size=(7, 7)))
    fs = 3.0 * np.concatenate([ft, np.zeros((6, 3))], axis=1) @ q + 5.0  # embed, rotate, scale, shift
    assert rkd_distance_loss(t64(fs), t64(ft)).item() == pytest.approx(0.0, abs=1e-12)
    assert rkd_angle_loss(t64(fs), t64(ft)).item() == pytest.approx(0.0, abs=1e-12)


def test_rkd_keeps_the_student_gradient(rng):
    fs = t64(rng.normal(size=(4, 3))).requires_grad_()
    ft = t64(rng.normal(size=(4, 5)))
    (rkd_distance_loss(fs, ft) + rkd_angle_loss(fs, ft)).backward()
    assert torch.isfinite(fs.grad).all() and fs.grad.abs().sum() > 0


def test_rkd_small_batches():
    one_s = t64([[1.0, 2.0]]).requires_grad_()
    loss = rkd_distance_loss(one_s, t64([[3.0, 4.0, 5.0]])) + rkd_angle_loss(one_s, t64([[3.0, 4.0, 5.0]]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(one_s.grad).all()
    # two points: after mean normalisation both distance matrices are [[0, 1], [1, 0]]
    two = rkd_distance_loss(t64([[0.0, 0.0], [1.0, 0.0]]), t64([[0.0], [9.0]]))
    assert two.item() == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# DKD


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_dkd_tckd_and_nckd_separately(rng, T):
    zs, zt = rng.normal(size=(6, 5)) * 2, rng.normal(size=(6, 5)) * 2
    y = np.array([0, 1, 2, 3, 4, 0])
    tckd, nckd = dkd_parts(t64(zs), t64(zt), torch.tensor(y), temperature=T)
    exp_t, exp_n = np_tckd_nckd(zs, zt, y, T)
    assert tckd.item() == pytest.approx(exp_t, rel=1e-9)
    assert nckd.item() == pytest.approx(exp_n, rel=1e-9)
    total = dkd_loss(t64(zs), t64(zt), torch.tensor(y), alpha=1.0, beta=8.0, temperature=T).item()
    assert total == pytest.approx(exp_t + 8.0 * exp_n, rel=1e-9)


def test_dkd_one_class_present(rng):
    zs, zt = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    y = np.array([2, 2, 2, 2])
    tckd, nckd = dkd_parts(t64(zs), t64(zt), torch.tensor(y), temperature=4.0)
    assert (tckd.item(), nckd.item()) == pytest.approx(np_tckd_nckd(zs, zt, y, 4.0), rel=1e-9)


def test_dkd_decomposes_kd_for_a_single_sample(rng):
    # Zhao et al. Eq. 5: KD = TCKD + (1 − p_t^target) · NCKD, per sample (hence a batch of 1)
    zs, zt = rng.normal(size=(1, 6)) * 2, rng.normal(size=(1, 6)) * 2
    y = torch.tensor([3])
    tckd, nckd = dkd_parts(t64(zs), t64(zt), y, temperature=4.0)
    p_target_t = np_softmax(zt / 4.0)[0, 3]
    assert kd_loss(t64(zs), t64(zt), temperature=4.0).item() == pytest.approx(
        tckd.item() + (1 - p_target_t) * nckd.item(), rel=1e-9)


def test_dkd_nckd_ignores_the_target_logit(rng):
    zs, zt = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    y = torch.tensor([1, 3])
    zs2 = zs.copy()
    zs2[0, 1] += 5.0
    zs2[1, 3] -= 5.0
    _, n1 = dkd_parts(t64(zs), t64(zt), y, temperature=2.0)
    _, n2 = dkd_parts(t64(zs2), t64(zt), y, temperature=2.0)
    assert n1.item() == pytest.approx(n2.item(), rel=1e-9)


# 20/240 of the epochs, floored at min(3, epochs // 4) and 1: fast (12) gets 3, not round(1.0) = 1.
@pytest.mark.parametrize(("epochs", "expected"), [(240, 20), (200, 17), (48, 4), (36, 3), (24, 3), (12, 3),
                                                  (8, 2), (5, 1), (3, 1), (1, 1)])
def test_dkd_warmup_scales_with_the_profile(epochs, expected):
    assert dkd_warmup_epochs(epochs) == expected


def test_short_profile_schedules_keep_a_phase():
    """On `fast` (12 epochs) DKD still ramps over epochs 0–2 and CTKD's λ has not reached −1 at epoch 0."""
    assert dkd_warmup_epochs(12) == 3
    loops = ctkd_decay_loops(12)
    assert loops == 3
    # the official loop's first epoch is i = 1: λ = −1 + (1 + cos(π/3)) / 2 = −0.25
    assert ctkd_lambda(1, loops) == pytest.approx(-0.25)
    assert ctkd_lambda(3, loops) == pytest.approx(-1.0)


# ---------------------------------------------------------------------------------------------
# LSKD


def test_standardize_logits_matches_numpy(rng):
    z = rng.normal(size=(3, 6)) * 4 + 2
    expected = (z - z.mean(1, keepdims=True)) / (z.std(1, ddof=1, keepdims=True) + 1e-7)
    np.testing.assert_allclose(standardize_logits(t64(z)).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("T", [1.0, 2.0])
def test_lskd_loss_matches_numpy(rng, T):
    zs, zt = rng.normal(size=(4, 5)), rng.normal(size=(4, 5)) * 6

    def std(z):
        return (z - z.mean(1, keepdims=True)) / (z.std(1, ddof=1, keepdims=True) + 1e-7)

    assert lskd_loss(t64(zs), t64(zt), temperature=T).item() == pytest.approx(np_kd(std(zs), std(zt), T), rel=1e-9)


def test_lskd_is_invariant_to_shifting_and_scaling_logits(rng):
    zs, zt = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    base = lskd_loss(t64(zs), t64(zt), temperature=2.0).item()
    scale_s, scale_t = rng.uniform(0.5, 5.0, size=(4, 1)), rng.uniform(0.5, 5.0, size=(4, 1))
    moved = lskd_loss(t64(scale_s * zs - 3.0), t64(scale_t * zt + 10.0), temperature=2.0).item()
    assert moved == pytest.approx(base, rel=1e-5)
    # plain KD is not: the check above can fail
    assert kd_loss(t64(scale_s * zs), t64(zt), temperature=2.0).item() != pytest.approx(
        kd_loss(t64(zs), t64(zt), temperature=2.0).item(), rel=1e-3)


def test_lskd_zero_when_teacher_is_an_affine_copy(rng):
    zt = rng.normal(size=(1, 4))
    assert lskd_loss(t64(0.1 * zt + 1.0), t64(zt), temperature=2.0).item() == pytest.approx(0.0, abs=1e-10)


# ---------------------------------------------------------------------------------------------
# CTKD


def test_ctkd_lambda_cosine_curriculum():
    assert ctkd_lambda(0, 10) == pytest.approx(0.0)
    assert ctkd_lambda(5, 10) == pytest.approx(-0.5)
    assert ctkd_lambda(10, 10) == pytest.approx(-1.0)
    assert ctkd_lambda(50, 10) == pytest.approx(-1.0)
    assert ctkd_lambda(1, 10) == pytest.approx(-(1 - math.cos(math.pi / 10)) / 2)
    assert [ctkd_decay_loops(e) for e in (240, 200, 72, 12, 3)] == [10, 8, 3, 3, 1]


def test_ctkd_initial_temperature():
    tau = ctkd_temperature(torch.tensor(1.0), -1.0, t_start=1.0, t_end=20.0)
    assert tau.item() == pytest.approx(1 + 20 / (1 + math.exp(-1.0)), rel=1e-6)


@pytest.mark.parametrize("lam", [-1.0, -0.3, 0.0])
def test_ctkd_temperature_gradient_is_reversed(rng, lam):
    zs, zt = rng.normal(size=(4, 5)) * 2, rng.normal(size=(4, 5)) * 3
    theta0 = 0.4
    theta = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
    tau = ctkd_temperature(theta, lam, t_start=1.0, t_end=20.0)
    kd_loss(t64(zs), t64(zt), temperature=tau).backward()

    # d(KD)/dθ of the un-reversed loss, by central differences on the numpy restatement (T² included)
    def f(th):
        return np_kd(zs, zt, 1.0 + 20.0 / (1.0 + np.exp(-th)))

    h = 1e-5
    dkd_dtheta = (f(theta0 + h) - f(theta0 - h)) / (2 * h)
    assert abs(dkd_dtheta) > 1e-4
    assert theta.grad.item() == pytest.approx(lam * dkd_dtheta, rel=1e-5, abs=1e-12)
    if lam < 0:
        assert np.sign(theta.grad.item()) == -np.sign(dkd_dtheta)  # descent on θ ascends the KD loss


def test_ctkd_reversal_leaves_the_student_gradient_alone(rng):
    zs, zt = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    a = t64(zs).requires_grad_()
    b = t64(zs).requires_grad_()
    tau = ctkd_temperature(torch.tensor(0.2, dtype=torch.float64, requires_grad=True), -1.0, t_start=1.0, t_end=20.0)
    kd_loss(a, t64(zt), temperature=tau).backward()
    kd_loss(b, t64(zt), temperature=tau.detach()).backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_scale_gradient_identity_forward():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = scale_gradient(x, -0.5)
    assert torch.equal(y, x)
    (y * torch.tensor([3.0, 4.0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([-1.5, -2.0]))


# ---------------------------------------------------------------------------------------------
# C2KD


def test_kendall_tau_matches_scipy(rng):
    a, b = rng.normal(size=(8, 7)), rng.normal(size=(8, 7))
    b[0] = a[0] * 2 + 1  # perfectly concordant
    b[1] = -a[1]  # perfectly discordant
    got = kendall_tau(t64(a), t64(b)).numpy()
    expected = [scipy.stats.kendalltau(a[i], b[i]).statistic for i in range(8)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got[0] == pytest.approx(1.0) and got[1] == pytest.approx(-1.0)


def test_kendall_tau_b_with_ties_matches_scipy():
    a = np.array([[1.0, 1.0, 2.0, 3.0, 3.0, 0.5], [4.0, 1.0, 1.0, 1.0, 2.0, 3.0]])
    b = np.array([[1.0, 2.0, 2.0, 3.0, 1.0, 0.0], [1.0, 2.0, 3.0, 3.0, 0.0, 0.0]])
    got = kendall_tau(t64(a), t64(b)).numpy()
    expected = [scipy.stats.kendalltau(a[i], b[i]).statistic for i in range(2)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_kendall_tau_constant_row_is_nan_and_never_selected():
    tau = kendall_tau(t64([[1.0, 1.0, 1.0]]), t64([[1.0, 2.0, 3.0]]))
    assert torch.isnan(tau).all()
    assert not (tau > 0.0).any()


def test_non_target_kl_matches_numpy(rng):
    zs, zt = rng.normal(size=(4, 5)), rng.normal(size=(4, 5)) * 2
    y = np.array([0, 4, 2, 2])
    expected = [np_kl(np_softmax(np.delete(zt[b], y[b])), np_softmax(np.delete(zs[b], y[b]))) for b in range(4)]
    np.testing.assert_allclose(non_target_kl(t64(zs), t64(zt), torch.tensor(y)).numpy(), expected, rtol=1e-9)


def test_ofsd_selects_rank_aligned_samples(rng):
    proxy_t = rng.normal(size=(6, 5))
    proxy_s = rng.normal(size=(6, 5)) * 0.1
    proxy_s[:3] += proxy_t[:3]  # aligned in rank with the teacher proxy
    proxy_s[3:] -= proxy_t[3:]  # reversed ranks
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    tau = kendall_tau(t64(proxy_t), t64(proxy_s))
    selected = tau > 0.0
    assert selected.tolist() == [True, True, True, False, False, False]

    s = t64(proxy_s).requires_grad_()
    loss = ofsd_loss(s, t64(proxy_t), y, selected)
    per_sample = [np_kl(np_softmax(np.delete(proxy_t[b], y[b])), np_softmax(np.delete(proxy_s[b], y[b])))
                  for b in range(6)]
    assert loss.item() == pytest.approx(sum(per_sample[:3]) / 6, rel=1e-9)  # mean over the whole batch
    loss.backward()
    assert s.grad[3:].abs().sum() == 0 and s.grad[:3].abs().sum() > 0
    assert ofsd_loss(s, t64(proxy_t), y, torch.zeros(6, dtype=torch.bool)).item() == 0.0


# ---------------------------------------------------------------------------------------------
# DistilVPR


def test_expmap0_and_mobius_add_match_numpy(rng):
    u = rng.normal(size=(4, 3))
    np.testing.assert_allclose(poincare_expmap0(t64(u), 0.1).numpy(), np_expmap0(u, 0.1), rtol=1e-12)
    x, y = np_expmap0(u[:2], 0.1)
    np.testing.assert_allclose(mobius_add(t64(x), t64(y), 0.1).numpy(), np_mobius_add(x, y, 0.1), rtol=1e-12)
    np.testing.assert_allclose(mobius_add(t64(-x), t64(x), 0.1).numpy(), 0.0, atol=1e-12)


@pytest.mark.parametrize("c", [0.1, 1.0])
def test_poincare_distance_matches_numpy(rng, c):
    x = np_expmap0(rng.normal(size=(4, 3)), c)
    y = np_expmap0(rng.normal(size=(5, 3)) * 0.8, c)  # well inside the ball, as to_poincare guarantees
    got = poincare_distance_matrix(t64(x), t64(y), c=c).numpy()
    np.testing.assert_allclose(got, np_poincare_dist(x, y, c), rtol=1e-7)
    np.testing.assert_allclose(got, np_poincare_dist_arcosh(x, y, c), rtol=1e-7)
    self_d = poincare_distance_matrix(t64(x), c=c).numpy()
    np.testing.assert_allclose(self_d, np_poincare_dist(x, x, c), atol=1e-5)
    assert np.all(np.diag(self_d) == 0)


def test_poincare_distance_gradient_is_finite_at_coincident_points():
    x = t64([[0.1, 0.2], [0.1, 0.2], [-0.3, 0.0]]).requires_grad_()
    poincare_distance_matrix(x, c=0.1).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_to_poincare_projects_inside_the_ball():
    far = t64([[100.0, 0.0]])
    assert to_poincare(far, 0.1).norm().item() == pytest.approx((1 - 1e-3) / math.sqrt(0.1))


def _unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_geodesic_relation_loss_matches_numpy(rng):
    es, et = _unit(rng.normal(size=(5, 4))), _unit(rng.normal(size=(5, 4)))
    mats = []
    for e in (es, et):
        g = np_poincare_dist(np_expmap0(e, 0.1), np_expmap0(e, 0.1), 0.1)
        np.fill_diagonal(g, 0.0)
        mats.append(g / g[~np.eye(5, dtype=bool)].mean())
    assert geodesic_relation_loss(t64(es), t64(et), c=0.1).item() == pytest.approx(np_huber(*mats), rel=1e-6)


def _np_relation(a, b, kind, c):
    if kind == "euclidean":
        return np_dist(a, b)
    if kind == "cosine":
        return _unit(a) @ _unit(b).T
    return np_poincare_dist(np_expmap0(a, c), np_expmap0(b, c), c)


@pytest.mark.parametrize("kind", ["euclidean", "cosine", "geodesic"])
def test_cross_agent_loss_matches_numpy(rng, kind):
    es, et = _unit(rng.normal(size=(5, 4))), _unit(rng.normal(size=(5, 4)))
    ss, st, tt = (_np_relation(a, b, kind, 0.1) for a, b in ((es, es), (es, et), (et, et)))
    if kind != "cosine":
        np.fill_diagonal(ss, 0.0)
        np.fill_diagonal(tt, 0.0)
    expected = 0.1 * np.mean((ss - st) ** 2) + 0.3 * np.mean((st - tt) ** 2)
    got = cross_agent_loss(t64(es), t64(et), kind, c=0.1, w_st2ss=0.1, w_tt2st=0.3).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_cross_agent_gradient_flows_only_through_the_student(rng):
    es = t64(_unit(rng.normal(size=(4, 3)))).requires_grad_()
    et = t64(_unit(rng.normal(size=(4, 3))))
    st2ss_only = cross_agent_loss(es, et, "euclidean", c=0.1, w_st2ss=1.0, w_tt2st=0.0)
    st2ss_only.backward()
    # the SS → ST target is detached: the gradient equals that of MSE(SS(es), const)
    target = pairwise_distances(es.detach(), et)
    es2 = es.detach().clone().requires_grad_()
    torch.nn.functional.mse_loss(pairwise_distances(es2), target).backward()
    torch.testing.assert_close(es.grad, es2.grad)


def test_cross_agent_loss_zero_when_student_equals_teacher_cosine(rng):
    # cosine relations: SS = ST = TT when the embeddings coincide
    e = t64(_unit(rng.normal(size=(4, 3))))
    assert cross_agent_loss(e, e, "cosine", c=0.1, w_st2ss=0.1, w_tt2st=0.1).item() == pytest.approx(0.0, abs=1e-12)
