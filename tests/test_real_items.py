"""Conformance with real catalogues (issue 16): recorded STAC items of every collection the presets use.

Every recorded item (``tests/data/stac-items``, origins in ``SOURCES.md``) goes through the
curation's own parsing: band → asset resolution by the catalogue profile, the QA asset, CRS,
cloud cover, the Sentinel-2 offset decision and signing. Then the items are loaded into the
pgstac STAC API the tests start (PostgreSQL + stac-fastapi-pgstac on loopback), with asset hrefs
pointing at local COGs of the real assets' layout (`real_items`), and ``build-dataset`` runs end
to end against it, once with the Planetary Computer profile and once with Earth Search's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
from real_items import (
    NAIP_BASE, S2_BASE, ITEMS_DIR, catalogue_of, load, recorded_items, s2_offset_dn, write_naip, write_s2,
    write_static_catalog, write_worldcover,
)

from ackd_bench.benchmark.dataset import load_dataset
from ackd_bench.curation.build import _item_ref
from ackd_bench.curation.catalog_profiles import get_profile, harmonization_offset
from ackd_bench.curation.remote import Remote, RetryPolicy
from ackd_bench.curation.stac import Catalog

pytestmark = pytest.mark.filterwarnings(  # planetary_computer 1.0's pydantic models use a class-based Config
    "ignore:Support for class-based `config` is deprecated:DeprecationWarning")

S2_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
ALL_ITEMS = recorded_items()
# Sentinel-2 MSI centre wavelengths (µm, ESA's nominal values; the items round them slightly differently).
S2_CENTRE_UM = {"B02": 0.490, "B03": 0.560, "B04": 0.665, "B05": 0.705, "B06": 0.740, "B07": 0.783,
                "B08": 0.842, "B8A": 0.865, "B11": 1.610, "B12": 2.190}
# Each recorded Sentinel-2 scene's offset, written out from ESA's rule and the item's own metadata
# (baseline 04.00 or later: +1000, unless Earth Search flags it removed), independently of the code.
EXPECTED_OFFSET = {
    "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531": 0,     # PC, baseline 02.12
    "S2B_MSIL2A_20240419T095549_R122_T47XML_20240419T123458": 1000,  # PC, baseline 05.10
    "S2A_39QTA_20230628_0_L2A": 0,  # Earth Search, 05.09 with earthsearch:boa_offset_applied true
}


def _id(path: Path) -> str:
    return path.relative_to(ITEMS_DIR).with_suffix("").as_posix()


def test_every_profile_collection_has_recorded_items():
    have = {(p.parts[-3], p.parts[-2]) for p in ALL_ITEMS}
    assert {("planetary-computer", c) for c in ("sentinel-2-l2a", "naip", "esa-worldcover")} <= have
    assert ("earth-search", "sentinel-2-l2a") in have
    assert (ITEMS_DIR / "SOURCES.md").is_file()
    sources = (ITEMS_DIR / "SOURCES.md").read_text()
    assert all(f"`{p.relative_to(ITEMS_DIR).as_posix()}`" in sources for p in ALL_ITEMS), "an item without its origin"


@pytest.mark.parametrize("path", ALL_ITEMS, ids=_id)
def test_a_recorded_item_parses_as_the_curation_reads_it(path):
    raw = load(path)
    profile = get_profile(catalogue_of(path))
    collection = path.parent.name
    served_by, entry = profile.source(collection)
    item = pystac.Item.from_dict(raw)
    ref = _item_ref(item, Catalog.__new__(Catalog))  # href() needs no client: the href as recorded
    # CRS: PC's proj:epsg (pystac may migrate it to proj:code) is the EPSG code the grid is built in.
    assert ref.epsg == raw["properties"]["proj:epsg"]
    when = raw["properties"].get("datetime") or raw["properties"]["start_datetime"]
    assert datetime.fromisoformat(ref.datetime.replace("Z", "+00:00")) == datetime.fromisoformat(when.replace("Z", "+00:00"))
    # Every band the profile maps, and the QA asset, is an asset of the item.
    needed = {asset for asset, _ in entry.bands.values()} | ({entry.qa_asset} if entry.qa_asset else set())
    needed |= {entry.asset} if entry.asset else set()
    assert needed <= set(ref.assets), f"missing {needed - set(ref.assets)}"
    for key in needed:
        assert ref.assets[key] == raw["assets"][key]["href"]
    if collection.startswith("sentinel-2"):
        assert 0.0 <= ref.properties["eo:cloud_cover"] <= 100.0
        assert harmonization_offset(entry.offset_rule, ref.properties) == EXPECTED_OFFSET[raw["id"]]
        assert s2_offset_dn(raw) == EXPECTED_OFFSET[raw["id"]]  # the local files are written with the truth
        # The profile's asset for each band is that band: its stated centre wavelength is ESA's.
        for band, (key, index) in entry.bands.items():
            assert index == 1
            (eo,) = raw["assets"][key]["eo:bands"]
            assert eo["center_wavelength"] == pytest.approx(S2_CENTRE_UM[band], abs=0.01), (band, key)
    if collection == "naip":
        # R, G, B are the image's bands 1-3: the item lists them in that order, NIR fourth.
        common = [b["common_name"] for b in raw["assets"]["image"]["eo:bands"]]
        assert common == ["red", "green", "blue", "nir"]
        assert {b: entry.bands[b] for b in ("R", "G", "B", "NIR")} == {
            "R": ("image", 1), "G": ("image", 2), "B": ("image", 3), "NIR": ("image", 4)}
        assert int(ref.properties["naip:year"]) == int(raw["properties"]["datetime"][:4])
        assert raw["properties"]["gsd"] in (0.3, 0.6, 1.0)


@pytest.mark.parametrize("path", recorded_items(collection="sentinel-2-l2a") + recorded_items(collection="esa-worldcover"),
                         ids=_id)
def test_the_local_layout_follows_the_recorded_assets(path):
    """What the local COGs are written with (resolution, dtype, nodata) is what the item states."""
    from real_items import S2_LAYOUT, SCL_LAYOUT, WORLDCOVER_LAYOUT, asset_resolution

    raw = load(path)
    entry = get_profile(catalogue_of(path)).source(path.parent.name)[1]
    if entry.asset:  # land cover: one categorical map at 1/12000°
        expected = {entry.asset: (WORLDCOVER_LAYOUT, 1 / 12000)}
    else:
        expected = {key: (S2_LAYOUT, 20.0 if band in ("B05", "B06", "B07", "B8A", "B11", "B12") else 10.0)
                    for band, (key, _) in entry.bands.items()}
        expected[entry.qa_asset] = (SCL_LAYOUT, 20.0)
    for key, (layout, res) in expected.items():
        assert asset_resolution(raw, key) == pytest.approx(res)
        for band in raw["assets"][key].get("raster:bands", []):
            assert band["data_type"] == layout.dtype and band.get("nodata") == layout.nodata


def test_the_land_cover_version_follows_the_presets_year(tmp_path):
    """Of the recorded 2020 v100 and 2021 v200 items of one tile, the built-in presets' label range
    finds v200 only, in a static catalogue and with an unbounded range both."""
    from ackd_bench.curation.presets import PRESET_DIR, load_preset_file

    entries = []
    for path in recorded_items("planetary-computer", "esa-worldcover"):
        raw = load(path)
        entries.append(("esa-worldcover", tmp_path / "esa-worldcover" / raw["id"], raw))
    catalog = Catalog(str(write_static_catalog(tmp_path, entries)))
    preset = load_preset_file(PRESET_DIR / "eu-s2__us-naip.yaml")
    inside = (7.0, 1.0, 7.1, 1.1)
    found = catalog.search(collection="esa-worldcover", bbox=inside, datetime_range=preset.labels.datetime)
    assert [it.properties["esa_worldcover:product_version"] for it in found.items] == ["2.0.0"]
    both = catalog.search(collection="esa-worldcover", bbox=inside, datetime_range="../..")
    assert sorted(it.properties["esa_worldcover:product_version"] for it in both.items) == ["1.0.0", "2.0.0"]


def _blob_hrefs(raw: dict) -> list[str]:
    return [a["href"] for a in raw["assets"].values() if ".blob.core.windows.net/" in a["href"]]


# The API recordings (the stactools WorldCover examples have relative hrefs).
@pytest.mark.parametrize("path", [p for p in recorded_items("planetary-computer") if _blob_hrefs(load(p))], ids=_id)
def test_planetary_computer_hrefs_are_signed_through_the_funnel(path, token_endpoint):
    """Every recorded PC asset on blob storage gets a SAS token from the (loopback) token endpoint."""
    remote = Remote(sign=True, policy=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, timeout=10.0))
    for href in _blob_hrefs(load(path)):
        signed = remote.href(href)
        assert signed.startswith(href + "?") and "sig=" in signed


@pytest.mark.parametrize("path", recorded_items("earth-search"), ids=_id)
def test_earth_search_hrefs_are_read_unsigned(path):
    raw = load(path)
    remote = Remote(sign=get_profile("earth-search").sign, policy=RetryPolicy())
    for asset in raw["assets"].values():
        assert remote.href(asset["href"]) == asset["href"]


# ---------------------------------------------------------------------------------------------
# End to end: the recorded items in pgstac, build-dataset through the API.

TREE, CROP = 10, 40  # WorldCover codes written west / east of each window's centre


def _conformance_catalog(root: Path) -> tuple[Path, dict]:
    """The recorded imagery items with local COGs, and land-cover items for their tiles (v200 as the
    preset asks; v100 with the classes swapped, so labels from the wrong version would show)."""
    entries, windows = [], {}
    for catalogue in ("planetary-computer", "earth-search"):
        entry = get_profile(catalogue).collections["sentinel-2-l2a"]
        for path in recorded_items(catalogue, "sentinel-2-l2a"):
            raw = load(path)
            folder = root / "sentinel-2-l2a" / raw["id"]
            item, windows[raw["id"]] = write_s2(raw, {b: entry.bands[b][0] for b in S2_BANDS}, entry.qa_asset, folder)
            entries.append(("sentinel-2-l2a", folder, item))
    for path in recorded_items("planetary-computer", "naip"):
        raw = load(path)
        item, windows[raw["id"]] = write_naip(raw, root / "naip" / raw["id"])
        entries.append(("naip", root / "naip" / raw["id"], item))
    templates = {load(p)["properties"]["esa_worldcover:product_version"]: load(p)
                 for p in recorded_items("planetary-computer", "esa-worldcover")}
    for version, codes in (("2.0.0", (TREE, CROP)), ("1.0.0", (CROP, TREE))):
        for folder, item in write_worldcover(templates[version], list(windows.values()), root / "esa-worldcover", codes):
            entries.append(("esa-worldcover", folder, item))
    return write_static_catalog(root, entries), windows


@pytest.fixture(scope="module")
def recorded_api(tmp_path_factory, stac_toolchain):
    """The pgstac STAC API serving the recorded items (skipped or failed as the `stac_api` fixture)."""
    from stac_api_server import StacApiServer

    catalog, windows = _conformance_catalog(tmp_path_factory.mktemp("recorded"))
    with StacApiServer(catalog, stac_toolchain) as server:
        yield server, windows


def _preset(profile: str, ms_windows, rgb_windows) -> dict:
    return {
        "name": f"recorded-{profile}", "description": "recorded items with local assets", "profile": profile, "consistency": "asymmetric",
        "ms": {"collection": "sentinel-2-l2a", "bands": S2_BANDS, "aois": [list(w.aoi) for w in ms_windows],
               "datetime": "2019-01-01/2024-12-31", "gsd": 10.0, "chip_px": 64, "dtype": "uint16",
               "max_item_cloud": 60.0, "block_chips": 2},
        "rgb": {"collection": "naip", "bands": ["R", "G", "B"], "aois": [list(w.aoi) for w in rgb_windows],
                "datetime": "2019-01-01/2023-12-31", "gsd": 1.0, "chip_px": 128, "dtype": "uint8", "block_chips": 2},
        "labels": {"collection": "esa-worldcover", "datetime": "2021-01-01T00:00:00Z/2021-12-31T23:59:59Z",
                   "classes": ["tree_cover", "cropland"], "crosswalk": {TREE: "tree_cover", CROP: "cropland"}},
        "per_class": 6, "purity": 0.7, "max_cloud": 0.01, "max_nodata": 0.0, "split": [0.5, 0.25, 0.25], "seed": 0,
    }


def _build(server, preset: dict, out: Path) -> subprocess.CompletedProcess:
    preset_file = out.parent / f"{preset['name']}.json"
    preset_file.write_text(json.dumps(preset))
    exe = Path(sys.executable).with_name("ackd-bench")
    return subprocess.run([str(exe), "build-dataset", "--preset", str(preset_file), "--catalog", server.url,
                           "--out", str(out), "--workers", "2", "--quiet"], capture_output=True, text=True, timeout=600)


def _check_labels_and_values(ds, windows: dict, ms_ids: set[str], rgb_ids: set[str]) -> None:
    samples = ds.samples
    assert set(samples[samples["modality"] == "ms"]["item_id"]) == ms_ids
    assert set(samples[samples["modality"] == "rgb"]["item_id"]) == rgb_ids
    for modality in ("ms", "rgb"):
        rows = samples[samples["modality"] == modality].sort_values("array_index")
        chips = np.asarray(getattr(ds, modality)[rows["array_index"].to_numpy()])
        # Labels come from the v200 map: tree cover west of each window's centre, cropland east.
        for (_, row), chip in zip(rows.iterrows(), chips):
            w, s, e, n = windows[row["item_id"]].lonlat()
            west = row.geometry.centroid.x < (w + e) / 2
            assert ds.classes[row["label"]] == ("tree_cover" if west else "cropland")
            # Values: the offset removed where the scene has one; R, G, B from the image's bands 1-3.
            bases = [S2_BASE + 100 * b for b in range(len(S2_BANDS))] if modality == "ms" else NAIP_BASE[:3]
            for band, base in zip(chip, bases):
                assert base <= band.min() and band.max() <= base + 6, (row["item_id"], base, band.min(), band.max())


def _build_from(recorded_api, tmp_path, profile: str, ms_items: list[str]):
    """Build with ``profile`` from the recorded S2 items ``ms_items`` and both NAIP items; checked."""
    server, windows = recorded_api
    naip = [p.stem for p in recorded_items("planetary-computer", "naip")]
    preset = _preset(profile, [windows[i] for i in ms_items], [windows[i] for i in naip])
    done = _build(server, preset, tmp_path / profile)
    assert done.returncode == 0, done.stderr[-3000:]
    ds = load_dataset(tmp_path / profile)
    _check_labels_and_values(ds, windows, set(ms_items), set(naip))
    assert ds.manifest["provenance"]["catalog_mode"] == "api"
    assert (ds.samples["modality"] == "ms").sum() == (ds.samples["modality"] == "rgb").sum() == 2 * 6
    return ds


def test_build_dataset_from_recorded_planetary_computer_items(recorded_api, tmp_path):
    """Both processing baselines (02.12 without the offset, 05.10 with it) in one build, both NAIP GSDs."""
    _build_from(recorded_api, tmp_path, "planetary-computer",
                [p.stem for p in recorded_items("planetary-computer", "sentinel-2-l2a")])


def test_build_dataset_from_a_recorded_earth_search_item(recorded_api, tmp_path):
    """Earth Search's asset names and its offset flag (applied: nothing to remove, though the item's
    raster:bands still say offset -0.1); NAIP and WorldCover from the same catalogue (``--catalog``)."""
    ds = _build_from(recorded_api, tmp_path, "earth-search",
                     [p.stem for p in recorded_items("earth-search", "sentinel-2-l2a")])
    hrefs = [json.loads(h) for h in ds.samples[ds.samples["modality"] == "ms"]["hrefs"]]
    assert all(h["B04"].endswith("/red.tif") for h in hrefs)  # Earth Search's asset for B04
