"""Catalogue profiles: band -> asset mapping per catalogue, radiometry rules, one-field switching."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from rasterio.windows import from_bounds

from ackd_bench.curation.catalog_profiles import (
    OFFSET_RULES, ProfileError, get_profile, harmonization_offset, list_profiles, profile_from_dict,
)
from ackd_bench.curation.presets import PRESET_DIR, demo_preset, preset_from_dict
from ackd_bench.curation.reading import ItemRef, read_chip
from ackd_bench.curation.remote import Remote

S2_NAMES = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]


def test_planetary_computer_profile():
    pc = get_profile("planetary-computer")
    assert pc.url == "https://planetarycomputer.microsoft.com/api/stac/v1" and pc.sign
    s2 = pc.collections["sentinel-2-l2a"]
    assert {b: s2.bands[b] for b in S2_NAMES} == {b: (b, 1) for b in S2_NAMES}
    assert s2.qa_asset == "SCL" and s2.offset_rule == "processing-baseline"
    assert pc.collections["naip"].bands["G"] == ("image", 2)
    assert pc.collections["esa-worldcover"].asset == "map"


def test_earth_search_profile():
    es = get_profile("earth-search")
    assert es.url == "https://earth-search.aws.element84.com/v1" and not es.sign
    s2 = es.collections["sentinel-2-l2a"]
    assert [s2.bands[b][0] for b in S2_NAMES] == ["blue", "green", "red", "rededge1", "rededge2", "rededge3",
                                                  "nir", "nir08", "swir16", "swir22"]
    assert s2.qa_asset == "scl" and s2.offset_rule == "earth-search"
    # No land cover on Earth Search, and its NAIP is requester-pays: both come via Planetary Computer.
    for collection in ("naip", "esa-worldcover"):
        served_by, entry = es.source(collection)
        assert served_by.name == "planetary-computer" and entry is served_by.collections[collection]
    assert set(list_profiles()) == {"planetary-computer", "earth-search"}


def test_earth_search_collection_1():
    """sentinel-2-c1-l2a: Earth Search's asset names, and ESA's offset kept in the files (baseline rule)."""
    es = get_profile("earth-search")
    c1, c0 = es.collections["sentinel-2-c1-l2a"], es.collections["sentinel-2-l2a"]
    assert c1.id == "sentinel-2-c1-l2a" and c1.bands == c0.bands and c1.qa_asset == "scl"
    assert c1.offset_rule == "processing-baseline"
    # Collection 1 starts at baseline 05.00: every scene has its +1000 removed, whatever a flag says.
    assert harmonization_offset(c1.offset_rule, {"s2:processing_baseline": "05.10"}) == 1000
    assert harmonization_offset(c1.offset_rule, {"s2:processing_baseline": "05.00",
                                                 "earthsearch:boa_offset_applied": True}) == 1000
    data = yaml.safe_load((PRESET_DIR / "eu-s2__us-naip.yaml").read_text())
    preset = preset_from_dict({**data, "profile": "earth-search",
                               "ms": {**data["ms"], "collection": "sentinel-2-c1-l2a"}})
    assert [b.asset for b in preset.ms.bands][:3] == ["blue", "green", "red"]
    assert preset.ms.offset_rule == "processing-baseline" and preset.ms.qa_asset == "scl"
    assert preset.source_catalog("ms") == (es.url, False)


def test_a_preset_switches_catalogue_with_one_field():
    data = yaml.safe_load((PRESET_DIR / "eu-s2__us-naip.yaml").read_text())
    pc = preset_from_dict(data)
    es = preset_from_dict({**data, "profile": "earth-search"})
    assert es.ms.band_names == pc.ms.band_names == S2_NAMES  # the benchmark's names do not change
    assert [b.asset for b in es.ms.bands][:3] == ["blue", "green", "red"]
    assert es.ms.qa_asset == "scl" and es.ms.offset_rule == "earth-search"
    assert es.source_catalog("ms") == ("https://earth-search.aws.element84.com/v1", False)
    assert es.source_catalog("rgb") == es.source_catalog("labels") == (get_profile("planetary-computer").url, True)
    assert pc.source_catalog("ms") == pc.source_catalog("labels") == (pc.catalog, True)
    assert preset_from_dict(json.loads(json.dumps(es.to_dict()))) == es  # the resolved form round-trips


@pytest.mark.parametrize("properties, pc_offset, es_offset", [
    ({"s2:processing_baseline": "03.00"}, 0, 0),
    ({"s2:processing_baseline": "04.00"}, 1000, 1000),
    ({"s2:processing_baseline": "05.09"}, 1000, 1000),
    ({}, 0, 0),
    ({"s2:processing_baseline": "04.00", "earthsearch:boa_offset_applied": True}, 1000, 0),
    ({"s2:processing_baseline": "05.00", "earthsearch:boa_offset_applied": False}, 1000, 1000),
    ({"s2:processing_baseline": "04.00", "sentinel:boa_offset_applied": True}, 1000, 0),  # the flag's v0 name
    ({"s2:processing_baseline": "02.14", "earthsearch:boa_offset_applied": False}, 0, 0),
])
def test_offset_rules(properties, pc_offset, es_offset):
    assert harmonization_offset("processing-baseline", properties) == pc_offset
    assert harmonization_offset("earth-search", properties) == es_offset
    assert harmonization_offset("none", properties) == 0
    with pytest.raises(ProfileError, match="unknown offset rule"):
        harmonization_offset("sometimes", properties)
    assert set(OFFSET_RULES) == {"none", "processing-baseline", "earth-search"}


def test_read_chip_applies_the_profile_rule(small_world: Path):
    """A baseline-04.00 scene read under the Earth Search rule: offset removed unless flagged applied."""
    item_dir = next((small_world.parent / "sentinel-2-l2a").glob("*20220619*"))
    item = json.loads((item_dir / f"{item_dir.name}.json").read_text())
    assert item["properties"]["s2:processing_baseline"] == "04.00"
    spec = dataclasses.replace(demo_preset(0.4).ms, chip_px=64)  # 640 m chips (the demo preset's are 240 m)
    with rasterio.open(item_dir / "B08.tif") as src:
        x0, y1 = src.transform.c + 640 * 3, src.transform.f - 640 * 3  # a chip well inside the scene
        bounds = (x0, y1 - 640.0, x0 + 640.0, y1)
        raw = src.read(1, window=from_bounds(*bounds, transform=src.transform)).astype(np.int32)
    candidate = {"candidate_id": "c", "minx": bounds[0], "miny": bounds[1], "maxx": bounds[2], "maxy": bounds[3],
                 "crs": "EPSG:32632"}
    assets = {k: str(item_dir / v["href"][2:]) for k, v in item["assets"].items()}
    b08 = spec.band_names.index("B08")
    for applied, expected in ((False, np.clip(raw - 1000, 1, None)), (True, raw)):
        ref = ItemRef(id=item["id"], collection="sentinel-2-l2a", datetime=item["properties"]["datetime"], epsg=32632,
                      assets=assets, properties={"s2:processing_baseline": "04.00",
                                                 "earthsearch:boa_offset_applied": applied})
        got = read_chip(candidate, [ref], dataclasses.replace(spec, offset_rule="earth-search"),
                        max_cloud=1.0, max_nodata=1.0, remote=Remote())
        assert got.reject is None
        assert np.array_equal(got.array[b08].astype(np.int32), expected)


def test_profile_files_are_strict():
    base = {"name": "x", "url": "https://example.org/stac", "sign": False, "collections": {}}
    with pytest.raises(ProfileError, match="unknown key"):
        profile_from_dict({**base, "token": "secret"})
    with pytest.raises(ProfileError, match="unknown offset_rule 'maybe'"):
        profile_from_dict({**base, "collections": {"s2": {"bands": {"B02": "b2"}, "offset_rule": "maybe"}}})
    with pytest.raises(ProfileError, match="'via' stands alone"):
        profile_from_dict({**base, "collections": {"naip": {"via": "planetary-computer", "id": "naip"}}})
    with pytest.raises(ProfileError, match="1-based index"):
        profile_from_dict({**base, "collections": {"naip": {"bands": {"R": ["image", 0]}}}})
    with pytest.raises(ProfileError, match="known profiles: earth-search, planetary-computer"):
        get_profile("nowhere")
    with pytest.raises(ProfileError, match="has no collection 'landsat'"):
        get_profile("earth-search").source("landsat")


def test_one_catalogue_for_every_source_replaces_the_profiles_via():
    """Earth Search takes NAIP and WorldCover from Planetary Computer; `--catalog URL` (a mirror or a private
    pgstac holding all three) sends every source there, `--catalog SOURCE=URL` only that one."""
    data = yaml.safe_load((PRESET_DIR / "eu-s2__us-naip.yaml").read_text())
    es = preset_from_dict({**data, "profile": "earth-search"})
    mirror = "http://127.0.0.1:8082"
    every = es.with_catalogs({"": mirror})
    assert {every.source_catalog(s)[0] for s in ("ms", "rgb", "labels")} == {mirror}
    one = es.with_catalogs({"labels": mirror})
    assert one.source_catalog("labels") == (mirror, True)  # keeps its signing rule
    assert one.source_catalog("rgb") == (get_profile("planetary-computer").url, True)
    assert one.source_catalog("ms") == es.source_catalog("ms")
    assert preset_from_dict(json.loads(json.dumps(one.to_dict()))) == one  # round-trips as a preset file
