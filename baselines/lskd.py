"""Logit-standardised KD (Sun et al.): KD on per-sample z-scored logits, so only logit relations are matched."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from ackd_bench.baselines.kd import kd_loss
from ackd_bench.benchmark.method import Batch, Method, register_method
from ackd_bench.benchmark.precision import float32_loss


def standardize_logits(logits: Tensor, *, eps: float = 1e-7) -> Tensor:
    """Sun et al. (2024) Alg. 1 Z-score: ``(z − mean(z)) / (std(z) + eps)`` over each sample's K logits.

    ``std`` is the unbiased (K − 1) standard deviation, as the official ``normalize`` uses
    ``Tensor.std``. The result is invariant to adding a constant to, or multiplying by a
    positive constant, a sample's logits (up to ``eps``).

    Args:
        logits: (B, K) with K ≥ 2.

    Returns:
        (B, K) standardised logits.
    """
    mean = logits.mean(dim=1, keepdim=True)
    std = logits.std(dim=1, keepdim=True)
    return (logits - mean) / (std + eps)


@float32_loss
def lskd_loss(logits_s: Tensor, logits_t: Tensor, *, temperature: float, eps: float = 1e-7) -> Tensor:
    """KD (T²-scaled KL, see :func:`kd_loss`) between standardised student and teacher logits.

    Args:
        logits_s: (B, K) student logits.
        logits_t: (B, K) teacher logits.
        temperature: the base temperature.

    Returns:
        0-d tensor in at least float32.
    """
    # standardised in at least float32 (@float32_loss): a bf16 standard deviation loses digits
    return kd_loss(standardize_logits(logits_s, eps=eps), standardize_logits(logits_t, eps=eps),
                   temperature=temperature)


@dataclass(frozen=True)
class LSKDConfig:
    """LSKD (KD + logit standardisation) hyper-parameters.

    Source: official ``tools/train.py`` (sunshangquan/logit-standardization-KD): ``--logit-stand
    --base-temp 2 --kd-weight 9`` are the CIFAR-100 defaults (a few pairs use base-temp 3);
    ``mdistiller/engine/cfg.py`` there sets CFG.KD.LOSS.CE_WEIGHT 1; ``KD.py`` scales the KL by T².
    """

    ce_weight: float = 1.0
    kd_weight: float = 9.0
    temperature: float = 2.0
    eps: float = 1e-7


@register_method("lskd")
class LSKD(Method):
    """CE on the raw logits + T²-scaled KL between z-scored teacher and student logits."""

    description = "Logit-standardised KD: CE + 9·T²·KL on per-sample z-scored logits (base T=2)."
    paper = ("Sun, Ren, Li, Wang, Cao. Logit Standardization in Knowledge Distillation. CVPR 2024. "
             "arXiv:2403.01427")
    Config = LSKDConfig

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        cfg = self.cfg
        logits_s = self.student_out(batch).logits
        logits_t = self.teacher_class_logits(batch)
        return {
            "ce": cfg.ce_weight * F.cross_entropy(logits_s, batch.labels),
            "kd": cfg.kd_weight * lskd_loss(logits_s, logits_t, temperature=cfg.temperature, eps=cfg.eps),
        }
