"""MS teachers: trained once per (dataset fingerprint, arch, seed, profile), cached, reused by every method."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


from ackd_bench.benchmark.data import ModalityData
from ackd_bench.benchmark.dataset import Dataset
from ackd_bench.benchmark.dataset.files import atomic_write_text, sha256_file
from ackd_bench.benchmark.dataset.files import cache_root
from ackd_bench.benchmark.method import DataInfo
from ackd_bench.benchmark.models import Classifier, create_classifier
from ackd_bench.benchmark.protocol import Profile
from ackd_bench.benchmark.train import Supervised, TrainingError, fit


def teacher_paths(ds: Dataset, arch: str, seed: int, profile: Profile) -> tuple[Path, Path]:
    """Where the cached teacher's weights (safetensors) and its metadata (JSON) live.

    Keyed by dataset fingerprint, arch, seed and profile name, and by the precision when it is not
    fp32 (a bf16-trained teacher is another teacher; fp32 paths are those of earlier versions).
    """
    folder = cache_root() / "teachers" / ds.fingerprint[:16]
    stem = f"{arch}__seed{seed}__{profile.name}" + (f"__{profile.precision}" if profile.precision != "fp32" else "")
    return folder / f"{stem}.safetensors", folder / f"{stem}.json"


META_KEYS = ("arch", "dataset_fingerprint", "checkpoint_sha256", "val_oa", "test_oa", "selected_epoch")


def _read_meta(path: Path, *, from_checkpoint: bool) -> dict[str, Any]:
    """A teacher's metadata JSON; a truncated or damaged one is a TrainingError naming the file and the fix."""
    from ackd_bench.benchmark.boundary import InputError, load_file

    why = ""
    try:
        meta = load_file(path, what="metadata")
    except InputError as err:
        why = str(err).removeprefix(f"metadata file {path}: ")
    else:
        if not isinstance(meta, dict):
            why = "not a JSON object"
        elif missing := [k for k in META_KEYS if k not in meta]:
            why = f"lacks {', '.join(missing)}"
    if why:
        fix = ("restore it, or omit --teacher-checkpoint to train a teacher" if from_checkpoint
               else "delete it to retrain the teacher")
        raise TrainingError(f"teacher metadata {path} is truncated or corrupt ({why}); {fix}")
    return meta


def get_teacher(ds: Dataset, ms: ModalityData, arch: str, seed: int, profile: Profile,
                *, checkpoint: Path | None = None, progress: bool = True,
                compile_mode: str = "off") -> tuple[Classifier, dict[str, Any]]:
    """The MS teacher for this dataset: loaded from ``checkpoint`` or the cache, else trained and cached.

    ``compile_mode`` applies to training it (:func:`benchmark.train.fit`); a cached teacher is
    reused whatever mode trained it.

    Raises:
        TrainingError: the checkpoint was trained on another dataset (fingerprint), another
            architecture, or its weights do not match its recorded checksum.
    """
    from safetensors.torch import load_file, save_file

    weights, meta_path = (checkpoint, checkpoint.with_suffix(".json")) if checkpoint else teacher_paths(
        ds, arch, seed, profile)
    device = ms.y["train"].device
    model = create_classifier(arch, ms.channels, len(ds.classes), seed=seed).to(device)
    if weights.exists() and meta_path.exists():
        meta = _read_meta(meta_path, from_checkpoint=checkpoint is not None)
        if meta["dataset_fingerprint"] != ds.fingerprint:
            raise TrainingError(
                f"teacher {weights} was trained on dataset fingerprint {meta['dataset_fingerprint'][:16]}…, "
                f"not this dataset's {ds.fingerprint[:16]}…; train a teacher for this dataset (omit --teacher-checkpoint)"
            )
        if meta["arch"] != arch:
            raise TrainingError(f"teacher {weights} is a {meta['arch']}, not {arch}; pass --teacher-arch {meta['arch']}")
        if sha256_file(weights) != meta["checkpoint_sha256"]:
            raise TrainingError(f"teacher weights {weights} do not match their recorded sha256; delete them to retrain")
        model.load_state_dict(load_file(weights, device=str(device)))
        model.eval()
        return model, meta
    if checkpoint is not None:
        raise TrainingError(f"teacher checkpoint {checkpoint} (or its {meta_path.name}) does not exist")

    info = DataInfo(n_classes=len(ds.classes), student_channels=ms.channels, teacher_channels=ms.channels,
                    class_names=tuple(ds.classes), epochs=profile.teacher_epochs,
                    teacher_multilabel=ms.sets is not None)
    result = fit(Supervised(model, info), ms, None, profile, seed=seed, student_px=profile.teacher_px,
                 teacher_px=profile.teacher_px, epochs=profile.teacher_epochs, progress=progress,
                 desc=f"teacher {arch}", compile_mode=compile_mode)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_suffix(f".tmp-{os.getpid()}")
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, weights)
    meta = {
        "arch": arch, "seed": seed, "profile": profile.name, "epochs": profile.teacher_epochs,
        "precision": profile.precision,
        "loss": "bce" if ms.sets is not None else "ce",
        "dataset_fingerprint": ds.fingerprint, "checkpoint_sha256": sha256_file(weights),
        "selected_epoch": result.selected_epoch, "val_oa": result.val["oa"], "test_oa": result.test["oa"],
        "val": result.val, "test": result.test, "train_s": result.total_s, "compile": compile_mode,
    }
    atomic_write_text(meta_path, json.dumps(meta, indent=1, sort_keys=True))
    model.eval()
    return model, meta
