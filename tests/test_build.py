"""build-dataset end to end on a small demo world: format, determinism, QA, splits, bad inputs."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import from_bounds

from ackd_bench.benchmark.dataset import load_dataset
from ackd_bench.benchmark.errors import DatasetExistsError
from ackd_bench.curation import reading
from ackd_bench.curation.build import BuildError, build_dataset
from ackd_bench.curation.stac import CatalogError


def _fingerprint(path):
    return json.loads((path / "dataset.json").read_text())["fingerprint"]


def test_layout_and_counts(small_dataset, small_preset):
    ds = load_dataset(small_dataset)  # verifies checksums and fingerprint
    assert len(ds.classes) == 8
    ms_px, rgb_px = small_preset.ms.chip_px, small_preset.rgb.chip_px  # demo world v2: 24 px at 10 m, 128 px at 1 m
    assert ds.ms.shape[1:] == (10, ms_px, ms_px) and ds.ms.dtype == np.uint16
    assert ds.rgb.shape[1:] == (3, rgb_px, rgb_px) and ds.rgb.dtype == np.uint8
    for modality in ("ms", "rgb"):
        per_class = ds.samples[ds.samples["modality"] == modality]["label"].value_counts()
        assert per_class.to_dict() == {k: small_preset.per_class for k in range(8)}
    assert ds.samples["sample_id"].is_unique
    assert (ds.samples["purity"] >= small_preset.purity).all()
    for name in ("class_balance.png", "footprints.png", "examples.png"):
        assert (small_dataset / "card" / name).stat().st_size > 5000


def test_splits_are_spatially_disjoint(small_dataset):
    samples = load_dataset(small_dataset, verify=False).samples
    assert samples.groupby(["modality", "block"])["split"].nunique().max() == 1
    for modality in ("ms", "rgb"):
        part = samples[samples["modality"] == modality]
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            ga = part[part["split"] == a].geometry.union_all()
            gb = part[part["split"] == b].geometry.union_all()
            assert ga.intersection(gb).area < 1e-12  # at most shared edges


def test_modalities_come_from_disjoint_regions(small_dataset):
    ds = load_dataset(small_dataset, verify=False)
    ms = ds.samples[ds.samples["modality"] == "ms"].geometry.union_all()
    rgb = ds.samples[ds.samples["modality"] == "rgb"].geometry.union_all()
    assert not ms.intersects(rgb)
    assert ds.manifest["consistency"] == {"mode": "asymmetric", "overlap": 0.0}
    assert set(ds.samples[ds.samples["modality"] == "ms"]["collection"]) == {"sentinel-2-l2a"}
    assert set(ds.samples[ds.samples["modality"] == "rgb"]["collection"]) == {"naip"}


def test_ms_chip_equals_direct_read_minus_baseline_offset(small_dataset):
    """The stored chip is what rasterio reads from the COG, harmonised across baselines."""
    ds = load_dataset(small_dataset, verify=False)
    ms = ds.samples[ds.samples["modality"] == "ms"]
    bands = ds.manifest["modalities"]["ms"]["bands"]
    seen_offsets = set()
    for _, row in ms.iloc[::7].iterrows():
        href = json.loads(row["hrefs"])["B08"]
        utm = ms.loc[[row.name]].to_crs(row["crs"]).geometry.iloc[0].bounds
        with rasterio.open(href) as src:
            raw = src.read(1, window=from_bounds(*utm, transform=src.transform)).astype(np.int32)
        item_dir = Path(href).parent
        item = json.loads((item_dir / f"{item_dir.name}.json").read_text())
        offset = 1000 if item["properties"]["s2:processing_baseline"] >= "04.00" else 0
        seen_offsets.add(offset)
        expected = np.clip(raw - offset, 1, None)
        assert np.array_equal(ds.ms[row["array_index"], bands.index("B08")], expected)
    assert seen_offsets == {0, 1000}, "the demo world should exercise both processing baselines"


def test_chosen_items_pass_cloud_qa(small_dataset, small_preset):
    ds = load_dataset(small_dataset, verify=False)
    ms = ds.samples[ds.samples["modality"] == "ms"]
    assert (ms["cloud_fraction"] <= small_preset.max_cloud).all()
    assert (ms["nodata_fraction"] == 0).all()
    for _, row in ms.iloc[::5].iterrows():
        scl_href = json.loads(row["hrefs"])["B02"].rsplit("/", 1)[0] + "/SCL.tif"
        utm = ms.loc[[row.name]].to_crs(row["crs"]).geometry.iloc[0].bounds
        with rasterio.open(scl_href) as src:
            scl = src.read(1, window=from_bounds(*utm, transform=src.transform))
        assert np.isin(scl, reading.SCL_CLOUDY).mean() <= small_preset.max_cloud + 1e-9
        assert (scl != 0).all()


def test_same_seed_same_fingerprint_other_seed_differs(small_dataset, small_preset, tmp_path):
    again = tmp_path / "again"
    build_dataset(small_preset, again, workers=1, progress=False)
    assert _fingerprint(again) == _fingerprint(small_dataset)
    other = tmp_path / "other"
    build_dataset(small_preset.with_overrides(seed=1), other, workers=2, progress=False)
    assert _fingerprint(other) != _fingerprint(small_dataset)


# Stage files of the work folder that mark three different points of a build: searched the MS
# side, sampled both sides (no chip read yet), and read the first batch of MS chips.
KILL_POINTS = ("search-ms.json", "candidates-rgb.parquet", "read-ms-*.json")


@pytest.mark.parametrize("marker", KILL_POINTS)
def test_a_build_killed_at_any_point_resumes_to_the_same_fingerprint(marker, small_dataset, small_preset, tmp_path):
    """SIGKILL (no cleanup handlers run) as soon as a stage's file appears; the rerun continues from there."""
    preset_file = tmp_path / "small.json"
    preset_file.write_text(json.dumps(small_preset.to_dict()))
    out = tmp_path / "killed"
    exe = Path(sys.executable).with_name("ackd-bench")
    cmd = [str(exe), "build-dataset", "--preset", str(preset_file), "--out", str(out), "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob(f".killed.build-*/{marker}")):
        assert proc.poll() is None, f"the build ended before {marker} appeared: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"{marker} never appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # nothing half-built is ever at --out
    (work,) = tmp_path.glob(".killed.build-*")
    assert list(work.glob(marker))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _fingerprint(out) == _fingerprint(small_dataset)
    assert not list(tmp_path.glob(".killed.build-*"))


def test_out_is_a_file_or_foreign_dir(small_preset, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    with pytest.raises(DatasetExistsError, match="is a file"):
        build_dataset(small_preset, target, progress=False)
    assert target.read_text() == "keep me"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.md").write_text("mine")
    with pytest.raises(DatasetExistsError, match="not an ackd-bench dataset"):
        build_dataset(small_preset, foreign, progress=False)
    assert (foreign / "notes.md").read_text() == "mine"


def test_unreachable_and_missing_catalogs(small_preset, tmp_path):
    with pytest.raises(CatalogError, match="cannot open STAC catalogue"):
        build_dataset(small_preset.with_overrides(catalog=str(tmp_path / "nowhere" / "catalog.json")),
                      tmp_path / "x", progress=False)
    with pytest.raises(CatalogError, match="cannot open STAC catalogue"):
        build_dataset(small_preset.with_overrides(catalog="http://127.0.0.1:9/"), tmp_path / "y", progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_overlapping_aois_rejected_in_asymmetric_mode(small_preset, tmp_path):
    rgb = small_preset.rgb.__class__(**{**small_preset.rgb.__dict__, "aois": small_preset.ms.aois})
    with pytest.raises(BuildError, match="overlap"):
        build_dataset(small_preset.with_overrides(rgb=rgb), tmp_path / "z", progress=False)


def test_rebuild_over_existing_dataset_replaces_it_atomically(small_dataset, small_preset, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(small_dataset, out)
    build_dataset(small_preset.with_overrides(seed=5), out, workers=2, progress=False)
    assert _fingerprint(out) != _fingerprint(small_dataset)
    load_dataset(out)


def test_same_build_again_is_verified_and_kept(small_dataset, small_preset):
    stamp = (small_dataset / "ms.npy").stat().st_mtime_ns
    report = build_dataset(small_preset, small_dataset, progress=False)
    assert report.fingerprint == _fingerprint(small_dataset)
    assert (small_dataset / "ms.npy").stat().st_mtime_ns == stamp
