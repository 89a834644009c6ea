"""PKT as an ackd-bench method plug-in (an example of a method living in its own package).

Probabilistic Knowledge Transfer matches, within a batch, the distribution of pairwise
similarities between samples: the student's pooled features should place its samples relative to
one another as the teacher's features place their (same-class) partners. It needs no common
feature dimension, so it applies across backbones and modalities as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ackd_bench.benchmark.method import Batch, Method
from ackd_bench.benchmark.precision import float32_loss

__all__ = ["PKT", "PKTConfig", "pkt_loss"]


def _conditional(features: Tensor, eps: float) -> Tensor:
    """Row-normalised cosine affinities (cos + 1) / 2 of a batch: P[i, j] = p(j | i)."""
    unit = F.normalize(features, dim=1, eps=eps)
    affinity = (unit @ unit.T + 1.0) / 2.0
    return affinity / affinity.sum(dim=1, keepdim=True)


@float32_loss  # at least float32 (float64 stays), also under bf16 autocast: like every built-in loss
def pkt_loss(features_s: Tensor, features_t: Tensor, eps: float = 1e-7) -> Tensor:
    """Passalis & Tefas (2018), eq. 10 with the cosine kernel (their eq. 12):
    sum_ij P_t[i, j] log(P_t[i, j] / P_s[i, j]) over the batch, P = row-normalised (cos + 1) / 2.

    Args:
        features_s: (B, D_s) student features.
        features_t: (B, D_t) teacher features (any D_t).
        eps: guards the normalisation and the logarithm.
    """
    p_s = _conditional(features_s, eps)
    p_t = _conditional(features_t, eps)
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).sum()


@dataclass(frozen=True)
class PKTConfig:
    """Cross-entropy plus PKT on the pooled features, equal weights (the PKT term is summed over
    the batch's pairs, of order one at batch sizes of tens)."""

    ce_weight: float = 1.0
    pkt_weight: float = 1.0


class PKT(Method):
    """CE on the labels + PKT between the student's and its teacher partners' pooled features."""

    description = "PKT: CE + KL between the batch's cosine-affinity distributions (student vs teacher partners)."
    paper = ("Passalis, Tefas. Learning Deep Representations with Probabilistic Knowledge Transfer. "
             "ECCV 2018. arXiv:1803.10837")
    Config = PKTConfig

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        out = self.student_out(batch)
        features_t = self.teacher_out(batch).features
        return {"ce": self.cfg.ce_weight * F.cross_entropy(out.logits, batch.labels),
                "pkt": self.cfg.pkt_weight * pkt_loss(out.features, features_t)}
