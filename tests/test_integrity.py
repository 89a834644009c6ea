"""Silent wrongs refused: edited metrics in RunResults, resuming under another protocol, one-class data."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_table import CHIPS, FP_A, N_CLASSES, TRUTH, make_result, pin, predictions_for  # the RunResult factory

from ackd_bench.benchmark.checkpoints import CheckpointError
from ackd_bench.benchmark.cli import main
from ackd_bench.benchmark.compare import compare
from ackd_bench.benchmark.data import DataError, load_modality
from ackd_bench.benchmark.dataset import load_dataset, write_dataset
from ackd_bench.benchmark.dataset.synthetic import make_synthetic_dataset_inputs
from ackd_bench.benchmark.method import DataInfo
from ackd_bench.benchmark.models import create_classifier
from ackd_bench.benchmark.protocol import classification_metrics, get_profile
from ackd_bench.benchmark.results import (
    METRIC_TOLERANCE,
    ResultIntegrityError,
    load_run_results,
    write_run_result,
)
from ackd_bench.benchmark.table import aggregate, render_table
from ackd_bench.benchmark.teacher import get_teacher
from ackd_bench.benchmark.train import Supervised, TrainingError, fit

DEMO_V2 = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "demo_v2"
ARCH = "shufflenet_v2_x0_5"  # small: checkpoints of a few MB, not resnet18's 180 MB


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_error(res) -> str:
    assert res.exit_code == 1, res.output
    text = res.output.strip()
    assert "\n" not in text and "Traceback" not in text and "Aborted" not in text, text
    return text


# --- 1. table and compare recompute what they show ----------------------------------------------------------------

def pinned(**kw) -> dict:
    """A factory RunResult with test predictions and metrics that agree with them."""
    oa = kw.pop("oa", 0.8)
    return pin(make_result(oa=oa, **kw), predictions_for(oa))


def test_committed_reference_runs_still_load():
    files = sorted(DEMO_V2.glob("*.json"))
    runs = load_run_results([DEMO_V2])  # every metric recomputed; none refused
    assert len(runs) == len(files) >= 35 and all("predictions" in r for r in runs)


def test_table_refuses_a_committed_run_whose_oa_was_edited(tmp_path):
    for f in DEMO_V2.glob("*__seed0.json"):
        shutil.copy(f, tmp_path / f.name)
    edited = next(tmp_path.glob("*__kd__seed0.json"))
    data = json.loads(edited.read_text())
    true_oa = data["metrics"]["test"]["oa"]
    data["metrics"]["test"]["oa"] = 0.99
    edited.write_text(json.dumps(data))
    line = _one_line_error(_run("table", tmp_path))
    assert f"{edited}: stated metrics.test.oa 0.99 disagrees with its confusion matrix ({true_oa:.10g})" in line
    assert "edited or is corrupt" in line


def _set(path: str, value):
    """An edit replacing the field at dotted ``path`` (numbers index lists) by ``value(old value)``."""
    def edit(r):
        *keys, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        node = r
        for k in keys:
            node = node[k]
        node[last] = value(node[last])
        return r
    return edit


def _confusion_moved_within_a_row(r):
    """A forger who moves a wrong chip onto the diagonal and restates every metric from the forged matrix."""
    cm = np.array(r["metrics"]["test"]["confusion"])
    assert cm[3, 0] > 0  # the factory's wrong chips: class 3 taken for class 0
    cm[3, 0] -= 1
    cm[3, 3] += 1
    y_true = np.repeat(np.arange(N_CLASSES), cm.sum(axis=1))
    y_pred = np.concatenate([np.repeat(np.arange(N_CLASSES), row) for row in cm])
    r["metrics"]["test"] = classification_metrics(y_true, y_pred, N_CLASSES)
    return r


def _teacher_confusion(r):
    r["teacher"]["metrics"] = {"test_oa": 0.95, "test_confusion": classification_metrics(
        TRUTH, predictions_for(0.9), N_CLASSES)["confusion"]}
    return r


@pytest.mark.parametrize(("edit", "message"), [
    (_set("metrics.test.oa", lambda v: 0.99), r"stated metrics\.test\.oa 0\.99 disagrees with its confusion matrix "
                                              r"\(0\.8\)"),
    (_set("metrics.val.macro_f1", lambda v: v + 0.01), r"stated metrics\.val\.macro_f1 .* confusion matrix"),
    (_set("metrics.test.per_class_accuracy.3", lambda v: 1.0), r"stated metrics\.test\.per_class_accuracy\[3\] 1"),
    (_set("metrics.test.n", lambda v: 101), r"stated metrics\.test\.n 101 disagrees with its predictions \(100\)"),
    (_set("metrics.test.confusion.0.0", lambda v: -1), r"metrics\.test\.confusion must be 4×4 non-negative counts"),
    (_confusion_moved_within_a_row, r"stated metrics\.test\.confusion disagrees with its predictions"),
    (_set("predictions.predicted.99", lambda v: (v + 1) % N_CLASSES), r"predictions\.sha256 does not match"),
    (_teacher_confusion, r"stated teacher\.metrics\.test_oa 0\.95 disagrees with its teacher's confusion matrix"),
])
def test_an_edited_field_is_named(edit, message):
    aggregate([pinned()])  # the honest run passes
    with pytest.raises(ResultIntegrityError, match=r"run '.*': " + message + ".*edited or is corrupt"):
        aggregate([edit(pinned())])


def test_the_bound_is_float_noise_not_an_edit(tmp_path):
    noise = pinned()
    noise["metrics"]["test"]["macro_f1"] += METRIC_TOLERANCE / 10  # another summation order, at most
    aggregate([noise])
    edit = pinned()
    edit["metrics"]["test"]["macro_f1"] += 1e-6  # far below the table's 0.1 points, still refused
    with pytest.raises(ResultIntegrityError, match="macro_f1"):
        aggregate([edit])
    # Written unrounded, a run reads back as the very same floats.
    path = write_run_result(tmp_path, pinned())
    assert load_run_results([path])[0]["metrics"] == pinned()["metrics"]


def test_a_run_without_predictions_is_checked_against_its_confusion_and_marked():
    old = make_result(seed=0, oa=0.7)  # as written before runs recorded their predictions
    rows = aggregate([old, pinned(seed=1, oa=0.8)])
    (row,) = [r for r in rows if r["kind"] == "method"]
    assert row["unpinned_seeds"] == [0] and row["mean"] == pytest.approx(75.0)
    assert "Unpinned: 1 run(s) of kd carry no per-chip test predictions" in render_table(rows, "md")
    assert "Unpinned" not in render_table(aggregate([pinned(seed=1)]), "md")
    old["metrics"]["test"]["oa"] = 0.99
    with pytest.raises(ResultIntegrityError, match=r"metrics\.test\.oa 0\.99 disagrees with its confusion matrix"):
        aggregate([old])


def test_compare_checks_the_confusion_against_the_true_labels():
    """Two chips' labels swapped: the margins, so every check the table can make, still agree."""
    labels = dict(zip(CHIPS, TRUTH.tolist()))
    base = pin(make_result(method="student-only"), TRUTH.copy())
    predicted = TRUTH.copy()
    predicted[[0, 25]] = [1, 0]  # a class-0 chip taken for 1, a class-1 chip for 0: 98 %
    honest = pin(make_result(method="kd"), predicted)
    (row,) = compare([base, honest], "student-only", labels=labels, fingerprint=FP_A)
    assert row["delta"] == pytest.approx(-2.0)
    forged = copy.deepcopy(honest)
    claimed_truth = predicted.copy()  # as if those two chips were right: 100 %
    forged["metrics"]["test"] = classification_metrics(claimed_truth, predicted, N_CLASSES)
    aggregate([forged])  # without the labels nothing tells
    with pytest.raises(ResultIntegrityError, match=r"run '.*kd.*': stated metrics\.test\.confusion disagrees with "
                                                   r"its predictions and the dataset's labels"):
        compare([base, forged], "student-only", labels=labels, fingerprint=FP_A)


