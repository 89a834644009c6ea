"""SemBridge Student-Friendly Matching: initial cosine pairing (SSM) and dynamic KL re-matching (DynM).

Pure tensor functions, no models: callers pass logits/embeddings they computed in batches. Both
matchers restrict every match to the student's own class, as the paper and the authors' code do
(paper-notes §2.1; official-code-notes §3.3), and replace the authors' batch-size-1 loops with one
matrix product per class and student chunk (official-code-notes §3.3 "Cost", items 21-22).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Curriculum:
    """Re-matching curriculum parameters of one dataset, in epochs of a `reference_epochs`-long run."""

    e0: int
    delta: int
    mu: float
    max_rematches: int
    reference_epochs: int = 200


# The authors' `adjust_epoch` lists (0-based; 200 student epochs) fit e_t exactly with e_mu = 5
# (paper-notes §2.1 (b); official-code-notes §3.3 and the dataset table):
#   S2S_EU [30, 60, 95, 135], S2S_CN [45, 60, 80, 105, 135], M2S_GL [15, 45, 80, 120, 165].
# The configs stop after 4 / 5 / 5 re-matches although the formula has room for more (EU: 180, CN: 170).
OFFICIAL_CURRICULA: dict[str, Curriculum] = {
    "s2s_eu": Curriculum(e0=30, delta=30, mu=5, max_rematches=4),
    "s2s_cn": Curriculum(e0=45, delta=15, mu=5, max_rematches=5),
    "m2s_gl": Curriculum(e0=15, delta=30, mu=5, max_rematches=5),
}
DEFAULT_CURRICULUM = OFFICIAL_CURRICULA["s2s_eu"]  # EuroSAT-like S2S setting


def rematch_epochs(total_epochs: int, *, e0: int, delta: int, mu: float, reference_epochs: int | None = None,
                   max_rematches: int | None = None) -> list[int]:
    """0-based epochs at whose start DynM re-matches, following the paper's curriculum.

    e_t = e_0 + Σ_{i=1..t} (Δe + e_μ (i−1)) = e_0 + tΔe + e_μ t(t−1)/2,  t = 0, 1, 2, ...
    (arXiv 2511.08901 §SFM; paper-notes §2.1 (b)). The gaps grow by e_μ each time.

    With `reference_epochs`, the parameters are read as epochs of a run that long and the whole
    schedule is compressed to `total_epochs` (e_0, Δe and e_μ all scale by total/reference), so a
    12-epoch profile re-matches at roughly the same fractions of training as the 200-epoch original.
    Each e_t is rounded half up; epoch 0 (an untrained student would undo the SSM pairing), epochs
    ≥ `total_epochs` and duplicates from rounding are dropped.

    Args:
        total_epochs: epochs of the student run.
        e0: e_0 of the formula (see `OFFICIAL_CURRICULA`).
        delta: Δe of the formula.
        mu: e_μ of the formula.
        reference_epochs: run length the parameters were set for, or None to use them as they are.
        max_rematches: keep at most this many e_t (the authors' configs stop at 4-5), None for all.

    Returns:
        Strictly increasing epochs in [1, total_epochs).
    """
    if total_epochs < 1 or e0 < 0 or delta <= 0 or mu < 0:
        raise ValueError(f"need total_epochs >= 1, e0 >= 0, delta > 0, mu >= 0; "
                         f"got {total_epochs}, {e0}, {delta}, {mu}")
    if reference_epochs is not None and reference_epochs < 1:
        raise ValueError(f"reference_epochs must be >= 1, got {reference_epochs}")
    scale = 1.0 if reference_epochs is None else total_epochs / reference_epochs
    epochs: list[int] = []
    t = 0
    while max_rematches is None or t < max_rematches:
        e_t = (e0 + t * delta + mu * t * (t - 1) / 2) * scale
        if e_t >= total_epochs:  # e_t grows strictly (delta > 0): nothing later fits either
            break
        epoch = math.floor(e_t + 0.5)
        if 1 <= epoch < total_epochs and (not epochs or epoch > epochs[-1]):
            epochs.append(epoch)
        t += 1
    return epochs


def kl_cost_matrix(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 3.0) -> Tensor:
    """All-pairs KL(teacher_j ‖ student_i) at temperature T, as two matrix products.

    C[i, j] = Σ_k p_jk (log p_jk − log q_ik),  p_j = softmax(t_j / T),  q_i = softmax(s_i / T)
            = (Σ_k p_jk log p_jk)  −  (log q · pᵀ)[i, j]
    i.e. the DynM score of the paper (§SFM, "lowest KL") and of the authors' `nn.KLDivLoss`
    loop (official-code-notes §3.3), without the per-sample loop.

    Args:
        student_logits: (S, K).
        teacher_logits: (G, K).
        temperature: T (the authors use 3).

    Returns:
        (S, G) float32 costs, ≥ 0 up to rounding.
    """
    log_q, p_t, neg_entropy = _kl_terms(student_logits, teacher_logits, temperature)
    return neg_entropy.unsqueeze(0) - log_q @ p_t.T


def _kl_terms(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> tuple[Tensor, Tensor, Tensor]:
    """log q (S, K), p (G, K) and Σ_k p log p (G,), in float32 via log_softmax (no log 0)."""
    if student_logits.ndim != 2 or teacher_logits.ndim != 2 or student_logits.shape[1] != teacher_logits.shape[1]:
        raise ValueError(f"expected (S, K) and (G, K) logits, got {tuple(student_logits.shape)} "
                         f"and {tuple(teacher_logits.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    log_q = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    p_t = log_p.exp()
    return log_q, p_t, (p_t * log_p).sum(dim=1)


@torch.no_grad()
def rematch_students(student_logits: Tensor, student_labels: Tensor, teacher_logits: Tensor,
                     teacher_labels: Tensor | None, *, temperature: float = 3.0, chunk: int = 4096,
                     teacher_sets: Tensor | None = None) -> Tensor:
    """DynM: each student's same-class teacher sample with minimal KL(teacher ‖ student).

    partner[i] = argmin_{j : y_j = y_i} C[i, j],  C = `kl_cost_matrix` (paper-notes §2.1 (b)).
    Computed per class on the logits' device, `chunk` students at a time: memory is
    O(chunk × |gallery of the class|). Ties go to the lowest gallery index.

    Args:
        student_logits: (S, K) current student logits of the training chips.
        student_labels: (S,) integer class of each student chip.
        teacher_logits: (G, K) frozen teacher logits of the gallery.
        teacher_labels: (G,) integer class of each gallery sample.
        temperature: T of the softmaxes (authors: 3).
        chunk: students per matrix product.
        teacher_sets: (G, K) multi-hot class sets of a multi-label gallery; when given, a
            student's candidates are the gallery samples *carrying* its class and
            ``teacher_labels`` is not used (it may be None).

    Returns:
        (S,) int64 indices into the teacher gallery, on the logits' device.

    Raises:
        ValueError: a student class has no teacher sample, or shapes disagree.
    """
    log_q, p_t, neg_entropy = _kl_terms(student_logits, teacher_logits.to(student_logits.device), temperature)

    def cost(rows: Tensor, cols: Tensor) -> Tensor:
        return neg_entropy[cols].unsqueeze(0) - log_q[rows] @ p_t[cols].T

    return _best_same_class(cost, student_labels, teacher_labels, log_q.device, log_q.shape[0], p_t.shape[0], chunk,
                            "rematch_students", teacher_sets)


@torch.no_grad()
def initial_match(student_emb: Tensor, student_labels: Tensor, teacher_emb: Tensor, teacher_labels: Tensor | None,
                  *, chunk: int = 4096, teacher_sets: Tensor | None = None) -> Tensor:
    """SSM initial pairing: each student's most cosine-similar same-class teacher sample.

    partner[i] = argmax_{j : y_j = y_i} ⟨g_i/‖g_i‖, v_j/‖v_j‖⟩ with g = M_G(RGB), v = M_V(MS)
    (paper-notes §2.1 (a)); the authors' `generator.py` does the same with a batch-size-1 loop.

    Args:
        student_emb: (S, D) matcher embeddings of the student (RGB) chips.
        student_labels: (S,) integer classes.
        teacher_emb: (G, D) matcher embeddings of the teacher (MS) gallery.
        teacher_labels: (G,) integer classes.
        chunk: students per matrix product; memory O(chunk × |gallery of the class|).
        teacher_sets: (G, K) multi-hot class sets of a multi-label gallery: candidates are the
            samples carrying the student's class (``teacher_labels`` is then unused).

    Returns:
        (S,) int64 indices into the teacher gallery, on the embeddings' device; ties → lowest index.

    Raises:
        ValueError: a student class has no teacher sample, or shapes disagree.
    """
    if student_emb.ndim != 2 or teacher_emb.ndim != 2 or student_emb.shape[1] != teacher_emb.shape[1]:
        raise ValueError(f"expected (S, D) and (G, D) embeddings, got {tuple(student_emb.shape)} "
                         f"and {tuple(teacher_emb.shape)}")
    s = F.normalize(student_emb.float(), dim=1)
    t = F.normalize(teacher_emb.float().to(s.device), dim=1)

    def cost(rows: Tensor, cols: Tensor) -> Tensor:
        return -(s[rows] @ t[cols].T)  # argmin of −cos = argmax of cos, same tie rule

    return _best_same_class(cost, student_labels, teacher_labels, s.device, s.shape[0], t.shape[0],
                            chunk, "initial_match", teacher_sets)


def _best_same_class(cost: Callable[[Tensor, Tensor], Tensor], student_labels: Tensor, teacher_labels: Tensor | None,
                     device: torch.device, n_students: int, n_gallery: int, chunk: int, caller: str,
                     teacher_sets: Tensor | None = None) -> Tensor:
    """partner[i] = argmin over same-class gallery columns of cost(rows, cols); loops over classes and chunks only."""
    if chunk < 1:
        raise ValueError(f"{caller}: chunk must be >= 1, got {chunk}")
    if teacher_sets is not None:
        if teacher_sets.ndim != 2 or teacher_sets.shape[0] != n_gallery:
            raise ValueError(f"{caller}: teacher_sets must be (G={n_gallery}, K), got {tuple(teacher_sets.shape)}")
        carriers = teacher_sets.to(device) > 0
        # A multi-label gallery sample belongs to every class it carries; argmin over ascending
        # column indices keeps the lowest-index tie rule.
        teacher_labels = torch.zeros(n_gallery, dtype=torch.long, device=device)  # shape check only
    else:
        carriers = None
    if teacher_labels is None:
        raise ValueError(f"{caller}: give teacher_labels (single-label gallery) or teacher_sets (multi-label)")
    if tuple(student_labels.shape) != (n_students,) or tuple(teacher_labels.shape) != (n_gallery,):
        raise ValueError(f"{caller}: labels must be 1-D class indices of lengths {n_students} and {n_gallery}, "
                         f"got shapes {tuple(student_labels.shape)} and {tuple(teacher_labels.shape)}")
    if student_labels.is_floating_point() or teacher_labels.is_floating_point():
        raise ValueError(f"{caller}: labels must be integer class indices, "
                         f"not {student_labels.dtype}/{teacher_labels.dtype}")
    ys, yt = student_labels.to(device).long(), teacher_labels.to(device).long()
    # Stable sorts group each class's indices in ascending order, so argmin's first-minimum rule
    # maps to the lowest gallery index.
    s_order = torch.sort(ys, stable=True).indices
    t_order = torch.sort(yt, stable=True).indices
    s_classes, s_counts = torch.unique_consecutive(ys[s_order], return_counts=True)
    t_classes, t_counts = torch.unique_consecutive(yt[t_order], return_counts=True)
    t_groups = dict(zip(t_classes.tolist(), torch.split(t_order, t_counts.tolist()), strict=True))
    if carriers is not None:
        t_groups = {c: torch.nonzero(carriers[:, c]).flatten() for c in s_classes.tolist()
                    if c < carriers.shape[1] and bool(carriers[:, c].any())}
    partner = torch.empty(ys.shape[0], dtype=torch.long, device=device)
    for c, rows_c in zip(s_classes.tolist(), torch.split(s_order, s_counts.tolist()), strict=True):
        cols = t_groups.get(c)
        if cols is None:
            raise ValueError(f"{caller}: class {c} has {rows_c.numel()} student samples but no teacher sample "
                             f"in the gallery; every student class needs at least one same-class teacher sample")
        for rows in torch.split(rows_c, chunk):
            partner[rows] = cols[cost(rows, cols).argmin(dim=1)]
    return partner


def changed_fraction(old: Tensor, new: Tensor) -> float:
    """Fraction of students whose partner index differs between two matchings (0.0 for no students)."""
    if old.shape != new.shape:
        raise ValueError(f"matchings differ in shape: {tuple(old.shape)} vs {tuple(new.shape)}")
    if old.numel() == 0:
        return 0.0
    return (old != new.to(old.device)).float().mean().item()
