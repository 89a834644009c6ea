"""Builds from demo world v2: latent truth columns, modality budgets, partial RGB cues (issue 13)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import from_bounds

from ackd_bench.benchmark.dataset import load_dataset
from ackd_bench.curation.build import build_dataset
from ackd_bench.curation.demo.subtypes import FACTORS, SUBTYPE_NAMES
from ackd_bench.curation.presets import demo_preset

SCALE = 0.4  # conftest's small world
CROSSWALK = {10: 0, 20: 1, 30: 2, 40: 3, 50: 4, 60: 5, 80: 6, 90: 7}


@pytest.fixture(scope="module")
def rgb_rich(small_world: Path, tmp_path_factory: pytest.TempPathFactory):
    """A build with 40 RGB chips per class (and 4 MS chips): enough to see sub-types in RGB."""
    preset = demo_preset(SCALE).with_overrides(catalog=str(small_world), per_class=40)
    preset = dataclasses.replace(preset, ms=dataclasses.replace(preset.ms, per_class=4))
    out = tmp_path_factory.mktemp("rgb-rich") / "ds"
    build_dataset(preset, out, scheduler="threads", progress=False)
    return load_dataset(out)


def test_latent_columns_follow_the_contract(small_dataset: Path):
    ds = load_dataset(small_dataset)  # verifies the latent columns too
    assert ds.manifest["latent"] == {"factors": list(FACTORS), "subtypes": list(SUBTYPE_NAMES),
                                     "source": "ackd-bench demo world v2"}
    classes = ds.classes
    for row in ds.samples.itertuples():
        composition = np.asarray(row.latent_composition)
        assert composition.shape == (len(classes),) and abs(composition.sum() - 1.0) < 1e-6
        assert row.latent_subtype in SUBTYPE_NAMES
        # The sub-type is that of the chip's majority true class.
        assert row.latent_subtype.split("/")[0] == classes[int(np.argmax(composition))]
        factors = np.asarray(row.latent_factors)
        assert factors.shape == (len(FACTORS),) and (factors >= 0).all() and (factors <= 1).all()


def _truth_href(ds, row, key: str) -> str:
    """The truth asset of the row's region (the world's truth items sit beside its other collections)."""
    root = Path(json.loads(row.hrefs)[ds.manifest["modalities"][row.modality]["bands"][0]]).parents[2]
    region = "eu" if row.modality == "ms" else "us"
    return str(root / "ackd-demo-truth" / f"demo-truth-{region}" / f"{key}.tif")


def test_latent_composition_is_what_the_truth_raster_says(small_dataset: Path):
    """The composition counts the true class at the centre of every chip pixel."""
    ds = load_dataset(small_dataset, verify=False)
    for modality in ("ms", "rgb"):
        px = ds.manifest["modalities"][modality]["chip_px"]
        rows = ds.samples[ds.samples["modality"] == modality].iloc[::9]
        for row in rows.itertuples():
            bounds = ds.samples.loc[[row.Index]].to_crs(row.crs).geometry.iloc[0].bounds
            with rasterio.open(_truth_href(ds, row, "class")) as src:
                window = from_bounds(*bounds, transform=src.transform)
                codes = src.read(1, window=window, out_shape=(px, px), resampling=Resampling.nearest)
            counts = np.bincount([CROSSWALK[c] for c in codes.ravel() if c in CROSSWALK], minlength=8)
            assert np.allclose(row.latent_composition, counts / counts.sum(), atol=2e-6), row.sample_id


def test_labels_come_from_an_imperfect_map(rgb_rich):
    """Labels are the land-cover map's majority: mostly, not always, the true majority class."""
    for modality in ("ms", "rgb"):
        part = rgb_rich.samples[rgb_rich.samples["modality"] == modality]
        composition = np.stack(part["latent_composition"].to_numpy())
        agree = float(np.mean(composition.argmax(axis=1) == part["label"].to_numpy()))
        assert 0.55 < agree < 0.97, (modality, agree)
        mixed = float(np.mean(part["purity"] < 0.8))
        assert 0.1 < mixed < 0.6, (modality, mixed)  # mixed chips are kept (purity >= 0.5)
        assert part["purity"].min() >= 0.5


