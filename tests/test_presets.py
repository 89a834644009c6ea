"""Presets are validated data: built-ins, JSON files, unknown keys and bad values are errors."""

import json

import pytest

from ackd_bench.curation.presets import PresetError, get_preset, list_presets


def test_builtins_listed_with_descriptions():
    presets = list_presets()
    assert {"demo", "eu-s2__us-naip"} <= set(presets)
    assert all(len(d) > 20 for d in presets.values())


def test_default_preset_targets_planetary_computer_with_signing():
    preset = get_preset("eu-s2__us-naip")
    assert preset.catalog.startswith("https://planetarycomputer")
    assert preset.sign
    assert preset.ms.band_names == ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    assert preset.rgb.band_names == ["R", "G", "B"]


def test_json_round_trip(tmp_path):
    preset = get_preset("demo")
    path = tmp_path / "p.json"
    path.write_text(json.dumps(preset.to_dict()))
    assert get_preset(str(path)) == preset


def test_unknown_key_and_bad_values_are_errors(tmp_path):
    data = get_preset("demo").to_dict()
    data["colour"] = "red"
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PresetError, match="colour"):
        get_preset(str(path))
    with pytest.raises(PresetError, match="known presets"):
        get_preset("nope")
    with pytest.raises(PresetError, match="per_class"):
        get_preset("demo").with_overrides(per_class=-3)
    with pytest.raises(PresetError, match="lon/lat"):
        data = get_preset("demo").to_dict()
        data["ms"]["aois"] = [[500000, 5500000, 510000, 5510000]]
        path.write_text(json.dumps(data))
        get_preset(str(path))
