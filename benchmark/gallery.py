"""The frozen teacher's outputs for the whole MS training gallery, computed once and kept on the device.

During distillation the teacher is frozen (eval mode, no gradients) and its inputs are not
augmented (as in the authors' code, which augments nothing), so its logits, pooled features and
last feature map are a function of the chip alone. Computing them once per run replaces the
teacher's forward pass at every step by a gather: on a GPU that is most of the cost Vanilla KD
adds over training the student alone. Where the cache would not fit the memory budget, the
teacher runs live; both give the same outputs (``tests/test_gallery.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ackd_bench.benchmark.data import ModalityData
from ackd_bench.benchmark.models import Classifier, ModelOutput

#: Share of the device's free memory the cache may take on a GPU; on the CPU, a fixed budget.
GPU_MEMORY_SHARE = 0.25
CPU_BUDGET_BYTES = 2 << 30


@dataclass
class TeacherGallery:
    """Teacher outputs of every MS training chip, in row order, on the training device.

    Attributes:
        logits: (N, K).
        features: (N, D) pooled features.
        feature_map: (N, C, h, w) last-stage feature map (the planner's teacher tokens).

    Each in the dtype the teacher's forward pass gives: float32, or bfloat16 under bf16 autocast.
    """

    logits: Tensor
    features: Tensor
    feature_map: Tensor

    def take(self, idx: Tensor) -> ModelOutput:
        """The teacher's output for MS training rows ``idx``, as the live teacher would return it."""
        return ModelOutput(logits=self.logits[idx], features=self.features[idx], feature_map=self.feature_map[idx])

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.logits, self.features, self.feature_map))


def gallery_bytes(teacher: Classifier, data: ModalityData, px: int, precision: str = "fp32") -> int:
    """Bytes the gallery of ``data``'s training split would take (from one chip's outputs)."""
    probe = teacher_outputs(teacher, data, torch.zeros(1, dtype=torch.int64, device=data.y["train"].device), px,
                            precision)
    per_row = sum(t[0].numel() * t.element_size() for t in (probe.logits, probe.features, probe.feature_map))
    return per_row * int(data.x["train"].shape[0])


def memory_budget(device: torch.device) -> int:
    """Bytes the gallery may take on ``device``."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * GPU_MEMORY_SHARE)
    return CPU_BUDGET_BYTES


@torch.no_grad()
def teacher_outputs(teacher: Classifier, data: ModalityData, rows: Tensor, px: int, precision: str = "fp32",
                    *, channels_last: bool = False) -> ModelOutput:
    """The frozen teacher's outputs on training rows ``rows`` (no augmentation, eval mode).

    Under ``bf16`` the forward pass runs in autocast, as it would inside a training step.
    """
    was_training = teacher.training
    teacher.eval()
    x = data.batch("train", rows, px=px, channels_last=channels_last)
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = teacher(x)
    teacher.train(was_training)
    return out


@torch.no_grad()
def build_gallery(teacher: Classifier, data: ModalityData, px: int, precision: str = "fp32", *,
                  batch_size: int = 512, budget: int | None = None,
                  channels_last: bool = False) -> TeacherGallery | None:
    """The teacher's outputs for every training chip of ``data``, or None if they exceed ``budget`` bytes.

    Args:
        budget: byte limit; None: :func:`memory_budget` of the data's device.
    """
    device = data.y["train"].device
    limit = memory_budget(device) if budget is None else budget
    if gallery_bytes(teacher, data, px, precision) > limit:
        return None
    rows = torch.arange(data.x["train"].shape[0], device=device)
    parts = [teacher_outputs(teacher, data, r, px, precision, channels_last=channels_last)
             for r in rows.split(batch_size)]
    return TeacherGallery(logits=torch.cat([p.logits for p in parts]),
                          features=torch.cat([p.features for p in parts]),
                          feature_map=torch.cat([p.feature_map for p in parts]).contiguous())


class ClassMeans:
    """Running class means of teacher outputs, in float64, for the ``class-mean`` pairing control.

    What is averaged, per class k over the teacher's training chips of that class:

    * logits: the class distributions at temperature T, p̄_k = mean_i softmax(z_i / T); the row's
      logits are T·log p̄_k (p̄ clamped at float32's smallest normal, so no −inf), shifted by a
      constant so their mean over classes equals the chips' mean logit. Then softmax(row / T) is
      exactly p̄_k: a loss that softens the teacher at T (KD, DKD, C²KD) sees the mean
      *distribution*, which averaging logits would not give (the softmax of a mean logit is
      sharper than the mean softmax). Losses that transform logits first (LSKD's standardisation,
      CTKD's learned τ) or read them raw (logit regression) see these logits, an approximation.
    * features and feature maps: their plain means (for feature-based methods).
    """

    def __init__(self, n_classes: int, temperature: float) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.n_classes, self.temperature = n_classes, float(temperature)
        self.count: Tensor | None = None
        self.sums: dict[str, Tensor] = {}
        self.dtype = torch.float32

    def add(self, out: ModelOutput, labels: Tensor) -> None:
        """Add a batch of teacher outputs and their (N,) int64 class labels."""
        parts = {"probabilities": torch.softmax(out.logits.double() / self.temperature, dim=1),
                 "level": out.logits.double().mean(dim=1, keepdim=True),
                 "features": out.features.double(), "feature_map": out.feature_map.double()}
        self.dtype = out.logits.dtype
        for name, value in parts.items():
            total = value.new_zeros((self.n_classes, *value.shape[1:])).index_add_(0, labels, value)
            self.sums[name] = self.sums[name] + total if name in self.sums else total
        counted = torch.bincount(labels, minlength=self.n_classes)
        self.count = counted if self.count is None else self.count + counted

    def gallery(self) -> TeacherGallery:
        """A K-row gallery: row k holds class k's mean outputs (rows in the teacher outputs' dtype).

        Raises:
            ValueError: a class had no chips.
        """
        if self.count is None or (self.count == 0).any():
            raise ValueError("every class needs at least one teacher training chip for its class mean")
        mean = {k: v / self.count.view(-1, *([1] * (v.dim() - 1))).double() for k, v in self.sums.items()}
        tiny = torch.finfo(torch.float32).tiny
        logits = self.temperature * mean["probabilities"].clamp_min(tiny).log()
        logits = logits - logits.mean(dim=1, keepdim=True) + mean["level"]
        return TeacherGallery(logits=logits.to(self.dtype), features=mean["features"].to(self.dtype),
                              feature_map=mean["feature_map"].to(self.dtype).contiguous())


@torch.no_grad()
def class_mean_gallery(teacher: Classifier, data: ModalityData, px: int, n_classes: int, *, temperature: float,
                       precision: str = "fp32", batch_size: int = 512, channels_last: bool = False) -> TeacherGallery:
    """The ``class-mean`` control's gallery: K rows, row k the class-k mean of the teacher's outputs on its
    training chips (see :class:`ClassMeans`); a student chip of class k reads row k.

    Always built (K rows fit any budget), whatever the size of the instance gallery would be.
    """
    means = ClassMeans(n_classes, temperature)
    rows = torch.arange(data.x["train"].shape[0], device=data.y["train"].device)
    for r in rows.split(batch_size):
        means.add(teacher_outputs(teacher, data, r, px, precision, channels_last=channels_last), data.y["train"][r])
    return means.gallery()