def test_modality_budgets_and_splits(rgb_rich):
    counts = rgb_rich.samples.groupby("modality")["label"].value_counts()
    assert (counts["rgb"] == 40).all() and (counts["ms"] == 4).all()
    splits = rgb_rich.manifest["splits"]["fractions_by_modality"]
    assert splits == {"ms": [0.75, 0.125, 0.125], "rgb": [0.3, 0.14, 0.56]}
    rgb = rgb_rich.samples[rgb_rich.samples["modality"] == "rgb"]
    test_share = float(np.mean(rgb["split"] == "test"))
    assert 0.4 < test_share < 0.7  # spatial blocks, so only roughly the asked 56 %


def test_rgb_subtypes_are_partly_recoverable_from_simple_features(rgb_rich):
    """Within a class, sub-types leave a partial trace in RGB: per-chip channel means and stds with a
    nearest-centroid rule find them better than guessing the most common one, but far from always."""
    part = rgb_rich.samples[rgb_rich.samples["modality"] == "rgb"].sort_values("array_index")
    x = np.asarray(rgb_rich.rgb[part["array_index"].to_numpy()], np.float64)
    features = np.concatenate([x.mean(axis=(2, 3)), x.std(axis=(2, 3))], axis=1)
    features = (features - features.mean(0)) / features.std(0)
    subtype = part["latent_subtype"].to_numpy()
    fold = np.arange(len(subtype)) % 2
    correct, majority = [], []
    for cls in sorted({s.split("/")[0] for s in subtype}):
        mine = np.array([s.startswith(cls + "/") for s in subtype])
        names = subtype[mine]
        if len(set(names)) < 2 or mine.sum() < 20:
            continue
        for k in (0, 1):
            train, test = mine & (fold != k), mine & (fold == k)
            centroids = {n: features[train & (subtype == n)].mean(0) for n in set(subtype[train])}
            keys = sorted(centroids)
            distance = np.stack([((features[test] - centroids[n]) ** 2).sum(1) for n in keys])
            correct.extend(np.array(keys)[distance.argmin(0)] == subtype[test])
            common = max(set(names), key=list(names).count)
            majority.extend(subtype[test] == common)
    accuracy, baseline = float(np.mean(correct)), float(np.mean(majority))
    print(f"RGB sub-type accuracy from channel means/stds: {accuracy:.3f} (most common sub-type: {baseline:.3f})")
    assert accuracy > baseline + 0.03
    assert accuracy < 0.95


def test_without_a_truth_collection_the_latent_composition_is_the_maps(small_preset, tmp_path):
    preset = dataclasses.replace(small_preset.with_overrides(per_class=3), latent=None)
    build_dataset(preset, tmp_path / "ds", scheduler="threads", progress=False)
    ds = load_dataset(tmp_path / "ds")
    assert ds.manifest["latent"] == {"factors": [], "subtypes": [], "source": "land-cover map (esa-worldcover)"}
    composition = np.stack(ds.samples["latent_composition"].to_numpy())
    assert (composition.argmax(axis=1) == ds.samples["label"].to_numpy()).all()
    assert np.allclose(composition.max(axis=1), ds.samples["purity"].to_numpy(), atol=2e-6)
    assert (ds.samples["latent_subtype"] == "").all()
    assert all(len(f) == 0 for f in ds.samples["latent_factors"])


def test_rgb_footprint_within_twice_the_ms_one():
    """The default demo preset's chips cover comparable ground (v1: 640 m MS against 128 m RGB)."""
    preset = demo_preset()
    ratio = preset.ms.chip_m / preset.rgb.chip_m
    assert 0.5 <= ratio <= 2.0, ratio

