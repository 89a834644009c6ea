"""Bad build inputs: a clear error (nothing at --out touched) or recorded rejects, never a half-built dataset."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pandas as pd
import pytest

from ackd_bench.benchmark.dataset import load_dataset
from ackd_bench.curation.build import REJECTS_FILE, BuildError, build_dataset
from ackd_bench.curation.presets import BandSource
from ackd_bench.curation.stac import CatalogError


@pytest.fixture
def existing(small_dataset, tmp_path):
    """A complete dataset that a failing rebuild (``force=True``) must leave exactly as it was."""
    target = tmp_path / "existing"
    shutil.copytree(small_dataset, target)
    return target


def _intact(path, small_dataset) -> None:
    ds = load_dataset(path)  # verifies every checksum and the fingerprint
    assert ds.fingerprint == json.loads((small_dataset / "dataset.json").read_text())["fingerprint"]
    assert not list(path.parent.glob(f".{path.name}.build-*/read-*"))  # failed before reading any chip


def test_a_band_missing_from_the_items_is_named(small_preset, small_dataset, existing):
    ms = dataclasses.replace(small_preset.ms, bands=(*small_preset.ms.bands, BandSource("B09", "B09")))
    with pytest.raises(CatalogError, match=r"sentinel-2-l2a items lack asset\(s\) B09"):
        build_dataset(small_preset.with_overrides(ms=ms), existing, workers=1, progress=False, force=True)
    _intact(existing, small_dataset)


def test_an_aoi_whose_items_are_all_too_cloudy_is_an_error(small_preset, small_dataset, existing):
    """`eo:cloud_cover` filters every scene out: the search is empty, and the message says for what."""
    ms = dataclasses.replace(small_preset.ms, max_item_cloud=0.0)
    with pytest.raises(CatalogError, match=r"no sentinel-2-l2a items in .* for AOI"):
        build_dataset(small_preset.with_overrides(ms=ms), existing, workers=1, progress=False, force=True)
    _intact(existing, small_dataset)


def test_cloudy_chips_are_recorded_rejects(small_preset, tmp_path):
    """With no cloud tolerated at all, every chip with a flagged SCL pixel is rejected and listed."""
    out = tmp_path / "strict"
    build_dataset(small_preset.with_overrides(max_cloud=0.0, per_class=4), out, workers=2, progress=False)
    ds = load_dataset(out)
    rejects = pd.read_parquet(out / REJECTS_FILE)
    cloudy = rejects[(rejects["modality"] == "ms") & (rejects["reason"] == "cloud")]
    assert len(cloudy) > 0 and (cloudy["kind"] == "qa").all()
    assert set(cloudy["candidate_id"]).isdisjoint(ds.samples["sample_id"])
    kept = ds.samples[ds.samples["modality"] == "ms"]
    assert (kept["cloud_fraction"] == 0).all()
    assert ds.manifest["provenance"]["qa"]["ms"]["rejected"]["cloud"] == len(cloudy)


def test_a_nodata_only_chip_is_rejected_with_its_reason(small_world, small_preset):
    """A chip in the no-data wedge east of a swath edge: read, scored 100 % nodata, rejected (not kept)."""
    import pystac
    import rasterio

    from ackd_bench.curation.build import _item_ref
    from ackd_bench.curation.reading import read_chip
    from ackd_bench.curation.stac import Catalog

    catalog = Catalog(str(small_world))
    scenes = [it for it in pystac.Catalog.from_file(str(small_world)).get_items(recursive=True)
              if it.collection_id == "sentinel-2-l2a"]
    edge = next(it for it in scenes if it.datetime.year == 2022)  # the demo's swath-edge scene
    ref = _item_ref(edge, catalog)
    with rasterio.open(ref.assets["B04"]) as src:
        right, top = src.bounds.right, src.bounds.top
        crs = f"EPSG:{src.crs.to_epsg()}"
    side = small_preset.ms.chip_px * small_preset.ms.gsd
    corner = {"minx": right - 2 * side, "miny": top - 2 * side, "maxx": right - side, "maxy": top - side}
    got = read_chip({"candidate_id": "east-edge", "crs": crs, **corner}, [ref], small_preset.ms,
                    max_cloud=small_preset.max_cloud, max_nodata=small_preset.max_nodata, remote=catalog.signer)
    assert got.array is None and got.reject is not None and got.reject.startswith("nodata")
    assert got.attempts and got.attempts[0]["nodata"] == 1.0


def test_a_catalogue_missing_a_band_file_is_an_error_not_an_empty_modality(small_world, small_preset, small_dataset,
                                                                           existing, tmp_path):
    """Every B11 COG gone: each MS chip's read fails (unreadable), no class can be filled. The build fails
    naming the modality, the counts and the reason; nothing at --out changes. (Once this gave a
    "successful" dataset with 0 MS chips.)"""
    world = tmp_path / "world"
    shutil.copytree(small_world.parent, world)
    removed = list(world.rglob("B11.tif"))
    assert removed
    for path in removed:
        path.unlink()
    preset = small_preset.with_overrides(catalog=str(world / small_world.name))
    with pytest.raises(BuildError, match=r"^ms: fewer than the \d+ chips per class asked for \(.* 0 chips\); "
                                         r"rejected candidates: read failed \(unreadable\) \d+"):
        build_dataset(preset, existing, workers=1, scheduler="threads", progress=False, force=True)
    ds = load_dataset(existing)
    assert ds.fingerprint == json.loads((small_dataset / "dataset.json").read_text())["fingerprint"]
    # Even when shortfalls are allowed, an empty class is not.
    with pytest.raises(BuildError, match="would be empty, which no dataset may be"):
        build_dataset(preset, existing, workers=1, scheduler="threads", progress=False, force=True,
                      allow_shortfall=True)


@pytest.mark.slow  # two reads of every MS candidate of the small world (~30 s)
def test_a_short_class_is_an_error_unless_allowed_and_then_recorded(small_preset, tmp_path):
    """Asking for more MS chips than the small world's classes hold: refused by default (nothing written);
    with allow_shortfall the dataset is written and dataset.json records the counts."""
    preset = small_preset.with_overrides(ms=dataclasses.replace(small_preset.ms, per_class=400))
    out = tmp_path / "big"
    with pytest.raises(BuildError, match=r"fewer than the 400 chips per class asked for .*--allow-shortfall"):
        build_dataset(preset, out, workers=1, scheduler="threads", progress=False)
    assert not out.exists()
    build_dataset(preset, out, workers=1, scheduler="threads", progress=False, allow_shortfall=True)
    ds = load_dataset(out)
    shortfalls = ds.manifest["provenance"]["shortfalls"]
    assert shortfalls
    for modality, short in shortfalls.items():
        got = ds.samples[ds.samples["modality"] == modality]["label"].value_counts()
        for name, n in short.items():
            assert got[preset.labels.classes.index(name)] == n and 0 < n < 400
