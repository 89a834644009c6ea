"""A small leaderboard directory for the render tests: four submissions on two datasets, some hostile fields."""

from __future__ import annotations

import json
from pathlib import Path

EUROSAT = {"name": "eurosat-demo", "version": "1.0.0", "fingerprint": "a1" * 32}
BIGEARTH = {"name": "bigearth-demo", "version": "2.1.0", "fingerprint": "b2" * 32}

XSS_NAME = "<img src=x onerror=alert(1)>"


def _submission(sid: str, dataset: dict, *, method: str, label: str, oa: list[float], submitter: dict,
                created: str, student: str = "resnet18") -> dict:
    n = len(oa)
    mean = sum(oa) / n
    std = (sum((x - mean) ** 2 for x in oa) / (n - 1)) ** 0.5
    return {
        "format": "ackd-bench-submission", "format_version": 1, "id": sid, "created": created,
        "submitter": {"licence": "CC-BY-4.0", **submitter},
        "method": {"name": method, "label": label},
        "teacher_arch": "resnet50", "student_arch": student,
        "dataset": dataset,
        "protocol": {"profile": "fast"},
        "runs": [{"seed": s, "method": method, "metrics": {"test": {"oa": x}}} for s, x in enumerate(oa)],
        "summary": {"seeds": list(range(n)), "oa_mean": mean, "oa_std": std,
                    "oa_ci_low": min(oa), "oa_ci_high": max(oa), "macro_f1_mean": mean - 0.01},
    }


def submissions() -> list[dict]:
    """Four submissions: three on EuroSAT (ranked sembridge > dkd > hostile kd), one on BigEarth.

    The hostile one has the narrowest CI but the lowest mean, and the widest one ranks second, so
    that sorting by OA and by CI (lower bound) give different orders.
    """
    return [
        _submission("sub-dkd", EUROSAT, method="dkd", label="DKD | \"decoupled\" <b>KD</b>",
                    oa=[0.820, 0.880, 0.850],
                    submitter={"name": "Ana & Bo", "affiliation": "Uni `Tick`",
                               "code_url": "https://example.org/dkd?a=1&b=2", "paper_url": "http://insecure.example/p"},
                    created="2026-01-05T10:00:00Z"),
        _submission("sub-sembridge", EUROSAT, method="sembridge", label="SemBridge",
                    oa=[0.860, 0.870, 0.865],
                    submitter={"name": "Cleo", "affiliation": "Lab", "code_url": "https://example.org/sb",
                               "paper_url": "https://arxiv.org/abs/2501.00001"},
                    created="2026-02-01T08:30:00Z"),
        _submission("sub-xss", EUROSAT, method="kd", label=XSS_NAME,
                    oa=[0.840, 0.841, 0.842],
                    submitter={"name": "<script>alert(2)</script>", "affiliation": "\"><svg onload=alert(3)>",
                               "code_url": "javascript:alert(4)", "paper_url": ""},
                    created="2026-03-01T00:00:00Z", student="mobilenetv3"),
        _submission("sub-big", BIGEARTH, method="kd", label="Vanilla KD",
                    oa=[0.700, 0.720],
                    submitter={"name": "Dee", "affiliation": "", "code_url": "", "paper_url": ""},
                    created="2026-01-20T12:00:00Z"),
    ]


def write_board(root: Path, subs: list[dict] | None = None) -> Path:
    """Write a board directory (submissions/*.json, datasets.json) under ``root``; returns it."""
    (root / "submissions").mkdir(parents=True, exist_ok=True)
    for sub in submissions() if subs is None else subs:
        (root / "submissions" / f"{sub['id']}.json").write_text(json.dumps(sub, indent=2), encoding="utf-8")
    datasets = [{**EUROSAT, "description": "demo"}, {**BIGEARTH, "description": "demo"}]
    (root / "datasets.json").write_text(json.dumps(datasets, indent=2), encoding="utf-8")
    return root


# Valid submissions without training: made-up runs of one method on a board's dataset, with seeded
# random test predictions and every metric computed from them, packed by `ackd-bench leaderboard pack`.
FAKE_PROTOCOL = {"profile": "smoke", "epochs": 1, "teacher_epochs": 1, "batch_size": 64, "lr": 0.001,
                 "optimizer": "adam", "selection": "best val OA; test evaluated once",
                 "pairing": "random-same-class-per-epoch", "student_px": 16, "teacher_px": 16,
                 "max_train_per_class": 48}


def fake_runs(entry: dict, out: Path, *, variant: int, seeds: tuple[int, ...] = (0, 1, 2)) -> Path:
    """Write one RunResult per seed of method "kd" on a board dataset (a datasets.json entry) to ``out``.

    Predictions are random (seeded by ``variant`` and seed), so each variant packs into a
    submission with its own runs; the metrics are computed from the predictions and true labels.
    """
    import numpy as np

    from ackd_bench.benchmark.protocol import classification_metrics
    from ackd_bench.benchmark.runner import test_predictions

    out.mkdir(parents=True, exist_ok=True)
    ids = sorted(entry["test_labels"])
    y_true = np.array([entry["test_labels"][s] for s in ids], dtype=np.int64)
    n_classes = len(entry["classes"])
    for seed in seeds:
        y_pred = np.random.default_rng([variant, seed]).integers(0, n_classes, len(ids))
        metrics = classification_metrics(y_true, y_pred, n_classes)
        run = {
            "schema_version": 1, "run_id": f"fake-v{variant}-seed{seed}", "created": "2026-01-01T00:00:00+00:00",
            "method": {"name": "kd", "label": "kd", "config": {"temperature": 4.0}},
            "teacher": {"arch": "resnet18", "checkpoint_sha256": "0" * 64, "metrics": {}},
            "student": {"arch": "resnet18"},
            "dataset": {"name": entry["name"], "version": entry["version"], "fingerprint": entry["fingerprint"],
                        "classes": entry["classes"], "split": "spatial-blocks"},
            "seed": seed, "protocol": FAKE_PROTOCOL,
            "metrics": {"val": metrics, "test": metrics, "selected_epoch": 0},
            "diagnostics": {}, "timing": {"total_s": 1.0, "step_s": 0.1},
            "environment": {"python": "3.11", "torch": "2", "timm": "1", "ackd_bench": "0.1.0", "device": "cpu"},
            "predictions": test_predictions(ids, y_pred.tolist()),
        }
        (out / f"seed{seed}.json").write_text(json.dumps(run), encoding="utf-8")
    return out


def fake_bundles(board: Path, out: Path, n: int) -> list[Path]:
    """``n`` valid, distinct submissions (ids ``fake-0``, ``fake-1``, …) for ``board``'s first dataset."""
    from ackd_bench.leaderboard.submission import pack

    entry = json.loads((board / "datasets.json").read_text(encoding="utf-8"))[0]
    return [pack(fake_runs(entry, out / f"runs{k}", variant=k), out=out / f"fake-{k}.json", name=f"Tester {k}",
                 affiliation="Lab", code_url="https://example.org/code", licence="CC-BY-4.0",
                 submission_id=f"fake-{k}") for k in range(n)]
