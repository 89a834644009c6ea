"""Training profiles (the paper's and CPU-friendly ones) and the evaluation metrics."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ackd_bench.benchmark.errors import AckdBenchError


class ProfileError(AckdBenchError):
    """Unknown or invalid training profile."""


@dataclass(frozen=True)
class Profile:
    """How long and how big a training run is.

    Attributes:
        name: profile id.
        epochs: student epochs.
        teacher_epochs: teacher epochs.
        batch_size: batch size (student and teacher).
        lr: Adam learning rate (the paper: Adam, 1e-3, no schedule).
        student_px: side the RGB chips are resized to on the device (the paper trains its S2S-EU
            students at 64 px; 128 px costs ~4x the compute on CPU).
        teacher_px: side the MS chips are resized to on the device (the demo preset's are 24 px
            at 10 m natively).
        max_train_per_class: cap on training chips per class and modality (None: all), for smoke runs.
        augment: random flips and 90-degree rotations on the device.
        precision: "fp32", or "bf16" for autocast mixed precision (forward and losses).
    """

    name: str
    epochs: int
    teacher_epochs: int
    batch_size: int = 256
    lr: float = 1e-3
    student_px: int = 64
    teacher_px: int = 64
    max_train_per_class: int | None = None
    augment: bool = True
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ProfileError(f"precision must be fp32 or bf16, got {self.precision!r}")
        for name in ("epochs", "teacher_epochs", "batch_size", "student_px", "teacher_px", "max_train_per_class"):
            value = getattr(self, name)
            if value is None and name == "max_train_per_class":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ProfileError(f"{name} must be a positive integer, got {value!r}")
        if (not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or not math.isfinite(self.lr)
                or self.lr <= 0):
            raise ProfileError(f"lr must be a positive number, got {self.lr!r}")
        if not isinstance(self.augment, bool):
            raise ProfileError(f"augment must be true or false, got {self.augment!r}")


PROFILES = {
    # The paper's default (reference/paper-notes.md §6): Adam 1e-3, batch 256, 200 epochs.
    "paper": Profile("paper", epochs=200, teacher_epochs=200, student_px=128),
    # CPU-sized: minutes per run on 2 cores at 64 px.
    # The MS side at 32 px: the demo chips are 24 px natively, and 64 px would spend 4x the
    # teacher's compute on interpolated pixels.
    "fast": Profile("fast", epochs=12, teacher_epochs=12, batch_size=64, teacher_px=32),
    # Seconds per run: checks that everything runs end to end, not a result to report.
    "smoke": Profile("smoke", epochs=3, teacher_epochs=4, batch_size=64, max_train_per_class=48, teacher_px=32),
}


def get_profile(name: str, **overrides) -> Profile:
    if name not in PROFILES:
        raise ProfileError(f"unknown profile {name!r}; known profiles: {', '.join(PROFILES)}")
    return dataclasses.replace(PROFILES[name], **{k: v for k, v in overrides.items() if v is not None})


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """OA, macro precision/recall/F1, per-class accuracy (= recall) and the confusion matrix.

    Classes absent from ``y_true`` and never predicted contribute 0 to no macro average: they
    are left out of it (sklearn's ``zero_division`` questions do not arise).
    """
    cm = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    present = (support > 0) | (predicted > 0)
    return {
        "oa": float(tp.sum() / max(cm.sum(), 1)),
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class_accuracy": [float(r) for r in recall],
        "confusion": cm.tolist(),
        "n": int(cm.sum()),
    }
