"""The training loop shared by teachers and students: epochs, val selection, checkpoints, resume."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ackd_bench.benchmark.checkpoints import CheckpointWriter, fit_protocol, load_checkpoint, plain_json
from ackd_bench.benchmark.data import (PAIRINGS, ModalityData, PairingError, draw_flips, pair_carrying_class,
                                       pair_same_class)
from ackd_bench.benchmark.gallery import build_gallery, class_mean_gallery
from ackd_bench.benchmark.errors import AckdBenchError
from ackd_bench.benchmark.method import Batch, DataInfo, Method, NoConfig
from ackd_bench.benchmark.models import Classifier
from ackd_bench.benchmark.precision import autocast
from ackd_bench.benchmark.protocol import Profile, classification_metrics


class TrainingError(AckdBenchError):
    """Training cannot go on (a non-finite loss, fewer than 2 classes)."""


class Supervised(Method):
    """Plain supervised training of one classifier: how teachers are trained (not registered).

    Cross-entropy on single labels; binary cross-entropy on the class sets of multi-label data.
    """

    description = "cross-entropy (BCE for multi-label data) on the model's own modality"
    paper = "-"
    uses_teacher = False

    def __init__(self, model: Classifier, info: DataInfo) -> None:
        super().__init__(model, None, info, NoConfig())

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        logits = self.student_out(batch).logits
        if batch.label_sets is not None:
            return {"bce": F.binary_cross_entropy_with_logits(logits, batch.label_sets)}
        return {"ce": F.cross_entropy(logits, batch.labels)}


@dataclass
class FitResult:
    """What a fit produced: the selected (best-val) student weights and the numbers around them."""

    selected_epoch: int
    val: dict[str, Any]
    test: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    step_s: float = 0.0
    total_s: float = 0.0
    test_predictions: list[int] = field(default_factory=list)
    #: Per trained epoch: ``train_s`` (its training steps, device synchronised at both ends) and
    #: ``epoch_s`` (wall time of the whole epoch: pairing, steps, evaluation, checkpoint hand-off).
    epoch_times: list[dict[str, float]] = field(default_factory=list)
    #: Where the teacher's outputs came from: ``cached`` (gallery), ``live`` or ``none``.
    teacher_outputs: str = "none"
    #: The student's ``torch.compile`` mode in training (``off``: eager).
    compile_mode: str = "off"
    #: Teacher partner (training row) of every student training chip in the last trained epoch, on
    #: the host; None without a teacher, under ``class-mean`` (no instance partners) or if no epoch ran.
    partners: Tensor | None = None


def picks_own_partners(method: type[Method] | Method) -> bool:
    """True if the method chooses its teacher partners itself (overrides :meth:`Method.epoch_partners`)."""
    cls = method if isinstance(method, type) else type(method)
    return cls.epoch_partners is not Method.epoch_partners


def target_temperature(cfg: Any) -> float:
    """The temperature the ``class-mean`` control averages the teacher's distributions at: the
    method's ``temperature`` option where it has a fixed one, else 1."""
    value = getattr(cfg, "temperature", None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 1.0


@torch.no_grad()
def evaluate(method: Method, data: ModalityData, split: str, px: int, batch_size: int = 512, *,
             precision: str = "fp32", channels_last: bool = False) -> dict[str, Any]:
    """Metrics of the method's student on one split (no augmentation); arguments as :func:`predict_split`."""
    return classification_metrics(data.y[split].cpu().numpy(),
                                  predict_split(method, data, split, px, batch_size, precision=precision,
                                                channels_last=channels_last),
                                  method.info.n_classes)


@torch.no_grad()
def predict_split(method: Method, data: ModalityData, split: str, px: int, batch_size: int = 512, *,
                  precision: str = "fp32", channels_last: bool = False) -> np.ndarray:
    """The student's predicted class of every chip of ``split``, in row order (no augmentation).

    Args:
        precision: ``bf16`` evaluates under bf16 autocast, as the run trained.
        channels_last: batches in channels-last memory, as ``fit`` makes them on CUDA.
    """
    method.eval()
    preds = []
    n = data.y[split].shape[0]
    with autocast(data.y[split].device, precision):
        for idx in torch.arange(n, device=data.y[split].device).split(batch_size):
            preds.append(method.predict(data.batch(split, idx, px=px, channels_last=channels_last)).argmax(1))
    return torch.cat(preds).cpu().numpy()


def fit(method: Method, student_data: ModalityData, teacher_data: ModalityData | None, profile: Profile,
        *, seed: int, student_px: int, teacher_px: int, epochs: int, checkpoint: Path | None = None,
        resume: bool = False, progress: bool = True, desc: str = "train",
        fixed_partners: Tensor | None = None, context: dict[str, Any] | None = None,
        teacher_cache: bool = True, compile_mode: str = "off", pairing: str = "permuted",
        protocol: dict[str, Any] | None = None,
        on_epoch: Callable[[dict[str, float]], None] | None = None) -> FitResult:
    """Train ``method`` and select the epoch with the best validation OA; test once at that epoch.

    Before the first epoch: the frozen teacher's outputs for the whole MS training gallery
    (:mod:`benchmark.gallery`; unless ``teacher_cache`` is off or they exceed the memory budget,
    then the teacher runs at every step), then ``method.prepare`` (with ``context``: what the
    runner knows about the dataset). Each epoch: ``on_epoch_start`` (its numbers go into the
    epoch's history row); the method's own partners (``epoch_partners``) or else a fresh
    same-class teacher partner for every student sample (methods that use a teacher), except
    where ``fixed_partners`` (true co-located pairs or the oracle's, -1 = none) gives one; under
    ``pairing="class-mean"`` the teacher's outputs are its class means instead
    (:func:`benchmark.gallery.class_mean_gallery`, at :func:`target_temperature`), and a student
    chip of class k reads row k. Every pairing draws the same random numbers, so one seed gives the
    same shuffles and flips under each (and ``permuted`` is what it always was). A seeded shuffle and
    the epoch's flips (student chips only: the frozen teacher sees its chips as they are); Adam
    steps on the sum of the named loss terms. A checkpoint is written after every epoch
    (atomically, by a background thread) so ``resume`` continues a run. The checkpoint records the
    run's protocol (:func:`~ackd_bench.benchmark.checkpoints.fit_protocol`: the profile but for its
    epochs, seed, sizes, pairing, method class and config; plus the caller's ``protocol``: arch
    pair, dataset fingerprint, ...); ``resume`` refuses a checkpoint whose protocol differs, and a
    damaged one.

    On a GPU nothing in an epoch waits for the device: the loss terms are summed and checked
    for NaN/inf on the device and read once, at the end of the epoch. ``compile_mode`` other than
    ``off`` runs the student's training forward through ``torch.compile``
    (:meth:`Method.compile_student`); the compile time falls in the first epoch (once more at its
    short last batch, if any).

    Raises:
        TrainingError: fewer than 2 classes, or a loss term is NaN/inf (the first such step and its
            terms are named).
        CheckpointError: under ``resume``, the checkpoint is empty or damaged, belongs to another
            run, or was written under another protocol (the differing fields are named).
        MethodError: an unknown ``compile_mode``, or ``reduce-overhead`` off CUDA.
        PairingError: an unknown ``pairing``, or one other than ``permuted`` for a method without a
            teacher or one that picks its own partners; ``class-mean`` with a multi-label teacher.
    """
    if method.info.n_classes < 2:  # one class trains to 100 % and means nothing
        raise TrainingError(f"{desc}: {method.info.n_classes} class(es); classification needs at least 2")
    if pairing not in PAIRINGS:
        raise PairingError(f"unknown pairing {pairing!r}; use one of {', '.join(PAIRINGS)}")
    if pairing != "permuted" and (not method.uses_teacher or picks_own_partners(method) or teacher_data is None):
        raise PairingError(f"pairing {pairing!r} needs a method that uses a teacher and the harness's partners")
    if pairing == "class-mean" and teacher_data.sets is not None:
        raise PairingError("the class-mean pairing needs a single-label teacher")
    device = student_data.y["train"].device
    on_gpu = device.type == "cuda"
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    started = time.perf_counter()
    if on_gpu:  # convolutions in NHWC run on tensor cores without layout transposes
        method.to(memory_format=torch.channels_last)
        if method.teacher is not None:
            method.teacher.to(memory_format=torch.channels_last)
    method.compile_student(compile_mode)
    eval_kw = {"precision": profile.precision, "channels_last": on_gpu}  # evaluated as trained
    gallery = None
    if pairing == "class-mean":
        gallery = class_mean_gallery(method.teacher, teacher_data, teacher_px, method.info.n_classes,
                                     temperature=target_temperature(method.cfg), precision=profile.precision,
                                     channels_last=on_gpu)
    elif method.uses_teacher and teacher_data is not None and teacher_cache:
        gallery = build_gallery(method.teacher, teacher_data, teacher_px, profile.precision, channels_last=on_gpu)
    method.use_teacher_gallery(gallery)
    method.prepare(student_data, teacher_data, {"seed": seed, "epochs": epochs, "student_px": student_px,
                                                "teacher_px": teacher_px, "progress": progress, **eval_kw,
                                                **(context or {})})
    params = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=profile.lr, fused=on_gpu)
    n_train = student_data.y["train"].shape[0]
    run_protocol = fit_protocol(method, profile, seed=seed, student_px=student_px, teacher_px=teacher_px,
                                pairing=pairing, n_train=n_train) | plain_json(protocol or {})
    state = {"epoch": 0, "best_oa": -1.0, "best_epoch": -1, "best": None, "history": []}
    if resume and checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint, method, opt, gen, run_protocol)
    from tqdm.auto import tqdm

    bar = tqdm(total=epochs, initial=state["epoch"], desc=desc, disable=not progress, file=sys.stderr, leave=False)
    step_times: list[float] = []
    epoch_times: list[dict[str, float]] = []
    writer = CheckpointWriter()
    last_partners: Tensor | None = None
    try:
        for epoch in range(state["epoch"], epochs):
            t_epoch = time.perf_counter()
            stats = method.on_epoch_start(epoch, {"epochs": epochs}) or {}
            partners = method.epoch_partners(epoch) if method.uses_teacher else None
            if method.uses_teacher and partners is None:
                if teacher_data.sets is not None:  # a multi-label teacher: any chip carrying the class
                    partners = pair_carrying_class(student_data.y["train"], teacher_data.sets["train"], gen)
                else:
                    partners = pair_same_class(student_data.y["train"], teacher_data.y["train"], gen)
                if fixed_partners is not None:
                    partners = torch.where(fixed_partners >= 0, fixed_partners, partners)
                if pairing == "class-mean":  # the draws above are made all the same: same shuffles and flips
                    partners = student_data.y["train"]
            last_partners = partners
            perm = torch.randperm(n_train, generator=gen).to(device)
            flips = draw_flips(n_train, gen, device) if profile.augment else None
            rows = perm.split(profile.batch_size)
            flip_rows = flips.split(profile.batch_size, dim=1) if flips is not None else [None] * len(rows)
            batches = [(i, f) for i, f in zip(rows, flip_rows) if i.numel() > 1]  # BatchNorm needs 2+ samples
            method.train()
            watch = _LossWatch(device)
            _sync(device)
            t0 = time.perf_counter()
            for step, (idx, batch_flips) in enumerate(batches):
                batch = make_batch(student_data, teacher_data if partners is not None and gallery is None else None,
                                   idx, partners[idx] if partners is not None else idx, student_px=student_px,
                                   teacher_px=teacher_px, flips=batch_flips,
                                   epoch=epoch, progress=epoch + step / len(batches), channels_last=on_gpu)
                watch.add(step, train_step(method, opt, batch, profile.precision, check=False))
            _sync(device)
            train_s = time.perf_counter() - t0
            if batches:
                step_times.append(train_s / len(batches))
            sums = watch.result(f"{desc}: epoch {epoch}")  # the epoch's one read-back; raises on NaN/inf
            val = evaluate(method, student_data, "val", student_px, **eval_kw)
            record = {"epoch": epoch, "val_oa": val["oa"], **{k: v / max(len(batches), 1) for k, v in sums.items()},
                      **{k: float(v) for k, v in stats.items()}}
            if val["oa"] > state["best_oa"]:
                state.update(best_oa=val["oa"], best_epoch=epoch,
                             best={k: v.detach().to("cpu", copy=True) for k, v in method.student.state_dict().items()})
            state["history"].append(record)
            state["epoch"] = epoch + 1
            if checkpoint is not None:
                writer.submit(checkpoint, method, opt, gen, state, run_protocol)
            epoch_times.append({"epoch": epoch, "train_s": train_s, "epoch_s": time.perf_counter() - t_epoch})
            if on_epoch is not None:  # e.g. TensorBoard (`benchmark.tblog`): the history row and its timing
                on_epoch({**record, "train_s": train_s, "epoch_s": epoch_times[-1]["epoch_s"]})
            bar.update(1)
            bar.set_postfix({**{k: f"{v:.3f}" for k, v in record.items() if k not in ("epoch", "val_oa")},
                             "val_oa": f"{val['oa']:.3f}"})
    finally:
        writer.close()  # a pending checkpoint is finished even when the run stops with an error
    bar.close()
    if state["best"] is None:
        raise TrainingError(f"{desc}: no epoch was trained (epochs={epochs})")
    method.student.load_state_dict(state["best"])
    val = evaluate(method, student_data, "val", student_px, **eval_kw)
    predicted = predict_split(method, student_data, "test", student_px, **eval_kw)  # once, at the selected epoch
    test = classification_metrics(student_data.y["test"].cpu().numpy(), predicted, method.info.n_classes)
    # Per-epoch mean step times; the first epoch includes allocator and cuDNN warm-up.
    warm = step_times[1:] or step_times or [0.0]
    return FitResult(selected_epoch=state["best_epoch"], val=val, test=test, history=state["history"],
                     step_s=float(np.median(warm)), total_s=time.perf_counter() - started,
                     test_predictions=[int(p) for p in predicted],
                     epoch_times=epoch_times,
                     teacher_outputs=("none" if not method.uses_teacher else "class-mean" if pairing == "class-mean"
                                      else "cached" if gallery is not None else "live"),
                     compile_mode=compile_mode,
                     partners=(last_partners.detach().to("cpu", copy=True)
                               if last_partners is not None and pairing != "class-mean" else None))


