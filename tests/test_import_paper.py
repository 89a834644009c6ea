"""import-paper: the authors' released S2S-EU, S2S-CN and M2S-GL folders become datasets (format v2)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from click.testing import CliRunner
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning
from scipy.io import savemat

from ackd_bench.benchmark.cli import main
from ackd_bench.benchmark.data import load_modality
from ackd_bench.benchmark.dataset import load_dataset
from ackd_bench.benchmark.dataset.import_paper import ImportPaperError, import_paper

PER_CLASS = 7  # 70/15/15 of 7: 5 train, 1 val, 1 test
CLASSES = {
    "s2s-eu": ["SeaLake", "River", "Forest"],
    "s2s-cn": ["beach", "cloud", "desert"],
    "m2s-gl": ["forest", "sea", "airport", "port"],
}
FULL = {"s2s-eu": 10, "s2s-cn": 10, "m2s-gl": 15}
TIF_BANDS = {"s2s-eu": 13, "s2s-cn": 14}


def _tif(path: Path, rng: np.random.Generator, bands: int, georeferenced: bool) -> np.ndarray:
    data = rng.integers(0, 5000, size=(bands, 16, 16), dtype=np.uint16)
    geo = {"crs": "EPSG:32632", "transform": Affine(10, 0, 500000, 0, -10, 5000000)} if georeferenced else {}
    with warnings.catch_warnings():
        # Like the released NaSC-TG2 chips, the non-georeferenced fixtures carry no transform on purpose.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=bands, dtype="uint16",
                           **geo) as dst:
            dst.write(data)
    return data


def _jpg(path: Path, rng: np.random.Generator, px: int) -> None:
    Image.fromarray(rng.integers(0, 256, size=(px, px, 3), dtype=np.uint8)).save(path, quality=90)


def make_release(root: Path, layout: str, seed: int = 0) -> Path:
    """Write a tiny release in the authors' layout: SRC/MS/<class>/*, SRC/RGB/<class>/*.jpg."""
    rng = np.random.default_rng(seed)
    classes = CLASSES[layout]
    for k, cls in enumerate(classes):
        (root / "MS" / cls).mkdir(parents=True)
        (root / "RGB" / cls).mkdir(parents=True)
        for i in range(PER_CLASS):
            if layout == "m2s-gl":
                msi = rng.integers(0, 3000, size=(16, 16, 10)).astype(np.uint16)
                extra = [classes[(k + 1) % len(classes)]] if i % 2 else []
                savemat(root / "MS" / cls / f"{cls}_{i}.mat", {"msi": msi, "label": [cls, *extra]})
            else:
                _tif(root / "MS" / cls / f"{cls}_{i}.tif", rng, TIF_BANDS[layout], georeferenced=layout == "s2s-eu")
            _jpg(root / "RGB" / cls / f"{cls}_{i}.jpg", rng, 40 + 8 * (i % 2))
    return root


@pytest.mark.parametrize("layout", ["s2s-eu", "s2s-cn", "m2s-gl"])
def test_each_layout_imports_and_loads(layout, tmp_path):
    src = make_release(tmp_path / "src", layout)
    out = import_paper(layout, src, tmp_path / "ds", seed=0)
    ds = load_dataset(out)
    m = ds.manifest
    assert ds.classes == CLASSES[layout]  # classes with no folders are left out
    assert len(m["provenance"]["classes_without_folders"]) == FULL[layout] - len(CLASSES[layout])
    assert m["consistency"] == {"mode": "asymmetric", "overlap": 0.0}
    assert m["provenance"]["layout"] == layout and m["provenance"]["importer_version"] == 1
    assert len(m["fingerprint"]) == 64
    n = len(CLASSES[layout]) * PER_CLASS
    assert ds.ms.shape == (n, 10 if layout != "s2s-cn" else 14, 16, 16) and ds.ms.dtype == np.uint16
    px = 64 if layout == "s2s-eu" else 128
    assert ds.rgb.shape == (n, 3, px, px) and ds.rgb.dtype == np.uint8
    assert "pair_id" not in ds.samples.columns
    for modality in ("ms", "rgb"):
        for split, expected in (("train", 5), ("val", 1), ("test", 1)):
            counts = m["counts"][modality][split]
            assert all(counts[c] == expected for c in CLASSES[layout])
    ms = load_modality(ds, "ms", torch.device("cpu"))
    rgb = load_modality(ds, "rgb", torch.device("cpu"))
    assert rgb.sets is None and (ms.sets is not None) == (layout == "m2s-gl")


