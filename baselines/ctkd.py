"""Curriculum temperature KD (Li et al.): KD whose temperature is learned adversarially with a curriculum."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ackd_bench.baselines.kd import kd_loss
from ackd_bench.benchmark.method import Batch, DataInfo, Method, register_method, schedule_epochs
from ackd_bench.benchmark.models import Classifier


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``factor``."""

    @staticmethod
    def forward(ctx, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.factor, None


def scale_gradient(x: Tensor, factor: float) -> Tensor:
    """Gradient-reversal layer (Ganin & Lempitsky 2015) in CTKD's convention: identity forward,
    gradient × ``factor`` backward.

    CTKD passes ``factor = λ ≤ 0`` (its cosine curriculum runs from 0 to −1), so the temperature
    receives ``λ · ∂L/∂θ``: the opposite sign of the loss gradient. A descent step on it therefore
    *increases* the KD loss (the temperature maximises what the student minimises), with a
    strength |λ| that grows from 0 to 1 (official ``models/temp_global.py``: ``dx = lambda_ * grads``).
    """
    return _ScaleGradient.apply(x, factor)


def ctkd_temperature(theta: Tensor, lam: float, *, t_start: float, t_end: float) -> Tensor:
    """CTKD's global temperature ``τ = t_start + t_end · sigmoid(GRL_λ(θ))``, in (t_start, t_start + t_end).

    Args:
        theta: 0-d learnable parameter.
        lam: reversal factor λ (≤ 0 reverses; see :func:`scale_gradient`).
        t_start: lower end of τ's range (official 1).
        t_end: width of τ's range above t_start (official 20).
    """
    return t_start + t_end * torch.sigmoid(scale_gradient(theta, lam))


def ctkd_lambda(epoch: int, loops: int, *, start: float = 0.0, end: float = -1.0) -> float:
    """CTKD's cosine curriculum (official ``CosineDecay``): ``start`` at epoch 0, ``end`` from ``loops`` on.

    ``λ(i) = end + (start − end) · (1 + cos(π·min(i, loops)/loops)) / 2``, with 1-based epochs ``i``
    as in the official loop (``for epoch in range(1, epochs + 1)``).
    """
    i = min(max(epoch, 0), loops)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * i / loops))


def ctkd_decay_loops(epochs: int, reference_loops: int = 10, reference_epochs: int = 240) -> int:
    """The official curriculum reaches λ = −1 after 10 of 240 epochs; keep that fraction.

    With the floor of :func:`benchmark.method.schedule_epochs`: linearly scaled, a 12-epoch
    profile would get one loop, so λ = −1 (full gradient reversal) from the first epoch and no
    curriculum at all; with the floor the 12-epoch curriculum spans 3 epochs.
    """
    return schedule_epochs(reference_loops, reference_epochs, epochs)


class GlobalTemperature(nn.Module):
    """One learnable scalar θ (official ``Global_T``: initialised to 1, so τ starts at ≈ 15.6)."""

    def __init__(self, t_start: float, t_end: float, init: float = 1.0) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(float(init)))
        self.t_start = t_start
        self.t_end = t_end

    def forward(self, lam: float) -> Tensor:
        return ctkd_temperature(self.theta, lam, t_start=self.t_start, t_end=self.t_end)


@dataclass(frozen=True)
class CTKDConfig:
    """CTKD (global temperature) hyper-parameters.

    Source: official ``scripts/run_cifar_distill.sh`` (zhengli97/CTKD): ``-r 0.1 -a 0.9
    --have_mlp 1 --mlp_name global --t_start 1 --t_end 20 --cosine_decay 1 --decay_max 0
    --decay_min -1 --decay_loops 10``, 240 epochs; ``distiller_zoo/KD.py`` multiplies the KL by
    τ² (so do we: the benchmark's T² convention; the ACKD port drops it). ``decay_loops`` None
    scales 10/240 to the profile's epochs (:func:`ctkd_decay_loops`).
    """

    ce_weight: float = 0.1
    kd_weight: float = 0.9
    t_start: float = 1.0
    t_end: float = 20.0
    decay_max: float = 0.0
    decay_min: float = -1.0
    decay_loops: int | None = None


@register_method("ctkd")
class CTKD(Method):
    """CE + KD at a learnable global temperature trained through a gradient-reversal layer."""

    description = "Curriculum temperature KD: CE + τ²·KL at a learnable τ ∈ (1, 21) trained adversarially (GRL)."
    paper = ("Li, Li, Yang, Zhao, Song, Luo, Li, Yang. Curriculum Temperature for Knowledge "
             "Distillation. AAAI 2023. arXiv:2211.16231")
    Config = CTKDConfig

    def __init__(self, student: Classifier, teacher: Classifier | None, info: DataInfo, cfg: CTKDConfig) -> None:
        super().__init__(student, teacher, info, cfg)
        self.temperature = GlobalTemperature(cfg.t_start, cfg.t_end)
        self.decay_loops = cfg.decay_loops if cfg.decay_loops is not None else ctkd_decay_loops(info.epochs)

    def reversal_factor(self, epoch: int) -> float:
        """λ for a 0-based epoch (the official loop counts epochs from 1)."""
        cfg = self.cfg
        return ctkd_lambda(epoch + 1, self.decay_loops, start=cfg.decay_max, end=cfg.decay_min)

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        cfg = self.cfg
        logits_s = self.student_out(batch).logits
        logits_t = self.teacher_class_logits(batch)
        tau = self.temperature(self.reversal_factor(batch.epoch))
        return {
            "ce": cfg.ce_weight * F.cross_entropy(logits_s, batch.labels),
            "kd": cfg.kd_weight * kd_loss(logits_s, logits_t, temperature=tau),
        }