# --- 2. --resume continues only the run it was started as ---------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    manifest, samples, arrays = make_synthetic_dataset_inputs(1, per_class_split=4, ms_px=16, rgb_px=32)
    return write_dataset(tmp_path_factory.mktemp("tiny") / "ds", manifest=manifest, samples=samples, arrays=arrays)


@pytest.fixture(scope="module")
def rgb(tiny):
    return load_modality(load_dataset(tiny), "rgb", torch.device("cpu"))


def _profile(name="smoke", **kw):
    return get_profile(name, teacher_px=16, student_px=16, batch_size=8, **kw)


def _fit(rgb, checkpoint, *, profile=None, resume=False, epochs=1, seed=0, protocol=None):
    info = DataInfo(n_classes=3, student_channels=3, teacher_channels=10, class_names=("a", "b", "c"), epochs=epochs)
    method = Supervised(create_classifier(ARCH, 3, 3, seed=0), info)
    return fit(method, rgb, None, profile or _profile(), seed=seed, student_px=16, teacher_px=16, epochs=epochs,
               checkpoint=checkpoint, resume=resume, progress=False,
               protocol=protocol or {"teacher_arch": ARCH, "dataset_fingerprint": FP_A})


@pytest.fixture(scope="module")
def one_epoch(rgb, tmp_path_factory) -> Path:
    """A checkpoint after 1 epoch of the default protocol (copy it before use)."""
    path = tmp_path_factory.mktemp("ckpt") / "one_epoch.pt"
    _fit(rgb, path)
    return path


