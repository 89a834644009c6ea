"""``run --log-dir``: TensorBoard event files with the numbers the RunResult holds (issue 17, item 4)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ackd_bench.benchmark.cli import main
from ackd_bench.benchmark.results import load_run_results


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ACKD_BENCH_CACHE", str(tmp_path / "cache"))


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_event_files_hold_the_run_results_history(tiny, tmp_path):
    pytest.importorskip("tensorboard")
    out, logs = tmp_path / "results", tmp_path / "runs"
    res = _run("run", "--method", "kd", "--arch", "resnet18", "--dataset", tiny, "--profile", "smoke",
               "--seeds", "0,1", "--epochs", "3", "--device", "cpu", "--out", out, "--log-dir", logs, "--quiet")
    assert res.exit_code == 0, res.output
    results = {r["seed"]: r for r in load_run_results([out])}
    assert sorted(p.name for p in logs.iterdir()) == sorted(r["run_id"] for r in results.values())
    for result in results.values():
        scalars = _scalars(logs / result["run_id"])
        history = result["diagnostics"]["history"]
        assert [step for step, _ in scalars["val/oa"]] == [0, 1, 2]
        # Event values are float32: equal to the RunResult's numbers to float32 rounding.
        assert [v for _, v in scalars["val/oa"]] == pytest.approx([row["val_oa"] for row in history], rel=1e-6)
        for term in ("ce", "kd"):
            assert [v for _, v in scalars[f"train/{term}"]] == pytest.approx([row[term] for row in history], rel=1e-6)
        assert all(v > 0 for _, v in scalars["time/train_s"]) and len(scalars["time/epoch_s"]) == 3


def test_log_dir_problems_are_usage_errors(tiny, tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    res = _run("run", "--method", "kd", "--arch", "resnet18", "--dataset", tiny, "--out", tmp_path / "r",
               "--log-dir", afile)
    assert res.exit_code == 2 and "is a file" in res.output
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    res = _run("run", "--method", "kd", "--arch", "resnet18", "--dataset", tiny, "--out", tmp_path / "r",
               "--log-dir", tmp_path / "runs")
    assert res.exit_code == 2 and "pip install 'ackd-bench[tensorboard]'" in res.output
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())  # nothing trained
