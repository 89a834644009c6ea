"""Presets are validated data: built-in YAML files, user YAML/JSON files, unknown keys and bad values."""

import json

import pytest
import yaml

from ackd_bench.curation.demo.world import demo_pair_site, demo_regions
from ackd_bench.curation.presets import (
    DEFAULT_PRESET, PRESET_DIR, PresetError, demo_preset, get_preset, list_presets,
)


def _source(name: str) -> dict:
    """A built-in preset's file, as written (bands by name, crosswalk as a mapping)."""
    return yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())


def _write(tmp_path, data, name="p.yaml"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
    return path


def test_builtins_are_data_files_listed_with_descriptions():
    presets = list_presets()
    assert list(presets)[0] == DEFAULT_PRESET == "eu-s2__us-naip"
    assert set(presets) == {p.stem for p in PRESET_DIR.glob("*.yaml")} >= {"demo", "eu-s2__us-naip",
                                                                          "us-s2__us-naip-paired"}
    assert all(len(d) > 20 and "\n" not in d for d in presets.values())
    for name in presets:
        assert get_preset(name).name == name


def test_default_preset_targets_planetary_computer_with_signing():
    preset = get_preset("eu-s2__us-naip")
    assert preset.catalog == "https://planetarycomputer.microsoft.com/api/stac/v1"
    assert preset.sign and preset.profile == "planetary-computer"
    assert preset.consistency == "asymmetric" and preset.paired_fraction == 0.0
    assert preset.ms.band_names == ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    assert [b.asset for b in preset.ms.bands] == preset.ms.band_names
    assert preset.ms.qa_asset == "SCL" and preset.ms.offset_rule == "processing-baseline"
    assert [(b.name, b.asset, b.index) for b in preset.rgb.bands] == [("R", "image", 1), ("G", "image", 2),
                                                                       ("B", "image", 3)]
    assert preset.rgb.offset_rule == "none" and preset.rgb.qa_asset is None
    # >= 7 classes, each reachable from WorldCover codes through the crosswalk.
    assert len(preset.labels.classes) >= 7
    assert all(preset.labels.source_codes(c) for c in preset.labels.classes)
    assert preset.labels.asset == "map"


def test_paired_reference_preset_co_locates_over_us_aois():
    paired, default = get_preset("us-s2__us-naip-paired"), get_preset("eu-s2__us-naip")
    assert paired.consistency == "paired" and paired.paired_fraction == 1.0
    assert paired.shared_aois() == paired.rgb.aois == default.rgb.aois
    assert all(west < -60 for west, *_ in paired.ms.aois)  # US, like its RGB AOIs
    # Same taxonomy and chip geometry as the asymmetric default: results compare directly.
    assert paired.labels == default.labels
    assert (paired.ms.chip_m, paired.rgb.chip_m) == (default.ms.chip_m, default.rgb.chip_m)


def test_demo_preset_names_the_demo_world_regions():
    preset = get_preset("demo")
    assert preset == demo_preset(1.0)
    assert preset.catalog == "demo" and not preset.sign
    assert preset.ms.aois == (demo_regions(1.0)["eu"].bbox_lonlat(),)
    assert preset.rgb.aois == (demo_regions(1.0)["us"].bbox_lonlat(),)
    assert preset.paired_aois == (demo_pair_site(1.0).bbox_lonlat(),)
    assert demo_preset(0.4).rgb.aois == (demo_regions(0.4)["us"].bbox_lonlat(),)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_through_a_file(tmp_path, suffix):
    for name in list_presets():
        preset = get_preset(name)
        assert get_preset(str(_write(tmp_path, preset.to_dict(), f"{name}{suffix}"))) == preset


def test_user_yaml_in_the_builtin_form(tmp_path):
    data = _source("eu-s2__us-naip")
    data.update(name="mine", per_class=20, consistency="partial:.25")
    data["ms"]["bands"] = ["B04", "B08"]
    preset = get_preset(str(_write(tmp_path, data)))
    assert preset.name == "mine" and preset.per_class == 20
    assert preset.consistency == "partial:0.25" and preset.paired_fraction == 0.25
    assert [(b.name, b.asset) for b in preset.ms.bands] == [("B04", "B04"), ("B08", "B08")]
    assert preset.labels.crosswalk[0] == (10, "tree_cover")


def test_unknown_keys_are_refused_with_the_key_and_the_allowed_ones(tmp_path):
    cases = [
        ({"colour": "red"}, "preset: unknown key(s) colour; allowed: catalog, consistency"),
        ({"ms": {"cloud": 3}}, "ms: unknown key(s) cloud; allowed: aois, bands"),
        ({"labels": {"codes": []}}, "labels: unknown key(s) codes"),
    ]
    for change, message in cases:
        data = _source("demo")
        for key, value in change.items():
            if isinstance(value, dict):
                data[key].update(value)
            else:
                data[key] = value
        with pytest.raises(PresetError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
            get_preset(str(_write(tmp_path, data)))
        assert "p.yaml" in str(err.value)  # the message says which file
    data = _source("demo")
    data["rgb"]["bands"] = [{"name": "R", "asset": "image", "band": 1}]
    with pytest.raises(PresetError, match="rgb band: unknown key"):
        get_preset(str(_write(tmp_path, data)))


@pytest.mark.parametrize("path, value, message", [
    (("per_class",), -3, "per_class must be a positive"),
    (("per_class",), "ten", "per_class must be an integer, got 'ten'"),
    # Strict types: YAML's "yes", true and quoted numbers are not what the field declares.
    (("seed",), True, "seed must be an integer, got True"),
    (("sign",), "yes", "sign must be true or false, got 'yes'"),
    (("catalog",), 5, "catalog must be text, got 5"),
    (("ms", "prefer"), 5, "ms: prefer must be text, got 5"),
    (("ms", "max_item_cloud"), "abc", "ms: max_item_cloud must be a number or null, got 'abc'"),
    (("ms", "dtype"), "complex64", "dtype 'complex64' is not an integer or float array dtype"),
    (("ms", "sign"), "no", "ms: sign must be true or false or null, got 'no'"),
    (("purity",), 1.5, "purity must be in"),
    (("max_cloud",), -0.1, "max_cloud must be a fraction"),
    (("split",), [0.5, 0.5, 0.5], "split must be three"),
    (("consistency",), "half", "consistency must be asymmetric, paired or partial:F"),
    (("consistency",), "partial:1.5", "consistency must be"),
    (("paired_block_chips",), 0, "paired_block_chips must be a positive integer"),
    (("profile",), "google-earth-engine", "unknown catalogue profile 'google-earth-engine'; known profiles: "
                                          "earth-search, planetary-computer"),
    (("ms", "aois"), [[500000, 5500000, 510000, 5510000]], "lon/lat"),
    (("ms", "aois"), "demo:mars", "unknown demo region 'mars'"),
    (("ms", "bands"), ["B02", "B99"], "profile 'planetary-computer' has no band 'B99'"),
    (("ms", "prefer"), "earliest", "prefer must be 'latest' or 'nearest:YYYY-MM-DD'"),
    (("ms", "offset_rule"), "guess", "unknown offset_rule 'guess'"),
    (("ms", "chip_px"), 0, "chip_px must be a positive"),
    (("ms", "dtype"), "pixels", "dtype 'pixels'"),
    (("labels", "crosswalk"), {10: "forest"}, "crosswalk maps code 10 to unknown class 'forest'"),
])
def test_bad_values_are_errors(tmp_path, path, value, message):
    """Each bad value is refused by name before anything is built (the message is matched as a regex)."""
    data = _source("demo")
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(PresetError, match=message):
        get_preset(str(_write(tmp_path, data)))


def test_missing_keys_and_unreadable_files(tmp_path):
    data = _source("demo")
    del data["ms"]
    with pytest.raises(PresetError, match="missing key 'ms'"):
        get_preset(str(_write(tmp_path, data)))
    data = _source("demo")
    del data["description"]
    with pytest.raises(PresetError, match=r"preset: missing required key\(s\) description$"):
        get_preset(str(_write(tmp_path, data)))
    with pytest.raises(PresetError, match="known presets: eu-s2__us-naip, demo"):
        get_preset("nope")
    with pytest.raises(PresetError, match="does not exist"):
        get_preset(str(tmp_path / "absent.yaml"))
    (tmp_path / "list.yaml").write_text("- just\n- a list\n")
    with pytest.raises(PresetError, match="preset must be a mapping"):
        get_preset(str(tmp_path / "list.yaml"))
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(PresetError, match=r"broken\.yaml: not accepted as YAML: line 2: expected ',' or ']'"):
        get_preset(str(tmp_path / "broken.yaml"))


def test_yaml_cannot_execute_code(tmp_path):
    """Safe loading: a tag that would build a Python object is refused, nothing runs."""
    marker = tmp_path / "ran"
    (tmp_path / "evil.yaml").write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(PresetError, match="evil.yaml: not accepted as YAML: line 1: could not determine a constructor"):
        get_preset(str(tmp_path / "evil.yaml"))
    assert not marker.exists()


def test_overrides_are_validated_and_consistency_normalised():
    preset = get_preset("demo")
    with pytest.raises(PresetError, match="per_class"):
        preset.with_overrides(per_class=-3)
    with pytest.raises(PresetError, match="partial:F with 0 < F < 1"):
        preset.with_overrides(consistency="partial:0")
    assert preset.with_overrides(consistency="partial:0.50").consistency == "partial:0.5"
    assert preset.with_overrides(consistency="paired").paired_fraction == 1.0
    assert preset.with_overrides(per_class=None) == preset  # None means "keep"


def test_yaml_anchors_aliases_and_deep_nesting_are_refused_before_expansion(tmp_path):
    """A 'billion laughs' alias bomb is refused at its first anchor (it would expand to 10**9 strings);
    nesting deeper than the boundary's limit is refused while composing, never by a RecursionError."""
    levels = ['a0: &a0 "lol"'] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\ndescription: *a9\n")
    with pytest.raises(PresetError, match=r"bomb\.yaml: not accepted as YAML: line 1: YAML anchors and aliases"):
        get_preset(str(bomb))
    deep = tmp_path / "deep.yaml"
    deep.write_text("description: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(PresetError, match=r"deep\.yaml: not accepted as YAML: line 1: nested more than 32 levels"):
        get_preset(str(deep))
    deep_json = tmp_path / "deep.json"
    deep_json.write_text('{"description": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(PresetError, match=r"deep\.json: nested 100001 levels deep, more than the 32 accepted"):
        get_preset(str(deep_json))