@pytest.mark.parametrize(("change", "message"), [
    ({"profile": _profile("fast")}, r"profile: 'smoke' in the checkpoint, 'fast' now"),
    ({"profile": _profile(precision="bf16")}, r"precision: 'fp32' in the checkpoint, 'bf16' now"),
    ({"seed": 1}, r"seed: 0 in the checkpoint, 1 now"),
    ({"protocol": {"teacher_arch": "resnet34", "dataset_fingerprint": FP_A}},
     r"teacher_arch: 'shufflenet_v2_x0_5' in the checkpoint, 'resnet34' now"),
])
def test_resume_under_another_protocol_is_refused(rgb, one_epoch, tmp_path, change, message):
    ckpt = Path(shutil.copy(one_epoch, tmp_path / "run.pt"))
    with pytest.raises(CheckpointError, match=f"checkpoint {re.escape(str(ckpt))} was written under another protocol "
                                              f"\\(.*{message}.*\\); run without --resume"):
        _fit(rgb, ckpt, resume=True, epochs=2, **change)


def test_resume_under_the_same_protocol_continues(rgb, one_epoch, tmp_path):
    ckpt = Path(shutil.copy(one_epoch, tmp_path / "run.pt"))
    assert len(_fit(rgb, ckpt, resume=True, epochs=2).history) == 2


@pytest.mark.parametrize(("content", "message"), [
    (lambda real: b"", "is empty or not a checkpoint"),
    (lambda real: b"\x80", "is empty or not a checkpoint"),
    (lambda real: b"garbage, not a checkpoint\n" * 10, "is empty or not a checkpoint"),
    (lambda real: real.read_bytes()[:2000], "is empty or not a checkpoint"),  # truncated
    (lambda real: [1, 2], "is not an ackd-bench training checkpoint"),
    (lambda real: {k: v for k, v in torch.load(real, weights_only=True).items() if k != "protocol"},
     r"records no protocol \(an older ackd-bench wrote it\)"),
])
def test_a_damaged_checkpoint_is_one_clear_error(rgb, one_epoch, tmp_path, content, message):
    ckpt = tmp_path / "run.pt"
    data = content(one_epoch)
    if isinstance(data, bytes):
        ckpt.write_bytes(data)
    else:
        torch.save(data, ckpt)
    with pytest.raises(CheckpointError, match=f"checkpoint {re.escape(str(ckpt))} {message}.*run without --resume"):
        _fit(rgb, ckpt, resume=True)


def test_cli_resume_under_another_profile_is_refused(tiny, cache, tmp_path, monkeypatch):
    """The issue's case: a smoke checkpoint resumed under --profile fast; then resumed as it began."""
    import ackd_bench.benchmark.runner as runner
    from ackd_bench.benchmark.errors import AckdBenchError

    out = tmp_path / "results"
    flags = ["run", "--method", "kd", "--arch", ARCH, "--dataset", tiny, "--epochs", "1", "--device", "cpu",
             "--out", out, "--quiet"]

    def disk_full(*args, **kwargs):
        raise AckdBenchError("disk full")

    with monkeypatch.context() as m:  # the run stops after training: its checkpoint stays
        m.setattr(runner, "write_run_result", disk_full)
        assert _one_line_error(_run(*flags, "--profile", "smoke")).endswith("disk full")
    (ckpt,) = (out / "checkpoints").glob("*.pt")
    line = _one_line_error(_run(*flags, "--profile", "fast", "--resume"))
    assert f"checkpoint {ckpt} was written under another protocol (profile: 'smoke' in the checkpoint, 'fast' " \
           "now" in line
    assert "run without --resume" in line
    assert [t.stem for t in cache.rglob("*.safetensors")] == [f"{ARCH}__seed0__smoke"]  # refused before any teacher
    res = _run(*flags, "--profile", "smoke", "--resume")
    assert res.exit_code == 0, res.output
    (result,) = load_run_results([out])
    assert result["protocol"]["profile"] == "smoke" and not ckpt.exists()
    ckpt.parent.mkdir(exist_ok=True)
    ckpt.write_bytes(b"")  # an empty checkpoint: once IndexError / "Aborted!"
    line = _one_line_error(_run(*flags, "--profile", "smoke", "--resume"))
    assert f"checkpoint {ckpt} is empty or not a checkpoint" in line


