"""The training loop shared by teachers and students: epochs, val selection, checkpoints, resume."""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ackd_bench.benchmark.data import ModalityData, pair_carrying_class, pair_same_class
from ackd_bench.benchmark.errors import AckdBenchError
from ackd_bench.benchmark.method import Batch, DataInfo, Method, NoConfig
from ackd_bench.benchmark.models import Classifier
from ackd_bench.benchmark.protocol import Profile, classification_metrics


class TrainingError(AckdBenchError):
    """Training cannot go on (a non-finite loss, a checkpoint that does not fit the run)."""


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
        logits = self.student(batch.student_x).logits
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


@torch.no_grad()
def evaluate(method: Method, data: ModalityData, split: str, px: int, batch_size: int = 512) -> dict[str, Any]:
    """Metrics of the method's student on one split (no augmentation)."""
    return classification_metrics(data.y[split].cpu().numpy(), predict_split(method, data, split, px, batch_size),
                                  method.info.n_classes)


@torch.no_grad()
def predict_split(method: Method, data: ModalityData, split: str, px: int, batch_size: int = 512) -> np.ndarray:
    """The student's predicted class of every chip of ``split``, in row order (no augmentation)."""
    method.eval()
    preds = []
    n = data.y[split].shape[0]
    for idx in torch.arange(n, device=data.y[split].device).split(batch_size):
        preds.append(method.predict(data.batch(split, idx, px=px)).argmax(1))
    return torch.cat(preds).cpu().numpy()


def fit(method: Method, student_data: ModalityData, teacher_data: ModalityData | None, profile: Profile,
        *, seed: int, student_px: int, teacher_px: int, epochs: int, checkpoint: Path | None = None,
        resume: bool = False, progress: bool = True, desc: str = "train",
        fixed_partners: Tensor | None = None, context: dict[str, Any] | None = None) -> FitResult:
    """Train ``method`` and select the epoch with the best validation OA; test once at that epoch.

    Before the first epoch: ``method.prepare`` (with ``context``: what the runner knows about the
    dataset). Each epoch: ``on_epoch_start`` (its numbers go into the epoch's history row); the
    method's own partners (``epoch_partners``) or else a fresh same-class teacher partner for
    every student sample (methods that use a teacher), except where ``fixed_partners`` (true
    co-located pairs, -1 = none) gives one; a seeded shuffle; Adam steps on the sum of the named
    loss terms. A checkpoint is written after every epoch (atomically) so ``resume`` continues a run.

    Raises:
        TrainingError: a loss term is NaN/inf (the step and the term are named), or the
            checkpoint belongs to another run.
    """
    device = student_data.y["train"].device
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    method.prepare(student_data, teacher_data, {"seed": seed, "epochs": epochs, "student_px": student_px,
                                                "teacher_px": teacher_px, "progress": progress, **(context or {})})
    params = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=profile.lr)
    state = {"epoch": 0, "best_oa": -1.0, "best_epoch": -1, "best": None, "history": []}
    if resume and checkpoint is not None and checkpoint.exists():
        state = _load_checkpoint(checkpoint, method, opt, gen)
    n_train = student_data.y["train"].shape[0]
    from tqdm.auto import tqdm

    bar = tqdm(total=epochs, initial=state["epoch"], desc=desc, disable=not progress, file=sys.stderr, leave=False)
    step_times: list[float] = []
    started = time.perf_counter()
    for epoch in range(state["epoch"], epochs):
        stats = method.on_epoch_start(epoch, {"epochs": epochs}) or {}
        partners = method.epoch_partners(epoch) if method.uses_teacher else None
        if method.uses_teacher and partners is None:
            if teacher_data.sets is not None:  # a multi-label teacher: any chip carrying the class
                partners = pair_carrying_class(student_data.y["train"], teacher_data.sets["train"], gen)
            else:
                partners = pair_same_class(student_data.y["train"], teacher_data.y["train"], gen)
            if fixed_partners is not None:
                partners = torch.where(fixed_partners >= 0, fixed_partners, partners)
        perm = torch.randperm(n_train, generator=gen).to(device)
        batches = [b for b in perm.split(profile.batch_size) if b.numel() > 1]  # BatchNorm needs 2+
        method.train()
        sums: dict[str, Tensor] = {}
        _sync(device)
        t0 = time.perf_counter()
        for step, idx in enumerate(batches):
            batch = make_batch(student_data, teacher_data if partners is not None else None, idx,
                               partners[idx] if partners is not None else idx, student_px=student_px,
                               teacher_px=teacher_px, augment=profile.augment, generator=gen, epoch=epoch,
                               progress=epoch + step / len(batches))
            terms = train_step(method, opt, batch, profile.precision, where=f"{desc}: epoch {epoch}, step {step}")
            for k, v in terms.items():
                # Kept on the device: the NaN check is the only read-back per step.
                sums[k] = sums.get(k, 0.0) + v.detach().float()
        _sync(device)
        if batches:
            step_times.append((time.perf_counter() - t0) / len(batches))
        sums = {k: float(v) for k, v in sums.items()}
        val = evaluate(method, student_data, "val", student_px)
        record = {"epoch": epoch, "val_oa": val["oa"], **{k: v / max(len(batches), 1) for k, v in sums.items()},
                  **{k: float(v) for k, v in stats.items()}}
        state["history"].append(record)
        if val["oa"] > state["best_oa"]:
            state.update(best_oa=val["oa"], best_epoch=epoch,
                         best={k: v.detach().clone().cpu() for k, v in method.student.state_dict().items()})
        state["epoch"] = epoch + 1
        if checkpoint is not None:
            _save_checkpoint(checkpoint, method, opt, gen, state)
        bar.update(1)
        bar.set_postfix({**{k: f"{v:.3f}" for k, v in record.items() if k not in ("epoch", "val_oa")},
                         "val_oa": f"{val['oa']:.3f}"})
    bar.close()
    if state["best"] is None:
        raise TrainingError(f"{desc}: no epoch was trained (epochs={epochs})")
    method.student.load_state_dict(state["best"])
    val = evaluate(method, student_data, "val", student_px)
    predicted = predict_split(method, student_data, "test", student_px)  # once, at the selected epoch
    test = classification_metrics(student_data.y["test"].cpu().numpy(), predicted, method.info.n_classes)
    # Per-epoch mean step times; the first epoch includes allocator and cuDNN warm-up.
    warm = step_times[1:] or step_times or [0.0]
    return FitResult(selected_epoch=state["best_epoch"], val=val, test=test, history=state["history"],
                     step_s=float(np.median(warm)), total_s=time.perf_counter() - started,
                     test_predictions=[int(p) for p in predicted])


