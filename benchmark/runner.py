"""`ackd-bench run`: teacher (cached) + student with one method, per seed, written as RunResult JSON."""

from __future__ import annotations

import platform
import subprocess
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ackd_bench.benchmark.checkpoints import check_protocol, profile_protocol, read_checkpoint
from ackd_bench.benchmark.data import (PAIRINGS, PairingError, load_modality, oracle_partners, partner_quality,
                                       true_partners)
from ackd_bench.benchmark.dataset import load_dataset
from ackd_bench.benchmark.errors import AckdBenchError
from ackd_bench.benchmark.method import COMPILE_MODES, DataInfo, create_method, get_method_class, method_config
from ackd_bench.benchmark.models import create_classifier
from ackd_bench.benchmark.protocol import Profile
from ackd_bench.benchmark.results import RESULT_SCHEMA_VERSION, predictions_sha256, write_run_result
from ackd_bench.benchmark.teacher import get_teacher
from ackd_bench.benchmark.train import epoch_timing, fit, picks_own_partners, target_temperature
from ackd_bench.benchmark.version import package_version

PAIRING_POLICY = "random-same-class-per-epoch"
MULTILABEL_POLICY = "random-carrying-class-per-epoch"
TRUE_PAIRS_POLICY = "true-pairs, else random-same-class-per-epoch"
ORACLE_POLICY = "oracle: same-class teacher chip nearest in latent truth, fixed"
CLASS_MEAN_POLICY = "class-mean: the teacher's class-mean outputs, no instance partner"


class DeviceError(AckdBenchError):
    """The requested device is not available."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise DeviceError(f"unknown device {name!r}; use auto, cpu or cuda[:N]")
    return torch.device(name)


def check_compile_mode(mode: str, device: torch.device) -> None:
    """Fail before any work when ``mode`` is unknown or needs CUDA (CUDA graphs) and ``device`` is not."""
    if mode not in COMPILE_MODES:
        raise DeviceError(f"unknown compile mode {mode!r}; use one of {', '.join(COMPILE_MODES)}")
    if mode == "reduce-overhead" and device.type != "cuda":
        raise DeviceError(f"--compile reduce-overhead records CUDA graphs and needs a CUDA device, not {device}; "
                          "use --compile default (or off) on the CPU")


def pairing_applies(method: str) -> bool:
    """True if ``--pairing`` can change how ``method`` is taught: it uses a teacher and takes the
    harness's partners (SemBridge, which matches its own, does not)."""
    cls = get_method_class(method)
    return cls.uses_teacher and not picks_own_partners(cls)


def check_pairing(method: str, pairing: str) -> None:
    """Fail before any data is loaded when ``pairing`` is unknown or makes no sense for ``method``."""
    if pairing not in PAIRINGS:
        raise PairingError(f"unknown pairing {pairing!r}; use one of {', '.join(PAIRINGS)}")
    if pairing == "permuted" or pairing_applies(method):
        return
    why = ("uses no teacher" if not get_method_class(method).uses_teacher
           else "picks its own teacher partners (its matching is the pairing)")
    raise PairingError(f"--pairing {pairing} does not apply to {method!r}, which {why}; use --pairing permuted")


def check_pairing_data(ds: Any, pairing: str) -> None:
    """Fail before any training when the dataset cannot serve ``pairing``."""
    if pairing == "oracle" and not ds.has_latent:
        raise PairingError(f"dataset {ds.manifest['name']} at {ds.root} has no latent truth (latent_composition, "
                           "latent_subtype, latent_factors columns and a 'latent' manifest block), which --pairing "
                           "oracle needs; use a dataset built with latent truth (format v2)")
    if pairing == "class-mean" and ds.manifest["modalities"]["ms"]["label_type"] == "multi":
        raise PairingError(f"dataset {ds.manifest['name']} at {ds.root} has a multi-label MS side; --pairing "
                           "class-mean needs single-label teacher chips")


