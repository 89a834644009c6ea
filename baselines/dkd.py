"""Decoupled KD (Zhao et al.): KD split into target-class (TCKD) and non-target-class (NCKD) terms."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ackd_bench.benchmark.method import Batch, DataInfo, Method, register_method, schedule_epochs
from ackd_bench.benchmark.models import Classifier
from ackd_bench.benchmark.precision import float32_loss

# mdistiller masks the target logit with −1000 (after dividing by T) to remove it from the softmax.
_TARGET_MASK = 1000.0


def _binary_log_probs(logits: Tensor, target_mask: Tensor) -> Tensor:
    """(B, K) logits → (B, 2) log [p_target, 1 − p_target], computed in log space (no log(0))."""
    log_p = F.log_softmax(logits, dim=1)
    log_target = log_p.masked_fill(~target_mask, float("-inf")).logsumexp(dim=1)
    log_rest = log_p.masked_fill(target_mask, float("-inf")).logsumexp(dim=1)
    return torch.stack([log_target, log_rest], dim=1)


def _kl(log_p_t: Tensor, log_p_s: Tensor) -> Tensor:
    """Batch mean of KL(p_t ‖ p_s) summed over the last dimension; inputs are log-probabilities."""
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()


@float32_loss
def dkd_parts(logits_s: Tensor, logits_t: Tensor, target: Tensor, *, temperature: float) -> tuple[Tensor, Tensor]:
    """TCKD and NCKD of Zhao et al. (2022) Eq. 7, each ×T² and averaged over the batch.

    TCKD = KL(b_t ‖ b_s) with b = [p_y, 1 − p_y], the binary target/non-target probabilities of
    softmax(z/T). NCKD = KL(p̂_t ‖ p̂_s) with p̂ the softmax over the K − 1 non-target classes
    (the target logit is pushed to −1000 after dividing by T, as the official code does).

    Args:
        logits_s: (B, K) student logits, K ≥ 2.
        logits_t: (B, K) teacher logits.
        target: (B,) int64 class ids.
        temperature: T > 0.

    Returns:
        (tckd, nckd), two 0-d tensors (in at least float32, whatever the logits' dtype).
    """
    t2 = temperature**2
    target_mask = F.one_hot(target, logits_s.shape[1]).bool()
    z_s, z_t = logits_s / temperature, logits_t / temperature
    tckd = _kl(_binary_log_probs(z_t, target_mask), _binary_log_probs(z_s, target_mask)) * t2
    push = _TARGET_MASK * target_mask
    nckd = _kl(F.log_softmax(z_t - push, dim=1), F.log_softmax(z_s - push, dim=1)) * t2
    return tckd, nckd


def dkd_loss(logits_s: Tensor, logits_t: Tensor, target: Tensor, *, alpha: float, beta: float,
             temperature: float) -> Tensor:
    """Zhao et al. (2022) Eq. 7: ``α·TCKD + β·NCKD`` (both ×T²); shapes as :func:`dkd_parts`."""
    tckd, nckd = dkd_parts(logits_s, logits_t, target, temperature=temperature)
    return alpha * tckd + beta * nckd


def dkd_warmup_epochs(epochs: int, reference_warmup: int = 20, reference_epochs: int = 240) -> int:
    """DKD's 20-epoch warm-up belongs to a 240-epoch schedule (1/12 of training); keep that fraction.

    ``round(20/240 · epochs)`` with the floor of :func:`benchmark.method.schedule_epochs`: on the
    12-epoch ``fast`` profile the warm-up lasts 3 epochs, not 1 (a ramp over the first epoch alone
    switches the distillation term on at full strength before the first validation).
    """
    return schedule_epochs(reference_warmup, reference_epochs, epochs)


@dataclass(frozen=True)
class DKDConfig:
    """DKD hyper-parameters.

    Source: mdistiller ``mdistiller/engine/cfg.py`` CFG.DKD (CE_WEIGHT 1.0, ALPHA 1.0, BETA 8.0,
    T 4.0, WARMUP 20 of 240 epochs); ``mdistiller/distillers/DKD.py`` applies
    ``min(epoch / WARMUP, 1)`` to the DKD term. ``warmup_epochs`` None scales 20/240 to the
    profile's epochs (:func:`dkd_warmup_epochs`); an integer fixes it.
    """

    ce_weight: float = 1.0
    alpha: float = 1.0
    beta: float = 8.0
    temperature: float = 4.0
    warmup_epochs: int | None = None


@register_method("dkd")
class DKD(Method):
    """CE + linearly warmed-up α·TCKD + β·NCKD."""

    description = "Decoupled KD: CE + warmed-up α·TCKD + β·NCKD (α=1, β=8, T=4, T²-scaled)."
    paper = ("Zhao, Cui, Song, Qiu, Liang. Decoupled Knowledge Distillation. CVPR 2022. "
             "arXiv:2203.08679")
    Config = DKDConfig

    def __init__(self, student: Classifier, teacher: Classifier | None, info: DataInfo, cfg: DKDConfig) -> None:
        super().__init__(student, teacher, info, cfg)
        self.warmup_epochs = cfg.warmup_epochs if cfg.warmup_epochs is not None else dkd_warmup_epochs(info.epochs)

    def warmup_factor(self, progress: float) -> float:
        """``min(progress / warmup, 1)`` on the fractional epoch: a smooth version of mdistiller's ramp."""
        return min(max(progress, 0.0) / self.warmup_epochs, 1.0)

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        cfg = self.cfg
        logits_s = self.student_out(batch).logits
        logits_t = self.teacher_class_logits(batch)
        tckd, nckd = dkd_parts(logits_s, logits_t, batch.labels, temperature=cfg.temperature)
        ramp = self.warmup_factor(batch.progress)
        return {
            "ce": cfg.ce_weight * F.cross_entropy(logits_s, batch.labels),
            "tckd": ramp * cfg.alpha * tckd,
            "nckd": ramp * cfg.beta * nckd,
        }
