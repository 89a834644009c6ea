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
