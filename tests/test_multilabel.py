"""Multi-label teachers: the format's class sets, BCE teacher training, carrying-class pairing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ackd_bench.benchmark.data import load_modality, pair_carrying_class
from ackd_bench.benchmark.dataset import load_dataset, write_dataset
from ackd_bench.benchmark.dataset.synthetic import make_synthetic_dataset_inputs
from ackd_bench.benchmark.errors import DatasetSchemaError
from ackd_bench.benchmark.method import Batch, DataInfo
from ackd_bench.benchmark.models import create_classifier
from ackd_bench.benchmark.protocol import get_profile
from ackd_bench.benchmark.runner import MULTILABEL_POLICY, run_experiment
from ackd_bench.benchmark.train import Supervised


def _multilabel_inputs():
    manifest, samples, arrays = make_synthetic_dataset_inputs(2, per_class_split=4, ms_px=16, rgb_px=32)
    manifest["modalities"]["ms"]["label_type"] = "multi"
    labels = []
    for n, row in enumerate(samples.itertuples()):
        if row.modality != "ms":
            labels.append("")
        else:  # every other MS chip also shows the next class (e.g. a field with a farm house)
            labels.append(json.dumps(sorted({row.label, (row.label + 1) % 3} if n % 2 else {row.label})))
    return manifest, samples.assign(labels=labels), arrays


@pytest.fixture(scope="module")
def multi(tmp_path_factory) -> Path:
    manifest, samples, arrays = _multilabel_inputs()
    return write_dataset(tmp_path_factory.mktemp("ml") / "ds", manifest=manifest, samples=samples, arrays=arrays)


def test_class_sets_load_as_multi_hot(multi):
    ds = load_dataset(multi)
    ms = load_modality(ds, "ms", torch.device("cpu"))
    rgb = load_modality(ds, "rgb", torch.device("cpu"))
    assert rgb.sets is None and ms.sets is not None
    table = ds.samples.set_index("sample_id")
    for i, sid in enumerate(ms.ids["train"]):
        expected = np.zeros(3, dtype=np.float32)
        expected[json.loads(table.loc[sid, "labels"])] = 1
        assert np.array_equal(ms.sets["train"][i].numpy(), expected)
        assert ms.sets["train"][i, ms.y["train"][i]] == 1  # the primary label is in the set


def test_bad_class_sets_are_refused(tmp_path):
    manifest, samples, arrays = _multilabel_inputs()
    row = samples.index[samples["modality"] == "ms"][0]
    samples.loc[row, "labels"] = json.dumps([(int(samples.loc[row, "label"]) + 1) % 3])  # misses its label
    with pytest.raises(DatasetSchemaError, match="containing label"):
        write_dataset(tmp_path / "a", manifest=manifest, samples=samples, arrays=arrays)
    manifest, samples, arrays = _multilabel_inputs()
    with pytest.raises(DatasetSchemaError, match="no 'labels' column"):
        write_dataset(tmp_path / "b", manifest=manifest, samples=samples.drop(columns="labels"), arrays=arrays)


def test_carrying_class_pairing():
    sets = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]], dtype=torch.float32)
    students = torch.tensor([0, 1, 2] * 300)
    idx = pair_carrying_class(students, sets, torch.Generator().manual_seed(0))
    assert (sets[idx, students] == 1).all()
    # Class 1 is carried by teacher 1 (primary class 0) and teacher 3: both are used.
    assert set(idx[students == 1].tolist()) == {1, 3}


def test_teacher_bce_matches_a_numpy_restatement():
    # In float64 (model, chips, class sets): both sides are then float64, and 1e-12 is float64's
    # rounding of a 12-term mean, not a float32 tolerance.
    torch.manual_seed(0)
    model = create_classifier("resnet18", 10, 3, seed=0).double()
    info = DataInfo(n_classes=3, student_channels=10, teacher_channels=10, class_names=("a", "b", "c"), epochs=1)
    sup = Supervised(model, info).eval()
    x = torch.randn(4, 10, 16, 16, dtype=torch.float64)
    sets = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]], dtype=torch.float64)
    batch = Batch(student_x=x, labels=sets.argmax(1), teacher_x=torch.empty(0), index=torch.arange(4),
                  teacher_index=torch.arange(4), epoch=0, progress=0.0, label_sets=sets)
    loss = sup.losses(batch)["bce"]
    assert loss.dtype == torch.float64
    z = model(x).logits.detach().numpy()
    y = sets.numpy()
    expected = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_run_with_a_multilabel_teacher(multi, tmp_path, monkeypatch):
    monkeypatch.setenv("ACKD_BENCH_CACHE", str(tmp_path / "cache"))
    prof = get_profile("smoke", teacher_px=16, student_px=16, batch_size=8, epochs=2, teacher_epochs=2)
    (result,) = run_experiment(multi, method="dkd", arch="resnet18", teacher_arch=None, seeds=[0], profile=prof,
                               device="cpu", out=tmp_path / "out", progress=False)
    assert result["protocol"]["pairing"] == MULTILABEL_POLICY
    meta = json.loads(next((tmp_path / "cache").rglob("*.json")).read_text())
    assert meta["loss"] == "bce"


def test_sembridge_with_a_multilabel_teacher_matches_among_carriers(multi, tmp_path, monkeypatch):
    """M2S: every SSM and DynM partner carries its student's class, and a full run works."""
    from ackd_bench.benchmark.method import create_method

    monkeypatch.setenv("ACKD_BENCH_CACHE", str(tmp_path / "cache"))
    ds = load_dataset(multi)
    rgb, ms = (load_modality(ds, m, torch.device("cpu")) for m in ("rgb", "ms"))
    info = DataInfo(n_classes=len(ds.classes), student_channels=3, teacher_channels=ms.channels,
                    class_names=tuple(ds.classes), epochs=6, teacher_multilabel=True)
    m = create_method("sembridge", student=create_classifier("resnet18", 3, len(ds.classes), seed=0),
                      teacher=create_classifier("resnet18", ms.channels, len(ds.classes), seed=1), info=info,
                      matcher_epochs=1, diagnostic_samples=0)
    m.prepare(rgb, ms, {"seed": 0, "epochs": 6, "student_px": 16, "teacher_px": 16, "fingerprint": ds.fingerprint,
                        "teacher_bands": ds.manifest["modalities"]["ms"]["bands"]})
    carries = ms.sets["train"]
    assert bool((carries[m.partner, rgb.y["train"]] > 0).all())
    assert m.on_epoch_start(1, {}) is not None
    assert bool((carries[m.partner, rgb.y["train"]] > 0).all())

    prof = get_profile("smoke", teacher_px=16, student_px=16, batch_size=8, epochs=3, teacher_epochs=2)
    (result,) = run_experiment(multi, method="sembridge", arch="resnet18", teacher_arch=None, seeds=[0],
                               profile=prof, device="cpu", out=tmp_path / "out", progress=False,
                               method_options={"matcher_epochs": 1, "diagnostic_samples": 8})
    diag = result["diagnostics"]["sembridge"]
    assert diag["matching"]["rematch_epochs"] == [1, 2] and "rematch_changed" in result["diagnostics"]["history"][1]
    assert set(diag["transport_end"]["probability_T"]) == {"random", "ssm", "dynm"}