def epoch_timing(epoch_times: list[dict[str, float]]) -> dict[str, float]:
    """Median epoch wall time, median time of its training steps, and their ratio (the loop's overhead).

    The first epoch (allocator and cuDNN warm-up) is left out when there are others.
    """
    rows = epoch_times[1:] or epoch_times
    if not rows:
        return {}
    epoch_s = float(np.median([r["epoch_s"] for r in rows]))
    train_s = float(np.median([r["train_s"] for r in rows]))
    return {"epoch_s": epoch_s, "epoch_train_s": train_s,
            "epoch_over_train": epoch_s / train_s if train_s > 0 else float("nan")}


class _LossWatch:
    """Sums an epoch's loss terms on the device and remembers the first step with a NaN/inf term.

    Nothing is read back until :meth:`result`, so the host never waits for the device mid-epoch.
    A method may return different terms at different steps; each set of names is tracked apart.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, Tensor] = {}
        # names of the terms -> (first step with a non-finite term, that step's term values)
        self.first_bad: dict[tuple[str, ...], tuple[Tensor, Tensor]] = {}

    def add(self, step: int, terms: dict[str, Tensor]) -> None:
        names = tuple(terms)
        values = torch.stack([terms[k].detach().float() for k in names])
        for k, v in zip(names, values):
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        first, bad_values = self.first_bad.get(names) or (torch.full((), -1, dtype=torch.int64, device=self.device),
                                                          torch.zeros_like(values))
        new = (first < 0) & ~torch.isfinite(values).all()
        self.first_bad[names] = (torch.where(new, step, first), torch.where(new, values, bad_values))

    def result(self, where: str) -> dict[str, float]:
        """The summed terms as floats.

        Raises:
            TrainingError: some step's loss was NaN/inf; names ``where``, the step and its bad terms.
        """
        found = [(int(first), names, values) for names, (first, values) in self.first_bad.items()]
        found = sorted(f for f in found if f[0] >= 0)
        if found:
            step, names, values = found[0]
            bad = {k: v for k, v in zip(names, values.tolist()) if not math.isfinite(v)}
            raise TrainingError(f"non-finite loss at {where}, step {step}: {bad}; "
                                "lower the learning rate or check the method's configuration")
        return {k: float(v) for k, v in self.sums.items()}


def make_batch(student_data: ModalityData, teacher_data: ModalityData | None, idx: Tensor, teacher_idx: Tensor,
               *, student_px: int, teacher_px: int, augment: bool = False, generator: torch.Generator | None = None,
               flips: Tensor | None = None, epoch: int, progress: float, channels_last: bool = False) -> Batch:
    """A training batch: student chips ``idx`` and their teacher partners ``teacher_idx``.

    The student chips are augmented by ``flips`` (or, with ``augment``, flips drawn from
    ``generator``); the teacher's chips never are (the teacher is frozen). Without
    ``teacher_data`` the batch carries the partners' indices only (a method reading the
    teacher's gallery needs no more).
    """
    device = idx.device
    return Batch(
        student_x=student_data.batch("train", idx, px=student_px, augment=augment, generator=generator, flips=flips,
                                     channels_last=channels_last),
        labels=student_data.y["train"][idx],
        teacher_x=(teacher_data.batch("train", teacher_idx, px=teacher_px, channels_last=channels_last)
                   if teacher_data is not None else torch.empty(0, device=device)),
        index=idx, teacher_index=teacher_idx, epoch=epoch, progress=progress,
        label_sets=student_data.sets["train"][idx] if student_data.sets is not None else None,
    )


def train_step(method: Method, opt: torch.optim.Optimizer, batch: Batch, precision: str = "fp32",
               *, where: str = "", check: bool = True) -> dict[str, Tensor]:
    """One optimisation step on the sum of the method's named loss terms; returns the terms.

    Args:
        check: test the loss for NaN/inf before stepping (a read-back that makes the host wait
            for the device); off, the caller checks the returned terms (``fit`` does, per epoch).

    Raises:
        TrainingError: the loss is NaN/inf; the message names ``where`` and the offending terms.
    """
    if method.compile_mode == "reduce-overhead":
        torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs may be reused
    with autocast(batch.student_x.device, precision):
        terms = method.losses(batch)
    total = sum(terms.values())
    if check and not torch.isfinite(total):
        bad = {k: float(v.detach()) for k, v in terms.items() if not math.isfinite(float(v.detach()))}
        raise TrainingError(f"non-finite loss at {where}: {bad}; "
                            "lower the learning rate or check the method's configuration")
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    return terms


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
