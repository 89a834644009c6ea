"""Tests of the dataset format (v2, v1 read): round trip, fingerprint, verification, atomic writes, latent truth."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shapely.affinity import translate

from ackd_bench.benchmark.dataset import (
    MODALITIES,
    SCHEMA_VERSION,
    SPLITS,
    Dataset,
    is_complete_dataset,
    load_dataset,
    summarize,
    verify_dataset,
    write_dataset,
)
from ackd_bench.benchmark.dataset.files import atomic_write_text
from ackd_bench.benchmark.dataset.schema import SAMPLE_COLUMNS, compute_fingerprint
from ackd_bench.benchmark.dataset.synthetic import make_synthetic_dataset_inputs
from ackd_bench.benchmark.dataset.write import clean_stale_staging
from ackd_bench.benchmark.errors import (
    AckdBenchError,
    DatasetCorruptError,
    DatasetExistsError,
    DatasetNotFoundError,
    DatasetSchemaError,
)


def _inputs(seed: int = 0):
    return make_synthetic_dataset_inputs(seed)


def _drop(inputs, sample_ids: set[str]):
    """Remove samples and their chips, re-indexing arrays so the inputs stay valid."""
    manifest, samples, arrays = inputs
    keep = ~samples["sample_id"].isin(sample_ids)
    samples = samples[keep].copy()
    new_arrays = {}
    for modality in MODALITIES:
        rows = samples["modality"] == modality
        old_index = samples.loc[rows, "array_index"].to_numpy()
        new_arrays[modality] = arrays[modality][old_index]
        samples.loc[rows, "array_index"] = np.arange(rows.sum())
    return manifest, samples, new_arrays


def _write(path: Path, inputs=None, **kwargs) -> dict:
    manifest, samples, arrays = inputs or _inputs()
    manifest = copy.deepcopy(manifest)
    write_dataset(path, manifest=manifest, samples=samples, arrays=arrays, **kwargs)
    return manifest


def _fingerprint(inputs) -> str:
    manifest, samples, arrays = inputs
    shas = {}
    for modality in MODALITIES:
        # Hash the exact bytes np.save writes, as the writer does.
        path_bytes = _npy_bytes(arrays[modality])
        shas[modality] = hashlib.sha256(path_bytes).hexdigest()
    return compute_fingerprint(manifest, samples, shas)


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "ds"
    return out, _write(out)


# --- round trip -------------------------------------------------------------------------------


def test_round_trip_preserves_samples_arrays_and_manifest(written) -> None:
    out, manifest = written
    _, samples, arrays = _inputs()
    ds = load_dataset(out)
    assert isinstance(ds, Dataset)
    assert list(ds.samples.columns) == list(SAMPLE_COLUMNS)
    assert ds.samples.crs.to_epsg() == 4326
    assert ds.manifest == json.loads((out / "dataset.json").read_text())
    assert ds.fingerprint == manifest["fingerprint"]
    assert ds.classes == ["tree_cover", "cropland", "built_up"]
    assert isinstance(ds.ms, np.memmap) and isinstance(ds.rgb, np.memmap)
    assert ds.ms.dtype == np.uint16 and ds.rgb.dtype == np.uint8
    np.testing.assert_array_equal(ds.ms, arrays["ms"])
    np.testing.assert_array_equal(ds.rgb, arrays["rgb"])
    loaded = ds.samples.sort_values("sample_id").reset_index(drop=True)
    original = samples.sort_values("sample_id").reset_index(drop=True)
    for column in SAMPLE_COLUMNS:
        if column == "geometry":
            assert loaded.geometry.geom_equals_exact(original.geometry, tolerance=0).all()
        else:
            assert loaded[column].tolist() == original[column].tolist(), column


def test_subset_returns_chips_labels_and_rows_in_array_order(written) -> None:
    out, _ = written
    _, samples, arrays = _inputs()
    ds = load_dataset(out)
    chips, labels, rows = ds.subset("rgb", "val")
    expected = samples[(samples["modality"] == "rgb") & (samples["split"] == "val")]
    expected = expected.sort_values("array_index")
    np.testing.assert_array_equal(chips, arrays["rgb"][expected["array_index"].to_numpy()])
    np.testing.assert_array_equal(labels, expected["label"].to_numpy())
    assert labels.dtype == np.int64
    assert rows["sample_id"].tolist() == expected["sample_id"].tolist()
    with pytest.raises(ValueError):
        ds.subset("sar", "val")


def test_manifest_is_completed_in_place_with_counts_files_fingerprint(written) -> None:
    out, manifest = written
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["created_by"].startswith("ackd-bench ")
    assert manifest["counts"]["ms"]["train"] == {"tree_cover": 2, "cropland": 2, "built_up": 2}
    assert set(manifest["files"]) == {"samples.parquet", "ms.npy", "rgb.npy"}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["fingerprint"])


def test_checksums_file_lists_every_file_in_sha256sum_format(written) -> None:
    out, _ = written
    lines = (out / "checksums.sha256").read_text().splitlines()
    listed = dict(reversed(line.split("  ", 1)) for line in lines)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(listed) == on_disk - {"checksums.sha256"}
    for name, digest in listed.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--check", "--quiet", "checksums.sha256"], cwd=out, check=True)


def test_arrays_are_plain_npy(written) -> None:
    out, _ = written
    _, _, arrays = _inputs()
    for modality in MODALITIES:
        assert (out / f"{modality}.npy").read_bytes() == _npy_bytes(arrays[modality])


def test_a_modality_without_chips_round_trips(tmp_path: Path) -> None:
    inputs = _inputs()
    rgb_ids = set(inputs[1].loc[inputs[1]["modality"] == "rgb", "sample_id"])
    _write(tmp_path / "ds", _drop(inputs, rgb_ids))
    ds = load_dataset(tmp_path / "ds")
    assert ds.rgb.shape == (0, 3, 16, 16)
    assert ds.subset("rgb", "train")[0].shape == (0, 3, 16, 16)
    assert sum(ds.manifest["counts"]["rgb"]["train"].values()) == 0
    assert repr(ds) == f"Dataset(root={tmp_path / 'ds'!r})"


# --- fingerprint --------------------------------------------------------------------------------


def test_fingerprint_is_stable_across_rewrites_and_row_order(tmp_path: Path) -> None:
    first = _write(tmp_path / "a")["fingerprint"]
    second = _write(tmp_path / "b")["fingerprint"]
    manifest, samples, arrays = _inputs()
    shuffled = samples.sample(frac=1.0, random_state=3)
    third = _write(tmp_path / "c", (manifest, shuffled, arrays))["fingerprint"]
    assert first == second == third
    assert verify_dataset(tmp_path / "a")["fingerprint"] == first


def test_fingerprint_matches_the_one_computed_from_inputs(written) -> None:
    _, manifest = written
    assert _fingerprint(_inputs()) == manifest["fingerprint"]


def test_fingerprint_ignores_hrefs_provenance_and_card(tmp_path: Path) -> None:
    reference = _write(tmp_path / "a")["fingerprint"]
    manifest, samples, arrays = _inputs()
    manifest["provenance"] = {"catalog": "http://127.0.0.1:8080/stac", "queries": [], "built": "now"}
    samples = samples.copy()
    samples["hrefs"] = [json.dumps({"B02": f"file:///data/{i}.tif"}) for i in range(len(samples))]

    def card(staging: Path, *_args) -> None:
        (staging / "card.md").write_text("# another card\n")

    assert _write(tmp_path / "b", (manifest, samples, arrays), card=card)["fingerprint"] == reference


def _change_label(manifest, samples, arrays):
    row = samples.index[0]
    samples.loc[row, ["label", "label_name"]] = [2, "built_up"]


def _change_array_byte(manifest, samples, arrays):
    arrays["ms"][0, 0, 0, 0] ^= 1


def _change_split(manifest, samples, arrays):
    samples.loc[samples.index[0], "split"] = "test"


def _move_footprint(manifest, samples, arrays):
    samples.loc[samples.index[0], "geometry"] = translate(samples.geometry.iloc[0], xoff=2e-7)


def _rename_class(manifest, samples, arrays):
    manifest["taxonomy"][0]["name"] = "forest"
    samples.loc[samples["label"] == 0, "label_name"] = "forest"


def _change_purity(manifest, samples, arrays):
    samples.loc[samples.index[0], "purity"] = samples["purity"].iloc[0] - 1e-5


@pytest.mark.parametrize(
    "change",
    [_change_label, _change_array_byte, _change_split, _move_footprint, _rename_class, _change_purity],
)
def test_fingerprint_changes_when_the_data_changes(tmp_path: Path, change) -> None:
    reference = _write(tmp_path / "a")["fingerprint"]
    manifest, samples, arrays = _inputs()
    samples = samples.copy()
    arrays = {m: a.copy() for m, a in arrays.items()}
    change(manifest, samples, arrays)
    assert _write(tmp_path / "b", (manifest, samples, arrays))["fingerprint"] != reference


@pytest.mark.parametrize("change, recipe_changes", [
    (_change_array_byte, False), (_change_purity, False),  # what was read: content only
    (_change_label, True), (_change_split, True), (_move_footprint, True), (_rename_class, True),  # what was chosen
])
def test_the_recipe_fingerprint_follows_the_choices_not_the_pixels(tmp_path: Path, change, recipe_changes) -> None:
    """Pixels and pixel-derived values (a newer GDAL may change them) move the content fingerprint only;
    labels, splits, chip windows and the taxonomy move both."""
    reference = _write(tmp_path / "a")
    manifest, samples, arrays = _inputs()
    samples = samples.copy()
    arrays = {m: a.copy() for m, a in arrays.items()}
    change(manifest, samples, arrays)
    changed = _write(tmp_path / "b", (manifest, samples, arrays))
    assert changed["fingerprint"] != reference["fingerprint"]
    assert (changed["recipe_fingerprint"] != reference["recipe_fingerprint"]) == recipe_changes
    assert load_dataset(tmp_path / "b").recipe_fingerprint == changed["recipe_fingerprint"]


def test_a_dataset_written_before_the_recipe_fingerprint_gets_it_on_reading(tmp_path: Path) -> None:
    written = _write(tmp_path / "a")
    manifest_path = tmp_path / "a" / "dataset.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["recipe_fingerprint"]
    manifest_path.write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n")
    assert load_dataset(tmp_path / "a", verify=False).recipe_fingerprint == written["recipe_fingerprint"]


def test_fingerprint_ignores_sub_precision_noise(tmp_path: Path) -> None:
    reference = _fingerprint(_inputs())
    manifest, samples, arrays = _inputs()
    samples = samples.copy()
    # 1e-10 deg and 1e-9 in fractions lie below the 1e-7 deg / 1e-6 rounding of the fingerprint.
    samples["geometry"] = samples.geometry.translate(xoff=1e-10)
    samples["cloud_fraction"] = samples["cloud_fraction"] + 1e-9
    assert _fingerprint((manifest, samples, arrays)) == reference


# --- verification -------------------------------------------------------------------------------


def _flip_byte(out: Path) -> None:
    data = bytearray((out / "ms.npy").read_bytes())
    data[-5] ^= 0xFF
    (out / "ms.npy").write_bytes(bytes(data))


def _truncate(out: Path) -> None:
    data = (out / "ms.npy").read_bytes()
    (out / "ms.npy").write_bytes(data[: len(data) - 100])


def _edit_manifest(out: Path, edit, *, fix_checksum: bool) -> None:
    manifest = json.loads((out / "dataset.json").read_text())
    edit(manifest)
    text = json.dumps(manifest, sort_keys=True, indent=2) + "\n"
    (out / "dataset.json").write_text(text)
    if fix_checksum:
        checksums = (out / "checksums.sha256").read_text()
        digest = hashlib.sha256(text.encode()).hexdigest()
        checksums = re.sub(r"^[0-9a-f]{64}  dataset.json$", f"{digest}  dataset.json", checksums, flags=re.M)
        (out / "checksums.sha256").write_text(checksums)


def _bump(manifest):
    manifest["counts"]["ms"]["train"]["cropland"] += 1


CORRUPTIONS = {
    "flipped byte": (_flip_byte, "ms.npy", "checksum mismatch"),
    "missing array": (lambda out: (out / "rgb.npy").unlink(), "rgb.npy", "missing"),
    "missing samples": (lambda out: (out / "samples.parquet").unlink(), "samples.parquet", "missing"),
    "missing checksums": (lambda out: (out / "checksums.sha256").unlink(), "checksums.sha256", "missing"),
    "missing manifest": (lambda out: (out / "dataset.json").unlink(), "dataset.json", "missing"),
    "truncated npy": (_truncate, "ms.npy", "checksum mismatch"),
    "schema version": (
        lambda out: _edit_manifest(out, lambda m: m.update(schema_version=3), fix_checksum=False),
        "dataset.json", "schema_version 3",
    ),
    "edited counts": (lambda out: _edit_manifest(out, _bump, fix_checksum=False), "dataset.json", "checksum"),
    "edited counts, checksum fixed": (
        lambda out: _edit_manifest(out, _bump, fix_checksum=True), "dataset.json", "ms/train/cropland: manifest 3, samples 2",
    ),
    "edited fingerprint, checksum fixed": (
        lambda out: _edit_manifest(out, lambda m: m.update(fingerprint="0" * 64), fix_checksum=True),
        "dataset.json", "fingerprint",
    ),
    "bad checksum line": (
        lambda out: (out / "checksums.sha256").write_text("abc  ../../etc/passwd\n"),
        "checksums.sha256", "not '<sha256>  <path>'",
    ),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_verify_names_the_corrupt_file_and_the_reason(written, name: str) -> None:
    out, _ = written
    corrupt, file, reason = CORRUPTIONS[name]
    assert verify_dataset(out)["fingerprint"]  # intact before the damage
    corrupt(out)
    with pytest.raises(DatasetCorruptError) as info:
        verify_dataset(out)
    assert Path(info.value.file).name == file
    assert reason in str(info.value)
    assert "\n" not in str(info.value)
    assert not is_complete_dataset(out)
    with pytest.raises(DatasetCorruptError):
        load_dataset(out)


def test_structural_checks_run_without_hashing(written) -> None:
    out, _ = written
    assert load_dataset(out, verify=False).ms.shape[0] == 18
    _truncate(out)
    with pytest.raises(DatasetCorruptError, match="ms.npy"):
        load_dataset(out, verify=False)


def test_verify_reports_unlisted_files(written) -> None:
    out, manifest = written
    (out / "notes.txt").write_text("mine")
    report = verify_dataset(out)
    assert report["unlisted_files"] == ["notes.txt"]
    assert report["fingerprint"] == manifest["fingerprint"]
    assert report["samples"] == {"ms": 18, "rgb": 18}


@pytest.mark.parametrize("make", ["missing", "empty dir", "file"])
def test_not_found_says_where_it_looked_and_how_to_build(tmp_path: Path, make: str) -> None:
    path = tmp_path / "nothing"
    if make == "empty dir":
        path.mkdir()
    elif make == "file":
        path.write_text("x")
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(path)
    assert str(path) in str(info.value)
    assert "ackd-bench build-dataset --catalog demo --out" in str(info.value)
    assert isinstance(info.value, AckdBenchError)
    assert not is_complete_dataset(path)


# --- writing safely -------------------------------------------------------------------------------


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_write_refuses_a_file_and_leaves_it_untouched(tmp_path: Path) -> None:
    target = tmp_path / "ds"
    target.write_bytes(b"precious")
    with pytest.raises(DatasetExistsError, match="not a directory"):
        _write(target)
    assert target.read_bytes() == b"precious"
    assert _siblings(target) == ["ds"]


def test_write_refuses_a_foreign_directory_and_leaves_it_untouched(tmp_path: Path) -> None:
    target = tmp_path / "ds"
    (target / "sub").mkdir(parents=True)
    (target / "sub" / "thesis.tex").write_text("precious")
    (target / "dataset.json").write_text("{}")  # a look-alike name is not enough
    with pytest.raises(DatasetExistsError, match="not an ackd-bench dataset"):
        _write(target)
    assert (target / "sub" / "thesis.tex").read_text() == "precious"
    assert sorted(p.name for p in target.iterdir()) == ["dataset.json", "sub"]
    assert _siblings(target) == ["ds"]


def test_write_refuses_a_dataset_holding_user_files(written) -> None:
    out, _ = written
    (out / "my-notes.md").write_text("keep me")
    with pytest.raises(DatasetExistsError):
        _write(out, _inputs(seed=1))
    assert (out / "my-notes.md").read_text() == "keep me"


def test_write_into_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    manifest = _write(tmp_path / "ds")
    assert verify_dataset(tmp_path / "ds")["fingerprint"] == manifest["fingerprint"]


def test_rewrite_replaces_a_complete_dataset(written) -> None:
    out, old = written
    new = _write(out, _inputs(seed=1))
    assert new["fingerprint"] != old["fingerprint"]
    assert verify_dataset(out)["fingerprint"] == new["fingerprint"]
    assert _siblings(out) == ["ds"]


def test_interrupted_write_keeps_the_previous_dataset(written) -> None:
    out, old = written

    def failing_card(staging: Path, *_args) -> None:
        (staging / "card.md").write_text("half")
        raise RuntimeError("killed while plotting")

    manifest, samples, arrays = _inputs(seed=1)
    with pytest.raises(RuntimeError, match="killed while plotting"):
        write_dataset(out, manifest=manifest, samples=samples, arrays=arrays, card=failing_card)
    assert verify_dataset(out)["fingerprint"] == old["fingerprint"]
    assert not (out / "card.md").exists()
    assert _siblings(out) == ["ds"]
    assert "fingerprint" not in manifest  # the caller's manifest is only completed on success


def test_interrupted_first_write_leaves_nothing(tmp_path: Path) -> None:
    def failing_card(*_args) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path / "ds", card=failing_card)
    assert list(tmp_path.iterdir()) == []


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_staging_of_a_killed_writer_is_cleaned(tmp_path: Path) -> None:
    stale = tmp_path / f".ds.partial-{_dead_pid()}"
    (stale / "card").mkdir(parents=True)
    (stale / "ms.npy").write_bytes(b"half written")
    unrelated = tmp_path / ".other.partial-1"
    unrelated.mkdir()
    _write(tmp_path / "ds")
    assert not stale.exists()
    assert unrelated.exists()  # belongs to another output directory
    assert is_complete_dataset(tmp_path / "ds")


def test_a_dataset_moved_aside_by_a_killed_swap_is_restored(written) -> None:
    out, old = written
    aside = out.parent / f".ds.old-{_dead_pid()}"
    os.rename(out, aside)
    clean_stale_staging(out.parent, "ds")
    assert not aside.exists()
    assert verify_dataset(out)["fingerprint"] == old["fingerprint"]


def test_staging_of_a_live_writer_is_left_alone(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / f".ds.partial-{process.pid}"
        live.mkdir()
        clean_stale_staging(tmp_path, "ds")
        assert live.exists()
    finally:
        process.kill()
        process.wait()


def _break_columns(manifest, samples, arrays):
    return manifest, samples.drop(columns=["block"]), arrays


def _duplicate_id(manifest, samples, arrays):
    samples = samples.copy()
    samples.loc[samples.index[1], "sample_id"] = samples["sample_id"].iloc[0]
    return manifest, samples, arrays


def _short_array(manifest, samples, arrays):
    return manifest, samples, {**arrays, "ms": arrays["ms"][:-1]}


def _index_gap(manifest, samples, arrays):
    samples = samples.copy()
    samples.loc[samples.index[0], "array_index"] = 99
    return manifest, samples, arrays


def _float_array(manifest, samples, arrays):
    return manifest, samples, {**arrays, "rgb": arrays["rgb"].astype(np.float32)}


def _wrong_label_name(manifest, samples, arrays):
    samples = samples.copy()
    samples.loc[samples.index[0], "label_name"] = "cropland"
    return manifest, samples, arrays


def _signed_href(manifest, samples, arrays):
    samples = samples.copy()
    signed = "https://x.blob.core.windows.net/a.tif?se=2030-01-01&sig=abc"
    samples.loc[samples.index[0], "hrefs"] = json.dumps({"B02": signed})
    return manifest, samples, arrays


def _naive_datetime(manifest, samples, arrays):
    samples = samples.copy()
    samples.loc[samples.index[0], "datetime"] = "2023-06-01T10:00:00"
    return manifest, samples, arrays


def _projected_footprints(manifest, samples, arrays):
    return manifest, samples.to_crs("EPSG:3857"), arrays


def _taxonomy_from_one(manifest, samples, arrays):
    manifest = copy.deepcopy(manifest)
    for entry in manifest["taxonomy"]:
        entry["id"] += 1
    return manifest, samples, arrays


def _missing_modality(manifest, samples, arrays):
    return manifest, samples, {"ms": arrays["ms"]}


@pytest.mark.parametrize(
    "breaker",
    [_break_columns, _duplicate_id, _short_array, _index_gap, _float_array, _wrong_label_name,
     _signed_href, _naive_datetime, _projected_footprints, _taxonomy_from_one, _missing_modality],
)
def test_invalid_inputs_are_rejected_before_anything_is_written(tmp_path: Path, breaker) -> None:
    manifest, samples, arrays = breaker(*_inputs())
    with pytest.raises(DatasetSchemaError):
        write_dataset(tmp_path / "ds", manifest=copy.deepcopy(manifest), samples=samples, arrays=arrays)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_text_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


# --- summary --------------------------------------------------------------------------------------


def test_summarize_shows_identity_modalities_and_counts(tmp_path: Path) -> None:
    inputs = _drop(_inputs(), {"ms-train-tree_cover-0", "rgb-test-built_up-0", "rgb-test-built_up-1"})
    manifest = _write(tmp_path / "ds", inputs)
    text = summarize(load_dataset(tmp_path / "ds"))
    assert manifest["fingerprint"] in text
    assert "synthetic-tiny" in text and "0.0.1" in text
    assert "sentinel-2-l2a" in text and "naip" in text and "B8A" in text and "uint16" in text
    assert "asymmetric" in text
    names = (*manifest["counts"]["ms"]["train"], "total")
    rows = {
        line.split()[0]: [int(v) for v in line.split()[1:]]
        for line in text.splitlines()
        if line.split() and line.split()[0] in names
    }
    # Columns: ms train/val/test/all, rgb train/val/test/all.
    assert rows["tree_cover"] == [1, 2, 2, 5, 2, 2, 2, 6]
    assert rows["built_up"] == [2, 2, 2, 6, 2, 2, 0, 4]
    assert rows["total"] == [5, 6, 6, 17, 6, 6, 4, 16]
    assert all(split in text for split in SPLITS)


# --- latent truth (format v2) and v1 compatibility ------------------------------------------------

# The fingerprint of make_synthetic_dataset_inputs(0), computed by the v1 code before latent truth
# existed: data without latent columns must keep it.
V1_FINGERPRINT = "670edbcc0723c5d2e3f28c8077e3918a2c591e22cc519e747c0a4921d1856e9a"


def _latent_inputs(seed: int = 0):
    return make_synthetic_dataset_inputs(seed, latent=True)


def _set(samples, row: int, column: str, value):
    samples = samples.copy()
    samples[column] = samples[column].astype(object)
    samples.at[samples.index[row], column] = value
    return samples


def test_datasets_without_latent_truth_keep_their_v1_fingerprint(tmp_path: Path) -> None:
    assert _fingerprint(_inputs()) == V1_FINGERPRINT
    manifest = _write(tmp_path / "ds")
    assert manifest["schema_version"] == SCHEMA_VERSION == 2
    assert manifest["fingerprint"] == V1_FINGERPRINT


def test_latent_columns_round_trip(tmp_path: Path) -> None:
    manifest, samples, arrays = _latent_inputs()
    # Rows of a real-catalogue build: composition only, sub-type and factors unknown.
    samples = _set(_set(samples, 0, "latent_subtype", ""), 0, "latent_factors", [])
    written = _write(tmp_path / "ds", (manifest, samples, arrays))
    ds = load_dataset(tmp_path / "ds")
    assert ds.has_latent and ds.manifest["latent"] == manifest["latent"]
    assert ds.manifest["schema_version"] == 2 and ds.fingerprint == written["fingerprint"] != V1_FINGERPRINT
    loaded = ds.samples.set_index("sample_id").loc[samples["sample_id"]]
    for column in ("latent_composition", "latent_factors"):
        for got, want in zip(loaded[column], samples[column]):
            assert isinstance(got, np.ndarray) and got.dtype == np.float64
            np.testing.assert_array_equal(got, np.asarray(want, dtype=np.float64))  # float64 is stored exactly
    assert loaded["latent_subtype"].tolist() == samples["latent_subtype"].tolist()
    assert loaded["latent_subtype"].iloc[0] == "" and len(loaded["latent_factors"].iloc[0]) == 0
    import pyarrow.parquet as pq

    schema = pq.read_schema(tmp_path / "ds" / "samples.parquet")
    assert str(schema.field("latent_composition").type) == "list<element: double>"


def test_all_unknown_subtypes_and_factors_round_trip(tmp_path: Path) -> None:
    manifest, samples, arrays = _latent_inputs()
    manifest["latent"] = {"factors": [], "subtypes": [], "source": "land-cover map"}
    samples = samples.assign(latent_subtype="", latent_factors=[[] for _ in range(len(samples))])
    _write(tmp_path / "ds", (manifest, samples, arrays))
    ds = load_dataset(tmp_path / "ds")
    assert all(len(f) == 0 and f.dtype == np.float64 for f in ds.samples["latent_factors"])
    assert "land-cover map" in summarize(ds)


def _shift_composition(samples):
    values = list(samples["latent_composition"].iloc[3])
    values[0], values[1] = values[0] - 1e-4, values[1] + 1e-4  # still in [0, 1], still sums to 1
    return _set(samples, 3, "latent_composition", values)


def _flip_subtype(samples):
    subtype = samples["latent_subtype"].iloc[0]
    return _set(samples, 0, "latent_subtype", subtype[:-1] + ("b" if subtype.endswith("a") else "a"))


LATENT_CHANGES = {
    "composition": lambda m, s: (m, _shift_composition(s)),
    "subtype": lambda m, s: (m, _flip_subtype(s)),
    "factor": lambda m, s: (m, _set(s, 5, "latent_factors", [s["latent_factors"].iloc[5][0] + 1e-6,
                                                             s["latent_factors"].iloc[5][1]])),
    "factor names": lambda m, s: ({**m, "latent": {**m["latent"], "factors": ["shade", "wetness"]}}, s),
}


@pytest.mark.parametrize("name", list(LATENT_CHANGES))
def test_fingerprint_changes_when_a_latent_value_changes(name: str) -> None:
    manifest, samples, arrays = _latent_inputs()
    reference = _fingerprint((manifest, samples, arrays))
    changed_manifest, changed = LATENT_CHANGES[name](copy.deepcopy(manifest), samples)
    assert _fingerprint((changed_manifest, changed, arrays)) != reference
    assert _fingerprint(_latent_inputs()) == reference  # the change, not chance, moved it


BAD_LATENT = {
    "composition too short": (lambda m, s: (m, _set(s, 0, "latent_composition", [0.5, 0.5])), "3 finite numbers"),
    "composition negative": (lambda m, s: (m, _set(s, 0, "latent_composition", [1.2, -0.2, 0.0])), r"\[0, 1\]"),
    "composition sum": (lambda m, s: (m, _set(s, 0, "latent_composition", [0.5, 0.3, 0.2 + 2e-6])), "sums to"),
    "composition nan": (lambda m, s: (m, _set(s, 0, "latent_composition", [np.nan, 0.5, 0.5])), "finite"),
    "composition not numbers": (lambda m, s: (m, _set(s, 0, "latent_composition", "0.5,0.5")), "lists of numbers"),
    "unknown subtype": (lambda m, s: (m, _set(s, 0, "latent_subtype", "cropland/terraces")), "latent.subtypes"),
    "factors wrong length": (lambda m, s: (m, _set(s, 0, "latent_factors", [0.1])), "2 finite numbers"),
    "factor inf": (lambda m, s: (m, _set(s, 0, "latent_factors", [np.inf, 0.0])), "finite"),
    "a column missing": (lambda m, s: (m, s.drop(columns="latent_factors")), "come together"),
    "columns without block": (lambda m, s: ({k: v for k, v in m.items() if k != "latent"}, s), "'latent' block"),
    "block without columns": (lambda m, s: (m, s.drop(columns=["latent_composition", "latent_subtype",
                                                                "latent_factors"])), "'latent' block"),
    "block keys": (lambda m, s: ({**m, "latent": {"factors": []}}, s), "exactly"),
    "block factor names": (lambda m, s: ({**m, "latent": {**m["latent"], "factors": ["a", "a"]}}, s), "unique"),
}


@pytest.mark.parametrize("name", list(BAD_LATENT))
def test_bad_latent_truth_is_refused_before_anything_is_written(tmp_path: Path, name: str) -> None:
    breaker, message = BAD_LATENT[name]
    manifest, samples, arrays = _latent_inputs()
    manifest, samples = breaker(copy.deepcopy(manifest), samples)
    with pytest.raises(DatasetSchemaError, match=message):
        write_dataset(tmp_path / "ds", manifest=manifest, samples=samples, arrays=arrays)
    assert list(tmp_path.iterdir()) == []


def test_composition_sum_within_tolerance_is_accepted(tmp_path: Path) -> None:
    manifest, samples, arrays = _latent_inputs()
    samples = _set(samples, 0, "latent_composition", [0.5, 0.3, 0.2 + 5e-7])  # 5e-7 < the 1e-6 tolerance
    _write(tmp_path / "ds", (manifest, samples, arrays))
    assert verify_dataset(tmp_path / "ds")["schema_version"] == 2


def test_a_v1_dataset_still_loads_and_verifies(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    # What the v1 writer wrote: the same files, with schema_version 1 in dataset.json.
    _write(out)
    _edit_manifest(out, lambda m: m.update(schema_version=1), fix_checksum=True)
    ds = load_dataset(out)
    assert ds.manifest["schema_version"] == 1 and not ds.has_latent
    assert ds.fingerprint == V1_FINGERPRINT == verify_dataset(out)["fingerprint"]
    assert "schema_version 1" in summarize(ds) and "Latent" not in summarize(ds)


def test_a_v1_manifest_with_latent_truth_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    _write(out, _latent_inputs())
    _edit_manifest(out, lambda m: m.update(schema_version=1), fix_checksum=True)
    with pytest.raises(DatasetCorruptError, match="needs schema_version 2"):
        load_dataset(out)


def test_inspect_mentions_latent_truth(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ackd_bench.benchmark.cli import main

    _write(tmp_path / "latent", _latent_inputs())
    _write(tmp_path / "plain")
    shown = CliRunner().invoke(main, ["inspect", str(tmp_path / "latent")])
    assert shown.exit_code == 0, shown.output
    assert "Latent truth present" in shown.output and "brightness, moisture" in shown.output
    assert "sub-type on 36" in shown.output
    plain = CliRunner().invoke(main, ["inspect", str(tmp_path / "plain")])
    assert plain.exit_code == 0 and "Latent" not in plain.output
