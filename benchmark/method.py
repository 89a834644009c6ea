"""The method interface every KD method implements, and the registry the runner builds them from."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ackd_bench.benchmark.boundary import InputError, check_fields
from ackd_bench.benchmark.errors import AckdBenchError
from ackd_bench.benchmark.models import Classifier, ModelOutput

if TYPE_CHECKING:
    from ackd_bench.benchmark.data import ModalityData
    from ackd_bench.benchmark.gallery import TeacherGallery


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
            sample for this epoch (same class; see the runner's pairing policy), never augmented
            (the teacher is frozen). Empty when the method reads the teacher's outputs from its
            gallery (:meth:`Method.use_teacher_gallery`).
        index: (B,) int64 positions of the student samples in the training split.
        teacher_index: (B,) int64 positions of the paired teacher samples in the MS training split.
        epoch: 0-based epoch.
        progress: fractional epoch (epoch + step / steps_per_epoch), for smooth schedules.
        label_sets: (B, K) float multi-hot targets when the trained model's modality is
            multi-label (teacher training with BCE); None otherwise.
        cache: network outputs of this batch, filled by :meth:`Method.student_out` and
            :meth:`Method.teacher_out`, so a method wrapping another one (SemBridge over a base KD
            method) reuses the base's forward passes instead of running the networks twice.
    """

    student_x: Tensor
    labels: Tensor
    teacher_x: Tensor
    index: Tensor
    teacher_index: Tensor
    epoch: int
    progress: float
    label_sets: Tensor | None = None
    cache: dict[str, Any] = field(default_factory=dict, repr=False)


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


#: The fewest epochs a scaled warm-up or curriculum keeps (:func:`schedule_epochs`).
MIN_SCHEDULE_EPOCHS = 3