def make_batch(student_data: ModalityData, teacher_data: ModalityData | None, idx: Tensor, teacher_idx: Tensor,
               *, student_px: int, teacher_px: int, augment: bool, generator: torch.Generator, epoch: int,
               progress: float) -> Batch:
    """A training batch: student chips ``idx`` and their teacher partners ``teacher_idx`` (if any)."""
    device = idx.device
    return Batch(
        student_x=student_data.batch("train", idx, px=student_px, augment=augment, generator=generator),
        labels=student_data.y["train"][idx],
        teacher_x=(teacher_data.batch("train", teacher_idx, px=teacher_px, augment=augment, generator=generator)
                   if teacher_data is not None else torch.empty(0, device=device)),
        index=idx, teacher_index=teacher_idx, epoch=epoch, progress=progress,
        label_sets=student_data.sets["train"][idx] if student_data.sets is not None else None,
    )


def train_step(method: Method, opt: torch.optim.Optimizer, batch: Batch, precision: str = "fp32",
               *, where: str = "") -> dict[str, Tensor]:
    """One optimisation step on the sum of the method's named loss terms; returns the terms.

    Raises:
        TrainingError: the loss is NaN/inf; the message names ``where`` and the offending terms.
    """
    with _autocast(batch.student_x.device, precision):
        terms = method.losses(batch)
    total = sum(terms.values())
    if not torch.isfinite(total):
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


def _autocast(device: torch.device, precision: str):
    """bf16 autocast (mixed precision) when asked for; a no-op context for fp32."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _save_checkpoint(path: Path, method: nn.Module, opt, gen: torch.Generator, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    torch.save({"method": method.state_dict(), "optimizer": opt.state_dict(), "rng": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "state": state}, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, method: nn.Module, opt, gen: torch.Generator) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
        method.load_state_dict(ckpt["method"])
        opt.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, KeyError, ValueError) as err:
        raise TrainingError(f"checkpoint {path} does not fit this run ({str(err)[:160]}); "
                            "delete it or run without --resume") from err
    gen.set_state(ckpt["rng"])
    torch.set_rng_state(ckpt["torch_rng"])
    return ckpt["state"]
