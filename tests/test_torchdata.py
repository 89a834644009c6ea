"""A built dataset in your own loop (issue 17, item 1): PyTorch datasets, same-class partners, xarray."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ackd_bench.benchmark import load
from ackd_bench.benchmark.dataset import SPLITS, load_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench(small_dataset):
    return load(small_dataset)


@pytest.mark.parametrize("modality", ["ms", "rgb"])
def test_splits_hold_the_datasets_chips_and_labels(bench, small_dataset, modality):
    ds = load_dataset(small_dataset)
    for split in SPLITS:
        chips, labels, rows = ds.subset(modality, split)
        data = bench.split(modality, split, normalize=False)
        assert len(data) == len(labels)
        for i in sorted({0, len(data) // 2, len(data) - 1} if len(data) else set()):
            sample = data[i]
            assert sample["image"].dtype == torch.float32 and sample["image"].shape == chips[i].shape
            assert torch.equal(sample["image"], torch.from_numpy(chips[i].astype(np.float32)))
            assert sample["label"].dtype == torch.int64 and int(sample["label"]) == labels[i]
            assert data.rows["sample_id"].iloc[i] == rows["sample_id"].iloc[i]
        assert data.bands == ds.manifest["modalities"][modality]["bands"]


@pytest.mark.parametrize("modality", ["ms", "rgb"])
def test_normalisation_uses_the_training_statistics(bench, modality):
    train = torch.stack([s["image"] for s in bench.split(modality, "train")])
    # float32 sums over ~1e5 values per band: errors far below 1e-3.
    assert torch.allclose(train.mean(dim=(0, 2, 3)), torch.zeros(train.shape[1]), atol=1e-3)
    assert torch.allclose(train.std(dim=(0, 2, 3)), torch.ones(train.shape[1]), atol=1e-3)
    mean, std = bench.stats(modality)
    raw, norm = bench.split(modality, "val", normalize=False)[0]["image"], bench.split(modality, "val")[0]["image"]
    assert torch.allclose(norm, (raw - mean[:, None, None]) / std[:, None, None])


def test_samples_carry_the_latent_truth(bench):
    ds = bench.dataset
    assert ds.has_latent
    sample = bench.split("rgb", "train")[0]
    assert sample["latent_composition"].shape == (len(bench.classes),)
    assert sample["latent_factors"].shape == (len(ds.manifest["latent"]["factors"]),)
    assert isinstance(sample["latent_subtype"], str)


def _epoch(bench, seed: int, batch_size: int = 8):
    student, teacher = bench.split("rgb", "train"), bench.split("ms", "train")
    loader = DataLoader(student, batch_size=batch_size, shuffle=False, collate_fn=bench.partners(teacher, seed=seed))
    return teacher, list(loader)


def test_partners_are_same_class_teacher_samples(bench):
    teacher, batches = _epoch(bench, seed=0)
    for batch in batches:
        assert torch.equal(batch["partner_label"], batch["label"])
        assert torch.equal(teacher.targets[batch["partner_index"]], batch["label"])
        for j in (0, len(batch["label"]) - 1):
            assert torch.equal(batch["partner_image"][j], teacher[int(batch["partner_index"][j])]["image"])
        assert batch["partner_image"].shape[1] == len(teacher.bands)


def test_partners_are_reproducible_fresh_and_uniform_within_the_class(bench):
    _, first = _epoch(bench, seed=3)
    _, again = _epoch(bench, seed=3)
    _, other = _epoch(bench, seed=4)
    picks = torch.cat([b["partner_index"] for b in first])
    assert torch.equal(picks, torch.cat([b["partner_index"] for b in again]))
    assert not torch.equal(picks, torch.cat([b["partner_index"] for b in other]))
    # Many draws for one class reach most of its teacher samples (uniform, not a fixed partner).
    teacher = bench.split("ms", "train")
    k = int(torch.bincount(teacher.targets).argmax())
    pool = int((teacher.targets == k).sum())
    student = [s for s in bench.split("rgb", "train") if int(s["label"]) == k]
    collate = bench.partners(teacher, seed=0)
    seen = set()
    for _ in range(40):
        seen |= set(collate(student)["partner_index"].tolist())
    # P(a given sample is missed in 40 x len(student) uniform draws) < 1e-3 for pools up to 100.
    assert len(seen) == pool


def test_a_student_class_without_teacher_samples_is_an_error(bench):
    teacher = bench.split("ms", "train")
    teacher.targets = torch.zeros_like(teacher.targets)  # a teacher of class 0 only
    student = bench.split("rgb", "train")
    other = [s for s in student if int(s["label"]) != 0][:4]
    with pytest.raises(ValueError, match="no teacher sample"):
        bench.partners(teacher)(other)


def test_the_xarray_view(bench):
    ds = bench.dataset
    for modality in ("ms", "rgb"):
        xds = bench.to_xarray(modality)
        rows = ds.samples[ds.samples["modality"] == modality].sort_values("array_index")
        assert xds["image"].dims == ("sample", "band", "y", "x")
        assert list(xds["band"].values) == bench.bands(modality)
        assert list(xds["sample"].values) == list(rows["sample_id"])
        np.testing.assert_array_equal(xds["image"].values, np.asarray(getattr(ds, modality))[rows["array_index"]])
        counts = rows["split"].value_counts()
        assert {s: int((xds["split"] == s).sum()) for s in SPLITS} == {s: int(counts.get(s, 0)) for s in SPLITS}
        assert list(xds["class_name"].values) == [bench.classes[i] for i in xds["label"].values]
        assert xds.attrs["fingerprint"] == ds.fingerprint
        # Selecting works as xarray users expect: the training chips of one class.
        one = xds.where((xds["split"] == "train") & (xds["label"] == 0), drop=True)
        assert one.sizes["sample"] == int(((rows["split"] == "train") & (rows["label"] == 0)).sum())
        centre = rows.geometry.representative_point()
        np.testing.assert_allclose(xds["lon"].values, centre.x.to_numpy())
        assert xds["latent_composition"].dims == ("sample", "class")
        np.testing.assert_allclose(xds["latent_composition"].sum("class").values, 1.0, atol=1e-6)


def test_the_plain_pytorch_example_trains_a_kd_student(small_dataset):
    """examples/train_kd.py: about 30 lines of plain PyTorch on `load`; reproducible for a seed."""
    spec = importlib.util.spec_from_file_location("train_kd", REPO / "examples" / "train_kd.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    first = example.main(small_dataset, epochs=1, seed=0)
    assert set(first) == {"teacher_oa", "student_oa"} and all(0.0 <= v <= 1.0 for v in first.values())
    done = subprocess.run([sys.executable, str(REPO / "examples" / "train_kd.py"), str(small_dataset), "--epochs", "1"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    # The same seed in another process gives the same numbers (partners and training reproducible).
    assert f"student (RGB, KD) test OA {first['student_oa']:.3f}" in done.stdout
    assert f"teacher (MS) val OA {first['teacher_oa']:.3f}" in done.stdout