def run_experiment(dataset: Path, *, method: str, arch: str, teacher_arch: str | None, seeds: list[int],
                   profile: Profile, device: str = "auto", out: Path = Path("results"),
                   resume: bool = False, progress: bool = True, teacher_checkpoint: Path | None = None,
                   method_options: dict[str, Any] | None = None, compile_mode: str = "off",
                   pairing: str = "permuted", log_dir: Path | None = None) -> list[dict[str, Any]]:
    """Train the teacher (or reuse it) and the student for each seed; write one RunResult per seed.

    ``compile_mode`` (``off``, ``default``, ``reduce-overhead``) runs the training forward
    passes through ``torch.compile`` (:meth:`Method.compile_student`); it is recorded in
    ``timing.compile``. ``pairing`` picks the teacher partners of harness-paired methods
    (:data:`benchmark.data.PAIRINGS`); other than ``permuted`` it joins the label
    (``kd[pairing=oracle]``). On datasets with latent truth, every teacher-using run records
    ``diagnostics.partner_quality`` (:func:`benchmark.data.partner_quality`). Each seed's
    checkpoint records the run's protocol (profile, precision, method, label and options, arch
    pair, seed, epochs, dataset fingerprint, teacher sha256); ``resume`` continues it only under
    the same protocol, and refuses a damaged one before any teacher is trained.

    ``log_dir`` also writes each run's per-epoch losses, val OA and timing as TensorBoard event
    files (:mod:`benchmark.tblog`, a folder per run id).

    Returns:
        The RunResult dicts, in seed order (each also written to ``out``).
    """
    method_config(method, method_options)  # unknown names and options fail before any data is loaded
    if log_dir is not None:
        from ackd_bench.benchmark.tblog import check_log_dir

        check_log_dir(log_dir)
    check_pairing(method, pairing)
    label = method_label(method, method_options, pairing)
    teacher_arch = teacher_arch or arch
    dev = resolve_device(device)
    check_compile_mode(compile_mode, dev)
    ds = load_dataset(dataset)
    check_pairing_data(ds, pairing)
    results = []
    for seed in seeds:
        rgb = load_modality(ds, "rgb", dev, max_train_per_class=profile.max_train_per_class, seed=seed)
        ms = load_modality(ds, "ms", dev, max_train_per_class=profile.max_train_per_class, seed=seed)
        run_id = f"{ds.manifest['name']}-{ds.fingerprint[:8]}__{teacher_arch}__{arch}__{label}__seed{seed}"
        ckpt = Path(out) / "checkpoints" / f"{run_id}.pt"
        protocol = {"method": method, "label": label, "options": method_options or {}, "teacher_arch": teacher_arch,
                    "student_arch": arch, "epochs": profile.epochs, "dataset_fingerprint": ds.fingerprint}
        if resume and ckpt.exists():  # a damaged or foreign checkpoint fails before the teacher is trained
            check_protocol(ckpt, read_checkpoint(ckpt)["protocol"],
                           {**profile_protocol(profile), "seed": seed, **protocol}, only_given=True)
        teacher, tmeta = get_teacher(ds, ms, teacher_arch, seed, profile, checkpoint=teacher_checkpoint,
                                     progress=progress, compile_mode=compile_mode)
        info = DataInfo(n_classes=len(ds.classes), student_channels=rgb.channels, teacher_channels=ms.channels,
                        class_names=tuple(ds.classes), epochs=profile.epochs, teacher_multilabel=ms.sets is not None)
        student = create_classifier(arch, rgb.channels, len(ds.classes), seed=seed).to(dev)
        m = create_method(method, student=student, teacher=teacher, info=info, **(method_options or {})).to(dev)
        true = true_partners(ds, rgb, ms)  # co-located partners of paired and partial builds, else None
        pairs = true if pairing == "permuted" else None
        fixed = oracle_partners(rgb, ms) if pairing == "oracle" else pairs
        logger = None
        if log_dir is not None:
            from ackd_bench.benchmark.tblog import EpochLogger

            logger = EpochLogger(log_dir, run_id)
        try:
            fitted = fit(m, rgb, ms, profile, seed=seed, student_px=profile.student_px, teacher_px=profile.teacher_px,
                         epochs=profile.epochs, checkpoint=ckpt, resume=resume, progress=progress,
                         desc=f"{method} seed {seed}", fixed_partners=fixed, compile_mode=compile_mode, pairing=pairing,
                         protocol={**protocol, "teacher_sha256": tmeta["checkpoint_sha256"]},
                         context={"fingerprint": ds.fingerprint, "true_partners": true,
                                  "teacher_bands": list(ds.manifest["modalities"]["ms"].get("bands", []))},
                         on_epoch=logger)
        finally:
            if logger is not None:
                logger.close()
        own_policy = getattr(m, "pairing_policy", None)
        policy = ("none" if not m.uses_teacher else own_policy if own_policy
                  else ORACLE_POLICY if pairing == "oracle" else CLASS_MEAN_POLICY if pairing == "class-mean"
                  else TRUE_PAIRS_POLICY if pairs is not None
                  else MULTILABEL_POLICY if ms.sets is not None else PAIRING_POLICY)
        controls = ({} if pairing == "permuted" else {"pairing_control": pairing}) | (
            {"class_mean_temperature": target_temperature(m.cfg)} if pairing == "class-mean" else {})
        quality = ({"partner_quality": partner_quality(rgb, ms, {} if fitted.partners is None
                                                       else {"used": fitted.partners})}
                   if ds.has_latent and m.uses_teacher else {})
        result = {
            "schema_version": RESULT_SCHEMA_VERSION,
            "run_id": run_id,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "method": {"name": method, "label": label, "config": _jsonable(asdict(m.cfg)), "paper": m.paper},
            "teacher": {"arch": teacher_arch, "checkpoint_sha256": tmeta["checkpoint_sha256"],
                        "metrics": {"val_oa": tmeta["val_oa"], "test_oa": tmeta["test_oa"],
                                    "selected_epoch": tmeta["selected_epoch"],
                                    # the evidence `table` checks the teacher's scores against
                                    **{f"{s}_confusion": tmeta[s]["confusion"] for s in ("val", "test")
                                       if isinstance(tmeta.get(s), dict) and "confusion" in tmeta[s]}}},
            "student": {"arch": arch},
            "dataset": {"name": ds.manifest["name"], "version": ds.manifest["version"],
                        "fingerprint": ds.fingerprint, "recipe_fingerprint": ds.recipe_fingerprint,
                        "classes": list(ds.classes),
                        "split": ds.manifest["splits"].get("policy", "")},
            "seed": seed,
            "protocol": {**{k: v for k, v in asdict(profile).items() if k != "name"}, "profile": profile.name,
                         "optimizer": "adam", "selection": "best val OA; test evaluated once",
                         "teacher_augment": False,  # the frozen teacher sees its chips as they are
                         "pairing": policy, **controls,
                         "true_pairs": (int((pairs >= 0).sum()) if pairs is not None and m.uses_teacher and not own_policy
                                        else 0)},
            "metrics": {"val": fitted.val, "test": fitted.test, "selected_epoch": fitted.selected_epoch},
            "predictions": test_predictions(rgb.ids["test"], fitted.test_predictions),
            "diagnostics": {"history": fitted.history, **m.diagnostics(), **quality},
            "timing": {"total_s": fitted.total_s, "step_s": fitted.step_s,
                       "images_per_s": profile.batch_size / fitted.step_s if fitted.step_s else 0.0,
                       **epoch_timing(fitted.epoch_times), "teacher_outputs": fitted.teacher_outputs,
                       "compile": fitted.compile_mode},
            "environment": _environment(dev),
        }
        write_run_result(Path(out), result)
        if ckpt.exists():
            ckpt.unlink()  # the run finished; its result is the record
        results.append(result)
    return results


