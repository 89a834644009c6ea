"""The method interface every KD method implements, and the registry the runner builds them from."""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ackd_bench.benchmark.errors import AckdBenchError
from ackd_bench.benchmark.models import Classifier


class MethodError(AckdBenchError):
    """Unknown method or invalid method configuration."""


@dataclass(frozen=True)
class DataInfo:
    """What a method may know about the data.

    Attributes:
        n_classes: number of classes K.
        student_channels: channels of the student input (RGB: 3).
        teacher_channels: channels of the teacher input (MS: 10).
        class_names: class names by id.
        epochs: epochs of the training profile (for warm-ups and curricula).
        teacher_multilabel: the teacher was trained multi-label (BCE); its logits are per-class scores.
    """

    n_classes: int
    student_channels: int
    teacher_channels: int
    class_names: tuple[str, ...]
    epochs: int
    teacher_multilabel: bool = False


@dataclass
class Batch:
    """One training step's data, already normalised and augmented on the device.

    Attributes:
        student_x: (B, C_s, H, W) float student input (RGB).
        labels: (B,) int64 class ids of the student samples.
        teacher_x: (B, C_t, H_t, W_t) float teacher input: the MS sample paired with each student
            sample for this epoch (same class; see the runner's pairing policy).
        index: (B,) int64 positions of the student samples in the training split.
        teacher_index: (B,) int64 positions of the paired teacher samples in the MS training split.
        epoch: 0-based epoch.
        progress: fractional epoch (epoch + step / steps_per_epoch), for smooth schedules.
        label_sets: (B, K) float multi-hot targets when the trained model's modality is
            multi-label (teacher training with BCE); None otherwise.
    """

    student_x: Tensor
    labels: Tensor
    teacher_x: Tensor
    index: Tensor
    teacher_index: Tensor
    epoch: int
    progress: float
    label_sets: Tensor | None = None


def class_logits(logits: Tensor, multilabel: bool) -> Tensor:
    """Teacher scores as the logits of a distribution over classes.

    A single-label teacher's logits pass through. A multi-label (BCE) teacher gives independent
    per-class scores z; their sigmoid probabilities renormalised over the classes are its class
    distribution, and ``log σ(z)`` are logits of exactly that distribution:
    ``softmax(log σ(z)) = σ(z) / Σ_k σ(z_k)``. (The ACKD code softmaxes raw BCE scores instead.)

    Args:
        logits: (B, K) teacher logits.
        multilabel: whether the teacher was trained with BCE.

    Returns:
        (B, K) logits whose softmax is the teacher's class distribution.
    """
    return F.logsigmoid(logits) if multilabel else logits


@dataclass(frozen=True)
class NoConfig:
    """A method without hyper-parameters."""


class Method(nn.Module):
    """Base class of all methods: a student, a frozen teacher and the loss terms that train the student.

    Subclasses set ``description`` (one line) and ``paper`` (citation), define a frozen
    dataclass ``Config`` with the authors' defaults, and implement :meth:`losses`. Extra
    trainable modules (projection heads, learnable temperatures) are submodules; the runner
    optimises every parameter of the method except the teacher's.

    Args:
        student: the student network (trainable).
        teacher: the trained teacher; frozen here (no gradients, eval mode). None for methods
            with ``uses_teacher = False``.
        info: dataset facts.
        cfg: an instance of ``Config``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    Config: ClassVar[type] = NoConfig
    uses_teacher: ClassVar[bool] = True

    def __init__(self, student: Classifier, teacher: Classifier | None, info: DataInfo, cfg: Any) -> None:
        super().__init__()
        self.student = student
        self.info = info
        self.cfg = cfg
        if teacher is not None:
            teacher.requires_grad_(False)
            teacher.eval()
        # Held outside the module tree so that method.parameters() and state_dict() never include it.
        self._teacher = [teacher]

    @property
    def teacher(self) -> Classifier | None:
        return self._teacher[0]

    def train(self, mode: bool = True) -> Method:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher's BatchNorm statistics never change
        return self

    @torch.no_grad()
    def teacher_forward(self, x: Tensor):
        """The frozen teacher's output (logits, pooled features, feature map) without gradients."""
        return self.teacher(x)

    def teacher_logits(self, x: Tensor) -> Tensor:
        """The frozen teacher's class logits (a multi-label teacher's scores made a class distribution)."""
        return class_logits(self.teacher_forward(x).logits, self.info.teacher_multilabel)

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        """Named, already weighted scalar loss terms; the runner sums them."""
        raise NotImplementedError

    def on_epoch_start(self, epoch: int, ctx: dict[str, Any]) -> None:
        """Hook called before each epoch (re-matching, curricula). ``ctx`` carries runner state."""

    def predict(self, x: Tensor) -> Tensor:
        """Student logits for evaluation."""
        return self.student(x).logits


_REGISTRY: dict[str, type[Method]] = {}


def register_method(name: str):
    """Class decorator: register a Method subclass under ``name``."""

    def wrap(cls: type[Method]) -> type[Method]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise MethodError(f"method name {name!r} is registered twice")
        if not (cls.description and cls.paper):
            raise MethodError(f"method {name!r} needs a one-line description and a paper citation")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _load_builtin_methods() -> None:
    # Importing the packages runs their @register_method decorators.
    import ackd_bench.baselines  # noqa: F401


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names matching a glob pattern, sorted."""
    _load_builtin_methods()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_method_class(name: str) -> type[Method]:
    """The class registered under ``name``; the error lists the known names."""
    _load_builtin_methods()
    if name not in _REGISTRY:
        raise MethodError(f"unknown method {name!r}; known methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def method_config(name: str, overrides: dict[str, Any] | None = None) -> Any:
    """The method's Config with its defaults, some fields replaced; unknown keys are errors."""
    cls = get_method_class(name)
    overrides = dict(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        known = ", ".join(fields) or "none"
        raise MethodError(f"method {name!r} has no option(s) {', '.join(unknown)}; its options: {known}")
    return cls.Config(**overrides)


def create_method(name: str, *, student: Classifier, teacher: Classifier | None, info: DataInfo,
                  **overrides: Any) -> Method:
    """Build a registered method with its default config, some fields overridden."""
    cls = get_method_class(name)
    return cls(student, teacher if cls.uses_teacher else None, info, method_config(name, overrides))
