"""The full-size demo benchmark, built as a user builds it (`ackd-bench build-dataset --catalog demo`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ackd_bench.benchmark.dataset import load_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo"
    exe = Path(sys.executable).with_name("ackd-bench")
    res = subprocess.run([str(exe), "build-dataset", "--catalog", "demo", "--out", str(out), "--quiet"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    return out


def test_demo_meets_the_benchmark_contract(demo_dataset):
    ds = load_dataset(demo_dataset)
    assert len(ds.classes) >= 6
    for modality in ("ms", "rgb"):
        counts = ds.samples[ds.samples["modality"] == modality]["label"].value_counts()
        assert len(counts) == len(ds.classes)
        assert counts.min() >= 150
    assert ds.ms.shape[1] == 10 and ds.rgb.shape[1] == 3
    assert ds.samples["sample_id"].is_unique  # so no chip can sit in two splits
    ms = ds.samples[ds.samples["modality"] == "ms"].geometry.union_all()
    rgb = ds.samples[ds.samples["modality"] == "rgb"].geometry.union_all()
    assert not ms.intersects(rgb)


def probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                   n_classes: int) -> float:
    """Test accuracy of multinomial logistic regression (L-BFGS, light L2) on standardised features."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt = torch.tensor((x_train - mean) / std, dtype=torch.float64)
    xv = torch.tensor((x_test - mean) / std, dtype=torch.float64)
    yt = torch.tensor(y_train)
    torch.manual_seed(0)
    model = torch.nn.Linear(xt.shape[1], n_classes, dtype=torch.float64)
    opt = torch.optim.LBFGS(model.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt) + 1e-3 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((model(xv).argmax(1).numpy() == y_test).mean())


def test_linear_probe_ms_beats_rgb(demo_dataset):
    """Per-band chip means separate MS classes clearly better than RGB classes."""
    ds = load_dataset(demo_dataset, verify=False)
    acc = {}
    for modality in ("ms", "rgb"):
        xtr, ytr, _ = ds.subset(modality, "train")
        xte, yte, _ = ds.subset(modality, "test")
        feats = lambda a: np.asarray(a, dtype=np.float64).mean(axis=(2, 3))  # noqa: E731
        acc[modality] = probe_accuracy(feats(xtr), np.asarray(ytr), feats(xte), np.asarray(yte), len(ds.classes))
    print(f"linear probe on per-band means: MS {acc['ms']:.3f}, RGB {acc['rgb']:.3f}")
    assert acc["ms"] >= 0.85
    assert acc["ms"] - acc["rgb"] >= 0.15