def test_ms_values_are_kept_as_stored(tmp_path):
    src = make_release(tmp_path / "src", "s2s-eu")
    ds = load_dataset(import_paper("s2s-eu", src, tmp_path / "ds"))
    row = ds.samples[ds.samples["sample_id"] == "ms:MS/River/River_3.tif"].iloc[0]
    with rasterio.open(src / "MS" / "River" / "River_3.tif") as f:
        expected = f.read([1, 2, 3, 4, 5, 6, 7, 10, 11, 12])
    assert np.array_equal(ds.ms[row["array_index"]], expected)
    assert ds.manifest["modalities"]["ms"]["bands"][7:] == ["B09", "B10", "B11"]
    assert row["crs"] == "EPSG:32632"  # georeferenced tifs keep their footprint
    assert 8.9 < row.geometry.centroid.x < 9.1


def test_m2s_gl_class_sets(tmp_path):
    src = make_release(tmp_path / "src", "m2s-gl")
    ds = load_dataset(import_paper("m2s-gl", src, tmp_path / "ds"))
    ids = {n: k for k, n in enumerate(ds.classes)}
    ms = ds.samples[ds.samples["modality"] == "ms"]
    for row in ms.itertuples():
        cls = row.label_name
        i = int(Path(row.item_id).stem.rsplit("_", 1)[1])
        nxt = CLASSES["m2s-gl"][(CLASSES["m2s-gl"].index(cls) + 1) % 4]
        assert json.loads(row.labels) == sorted({ids[cls], ids[nxt]} if i % 2 else {ids[cls]})
    assert (ds.samples.loc[ds.samples["modality"] == "rgb", "labels"] == "").all()


def test_split_is_seeded(tmp_path):
    src = make_release(tmp_path / "src", "s2s-cn")
    a = load_dataset(import_paper("s2s-cn", src, tmp_path / "a", seed=0)).samples
    b = load_dataset(import_paper("s2s-cn", src, tmp_path / "b", seed=0)).samples
    c = load_dataset(import_paper("s2s-cn", src, tmp_path / "c", seed=5)).samples
    assert a["split"].tolist() == b["split"].tolist() and a["split"].tolist() != c["split"].tolist()


def _expect_error(layout: str, src: Path, out: Path, match: str) -> None:
    with pytest.raises(ImportPaperError, match=match):
        import_paper(layout, src, out)
    assert not out.exists()


def test_layout_errors(tmp_path):
    src = make_release(tmp_path / "src", "s2s-eu")
    out = tmp_path / "ds"
    (src / "RGB" / "River").rename(tmp_path / "River")
    _expect_error("s2s-eu", src, out, "'River' is only in MS")
    (tmp_path / "River").rename(src / "RGB" / "River")
    (src / "RGB" / "Lake").mkdir()
    _expect_error("s2s-eu", src, out, "unknown class folder.*Lake")
    (src / "RGB" / "Lake").rmdir()
    (src / "MS" / "Forest").rename(tmp_path / "Forest")
    (src / "MS" / "Forest").mkdir()
    _expect_error("s2s-eu", src, out, "Forest holds no")
    (src / "MS" / "Forest").rmdir()
    (tmp_path / "Forest").rename(src / "MS" / "Forest")
    (src / "RGB").rename(tmp_path / "RGB")
    _expect_error("s2s-eu", src, out, "RGB is missing")
    _expect_error("s2s-eu", tmp_path / "nowhere", out, "not a directory")


