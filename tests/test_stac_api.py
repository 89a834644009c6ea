"""The curation's STAC path against a real STAC API: stac-fastapi-pgstac on PostgreSQL + pgstac.

Planetary Computer serves its catalogue with this stack. The `stac_api` fixture (conftest.py,
`stac_api_server.py`) loads the small demo world into it and serves the COGs over HTTP.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from ackd_bench.benchmark.dataset import load_dataset
from ackd_bench.curation.build import build_dataset
from ackd_bench.curation.stac import Catalog, CatalogError

COG = "image/tiff; application=geotiff; profile=cloud-optimized"
S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def _items(stac_api, collection: str) -> list[dict]:
    """Every item of a collection exactly as the API serves it (raw JSON, no pystac migration)."""
    page = _get(f"{stac_api.url}collections/{collection}/items?limit=100")
    assert not [lk for lk in page["links"] if lk["rel"] == "next"], "the demo world fits one page"
    return page["features"]


def _static_fingerprint(small_dataset: Path) -> str:
    return json.loads((small_dataset / "dataset.json").read_text())["fingerprint"]


def test_the_api_serves_the_loaded_catalog(stac_api):
    conforms = _get(stac_api.url + "conformance")["conformsTo"]
    assert "https://api.stacspec.org/v1.0.0/item-search" in conforms
    assert "https://api.stacspec.org/v1.0.0/item-search#query" in conforms
    collections = {c["id"]: c for c in _get(stac_api.url + "collections")["collections"]}
    assert sorted(collections) == sorted(stac_api.loaded["collections"]) == [
        "ackd-demo-truth", "esa-worldcover", "naip", "sentinel-2-l2a"]  # demo world v2's truth collection too
    for cid in collections:
        served = sorted(item["id"] for item in _items(stac_api, cid))
        assert served == sorted(i for c, i in stac_api.loaded["items"] if c == cid)
        assert collections[cid]["item_assets"], cid  # PC's collections describe their assets


def test_sentinel2_items_have_planetary_computers_shape(stac_api):
    items = _items(stac_api, "sentinel-2-l2a")
    assert len(items) == 3
    for item in items:
        props = item["properties"]
        assert re.fullmatch(r"S2[AB]_MSIL2A_\d{8}T\d{6}_R\d{3}_T\d\d[A-Z]{3}_\d{8}T\d{6}", item["id"])
        assert item["id"].startswith(props["platform"].replace("Sentinel-", "S"))
        assert re.fullmatch(r"\d\d\.\d\d", props["s2:processing_baseline"])
        assert 0.0 <= props["eo:cloud_cover"] <= 100.0
        assert re.fullmatch(r"\d\d[A-Z]{3}", props["s2:mgrs_tile"]) and f"_T{props['s2:mgrs_tile']}_" in item["id"]
        assert props["s2:product_type"] == "S2MSI2A" and props["constellation"] == "Sentinel 2"
        assert isinstance(props["proj:epsg"], int) and 32601 <= props["proj:epsg"] <= 32760  # a UTM zone
        assert {*S2_BANDS, "SCL"} <= set(item["assets"])
        for key in (*S2_BANDS, "SCL"):
            asset = item["assets"][key]
            assert asset["type"] == COG and asset["roles"] == ["data"], key
            assert asset["href"].startswith(stac_api.files_url + "/") and asset["href"].endswith(f"/{key}.tif")
            assert len(asset["proj:shape"]) == 2 and len(asset["proj:transform"]) == 6 and len(asset["proj:bbox"]) == 4
            assert asset["gsd"] == asset["proj:transform"][0] == -asset["proj:transform"][4]
            if key != "SCL":
                assert [b["name"] for b in asset["eo:bands"]] == [key]
        assert item["assets"]["B02"]["gsd"] == 10 and item["assets"]["B05"]["gsd"] == 20
    # The three baselines the harmonisation must tell apart (before and after the +1000 offset).
    assert sorted(i["properties"]["s2:processing_baseline"] for i in items) == ["03.00", "04.00", "05.09"]


def test_naip_and_worldcover_items_have_planetary_computers_shape(stac_api):
    naip = _items(stac_api, "naip")
    assert naip
    for item in naip:
        props, image = item["properties"], item["assets"]["image"]
        assert re.fullmatch(r"[a-z]{2}_m_\d{7}_(ne|nw|se|sw)_\d{2}_\d{3}_\d{8}", item["id"])
        assert item["id"].startswith(props["naip:state"] + "_m_")
        assert isinstance(props["naip:year"], str) and props["naip:year"] == item["properties"]["datetime"][:4]
        assert image["type"] == COG and image["roles"] == ["data"]
        assert [b["name"] for b in image["eo:bands"]] == ["Red", "Green", "Blue", "NIR"]
        assert isinstance(props["proj:epsg"], int) and len(image["proj:transform"]) == 6
    cover = _items(stac_api, "esa-worldcover")
    assert cover
    for item in cover:
        props, lc_map = item["properties"], item["assets"]["map"]
        assert re.fullmatch(r"ESA_WorldCover_10m_2021_v200_[NS]\d\d[EW]\d{3}", item["id"])
        assert item["id"].endswith(props["esa_worldcover:product_tile"])
        assert props["esa_worldcover:product_version"] == "2.0.0"
        # A yearly product: no instant, only the year's interval (as on Planetary Computer).
        assert props.get("datetime") is None  # pgstac leaves the null out
        assert (props["start_datetime"], props["end_datetime"]) == ("2021-01-01T00:00:00Z", "2021-12-31T23:59:59Z")
        assert props["proj:epsg"] == 4326
        assert lc_map["type"] == COG and lc_map["roles"] == ["data"]
        assert {c["value"] for c in lc_map["classification:classes"]} >= {10, 20, 30, 40, 50, 60, 80, 90}


SEARCHES = {  # each: a search the build makes or could make, and what it exercises
    "s2-clear": dict(collection="sentinel-2-l2a", datetime_range="2021-01-01/2023-12-31",
                     query={"eo:cloud_cover": {"lt": 40}}),
    "s2-one-summer": dict(collection="sentinel-2-l2a", datetime_range="2022-06-01/2022-08-31"),
    "s2-baseline-gte-04": dict(collection="sentinel-2-l2a", datetime_range="2021-01-01/2023-12-31",
                               query={"s2:processing_baseline": {"gte": "04.00"}}),
    "labels-any-time": dict(collection="esa-worldcover", datetime_range="../.."),
    "naip-open-start": dict(collection="naip", datetime_range="../2021-07-31T23:59:59Z"),
    # A date-only end covers its whole day (S2A_MSIL2A_20210714T103031 was acquired on it).
    "s2-ends-on-a-scene-day": dict(collection="sentinel-2-l2a", datetime_range="2021-06-14/2021-07-14"),
}


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_the_api_finds_what_the_static_search_finds(stac_api, small_world, small_preset, name):
    """Server-side (pgstac) and client-side (static catalog) search have the same semantics."""
    kwargs = SEARCHES[name]
    spec = small_preset.rgb if kwargs["collection"] == "naip" else small_preset.ms
    bbox = spec.aois[0]
    api = Catalog(stac_api.url).search(bbox=bbox, **kwargs)
    static = Catalog(str(small_world)).search(bbox=bbox, **kwargs)
    assert api.query["mode"] == "api" and static.query["mode"] == "static"
    assert [it.id for it in api.items] == [it.id for it in static.items]
    assert api.items, "each search finds something in the demo world"
    if kwargs["datetime_range"] == "../..":  # sent as no datetime at all: STAC APIs refuse "../.."
        assert "datetime" not in api.query


def test_a_build_through_the_api_gives_the_static_fingerprint(stac_api, small_preset, small_dataset, tmp_path):
    out = tmp_path / "api"
    report = build_dataset(small_preset.with_overrides(catalog=stac_api.url), out, workers=2, progress=False)
    ds = load_dataset(out)
    assert ds.fingerprint == report.fingerprint == _static_fingerprint(small_dataset)
    provenance = ds.manifest["provenance"]
    assert provenance["catalog"] == stac_api.url and provenance["catalog_mode"] == "api"
    queries = [q for qs in provenance["queries"].values() for q in qs]
    assert all(q["mode"] == "api" for q in queries)
    assert {"eo:cloud_cover": {"lt": small_preset.ms.max_item_cloud}} in [q.get("query") for q in queries]
    hrefs = [href for h in ds.samples["hrefs"] for href in json.loads(h).values()]
    assert hrefs and all(h.startswith(stac_api.files_url + "/") for h in hrefs)


def test_the_cli_builds_through_the_api(stac_api, small_preset, small_dataset, tmp_path):
    """`ackd-bench build-dataset --preset FILE.json --catalog URL` as a real subprocess."""
    preset_file = tmp_path / "small.json"
    preset_file.write_text(json.dumps(small_preset.to_dict()))
    out = tmp_path / "cli"
    exe = Path(sys.executable).with_name("ackd-bench")
    done = subprocess.run(
        [str(exe), "build-dataset", "--preset", str(preset_file), "--catalog", stac_api.url, "--out", str(out),
         "--workers", "2", "--quiet"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fingerprint = _static_fingerprint(small_dataset)
    assert f"fingerprint {fingerprint}" in done.stdout
    assert load_dataset(out).manifest["provenance"]["catalog"] == stac_api.url


def test_an_unknown_collection_is_named_with_the_known_ones(stac_api, small_preset):
    with pytest.raises(CatalogError) as caught:
        Catalog(stac_api.url).search(collection="sentinel-2-l1c", bbox=small_preset.ms.aois[0],
                                     datetime_range="2021-01-01/2023-12-31")
    message = str(caught.value)
    assert "'sentinel-2-l1c' is not in catalogue " + stac_api.url in message
    assert "esa-worldcover, naip, sentinel-2-l2a" in message


def test_a_known_collection_without_matches_is_an_empty_result(stac_api, small_preset):
    found = Catalog(stac_api.url).search(collection="sentinel-2-l2a", bbox=small_preset.ms.aois[0],
                                         datetime_range="1999-01-01/1999-12-31")
    assert found.items == [] and found.query["datetime"] == "1999-01-01/1999-12-31"


def test_a_build_whose_search_finds_nothing_says_what_was_searched(stac_api, small_preset, tmp_path):
    preset = small_preset.with_overrides(catalog=stac_api.url)
    ms = dataclasses.replace(preset.ms, datetime="1999-01-01/1999-12-31")
    with pytest.raises(CatalogError) as caught:
        build_dataset(preset.with_overrides(ms=ms), tmp_path / "empty", workers=1, progress=False)
    message = str(caught.value)
    assert "no sentinel-2-l2a items" in message and stac_api.url in message
    assert "1999-01-01/1999-12-31" in message and str(preset.ms.aois[0]) in message
    assert not (tmp_path / "empty").exists()


def test_an_out_of_range_bbox_is_refused_with_the_servers_reason(stac_api):
    with pytest.raises(CatalogError) as caught:
        Catalog(stac_api.url).search(collection="sentinel-2-l2a", bbox=(9.0, 49.8, 9.3, 95.0),
                                     datetime_range="2021-01-01/2023-12-31")
    err = caught.value
    assert err.status == 400 and err.url == stac_api.url
    message = str(err)
    assert message.startswith(f"search on {stac_api.url} failed (HTTP 400): bbox: ")
    assert "(-180, -90, 180, 90)" in message  # the server's own explanation, not a raw JSON dump
    assert '"bbox": [9.0, 49.8, 9.3, 95.0]' in message  # and the query that was refused
    assert "{" not in message.split(" — query ")[0]

