"""RunResult: one JSON per (dataset, teacher arch, student arch, method, seed) — schema, write, load."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ackd_bench.benchmark.dataset.files import atomic_write_text
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


class ResultIntegrityError(ResultSchemaError):
    """A RunResult's stated metrics disagree with its own evidence (confusion matrix, test predictions)."""


# Metrics are written unrounded: json.dumps writes the shortest text that reads back as the same
# float64, so a metric recomputed from the run's confusion matrix differs from the stated one by
# float summation order at most (< 1e-13 for any class count below 1000). The bound sits far above
# that and far below anything a table shows (0.1 points = 1e-3 as a fraction).
METRIC_TOLERANCE = 1e-9
# The stated metrics recomputed from the evidence, headline first (the first disagreement is named).
RECOMPUTED_METRICS = ("oa", "macro_f1", "macro_precision", "macro_recall", "per_class_accuracy", "n")
EDITED = "the file was edited or is corrupt; restore it or rerun the run"


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

    Every run's stated metrics are checked against its own evidence (:func:`verify_run_metrics`).

    Raises:
        ResultSchemaError: a file is not valid JSON or not a RunResult (the file is named).
        ResultIntegrityError: a file's stated metrics disagree with its confusion matrix or predictions.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.rglob("*.json"))
        elif p.is_file():
            files.append(p)
        else:
            raise ResultSchemaError(f"{p}: no such file or folder")
    from ackd_bench.benchmark.boundary import InputError, load_file

    results = []
    for f in files:
        try:
            data = load_file(f, what="result")  # size and depth limits, no NaN
        except InputError as err:
            raise ResultSchemaError(str(err)) from err
        validate_run_result(data, source=str(f))
        verify_run_metrics(data, source=str(f))
        results.append(data)
    return results


def predictions_sha256(sample_ids: list, predicted: list) -> str:
    """sha256 of the canonical JSON of ``[[sample_id, class], ...]`` in the order given."""
    import hashlib

    pairs = [[str(s), int(p)] for s, p in zip(sample_ids, predicted, strict=True)]
    return hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()


def verify_run_metrics(result: dict[str, Any], *, source: str = "result",
                       labels: dict[str, int] | None = None) -> None:
    """Recompute a valid RunResult's stated metrics from its own evidence; refuse any disagreement.

    Val and test metrics (OA, macro F1/precision/recall, per-class accuracy, n) are recomputed
    from their confusion matrices. Where the run carries test predictions, they must match their
    sha256, and the test confusion matrix must agree with them: with ``labels`` (``{sample_id:
    true class}`` of the dataset's test chips) it is recomputed from them; without, its column
    sums must be the predicted count of each class and its total the number of predictions. A run
    without predictions (written before ackd-bench recorded them) is checked against its
    confusion matrix only. A teacher score is checked where the run records the teacher's
    confusion matrix (``teacher.metrics.{split}_confusion``). Agreement is within
    :data:`METRIC_TOLERANCE`.

    Raises:
        ResultIntegrityError: the first disagreement, naming ``source``, the field, the stated and
            the recomputed value.
    """
    import numpy as np

    from ackd_bench.benchmark.protocol import classification_metrics

    n_classes = len(result["dataset"]["classes"])
    for split in ("val", "test"):
        stated = result["metrics"][split]
        where = f"metrics.{split}"
        cm = _confusion(stated["confusion"], n_classes, source, f"{where}.confusion")
        evidence = "confusion matrix"
        if split == "test" and "predictions" in result:
            truth = _check_predictions(result, cm, source, labels)
            if truth is not None:
                y_true, y_pred = truth
                evidence = "predictions and the dataset's labels"
                recomputed = classification_metrics(y_true, y_pred, n_classes)
                if recomputed["confusion"] != cm.tolist():
                    raise ResultIntegrityError(f"{source}: stated {where}.confusion disagrees with its {evidence}; "
                                               f"{EDITED}")
        recomputed = classification_metrics(np.repeat(np.arange(n_classes), cm.sum(axis=1)),
                                            np.concatenate([np.repeat(np.arange(n_classes), row) for row in cm]),
                                            n_classes)
        for key in RECOMPUTED_METRICS:
            _agree(stated[key], recomputed[key], source, f"{where}.{key}", evidence)
    teacher = result["teacher"]["metrics"]
    for split in ("val", "test"):
        if f"{split}_confusion" in teacher and f"{split}_oa" in teacher:
            cm = _confusion(teacher[f"{split}_confusion"], n_classes, source, f"teacher.metrics.{split}_confusion")
            _agree(teacher[f"{split}_oa"], float(np.trace(cm) / max(cm.sum(), 1)), source,
                   f"teacher.metrics.{split}_oa", "teacher's confusion matrix")


