"""Tests of the dataset card: markdown content, the three plots, measured overlap."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from ackd_bench.benchmark.dataset import verify_dataset, write_dataset
from ackd_bench.benchmark.dataset.synthetic import make_synthetic_dataset_inputs
from ackd_bench.benchmark.errors import DatasetCorruptError
from ackd_bench.curation.card import _display_bands, _pick, measure_overlap, write_card

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("class_balance.png", "footprints.png", "examples.png")


@pytest.fixture
def inputs():
    manifest, samples, arrays = make_synthetic_dataset_inputs(0)
    queries = [{"collections": ["naip"], "bbox": [i, 0, i + 1, 1]} for i in range(8)]
    manifest["provenance"]["queries"] = queries
    return manifest, samples, arrays


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_card_writes_markdown_and_three_readable_plots(tmp_path: Path, inputs) -> None:
    manifest, samples, arrays = inputs
    write_card(tmp_path, manifest, samples, arrays)
    for name in PLOTS:
        width, height = _png_size(tmp_path / "card" / name)
        assert width >= 400 and height >= 300, name
    text = (tmp_path / "card.md").read_text()
    assert text.startswith("# synthetic-tiny 0.0.1")
    for entry in manifest["taxonomy"]:
        assert f"| {entry['id']} | {entry['name']} | {entry['source_codes'][0]} |" in text
    for name in PLOTS:
        assert f"(card/{name})" in text
    assert "sentinel-2-l2a" in text and "B02 B03 B04" in text and "naip" in text
    assert "`asymmetric`" in text
    assert "0 of 18 RGB chips (0.0 %)" in text
    assert "queries (8 in all, the first 5" in text
    assert text.count('"bbox"') == 5
    assert "| tree_cover | 2 | 2 | 2 | 6 | 2 | 2 | 2 | 6 |" in text
    assert "| **total** | 6 | 6 | 6 | 18 | 6 | 6 | 6 | 18 |" in text


def test_card_shows_the_first_queries_of_each_group(tmp_path: Path, inputs) -> None:
    manifest, samples, arrays = inputs
    manifest["provenance"]["queries"] = {
        "ms": [{"collections": ["sentinel-2-l2a"], "page": i} for i in range(7)],
        "rgb": [{"collections": ["naip"], "page": i} for i in range(2)],
    }
    write_card(tmp_path, manifest, samples, arrays)
    text = (tmp_path / "card.md").read_text()
    assert "queries (9 in all" in text
    assert '"page": 4' in text and '"page": 5' not in text


def test_card_is_deterministic(tmp_path: Path, inputs) -> None:
    manifest, samples, arrays = inputs
    write_card(tmp_path / "a", manifest, samples, arrays)
    write_card(tmp_path / "b", manifest, samples.sample(frac=1.0, random_state=0), arrays)
    for name in ("card.md", *(f"card/{p}" for p in PLOTS)):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_card_files_are_checksummed_in_a_written_dataset(tmp_path: Path, inputs) -> None:
    manifest, samples, arrays = inputs
    manifest = copy.deepcopy(manifest)
    out = write_dataset(tmp_path / "ds", manifest=manifest, samples=samples, arrays=arrays, card=write_card)
    assert {"card.md", *(f"card/{p}" for p in PLOTS)} <= set(manifest["files"])
    assert verify_dataset(out)["files_checked"] == 4 + 1 + len(PLOTS)
    (out / "card" / "examples.png").write_bytes(b"tampered")
    with pytest.raises(DatasetCorruptError, match="examples.png"):
        verify_dataset(out)


def test_measured_overlap_of_paired_and_asymmetric_layouts(inputs) -> None:
    _, samples, _ = inputs
    assert measure_overlap(samples) == {"rgb": (0, 18), "ms": (0, 18)}
    paired = samples.copy()
    ms_geometry = paired.geometry[paired["modality"] == "ms"].to_numpy()
    rgb_rows = paired.index[paired["modality"] == "rgb"]
    # Co-locate the first 9 RGB chips with MS chips: half of the RGB chips become paired.
    paired.loc[rgb_rows[:9], "geometry"] = ms_geometry[:9]
    assert measure_overlap(paired) == {"rgb": (9, 18), "ms": (9, 18)}


def test_card_handles_a_class_missing_from_one_modality(tmp_path: Path, inputs) -> None:
    manifest, samples, arrays = inputs
    keep = ~((samples["modality"] == "rgb") & (samples["label_name"] == "built_up"))
    samples = samples[keep].copy()
    rgb = samples["modality"] == "rgb"
    old_index = samples.loc[rgb, "array_index"].to_numpy()
    arrays = {**arrays, "rgb": arrays["rgb"][old_index]}
    samples.loc[rgb, "array_index"] = np.arange(rgb.sum())
    write_card(tmp_path, manifest, samples, arrays)
    assert "| built_up | 2 | 2 | 2 | 6 | 0 | 0 | 0 | 0 |" in (tmp_path / "card.md").read_text()
    assert all((tmp_path / "card" / p).is_file() for p in PLOTS)


def test_examples_use_true_colour_bands_and_a_deterministic_spread(inputs) -> None:
    manifest, samples, _ = inputs
    assert _display_bands(manifest, "ms") == [2, 1, 0]  # B04, B03, B02 in the band list
    assert _display_bands(manifest, "rgb") == [0, 1, 2]
    rows = samples[(samples["modality"] == "ms") & (samples["label_name"] == "cropland")]
    picks = _pick(rows, 3)
    assert picks == _pick(rows.sample(frac=1.0, random_state=1), 3)
    ordered = rows.sort_values("sample_id")["array_index"].tolist()
    # Spread over the class: first, middle and last chip by sample_id.
    assert picks == [ordered[0], ordered[round((len(ordered) - 1) / 2)], ordered[-1]]