def test_predictions(sample_ids, predicted: list[int]) -> dict[str, Any]:
    """The per-sample test predictions of a run, with a sha256 that pins them.

    ``sha256`` is over the canonical JSON of ``[[sample_id, class], ...]`` in the order given (the
    split's row order), so anyone can recompute every test metric from the record and check it.
    """
    pairs = [[str(s), int(p)] for s, p in zip(sample_ids, predicted, strict=True)]
    ids, classes = [s for s, _ in pairs], [p for _, p in pairs]
    return {"split": "test", "sample_ids": ids, "predicted": classes, "sha256": predictions_sha256(ids, classes)}


def method_label(method: str, options: dict[str, Any] | None, pairing: str = "permuted") -> str:
    """The name a run is filed and tabulated under: the method, plus the options given explicitly
    and a pairing other than the default.

    ``method_label("sembridge", {"ssm": False})`` is ``"sembridge[ssm=false]"`` and
    ``method_label("kd", None, "oracle")`` is ``"kd[pairing=oracle]"``, so ablations, option sweeps
    and pairing controls never overwrite each other's results or merge into one table row.
    """
    if pairing != "permuted":
        options = {**(options or {}), "pairing": pairing}
    if not options:
        return method
    import json

    parts = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in sorted(options.items())]
    return f"{method}[{','.join(parts)}]"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _environment(dev: torch.device) -> dict[str, str]:
    import timm

    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})"
    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "ackd_bench": package_version(), "git_sha": sha, "device": name,
            "threads": str(torch.get_num_threads())}
