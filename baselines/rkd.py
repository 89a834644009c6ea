"""Relational KD (Park et al.): the student mimics the teacher's pairwise distances and triplet angles."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ackd_bench.benchmark.method import Batch, Method, register_method
from ackd_bench.benchmark.precision import float32_loss


def pairwise_distances(a: Tensor, b: Tensor | None = None, *, eps: float = 1e-12) -> Tensor:
    """Euclidean distances between rows, from the Gram matrix.

    ``sqrt(max(‖a_i‖² + ‖b_j‖² − 2⟨a_i, b_j⟩, eps))``: the clamp keeps the square root's gradient
    finite at coincident points. With ``b`` omitted the matrix is ``a`` against itself and its
    diagonal is exactly 0.

    Args:
        a: (B, D).
        b: (M, D), or None for ``a`` itself.
        eps: floor on the squared distance.

    Returns:
        (B, M) distances, (B, B) when ``b`` is None.
    """
    other = a if b is None else b
    sq = a.pow(2).sum(1, keepdim=True) + other.pow(2).sum(1).unsqueeze(0) - 2.0 * a @ other.t()
    dist = sq.clamp_min(eps).sqrt()
    if b is None:
        dist = dist * (1.0 - torch.eye(len(a), device=a.device, dtype=a.dtype))
    return dist


def off_diagonal_mean(m: Tensor) -> Tensor:
    """Mean of the off-diagonal entries of a square (B, B) matrix, B ≥ 2."""
    keep = ~torch.eye(len(m), dtype=torch.bool, device=m.device)
    return m[keep].mean()


@float32_loss
def rkd_distance_loss(feat_s: Tensor, feat_t: Tensor, *, eps: float = 1e-12) -> Tensor:
    """Park et al. (2019) Eq. 4–5: distance-wise loss.

    Each side's pairwise distances are divided by their mean over distinct pairs (ψ_D, scale
    invariance), then compared with Smooth-L1 (Huber, δ=1), averaged over all B² entries (the
    zero diagonals included, as the authors' code does). Feature dimensions may differ.

    Args:
        feat_s: (B, D_s) student embeddings (keep their gradient: the ACKD code detaches them).
        feat_t: (B, D_t) teacher embeddings.

    Returns:
        0-d tensor; 0 (still attached to ``feat_s``) for B < 2, where no pair exists.
    """
    if len(feat_s) < 2:
        return feat_s.sum() * 0.0
    d_s = pairwise_distances(feat_s, eps=eps)
    d_t = pairwise_distances(feat_t, eps=eps)
    return F.smooth_l1_loss(d_s / off_diagonal_mean(d_s), d_t / off_diagonal_mean(d_t))


def triplet_angles(feat: Tensor) -> Tensor:
    """(B, D) → (B, B, B): ``[i, j, k] = cos∠(e_j − e_i, e_k − e_i)``, 0 where a difference is zero."""
    unit = F.normalize(feat.unsqueeze(0) - feat.unsqueeze(1), p=2, dim=2)  # [i, j] = unit(e_j − e_i)
    return torch.bmm(unit, unit.transpose(1, 2))


@float32_loss
def rkd_angle_loss(feat_s: Tensor, feat_t: Tensor) -> Tensor:
    """Park et al. (2019) Eq. 6–7: angle-wise loss, Smooth-L1 between all B³ triplet cosines.

    Args:
        feat_s: (B, D_s) student embeddings.
        feat_t: (B, D_t) teacher embeddings.

    Returns:
        0-d tensor (0 for B ≤ 2, where every triplet is degenerate).
    """
    return F.smooth_l1_loss(triplet_angles(feat_s), triplet_angles(feat_t))


@dataclass(frozen=True)
class RKDConfig:
    """RKD-DA weights on pooled penultimate features.

    Source: Park et al. 2019 §4 (λ_D = 25, λ_A = 50); mdistiller ``mdistiller/engine/cfg.py``
    CFG.RKD (DISTANCE_WEIGHT 25, ANGLE_WEIGHT 50, LOSS.CE_WEIGHT 1.0, PDIST.EPSILON 1e-12,
    non-squared distances).
    """

    ce_weight: float = 1.0
    distance_weight: float = 25.0
    angle_weight: float = 50.0
    eps: float = 1e-12


@register_method("rkd")
class RKD(Method):
    """CE + distance- and angle-wise relational losses on pooled features (no projection needed)."""

    description = "Relational KD: CE + distance (×25) and angle (×50) relations of pooled features."
    paper = "Park, Kim, Lu, Cho. Relational Knowledge Distillation. CVPR 2019. arXiv:1904.05068"
    Config = RKDConfig

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        cfg = self.cfg
        out = self.student_out(batch)
        feat_t = self.teacher_out(batch).features
        return {
            "ce": cfg.ce_weight * F.cross_entropy(out.logits, batch.labels),
            "rkd_distance": cfg.distance_weight * rkd_distance_loss(out.features, feat_t, eps=cfg.eps),
            "rkd_angle": cfg.angle_weight * rkd_angle_loss(out.features, feat_t),
        }