def _confusion(value: Any, n_classes: int, source: str, where: str):
    """The confusion matrix as an (K, K) int64 array; non-negative integer counts only."""
    import numpy as np

    ok = (isinstance(value, list) and len(value) == n_classes
          and all(isinstance(row, list) and len(row) == n_classes for row in value)
          and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for row in value for c in row))
    if not ok:
        raise ResultIntegrityError(f"{source}: {where} must be {n_classes}×{n_classes} non-negative counts; {EDITED}")
    return np.array(value, dtype=np.int64).reshape(n_classes, n_classes)


def _check_predictions(result: dict[str, Any], cm, source: str, labels: dict[str, int] | None):
    """Check the test predictions against their hash and ``cm``; with ``labels``, return (y_true, y_pred)."""
    import numpy as np

    pred = result["predictions"]
    ids, predicted = (pred.get("sample_ids"), pred.get("predicted")) if isinstance(pred, dict) else (None, None)
    if not (isinstance(ids, list) and isinstance(predicted, list) and len(ids) == len(predicted)
            and len(set(map(str, ids))) == len(ids)):
        raise ResultIntegrityError(
            f"{source}: predictions must give one class per test chip, each chip once "
            f"(predictions.sample_ids and .predicted); {EDITED}")
    n_classes = cm.shape[0]
    if not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p < n_classes for p in predicted):
        raise ResultIntegrityError(f"{source}: predictions.predicted holds a class outside 0..{n_classes - 1}; "
                                   f"{EDITED}")
    if pred.get("sha256") != predictions_sha256(ids, predicted):
        raise ResultIntegrityError(f"{source}: predictions.sha256 does not match the predictions; {EDITED}")
    stated_n = result["metrics"]["test"]["n"]
    if stated_n != len(predicted):
        raise ResultIntegrityError(f"{source}: stated metrics.test.n {stated_n} disagrees with its predictions "
                                   f"({len(predicted)}); {EDITED}")
    counts = np.bincount(np.asarray(predicted, dtype=np.int64), minlength=n_classes)
    if cm.sum(axis=0).tolist() != counts.tolist():
        raise ResultIntegrityError(
            f"{source}: stated metrics.test.confusion disagrees with its predictions (predicted per class "
            f"{counts.tolist()}, confusion column sums {cm.sum(axis=0).tolist()}); {EDITED}")
    if labels is None:
        return None
    unknown = [str(s) for s in ids if str(s) not in labels]
    if unknown or len(ids) != len(labels):
        example = f"e.g. {unknown[0]!r} is not one" if unknown else f"{len(labels) - len(ids)} missing"
        raise ResultIntegrityError(f"{source}: its predictions cover other test chips than the dataset's "
                                   f"{len(labels)} ({example}); was it made on another build of the dataset?")
    return (np.array([labels[str(s)] for s in ids], dtype=np.int64), np.asarray(predicted, dtype=np.int64))


def _agree(stated: Any, recomputed: Any, source: str, where: str, evidence: str) -> None:
    """Raise ResultIntegrityError unless ``stated`` is ``recomputed`` within METRIC_TOLERANCE (lists elementwise)."""
    if isinstance(recomputed, list):
        if not isinstance(stated, list) or len(stated) != len(recomputed):
            count = len(stated) if isinstance(stated, list) else "no"
            raise ResultIntegrityError(f"{source}: stated {where} has {count} entries, its {evidence} "
                                       f"{len(recomputed)}; {EDITED}")
        for i, (a, b) in enumerate(zip(stated, recomputed)):
            _agree(a, b, source, f"{where}[{i}]", evidence)
        return
    ok = (isinstance(stated, (int, float)) and not isinstance(stated, bool)
          and abs(stated - recomputed) <= METRIC_TOLERANCE)
    if not ok:
        shown = f"{stated:.10g}" if isinstance(stated, float) else repr(stated)
        raise ResultIntegrityError(f"{source}: stated {where} {shown} disagrees with its {evidence} "
                                   f"({recomputed:.10g}); {EDITED}")