def test_corrupt_and_wrong_files_are_named(tmp_path):
    src = make_release(tmp_path / "eu", "s2s-eu")
    out = tmp_path / "ds"
    bad = src / "MS" / "Forest" / "Forest_2.tif"
    bad.write_bytes(b"not a tiff")
    _expect_error("s2s-eu", src, out, "cannot read .*Forest_2.tif")
    _tif(bad, np.random.default_rng(0), 12, georeferenced=False)
    _expect_error("s2s-eu", src, out, "Forest_2.tif: 12 bands")
    _tif(bad, np.random.default_rng(0), 13, georeferenced=False)
    jpg = src / "RGB" / "SeaLake" / "SeaLake_1.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])
    _expect_error("s2s-eu", src, out, "cannot read .*SeaLake_1.jpg")

    src = make_release(tmp_path / "gl", "m2s-gl")
    mat = src / "MS" / "sea" / "sea_0.mat"
    savemat(mat, {"msi": np.zeros((16, 16, 10), np.uint16)})
    _expect_error("m2s-gl", src, out, "sea_0.mat has no 'label'")
    savemat(mat, {"msi": np.zeros((16, 16, 9), np.uint16), "label": ["sea"]})
    _expect_error("m2s-gl", src, out, "sea_0.mat: msi has shape")
    savemat(mat, {"msi": np.zeros((16, 16, 10), np.uint16), "label": ["ocean"]})
    _expect_error("m2s-gl", src, out, "not m2s-gl classes")
    mat.write_bytes(b"garbage")
    _expect_error("m2s-gl", src, out, "cannot read .*sea_0.mat")


def test_chips_of_another_size_are_named_and_mixed_dtypes_widen(tmp_path):
    src = make_release(tmp_path / "gl", "m2s-gl")
    out = tmp_path / "ds"
    odd = src / "MS" / "port" / "port_1.mat"  # a later file than the first chip (forest_0)
    savemat(odd, {"msi": np.zeros((8, 8, 10), np.uint16), "label": ["port"]})
    _expect_error("m2s-gl", src, out, r"port_1.mat: MS shape \(10, 8, 8\) differs from .*forest_0.mat's \(10, 16, 16\)")
    savemat(src / "MS" / "forest" / "forest_0.mat", {"msi": np.zeros((16, 8, 10), np.uint16), "label": ["forest"]})
    _expect_error("m2s-gl", src, out, "forest_0.mat: MS chips are 16x8; the format needs square")

    src = make_release(tmp_path / "gl2", "m2s-gl")
    savemat(src / "MS" / "sea" / "sea_2.mat", {"msi": np.full((16, 16, 10), 0.5), "label": ["sea"]})
    ds = load_dataset(import_paper("m2s-gl", src, tmp_path / "ds2"))
    assert ds.ms.dtype == np.float32  # uint16 chips and one float64 chip widen, as np.stack would
    all_rows = ds.samples[ds.samples["modality"] == "ms"]
    sea2 = int(all_rows.loc[all_rows["sample_id"].str.contains("sea_2"), "array_index"].iloc[0])
    assert np.all(ds.ms[sea2] == np.float32(0.5))
    first = int(all_rows.loc[all_rows["sample_id"].str.contains("forest_0"), "array_index"].iloc[0])
    assert ds.ms[first].max() > 1  # the integer chips keep their values


def test_float_mat_becomes_float32(tmp_path):
    src = make_release(tmp_path / "src", "m2s-gl")
    for path in (src / "MS").rglob("*.mat"):
        savemat(path, {"msi": np.full((16, 16, 10), 0.25), "label": [path.parent.name]})
    ds = load_dataset(import_paper("m2s-gl", src, tmp_path / "ds"))
    assert ds.ms.dtype == np.float32 and ds.manifest["modalities"]["ms"]["dtype"] == "float32"


def test_cli(tmp_path):
    src = make_release(tmp_path / "src", "s2s-cn")
    result = CliRunner().invoke(main, ["import-paper", "s2s-cn", str(src), "--out", str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    assert "paper-s2s-cn" in result.output
    (src / "MS").rename(tmp_path / "MS")
    proc = subprocess.run([sys.executable, "-m", "ackd_bench.benchmark.cli", "import-paper", "s2s-cn", str(src),
                           "--out", str(tmp_path / "other")], check=False,
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "MS is missing" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "other").exists()
