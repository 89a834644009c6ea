"""Vanilla knowledge distillation (Hinton et al.): cross-entropy plus a T²-scaled KL to the teacher's soft labels."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from ackd_bench.benchmark.method import Batch, Method, register_method
from ackd_bench.benchmark.precision import float32_loss


@float32_loss
def kd_loss(logits_s: Tensor, logits_t: Tensor, *, temperature: float | Tensor) -> Tensor:
    """Hinton et al. (2015) §2: KL(softmax(z_t/T) ‖ softmax(z_s/T)) · T², summed over classes, batch mean.

    The T² factor keeps the gradient magnitude of the soft term independent of T (Hinton §2);
    it is the benchmark's convention for every temperature-softened KL term.

    Args:
        logits_s: (B, K) student logits.
        logits_t: (B, K) teacher logits (no gradient needed).
        temperature: T > 0, a float or a 0-d tensor (a learnable temperature keeps its gradient).

    Returns:
        0-d tensor in at least float32, whatever the logits' dtype (e.g. bf16 under autocast).
    """
    log_p_s = F.log_softmax(logits_s / temperature, dim=1)
    log_p_t = F.log_softmax(logits_t / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()
    return kl * temperature**2


@dataclass(frozen=True)
class KDConfig:
    """Hinton KD hyper-parameters.

    Source: mdistiller ``mdistiller/engine/cfg.py`` CFG.KD (TEMPERATURE 4, LOSS.CE_WEIGHT 0.1,
    LOSS.KD_WEIGHT 0.9), the same as RepDistiller's ``-r 0.1 -a 0.9 --kd_T 4``.
    """

    temperature: float = 4.0
    ce_weight: float = 0.1
    kd_weight: float = 0.9


@register_method("kd")
class KD(Method):
    """CE on the labels + T²-scaled KL between temperature-softened teacher and student outputs."""

    description = "Vanilla KD: CE + T²·KL(teacher ‖ student) on temperature-softened logits (T=4)."
    paper = ("Hinton, Vinyals, Dean. Distilling the Knowledge in a Neural Network. "
             "NIPS Deep Learning Workshop 2014. arXiv:1503.02531")
    Config = KDConfig

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        cfg = self.cfg
        logits_s = self.student_out(batch).logits
        logits_t = self.teacher_class_logits(batch)
        return {
            "ce": cfg.ce_weight * F.cross_entropy(logits_s, batch.labels),
            "kd": cfg.kd_weight * kd_loss(logits_s, logits_t, temperature=cfg.temperature),
        }
