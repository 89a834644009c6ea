"""SemBridge matching: batched KL/cosine matchers against per-sample numpy loops, and the re-matching curriculum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ackd_bench.sembridge.matching import (
    OFFICIAL_CURRICULA,
    changed_fraction,
    initial_match,
    kl_cost_matrix,
    rematch_epochs,
    rematch_students,
)


def _softmax64(x: np.ndarray, t: float) -> np.ndarray:
    z = x.astype(np.float64) / t
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def _naive_kl(s: np.ndarray, t: np.ndarray, temperature: float) -> float:
    """KL(softmax(t/T) ‖ softmax(s/T)) of one pair, in float64."""
    p, q = _softmax64(t, temperature), _softmax64(s, temperature)
    return float(np.sum(p * (np.log(p) - np.log(q))))


U32 = 2.0**-24  # float32 unit roundoff


def kl_cost_bound(s: np.ndarray, t: np.ndarray, temperature: float) -> np.ndarray:
    """(S, G): how far float32 rounding can move ``kl_cost_matrix`` (it computes in float32) from the exact
    KL of the same logits.

    With L = 2·max|logit|/T + log K (bounding every scaled logit, log-sum-exp and log-probability
    of the pair), each log-probability is off by at most A·u, A = K + 2 + 3L (the division, the
    shift by the row maximum, K exponentials and their sum, the log, the subtraction), so each p by
    (A + 1)·u relatively. C = Σ p log p − Σ p log q then moves by at most (A + 1)·u·2L (the p's),
    2A·u (the logs), 2K·u·L (the two K-term sums) and 2L·u (the difference): u·(2L(A + K + 2) + 2A).
    """
    k = s.shape[1]
    top = np.maximum(np.abs(s).max(1)[:, None], np.abs(t).max(1)[None, :]) / temperature
    big_l = 2 * top + np.log(k)
    a = k + 2 + 3 * big_l
    return U32 * (2 * big_l * (a + k + 2) + 2 * a)


def _assert_argmin_decided_in_float32(s, ys, t, yt, temperature=3.0) -> None:
    """Every student's float64-cheapest same-class partner beats each other one by more than the two
    costs' float32 bounds: the float32 argmin is then that partner, and comparing indices is exact."""
    bound = kl_cost_bound(s, t, temperature)
    for i in range(len(s)):
        cols = np.flatnonzero(yt == ys[i])
        kl = np.array([_naive_kl(s[i], t[j], temperature) for j in cols])
        best = int(np.argmin(kl))
        others = np.arange(len(cols)) != best
        assert (kl[others] - kl[best] > bound[i, cols[others]] + bound[i, cols[best]]).all(), i


def _naive_rematch(s, ys, t, yt, temperature=3.0) -> np.ndarray:
    """One student at a time, one KL at a time, as the authors' loop does (official-code-notes §3.3)."""
    out = []
    for i in range(len(s)):
        best, best_j = np.inf, -1
        for j in range(len(t)):
            if yt[j] == ys[i]:
                kl = _naive_kl(s[i], t[j], temperature)
                if kl < best:  # strict: the first (lowest) index wins ties
                    best, best_j = kl, j
        out.append(best_j)
    return np.array(out)


def _uneven_case(seed: int = 0):
    """4 student classes with uneven sizes (1 to 25), non-contiguous labels, a gallery class with no students."""
    g = np.random.default_rng(seed)
    classes = [0, 2, 5, 7]
    ys = np.repeat(classes, [1, 7, 13, 25])
    yt = np.repeat(classes + [9], [3, 9, 2, 17, 4])
    g.shuffle(ys)
    g.shuffle(yt)
    k = 6
    s = g.normal(0, 3, (len(ys), k)).astype(np.float32)
    t = g.normal(0, 3, (len(yt), k)).astype(np.float32)
    return s, ys, t, yt


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_kl_cost_matrix_matches_numpy(temperature):
    s, _, t, _ = _uneven_case()
    got = kl_cost_matrix(torch.from_numpy(s), torch.from_numpy(t), temperature)
    want = np.array([[_naive_kl(si, tj, temperature) for tj in t] for si in s])  # float64, same float32 logits
    assert got.shape == (len(s), len(t)) and got.dtype == torch.float32
    assert (np.abs(got.numpy() - want) <= kl_cost_bound(s, t, temperature)).all()


def test_kl_cost_matrix_is_finite_for_extreme_logits_and_half_inputs():
    s = torch.tensor([[200.0, -200.0, 0.0], [0.0, 0.0, 0.0]])
    t = torch.tensor([[-300.0, 300.0, 0.0], [200.0, -200.0, 0.0]])
    c = kl_cost_matrix(s, t, temperature=1.0)
    assert torch.isfinite(c).all()
    assert c[0, 1].abs() < 1e-5 and c[0, 0] > 100  # identical distributions cost 0; opposite ones a lot
    assert kl_cost_matrix(s.bfloat16(), t.bfloat16()).dtype == torch.float32
    with pytest.raises(ValueError, match="logits"):
        kl_cost_matrix(s, t[:, :2])


@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_rematch_students_equals_per_sample_loop(chunk):
    s, ys, t, yt = _uneven_case()
    got = rematch_students(torch.from_numpy(s), torch.from_numpy(ys), torch.from_numpy(t), torch.from_numpy(yt),
                           chunk=chunk)
    assert got.dtype == torch.int64 and got.shape == (len(s),)
    _assert_argmin_decided_in_float32(s, ys, t, yt)  # so the float32 matcher must agree exactly
    np.testing.assert_array_equal(got.numpy(), _naive_rematch(s, ys, t, yt))


def test_rematch_students_stays_within_class():
    s, ys, t, yt = _uneven_case(seed=1)
    # Give every student a perfect twin in the gallery, but of another class: it must not be chosen.
    twins = torch.from_numpy(s)
    twin_labels = torch.from_numpy((ys + 1) % 10)
    gallery = torch.cat([twins, torch.from_numpy(t)])
    labels = torch.cat([twin_labels, torch.from_numpy(yt)])
    got = rematch_students(torch.from_numpy(s), torch.from_numpy(ys), gallery, labels, chunk=5)
    assert (labels[got] == torch.from_numpy(ys)).all()
    assert (got >= len(s)).all()
    _assert_argmin_decided_in_float32(s, ys, gallery.numpy(), labels.numpy())
    np.testing.assert_array_equal(got.numpy(), _naive_rematch(s, ys, gallery.numpy(), labels.numpy()))


def test_rematch_students_breaks_ties_to_lowest_index():
    a = torch.tensor([2.0, -1.0, 0.5])
    b = torch.tensor([-1.0, 2.0, 0.0])
    gallery = torch.stack([a, b, b, a, a, b, a])
    labels = torch.tensor([1, 0, 0, 0, 0, 0, 0])  # a at 0 is of another class; a's of class 0 at 3, 4, 6
    students = torch.stack([a, b, a])
    ys = torch.zeros(3, dtype=torch.long)
    for chunk in (1, 2, 8):
        got = rematch_students(students, ys, gallery, labels, chunk=chunk)
        assert got.tolist() == [3, 1, 3]


def test_rematch_students_missing_teacher_class_raises():
    s, ys, t, yt = _uneven_case()
    keep = yt != 5
    with pytest.raises(ValueError, match="class 5 has 13 student samples but no teacher"):
        rematch_students(torch.from_numpy(s), torch.from_numpy(ys), torch.from_numpy(t[keep]),
                         torch.from_numpy(yt[keep]))


def test_rematch_students_rejects_mismatched_labels():
    s, ys, t, yt = _uneven_case()
    with pytest.raises(ValueError, match="lengths"):
        rematch_students(torch.from_numpy(s), torch.from_numpy(ys[:-1]), torch.from_numpy(t), torch.from_numpy(yt))


def test_rematch_students_ignores_autograd():
    s, ys, t, yt = _uneven_case()
    logits = torch.from_numpy(s).requires_grad_()
    got = rematch_students(logits, torch.from_numpy(ys), torch.from_numpy(t), torch.from_numpy(yt))
    assert not got.requires_grad


@pytest.mark.parametrize("chunk", [2, 4096])
def test_initial_match_equals_cosine_loop(chunk):
    g = np.random.default_rng(3)
    s_emb = g.normal(size=(46, 8)).astype(np.float32)
    t_emb = g.normal(size=(35, 8)).astype(np.float32) * g.uniform(0.1, 10, (35, 1)).astype(np.float32)
    _, ys, _, yt = _uneven_case()
    want = []
    # initial_match's float32 cosines (normalise, d-term dot products) are within (2d + 4)·u of the
    # exact ones; where the best same-class cosine leads every other by more than twice that, the
    # float32 argmax is decided and the indices must agree exactly.
    slack = 2 * (2 * s_emb.shape[1] + 4) * U32
    for i in range(len(s_emb)):
        best, best_j, cosines = -np.inf, -1, []
        for j in range(len(t_emb)):
            if yt[j] == ys[i]:
                a, b = s_emb[i].astype(np.float64), t_emb[j].astype(np.float64)
                cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
                cosines.append(cos)
                if cos > best:
                    best, best_j = cos, j
        runner_up = sorted(cosines)[-2] if len(cosines) > 1 else -np.inf
        assert best - runner_up > slack, i
        want.append(best_j)
    got = initial_match(torch.from_numpy(s_emb), torch.from_numpy(ys), torch.from_numpy(t_emb),
                        torch.from_numpy(yt), chunk=chunk)
    np.testing.assert_array_equal(got.numpy(), want)


def test_rematch_epochs_reproduces_the_official_adjust_epochs():
    # official-code-notes §3.3: S2S_EU [30, 60, 95, 135], S2S_CN [45, 60, 80, 105, 135], M2S_GL [15, 45, 80, 120, 165]
    want = {"s2s_eu": [30, 60, 95, 135], "s2s_cn": [45, 60, 80, 105, 135], "m2s_gl": [15, 45, 80, 120, 165]}
    for name, c in OFFICIAL_CURRICULA.items():
        assert rematch_epochs(200, e0=c.e0, delta=c.delta, mu=c.mu, max_rematches=c.max_rematches) == want[name]
    # Without the cap, the formula has room for e_4 = 135 + (30 + 5*3) = 180 < 200 on EU.
    assert rematch_epochs(200, e0=30, delta=30, mu=5) == [30, 60, 95, 135, 180]


def test_rematch_epochs_hand_worked():
    # e_t = 10 + 10t + 2.5 t(t-1)/2: 10, 20, 32.5, 47.5, 65, 85, 107.5 (rounded half up, < 100).
    assert rematch_epochs(100, e0=10, delta=10, mu=2.5) == [10, 20, 33, 48, 65, 85]
    assert rematch_epochs(100, e0=10, delta=10, mu=2.5, max_rematches=2) == [10, 20]


def test_rematch_epochs_scales_to_short_profiles():
    # 12 of 200 epochs: EU 30, 60, 95, 135 -> 1.8, 3.6, 5.7, 8.1 -> 2, 4, 6, 8.
    assert rematch_epochs(12, e0=30, delta=30, mu=5, reference_epochs=200, max_rematches=4) == [2, 4, 6, 8]
    # GL 15, 45, 80, 120, 165 -> 0.9, 2.7, 4.8, 7.2, 9.9.
    assert rematch_epochs(12, e0=15, delta=30, mu=5, reference_epochs=200, max_rematches=5) == [1, 3, 5, 7, 10]
    # 3 epochs: 0.45 -> 0 (dropped), 0.9 -> 1, 1.425 -> 1 (duplicate), 2.025 -> 2, 2.7 -> 3 (not < 3).
    assert rematch_epochs(3, e0=30, delta=30, mu=5, reference_epochs=200) == [1, 2]
    assert rematch_epochs(200, e0=30, delta=30, mu=5, reference_epochs=200) == [30, 60, 95, 135, 180]


def test_rematch_epochs_rejects_non_increasing_curricula():
    with pytest.raises(ValueError):
        rematch_epochs(100, e0=10, delta=0, mu=5)
    with pytest.raises(ValueError):
        rematch_epochs(100, e0=10, delta=10, mu=5, reference_epochs=0)


def test_changed_fraction():
    assert changed_fraction(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 5, 3])) == 0.25
    assert changed_fraction(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)) == 0.0
    with pytest.raises(ValueError, match="shape"):
        changed_fraction(torch.tensor([0, 1]), torch.tensor([0]))


