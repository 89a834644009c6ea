"""The student trained alone on its labels: the reference every distillation method must beat."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from ackd_bench.benchmark.method import Batch, Method, register_method


@dataclass(frozen=True)
class StudentOnlyConfig:
    """Plain supervised training; CE weight 1 (no teacher, nothing to balance it against)."""

    ce_weight: float = 1.0


@register_method("student-only")
class StudentOnly(Method):
    """Cross-entropy on the student's labels; the teacher is never built or run."""

    description = "No distillation: the student trained with cross-entropy on its own labels."
    paper = "No distillation (supervised baseline); the reference row in every KD paper."
    Config = StudentOnlyConfig
    uses_teacher = False

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        logits = self.student_out(batch).logits
        return {"ce": self.cfg.ce_weight * F.cross_entropy(logits, batch.labels)}
