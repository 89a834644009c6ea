"""`ackd-bench run`, `methods` and `table` from the command line, on a tiny synthetic dataset."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from ackd_bench.benchmark.cli import main
from ackd_bench.benchmark.results import load_run_results


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ACKD_BENCH_CACHE", str(tmp_path / "cache"))


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_run_two_seeds_then_table(tiny, tmp_path):
    out = tmp_path / "results"
    res = _run("run", "--method", "kd", "--arch", "resnet18", "--dataset", tiny, "--profile", "smoke",
               "--seeds", "0,1", "--epochs", "2", "--device", "cpu", "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    results = load_run_results([out])
    assert sorted(r["seed"] for r in results) == [0, 1]
    assert {r["method"]["name"] for r in results} == {"kd"}
    assert all(r["protocol"]["pairing"].startswith("random-same-class") for r in results)
    assert not list((out / "checkpoints").glob("*.pt"))  # finished runs leave no checkpoint
    table = _run("table", out, "--format", "json")
    assert table.exit_code == 0, table.output
    rows = json.loads(table.output)
    kd = [r for r in rows if r["method"] == "kd"]
    assert kd and kd[0]["n"] == 2
    png = tmp_path / "t.png"
    assert _run("table", out, "--plot", png).exit_code == 0 and png.stat().st_size > 5000


def test_methods_lists_every_baseline():
    res = _run("methods")
    assert res.exit_code == 0
    for name in ("student-only", "kd", "logits", "rkd", "dkd", "ctkd", "lskd", "c2kd", "distilvpr"):
        assert f"\n{name} " in "\n" + res.output


def test_methods_options_lists_each_option_with_its_default_and_description():
    import dataclasses

    from ackd_bench.benchmark.method import get_method_class
    from ackd_bench.sembridge.method import SemBridgeOptions

    res = _run("methods", "sembridge+dkd", "--options")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    # Every option of the flat Config (SemBridge's, then DKD's), in order, as `-o` would spell its default.
    config = get_method_class("sembridge+dkd").Config
    shown = [line.split(" = ")[0].strip() for line in lines if " = " in line]
    assert shown == [f.name for f in dataclasses.fields(config)]
    assert "    ssm = true  (bool)" in "\n".join(lines)
    assert any(line.strip() == "warmup_epochs = null  (int | None)" for line in lines)
    # A description comes from the Attributes entry of SemBridgeOptions' docstring, continuation lines joined.
    after_dynm = lines[next(i for i, line in enumerate(lines) if line.strip().startswith("dynm = ")) + 1]
    assert after_dynm.strip().startswith("DynM re-matching at the curriculum epochs")
    assert "dynm" in (SemBridgeOptions.__doc__ or "")
    # The listed names are the ones `run -o` accepts: an option of SemBridge's refuses a method without it.
    res = _run("run", "--method", "kd", "--arch", "resnet18", "-o", "dynm=false", "--dataset", "nowhere")
    assert res.exit_code == 1 and "method 'kd' has no option(s) dynm; its options: temperature" in res.output


def test_run_bad_inputs(tiny, tmp_path, monkeypatch):
    res = _run("run", "--method", "nope", "--arch", "resnet18", "--dataset", tiny, "--out", tmp_path)
    assert res.exit_code != 0 and "known methods" in res.output and "dkd" in res.output
    res = _run("run", "--method", "kd", "--arch", "resnet35", "--dataset", tiny, "--out", tmp_path,
               "--profile", "smoke", "--device", "cpu")
    assert res.exit_code != 0 and "resnet34" in res.output
    res = _run("run", "--method", "kd", "--arch", "resnet18", "--dataset", tmp_path / "missing", "--out", tmp_path)
    assert res.exit_code != 0 and "build-dataset" in res.output
    res = _run("run", "--method", "kd", "--arch", "resnet18", "--dataset", tiny, "--seeds", "a,b")
    assert res.exit_code != 0 and "seeds" in res.output
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = _run("run", "--method", "kd", "--arch", "resnet18", "--dataset", tiny, "--device", "cuda", "--out", tmp_path)
    assert res.exit_code != 0 and "no CUDA device" in res.output
    res = _run("run", "--method", "dkd", "--arch", "resnet18", "--dataset", tiny, "--option", "nonsense=1",
               "--out", tmp_path, "--device", "cpu")
    assert res.exit_code != 0 and "nonsense" in res.output
    assert not list(tmp_path.glob("*.json"))  # nothing was written by failed runs


def test_table_without_results_is_an_error(tmp_path):
    res = _run("table", tmp_path)
    assert res.exit_code != 0 and "no RunResult" in res.output


def test_results_carry_test_predictions_that_reproduce_the_metrics(tiny, tmp_path):
    """Every RunResult pins its per-sample test predictions (sha256); the OA recomputes from them."""
    import hashlib

    import numpy as np

    from ackd_bench.benchmark.dataset import load_dataset
    from ackd_bench.benchmark.protocol import classification_metrics

    out = tmp_path / "results"
    res = _run("run", "--method", "student-only", "--arch", "resnet18", "--dataset", tiny, "--profile", "smoke",
               "--epochs", "1", "--device", "cpu", "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    (result,) = load_run_results([out])
    pred = result["predictions"]
    pairs = [[s, p] for s, p in zip(pred["sample_ids"], pred["predicted"])]
    assert pred["sha256"] == hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()
    ds = load_dataset(tiny)
    test = ds.samples[(ds.samples["modality"] == "rgb") & (ds.samples["split"] == "test")]
    truth = dict(zip(test["sample_id"], test["label"]))
    assert set(pred["sample_ids"]) == set(truth)
    y_true = np.array([truth[s] for s in pred["sample_ids"]])
    metrics = classification_metrics(y_true, np.array(pred["predicted"]), len(ds.classes))
    assert metrics["oa"] == result["metrics"]["test"]["oa"]
    assert metrics["confusion"] == result["metrics"]["test"]["confusion"]