def test_multilabel_gallery_matches_among_carriers_of_the_class():
    """A multi-label teacher chip is a candidate for every class it carries (M2S-GL's teachers)."""
    g = torch.Generator().manual_seed(3)
    sets = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]], dtype=torch.float32)
    s_emb, t_emb = torch.randn(9, 5, generator=g), torch.randn(6, 5, generator=g)
    s_labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    got = initial_match(s_emb, s_labels, t_emb, None, teacher_sets=sets, chunk=2)
    cos = torch.nn.functional.normalize(s_emb, dim=1) @ torch.nn.functional.normalize(t_emb, dim=1).T
    for i, c in enumerate(s_labels.tolist()):
        carriers = torch.nonzero(sets[:, c]).flatten()
        assert int(got[i]) == int(carriers[cos[i, carriers].argmax()])
    s_logits, t_logits = torch.randn(9, 3, generator=g), torch.randn(6, 3, generator=g)
    again = rematch_students(s_logits, s_labels, t_logits, None, teacher_sets=sets)
    assert bool((sets[again, s_labels] > 0).all())
    with pytest.raises(ValueError, match="no teacher sample"):
        initial_match(s_emb, torch.tensor([0] * 8 + [2]), t_emb, None, teacher_sets=sets[:, :2].clone())