def test_truncated_teacher_metadata_names_the_file_and_the_fix(tiny, cache):
    ds = load_dataset(tiny)
    ms = load_modality(ds, "ms", torch.device("cpu"))
    prof = _profile(epochs=1, teacher_epochs=1)
    get_teacher(ds, ms, ARCH, 0, prof, progress=False)
    meta = next(cache.rglob("*.json"))
    text = meta.read_text()
    meta.write_text(text[: len(text) // 2])
    with pytest.raises(TrainingError, match=f"teacher metadata {re.escape(str(meta))} is truncated or corrupt "
                                            ".*; delete it to retrain the teacher$"):
        get_teacher(ds, ms, ARCH, 0, prof, progress=False)
    meta.write_text(json.dumps({"arch": ARCH}))
    with pytest.raises(TrainingError, match="lacks dataset_fingerprint"):
        get_teacher(ds, ms, ARCH, 0, prof, progress=False)
    meta.unlink()  # the fix the message gives
    _, again = get_teacher(ds, ms, ARCH, 0, prof, progress=False)
    assert again["arch"] == ARCH and meta.exists()


# --- 3. fewer than two classes is an error before any training ----------------------------------------------------

def _keep(rows, n_classes=None):
    """The tiny dataset's inputs cut down to ``rows`` (a mask over samples), optionally its first classes only."""
    manifest, samples, arrays = make_synthetic_dataset_inputs(1, per_class_split=2, ms_px=16, rgb_px=32)
    kept = samples[rows(samples)].copy()
    for modality in ("ms", "rgb"):
        mine = kept["modality"] == modality
        arrays[modality] = arrays[modality][kept.loc[mine, "array_index"].to_numpy()]
        kept.loc[mine, "array_index"] = np.arange(int(mine.sum()))
    if n_classes:
        manifest["taxonomy"] = manifest["taxonomy"][:n_classes]
    return manifest, kept.reset_index(drop=True), arrays


def test_one_class_dataset_is_refused_before_training(tmp_path, cache):
    manifest, samples, arrays = _keep(lambda s: s["label"] == 0, n_classes=1)
    one = write_dataset(tmp_path / "one", manifest=manifest, samples=samples, arrays=arrays)
    with pytest.raises(DataError, match="has 1 class.*needs at least 2"):
        load_modality(load_dataset(one), "rgb", torch.device("cpu"))
    line = _one_line_error(_run("run", "--method", "kd", "--arch", ARCH, "--dataset", one, "--profile", "smoke",
                                "--device", "cpu", "--out", tmp_path / "results", "--quiet"))
    assert "classification needs at least 2" in line
    assert not list(cache.rglob("*.safetensors")) and not (tmp_path / "results").exists()  # nothing trained


def test_a_split_of_one_class_is_refused(tmp_path):
    manifest, samples, arrays = _keep(lambda s: (s["split"] != "test") | (s["label"] == 2))
    ds = load_dataset(write_dataset(tmp_path / "ds", manifest=manifest, samples=samples, arrays=arrays))
    with pytest.raises(DataError, match="the ms test split holds chips of one class only \\(built_up\\)"):
        load_modality(ds, "ms", torch.device("cpu"))


def test_fit_refuses_fewer_than_two_classes(rgb):
    info = DataInfo(n_classes=1, student_channels=3, teacher_channels=10, class_names=("a",), epochs=1)
    with pytest.raises(TrainingError, match="1 class\\(es\\); classification needs at least 2"):
        fit(Supervised(create_classifier(ARCH, 3, 1, seed=0), info), rgb, None, _profile(), seed=0, student_px=16,
            teacher_px=16, epochs=1, progress=False)
