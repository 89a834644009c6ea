"""RunResult: one JSON per (dataset, teacher arch, student arch, method, seed) — schema, write, load."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ackd_bench.benchmark.dataset_files import atomic_write_text
from ackd_bench.benchmark.errors import AckdBenchError

RESULT_SCHEMA_VERSION = 1

# Required keys and their types; nested dicts list their own required keys. Extra keys are allowed
# (diagnostics grow with methods), missing or mistyped ones are errors.
METRIC_KEYS = {
    "oa": float, "macro_precision": float, "macro_recall": float, "macro_f1": float,
    "per_class_accuracy": list, "confusion": list, "n": int,
}
SCHEMA: dict[str, Any] = {
    "schema_version": int,
    "run_id": str,
    "created": str,
    "method": {"name": str, "config": dict},
    "teacher": {"arch": str, "checkpoint_sha256": str, "metrics": dict},
    "student": {"arch": str},
    "dataset": {"name": str, "version": str, "fingerprint": str, "classes": list},
    "seed": int,
    "protocol": {
        "profile": str, "epochs": int, "batch_size": int, "lr": float, "optimizer": str,
        "selection": str, "pairing": str, "student_px": int, "teacher_px": int,
    },
    "metrics": {"val": METRIC_KEYS, "test": METRIC_KEYS, "selected_epoch": int},
    "diagnostics": dict,
    "timing": {"total_s": float, "step_s": float},
    "environment": {"python": str, "torch": str, "timm": str, "ackd_bench": str, "device": str},
}


# Optional: diagnostics.partner_quality (datasets with latent truth); these entries are always there.
PARTNER_QUALITY_ENTRIES = ("random_same_class", "oracle")


class ResultSchemaError(AckdBenchError):
    """A RunResult JSON does not follow the schema."""


def validate_run_result(result: dict[str, Any], *, source: str = "result") -> None:
    """Raise ResultSchemaError naming the first missing or mistyped key (e.g. ``metrics.test.oa``)."""
    if not isinstance(result, dict):
        raise ResultSchemaError(f"{source}: a RunResult must be a JSON object")
    if result.get("schema_version") != RESULT_SCHEMA_VERSION:
        raise ResultSchemaError(
            f"{source}: schema_version {result.get('schema_version')!r} is not {RESULT_SCHEMA_VERSION}"
        )
    _check(result, SCHEMA, source, "")
    n_classes = len(result["dataset"]["classes"])
    for split in ("val", "test"):
        m = result["metrics"][split]
        if not 0.0 <= m["oa"] <= 1.0:
            raise ResultSchemaError(f"{source}: metrics.{split}.oa must be a fraction in [0, 1]")
        if len(m["per_class_accuracy"]) != n_classes or len(m["confusion"]) != n_classes:
            raise ResultSchemaError(f"{source}: metrics.{split} must have one entry per class ({n_classes})")
    if "partner_quality" in result["diagnostics"]:
        _check_partner_quality(result["diagnostics"]["partner_quality"], source)


def _check_partner_quality(quality: Any, source: str) -> None:
    """Each entry: ``composition_distance`` a number ≥ 0 (or null: no partners) and ``subtype_agreement``
    a share in [0, 1] (or null: no sub-type known)."""
    where = f"{source}: diagnostics.partner_quality"
    if not isinstance(quality, dict) or not all(k in quality for k in PARTNER_QUALITY_ENTRIES):
        raise ResultSchemaError(f"{where} must be an object with {', '.join(PARTNER_QUALITY_ENTRIES)}")
    for name, entry in quality.items():
        if not isinstance(entry, dict):
            continue  # counts and the definition text
        distance, agreement = entry.get("composition_distance"), entry.get("subtype_agreement")
        if distance is not None and not (_is_number(distance) and distance >= 0):
            raise ResultSchemaError(f"{where}.{name}.composition_distance must be a number >= 0 or null")
        if agreement is not None and not (_is_number(agreement) and 0 <= agreement <= 1):
            raise ResultSchemaError(f"{where}.{name}.subtype_agreement must be a share in [0, 1] or null")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(value: Any, spec: Any, source: str, path: str) -> None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise ResultSchemaError(f"{source}: {path or 'result'} must be an object")
        for key, sub in spec.items():
            where = f"{path}.{key}" if path else key
            if key not in value:
                raise ResultSchemaError(f"{source}: missing {where}")
            _check(value[key], sub, source, where)
        return
    ok = isinstance(value, spec) and not (spec is int and isinstance(value, bool))
    if spec is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise ResultSchemaError(f"{source}: {path} must be {spec.__name__}, got {type(value).__name__}")


def result_filename(result: dict[str, Any]) -> str:
    """A stable file name: dataset, teacher→student, method, seed."""
    d = result["dataset"]
    return (f"{d['name']}-{d['fingerprint'][:8]}__{result['teacher']['arch']}__{result['student']['arch']}"
            f"__{_safe(run_label(result))}__seed{result['seed']}.json")


def run_label(result: dict[str, Any]) -> str:
    """The method label a run is tabulated under (``method.label``, else the method name)."""
    return result["method"].get("label") or result["method"]["name"]


def _safe(text: str) -> str:
    """A file-name-safe version of a label (``/``, spaces and the like become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._+=,\[\]-]", "_", text)


def write_run_result(out_dir: Path, result: dict[str, Any]) -> Path:
    """Validate and write a RunResult atomically into ``out_dir``; returns its path."""
    validate_run_result(result)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / result_filename(result)
    atomic_write_text(path, json.dumps(result, indent=1, sort_keys=True))
    return path


def load_run_results(paths: list[Path]) -> list[dict[str, Any]]:
    """Every RunResult JSON in the given files/folders (recursively), validated.

    Raises:
        ResultSchemaError: a file is not valid JSON or not a RunResult (the file is named).
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.rglob("*.json"))
        elif p.is_file():
            files.append(p)
        else:
            raise ResultSchemaError(f"{p}: no such file or folder")
    results = []
    for f in files:
        try:
            data = json.loads(f.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ResultSchemaError(f"{f}: not valid JSON ({err})") from err
        validate_run_result(data, source=str(f))
        results.append(data)
    return results
