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
    """World v2's sizes (issue 13): a data-limited RGB train split, a large RGB test split, a rich MS side."""
    ds = load_dataset(demo_dataset)
    assert len(ds.classes) >= 6
    samples = ds.samples
    for modality, per_class in (("ms", 900), ("rgb", 720)):
        counts = samples[samples["modality"] == modality]["label"].value_counts()
        assert len(counts) == len(ds.classes) and (counts == per_class).all()
    train = samples[samples["split"] == "train"].groupby(["modality", "label"]).size()
    assert train["ms"].min() >= 600
    assert 150 <= train["rgb"].min() and train["rgb"].max() <= 300
    assert ((samples["modality"] == "rgb") & (samples["split"] == "test")).sum() >= 3000
    mixed = samples["purity"] < 0.8
    assert 0.25 < mixed.mean() < 0.45  # about a third of the chips are 50-80 % one class
    assert ds.manifest["latent"]["source"] == "ackd-bench demo world v2"
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
    """Per-band chip means and stds separate MS classes clearly better than RGB classes, against the
    map's labels (which are right for ~80 % of chips) and against the true majority class."""
    ds = load_dataset(demo_dataset, verify=False)
    acc = {}
    for modality in ("ms", "rgb"):
        xtr, ytr, rtr = ds.subset(modality, "train")
        xte, yte, rte = ds.subset(modality, "test")

        def feats(a):
            a = np.asarray(a, dtype=np.float64)
            return np.concatenate([a.mean(axis=(2, 3)), a.std(axis=(2, 3))], axis=1)

        def truth(rows):
            return np.stack(rows["latent_composition"].to_numpy()).argmax(axis=1)

        acc[modality] = probe_accuracy(feats(xtr), np.asarray(ytr), feats(xte), np.asarray(yte), len(ds.classes))
        acc[modality + "_true"] = probe_accuracy(feats(xtr), truth(rtr), feats(xte), truth(rte), len(ds.classes))
    print(f"linear probe on per-band means and stds: MS {acc['ms']:.3f} (true classes {acc['ms_true']:.3f}), "
          f"RGB {acc['rgb']:.3f} ({acc['rgb_true']:.3f})")
    assert acc["ms"] >= 0.72 and acc["ms_true"] >= 0.85
    assert acc["ms"] - acc["rgb"] >= 0.1
    assert acc["ms_true"] - acc["rgb_true"] >= 0.1