def schedule_epochs(reference: int, reference_epochs: int, epochs: int) -> int:
    """Length of a schedule phase written for ``reference_epochs``, scaled to a run of ``epochs``.

    ``round(reference · epochs / reference_epochs)``, but never shorter than
    ``min(MIN_SCHEDULE_EPOCHS, epochs // 4)`` (and never below 1): scaled linearly, DKD's 20 of
    240 warm-up epochs or CTKD's 10 of 240 curriculum epochs shrink to a single epoch on a
    12-epoch profile, where the phase is over before the first validation. The floor keeps a
    short run's phase at 3 epochs, or at a quarter of a run shorter than 12 epochs; runs of 36 or
    more epochs are scaled exactly. Used by DKD's warm-up and CTKD's temperature curriculum.
    """
    if reference_epochs < 1 or epochs < 1 or reference < 0:
        raise ValueError(f"need reference >= 0 and positive epochs, got {reference}, {reference_epochs}, {epochs}")
    return max(1, round(reference * epochs / reference_epochs), min(MIN_SCHEDULE_EPOCHS, epochs // 4))


#: ``torch.compile`` modes of the student's training forward (:meth:`Method.compile_student`).
COMPILE_MODES = ("off", "default", "reduce-overhead")


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
    is_plugin: ClassVar[bool] = False  # a plug-in over another method (SemBridge); plug-ins do not nest

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
        self.teacher_gallery: TeacherGallery | None = None
        self.compile_mode = "off"
        self.__dict__["_student_step"] = None  # set by compile_student; kept out of the module tree

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

    def student_out(self, batch: Batch) -> ModelOutput:
        """The student's output on ``batch.student_x``, computed once per batch (with gradients).

        In training, through the compiled student when :meth:`compile_student` was called.
        """
        out = batch.cache.get("student")
        if out is None:
            net = self._student_step if self.training and self._student_step is not None else self.student
            out = batch.cache["student"] = net(batch.student_x)
        return out

    def compile_student(self, mode: str = "default") -> None:
        """Run the student's training forward (and so its backward) through ``torch.compile``.

        Args:
            mode: ``default`` (Inductor kernels), ``reduce-overhead`` (also CUDA graphs; CUDA
                only), or ``off`` (eager again).

        Shapes are static: the epoch's last, smaller batch compiles once more. Evaluation and
        :meth:`predict` stay eager (no compile per evaluation batch size), and the compiled
        student is not a submodule, so parameters, ``state_dict`` and checkpoints are unchanged.

        Raises:
            MethodError: an unknown mode, or CUDA graphs asked for with the student off CUDA.
        """
        if mode not in COMPILE_MODES:
            raise MethodError(f"unknown compile mode {mode!r}; use one of {', '.join(COMPILE_MODES)}")
        on_cuda = next(self.student.parameters()).device.type == "cuda"
        if mode == "reduce-overhead" and not on_cuda:
            raise MethodError("compile mode 'reduce-overhead' records CUDA graphs and needs the student on a CUDA "
                              "device; use 'default' or 'off' on the CPU")
        self.compile_mode = mode
        self.__dict__["_student_step"] = (None if mode == "off"
                                          else torch.compile(self.student, mode=mode, dynamic=False))

    def use_teacher_gallery(self, gallery: TeacherGallery | None) -> None:
        """Read the teacher's outputs from ``gallery`` (all MS training rows, computed once) instead of
        running the teacher at every step; None goes back to the live teacher."""
        self.teacher_gallery = gallery

    def teacher_out(self, batch: Batch) -> ModelOutput:
        """The frozen teacher's output on the batch's teacher chips, computed once per batch (no gradients).

        From the gallery (rows ``batch.teacher_index``) when one is set, else a forward pass on
        ``batch.teacher_x``.
        """
        out = batch.cache.get("teacher")
        if out is None:
            if self.teacher_gallery is not None:
                out = self.teacher_gallery.take(batch.teacher_index)
            else:
                out = self.teacher_forward(batch.teacher_x)
            batch.cache["teacher"] = out
        return out

    def teacher_class_logits(self, batch: Batch) -> Tensor:
        """The frozen teacher's class logits of the batch's teacher chips (a multi-label teacher's scores
        made a class distribution, see :func:`class_logits`), from the per-batch cache."""
        return class_logits(self.teacher_out(batch).logits, self.info.teacher_multilabel)

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        """Named, already weighted scalar loss terms; the runner sums them."""
        raise NotImplementedError

    def prepare(self, student_data: ModalityData, teacher_data: ModalityData | None, ctx: dict[str, Any]) -> None:
        """Hook called once before training (and before a checkpoint is restored).

        Methods that choose their own teacher partners (SemBridge's matching) build their state
        here. ``ctx`` holds ``seed``, ``epochs``, ``student_px``, ``teacher_px``, ``progress``,
        ``precision`` and ``channels_last`` (how the run computes: networks the method trains or
        runs should do the same) and whatever the runner knows about the dataset
        (``fingerprint``, ``teacher_bands``, ``true_partners``: the co-located teacher row of every
        student training chip on paired and partial builds, -1 where none, None on asymmetric ones;
        for diagnostics only: a method must not choose partners from them).
        Buffers created here are part of the checkpoint, so they must be registered before it loads.
        """

    def on_epoch_start(self, epoch: int, ctx: dict[str, Any]) -> dict[str, float] | None:
        """Hook called before each epoch (re-matching, curricula). ``ctx`` carries runner state.

        Returns:
            Numbers to record in this epoch's history row (e.g. the share of re-matched
            partners), or None.
        """
        return None

    def epoch_partners(self, epoch: int) -> Tensor | None:
        """Teacher partners (indices into the teacher's training rows) of every student training chip
        for this epoch, or None for the runner's pairing policy (fresh random same-class partners)."""
        return None

    def diagnostics(self) -> dict[str, Any]:
        """Method-specific numbers for the RunResult, called once after training (best weights loaded)."""
        return {}

    def predict(self, x: Tensor) -> Tensor:
        """Student logits for evaluation."""
        return self.student(x).logits


_REGISTRY: dict[str, type[Method]] = {}
# Plug-ins: "<prefix>+<base>" names a method built from a plug-in and any registered base method
# (SemBridge over DKD is "sembridge+dkd"); the classes are made on first use.
_PLUGINS: dict[str, Callable[[type[Method]], type[Method]]] = {}


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


def register_plugin(prefix: str, factory: Callable[[type[Method]], type[Method]]) -> None:
    """Make ``"<prefix>+<base>"`` a method for every registered base: ``factory(base_class)`` builds its class.

    The factory returns an unregistered Method subclass; it is registered under the combined
    name the first time that name is asked for.
    """
    if "+" in prefix or not prefix:
        raise MethodError(f"plug-in prefix {prefix!r} must be non-empty and contain no '+'")
    if prefix in _PLUGINS and _PLUGINS[prefix] is not factory:
        raise MethodError(f"plug-in {prefix!r} is registered twice")
    _PLUGINS[prefix] = factory


#: The entry-point group through which other installed packages add methods: each entry point
#: names a Method subclass (registered under the entry point's name) or a module whose import
#: registers its methods (``@register_method``, `register_plugin`).
ENTRY_POINT_GROUP = "ackd_bench.methods"
# Plug-ins that failed to load: entry point name -> "package X: what went wrong". They are
# reported (``ackd-bench methods``, an unknown-method error) and never break the rest.
BROKEN_PLUGINS: dict[str, str] = {}
_entry_points_loaded = False


def _load_builtin_methods() -> None:
    # Importing the packages runs their @register_method / register_plugin calls.
    import ackd_bench.baselines  # noqa: F401
    import ackd_bench.sembridge.method  # noqa: F401

    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        _load_entry_points()


def _load_entry_points() -> None:
    """Register the methods of installed packages (`ENTRY_POINT_GROUP`); a broken one is recorded."""
    import importlib.metadata
    import inspect
    import warnings

    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        package = ep.dist.name if ep.dist is not None else "?"
        try:
            obj = ep.load()
            if inspect.isclass(obj):
                if not issubclass(obj, Method):
                    raise MethodError(f"{ep.value} is not a subclass of ackd_bench.benchmark.method.Method")
                if _REGISTRY.get(ep.name) is not obj:
                    register_method(ep.name)(obj)
            elif not inspect.ismodule(obj):
                raise MethodError(f"{ep.value} is neither a Method subclass nor a module")
        except Exception as err:  # noqa: BLE001 - any failure of a third-party import is reported, not raised
            BROKEN_PLUGINS[ep.name] = f"package {package}: {type(err).__name__}: {err}"
            warnings.warn(f"ackd-bench method plug-in {ep.name!r} ({ep.value}) from package {package} failed to "
                          f"load and is left out: {type(err).__name__}: {err}", RuntimeWarning, stacklevel=2)


def _base_methods() -> list[str]:
    """Methods a plug-in can wrap: every registered method that is not itself a plug-in's product."""
    return sorted(n for n, cls in _REGISTRY.items() if "+" not in n and not cls.is_plugin)


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names matching a glob pattern, sorted."""
    _load_builtin_methods()
    names = set(_REGISTRY) | {f"{p}+{b}" for p in _PLUGINS for b in _base_methods()}
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def get_method_class(name: str) -> type[Method]:
    """The class registered under ``name``; the error lists the known names."""
    _load_builtin_methods()
    if name not in _REGISTRY and "+" in name:
        prefix, base = name.split("+", 1)
        if prefix in _PLUGINS and base in _base_methods():
            register_method(name)(_PLUGINS[prefix](_REGISTRY[base]))
    if name not in _REGISTRY:
        plugins = "; plug-ins: " + ", ".join(f"{p}+<method>" for p in sorted(_PLUGINS)) if _PLUGINS else ""
        broken = f"; plug-in {name!r} failed to load ({BROKEN_PLUGINS[name]})" if name in BROKEN_PLUGINS else ""
        raise MethodError(f"unknown method {name!r}{broken}; known methods: {', '.join(_base_methods())}{plugins}")
    return _REGISTRY[name]


def method_config(name: str, overrides: dict[str, Any] | None = None) -> Any:
    """The method's Config with its defaults, some fields replaced; unknown keys are errors."""
    cls = get_method_class(name)
    overrides = dict(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(overrides) - set(fields), key=str)
    if unknown:
        known = ", ".join(fields) or "none"
        raise MethodError(f"method {name!r} has no option(s) {', '.join(map(str, unknown))}; its options: {known}")
    try:
        check_fields(overrides, cls.Config, f"method {name!r} option")
        return cls.Config(**overrides)
    except InputError as err:
        raise MethodError(str(err)) from None
    except (TypeError, ValueError) as err:
        raise MethodError(f"method {name!r}: invalid option value: {err}") from None


def create_method(name: str, *, student: Classifier, teacher: Classifier | None, info: DataInfo,
                  **overrides: Any) -> Method:
    """Build a registered method with its default config, some fields overridden."""
    cls = get_method_class(name)
    return cls(student, teacher if cls.uses_teacher else None, info, method_config(name, overrides))
