"""Tests of the embedded demo world: catalog contract, rasters, spectra, budget, determinism.

World v2's own structure (sub-types, the imperfect map, latent truth, cross-CPU determinism) is
tested in test_world_v2*.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pystac
import pystac_client
import pytest
import rasterio
from pystac.extensions.projection import ProjectionExtension
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from ackd_bench.curation.demo.landcover import render_landcover
from ackd_bench.curation.demo.layout import STYLES, build_landscape
from ackd_bench.curation.demo.world import (
    DEMO_COLLECTIONS,
    DEMO_DATE_RANGE,
    DEMO_WORLD_VERSION,
    DemoWorldError,
    build_demo_catalog,
    cached_demo_catalog,
    generator_digest,
    demo_label_map,
    demo_regions,
    demo_truth_labels,
)

CODES = (10, 20, 30, 40, 50, 60, 80, 90)
S2_KEYS = {"B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12", "SCL"}
S2_10M = {"B02", "B03", "B04", "B08"}
FLAGGED = (3, 8, 9, 10)
SCALE = 0.4  # conftest's small world: eu 14.4 km, us 4.8 km: 2 × 2 NAIP tiles, two flights


@pytest.fixture(scope="module")
def catalog_path(small_world: Path) -> Path:
    return small_world


@pytest.fixture(scope="module")
def catalog(catalog_path: Path) -> pystac.Catalog:
    return pystac.Catalog.from_file(str(catalog_path))


def _items(catalog: pystac.Catalog, collection_id: str) -> list[pystac.Item]:
    return sorted(catalog.get_child(collection_id).get_items(),
                  key=lambda item: item.datetime or item.common_metadata.start_datetime)


def _read(item: pystac.Item, key: str) -> np.ndarray:
    with rasterio.open(item.assets[key].get_absolute_href()) as src:
        return src.read()


def _s2_reflectance(item: pystac.Item, key: str) -> np.ndarray:
    """Reflectance of a 10 m-grid band (20 m bands repeated), using the item's raster:bands."""
    band = item.assets[key].extra_fields["raster:bands"][0]
    dn = _read(item, key)[0].astype(np.float64)
    if key not in S2_10M:
        dn = np.repeat(np.repeat(dn, 2, axis=0), 2, axis=1)
    return dn * band["scale"] + band["offset"]


def _scl_10m(item: pystac.Item) -> np.ndarray:
    return np.repeat(np.repeat(_read(item, "SCL")[0], 2, axis=0), 2, axis=1)


def _labels_on_grid(catalog: pystac.Catalog, region: str, grid_href: str, truth: bool = False) -> np.ndarray:
    """The region's esa-worldcover map (or its true classes) warped (nearest) onto another asset's grid."""
    collection, asset = ("ackd-demo-truth", "class") if truth else ("esa-worldcover", "map")
    (item,) = [i for i in _items(catalog, collection)
               if i.properties["ackd:demo_region"] == region]
    map_href = item.assets[asset].get_absolute_href()
    with rasterio.open(grid_href) as ref, rasterio.open(map_href) as src:
        with WarpedVRT(src, crs=ref.crs, transform=ref.transform, width=ref.width,
                       height=ref.height, resampling=Resampling.nearest) as vrt:
            return vrt.read(1)


def _pure_chip_counts(labels: np.ndarray, chip: int, purity: float = 0.7) -> dict[int, int]:
    """Non-overlapping chips on a grid whose majority class covers >= purity, per class."""
    h, w = (labels.shape[0] // chip) * chip, (labels.shape[1] // chip) * chip
    blocks = labels[:h, :w].reshape(h // chip, chip, w // chip, chip)
    return {c: int(((blocks == c).mean(axis=(1, 3)) >= purity).sum()) for c in CODES}


def _sha256_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- regions and API -----------------------------------------------------------------------


def test_regions_follow_the_contract() -> None:
    regions = demo_regions()
    assert regions["eu"].epsg == 32632 and regions["us"].epsg == 26915
    assert regions["eu"].bounds == (500000, 5520000, 536000, 5556000)
    assert regions["us"].bounds == (400000, 4642000, 412000, 4654000)
    assert regions["eu"].collections == ("sentinel-2-l2a",)
    assert regions["us"].collections == ("naip",)
    west, south, east, north = regions["eu"].bbox_lonlat()
    assert 8.9 < west < east < 9.7 and 49.7 < south < north < 50.3  # central Germany
    west, south, east, north = regions["us"].bbox_lonlat()
    assert -94.3 < west < east < -93.9 and 41.8 < south < north < 42.1  # Iowa
    small = demo_regions(0.25)
    assert small["eu"].bounds == (500000, 5520000, 509000, 5529000)
    assert small["us"].bounds == (400000, 4642000, 403000, 4645000)
    assert DEMO_COLLECTIONS == ("sentinel-2-l2a", "naip", "esa-worldcover", "ackd-demo-truth")
    assert DEMO_DATE_RANGE == ("2021-01-01T00:00:00Z", "2023-12-31T23:59:59Z")


@pytest.mark.parametrize("scale", [0.0, -1.0, 2.5, float("nan"), 0.001])
def test_bad_scales_are_refused(scale: float) -> None:
    with pytest.raises(ValueError, match="scale"):
        demo_regions(scale)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seeds_are_refused(seed: object, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seed"):
        build_demo_catalog(tmp_path / "x", seed=seed, scale=0.1, progress=False)
    assert not (tmp_path / "x").exists()


# --- catalog structure ---------------------------------------------------------------------


def test_catalog_layout_is_self_contained(catalog: pystac.Catalog, catalog_path: Path) -> None:
    root = catalog_path.parent
    assert catalog.catalog_type == pystac.CatalogType.SELF_CONTAINED
    assert [c.id for c in catalog.get_children()] == list(DEMO_COLLECTIONS)
    for collection_id in DEMO_COLLECTIONS:
        assert (root / collection_id / "collection.json").is_file()
        for item in catalog.get_child(collection_id).get_items():
            folder = root / collection_id / item.id
            assert (folder / f"{item.id}.json").is_file()
            raw = json.loads((folder / f"{item.id}.json").read_text())
            for asset in raw["assets"].values():
                assert asset["href"].startswith("./")  # relative, beside the item
                assert (folder / asset["href"][2:]).is_file()
    text = "".join(p.read_text() for p in root.rglob("*.json"))
    assert str(root) not in text  # nothing absolute leaks into the JSON


def test_pystac_client_opens_the_static_catalog(catalog_path: Path) -> None:
    # A static catalog advertises no API conformance; pystac-client says so with a warning and
    # falls back to walking links. That is expected here, so silence exactly its warnings.
    with pystac_client.warnings.ignore():
        client = pystac_client.Client.open(str(catalog_path))
        ids = sorted(c.id for c in client.get_collections())
        items = list(client.get_collection("naip").get_items())
    assert ids == sorted(DEMO_COLLECTIONS)
    assert len(items) == 4  # 4 km tiles over 4.8 km


def test_catalog_records_seed_and_version(catalog: pystac.Catalog) -> None:
    meta = catalog.extra_fields["ackd:demo_world"]
    assert meta == {"version": DEMO_WORLD_VERSION, "seed": 0, "scale": SCALE}


# --- Sentinel-2 ----------------------------------------------------------------------------


def test_s2_assets_match_their_metadata(catalog: pystac.Catalog) -> None:
    items = _items(catalog, "sentinel-2-l2a")
    assert [i.properties["s2:processing_baseline"] for i in items] == ["03.00", "04.00", "05.09"]
    dates = [i.datetime.date().isoformat() for i in items]
    assert dates == ["2021-07-14", "2022-06-19", "2023-08-08"]
    for item in items:
        assert re.fullmatch(r"S2[AB]_MSIL2A_\d{8}T\d{6}_R\d{3}_T32UNA_\d{8}T\d{6}", item.id)
        assert set(item.assets) == S2_KEYS
        props = item.properties
        assert props["constellation"] == "Sentinel 2" and props["instruments"] == ["msi"]
        assert props["s2:mgrs_tile"] == "32UNA"
        assert ProjectionExtension.ext(item).epsg == 32632
        for key, asset in item.assets.items():
            gsd = 10 if key in S2_10M else 20
            proj = ProjectionExtension.ext(asset)
            with rasterio.open(asset.get_absolute_href()) as src:
                assert src.crs.to_epsg() == 32632
                assert src.dtypes[0] == ("uint8" if key == "SCL" else "uint16")
                assert src.nodata == 0
                assert src.res == (gsd, gsd)
                assert list(src.shape) == proj.shape
                assert list(src.transform)[:6] == pytest.approx(proj.transform)
                assert src.overviews(1)  # cloud-optimized: internal overviews
                assert src.profile["blockxsize"] == 256 or src.width < 256
            assert asset.media_type == "image/tiff; application=geotiff; profile=cloud-optimized"
            assert asset.roles == ["data"]
            if key != "SCL":
                (band,) = asset.extra_fields["eo:bands"]
                assert band["name"] == key and band["center_wavelength"] > 0.4


def test_20m_bands_are_aggregated_from_the_10m_world(catalog: pystac.Catalog) -> None:
    """B8A (20 m) and B08 (10 m) see nearly the same NIR: misaligned grids would decorrelate."""
    item = _items(catalog, "sentinel-2-l2a")[0]
    b08 = _read(item, "B08")[0].astype(np.float64)
    b08_20 = b08.reshape(b08.shape[0] // 2, 2, b08.shape[1] // 2, 2).mean(axis=(1, 3))
    b8a = _read(item, "B8A")[0].astype(np.float64)
    assert np.corrcoef(b08_20.ravel(), b8a.ravel())[0, 1] > 0.97
    shifted = np.corrcoef(b08_20[:, 1:].ravel(), b8a[:, :-1].ravel())[0, 1]
    assert shifted < np.corrcoef(b08_20.ravel(), b8a.ravel())[0, 1] - 0.02


def test_cloud_cover_is_the_scl_flagged_percentage(catalog: pystac.Catalog) -> None:
    covers = []
    for item in _items(catalog, "sentinel-2-l2a"):
        scl = _read(item, "SCL")[0]
        expected = 100.0 * np.isin(scl, FLAGGED).sum() / np.count_nonzero(scl)
        assert item.properties["eo:cloud_cover"] == pytest.approx(expected, abs=1e-5)
        covers.append(expected)
    # Roughly 10 %, 30 %, 50 % cover on the three dates.
    assert covers[0] < covers[1] < covers[2]
    assert 5 < covers[0] < 20 and 20 < covers[1] < 40 and 38 < covers[2] < 62


def test_processing_baseline_offset(catalog: pystac.Catalog) -> None:
    for item in _items(catalog, "sentinel-2-l2a"):
        with_offset = item.properties["s2:processing_baseline"] >= "04.00"
        water = _scl_10m(item) == 6
        assert water.sum() > 100
        water_b08 = np.median(_read(item, "B08")[0][water])
        assert (water_b08 >= 1000) == with_offset
        offset = item.assets["B08"].extra_fields["raster:bands"][0]["offset"]
        assert offset == (-0.1 if with_offset else 0.0)


def test_swath_edge_only_in_2022(catalog: pystac.Catalog) -> None:
    for item in _items(catalog, "sentinel-2-l2a"):
        scl = _read(item, "SCL")[0]
        nodata = (scl == 0).mean()
        b02 = _read(item, "B02")[0]
        assert np.array_equal(b02 == 0, _scl_10m(item) == 0)
        if item.datetime.year == 2022:
            assert 0.2 < nodata < 0.3
            assert (scl[:, -1] == 0).all() and (scl[:, 0] != 0).all()  # east side is cut
        else:
            assert nodata == 0


def test_clouds_bright_cirrus_brighter_shadows_dark(catalog: pystac.Catalog) -> None:
    item = _items(catalog, "sentinel-2-l2a")[2]
    scl = _scl_10m(item)
    b02, b08 = _s2_reflectance(item, "B02"), _s2_reflectance(item, "B08")
    clear = np.isin(scl, (4, 5))
    assert np.median(b02[scl == 9]) > 0.3
    assert np.median(b02[scl == 9]) > 4 * np.median(b02[clear])
    assert np.median(b02[scl == 10]) > np.median(b02[clear]) + 0.01
    assert np.median(b08[scl == 3]) < 0.6 * np.median(b08[scl == 4])
    assert {2, 3, 4, 5, 6, 8, 9, 10} <= set(np.unique(_read(item, "SCL")[0]).tolist())


# --- spectra -------------------------------------------------------------------------------


def _class_medians(catalog: pystac.Catalog) -> dict[int, dict[str, float]]:
    item = _items(catalog, "sentinel-2-l2a")[0]
    labels = _labels_on_grid(catalog, "eu", item.assets["B02"].get_absolute_href(), truth=True)
    clear = np.isin(_scl_10m(item), (2, 4, 5, 6))
    bands = {k: _s2_reflectance(item, k) for k in ("B02", "B03", "B04", "B08", "B8A", "B11")}
    return {c: {k: float(np.median(v[clear & (labels == c)])) for k, v in bands.items()}
            for c in CODES}


def test_vegetation_nir_red_ratio_far_above_water(catalog: pystac.Catalog) -> None:
    med = _class_medians(catalog)
    ratio = {c: med[c]["B08"] / med[c]["B04"] for c in CODES}
    assert min(ratio[10], ratio[30], ratio[40]) > 4.0
    assert ratio[80] < 0.5
    assert min(ratio[40], ratio[30]) > ratio[90] > ratio[50] > ratio[80]


def _log_gap(a: dict[str, float], b: dict[str, float], keys: tuple[str, ...]) -> float:
    """Largest |log ratio| between two classes' medians over some bands (symmetric)."""
    return max(abs(float(np.log(a[k] / b[k]))) for k in keys)


def test_herbaceous_classes_differ_more_beyond_the_visible(catalog: pystac.Catalog) -> None:
    """Wetland leaves only a partial trace in the visible; red edge to SWIR set it apart from grass
    and crop. Grass and crop overlap everywhere (early-season crop looks like pasture), a little."""
    med = _class_medians(catalog)
    visible, beyond = ("B02", "B03", "B04"), ("B8A", "B11")
    for a, b in ((30, 40), (30, 90), (40, 90)):  # grassland, cropland, herbaceous wetland
        assert 0.01 < _log_gap(med[a], med[b], visible) < 0.4, (a, b)  # a trace, not identical
    for a, b in ((30, 90), (40, 90)):
        assert _log_gap(med[a], med[b], beyond) > _log_gap(med[a], med[b], visible) + 0.1, (a, b)
    assert 0.03 < _log_gap(med[30], med[40], beyond) < 0.3
    for other in (10, 50, 60, 80):  # other classes differ from grass in the visible clearly
        assert _log_gap(med[other], med[30], visible) > 0.2, other


def test_chip_means_separate_classes_better_with_ms_than_rgb(catalog: pystac.Catalog) -> None:
    """Nearest-centroid on per-band chip means: the MS teacher's edge over an RGB student."""
    item = _items(catalog, "sentinel-2-l2a")[0]
    labels = _labels_on_grid(catalog, "eu", item.assets["B02"].get_absolute_href(), truth=True)
    keys = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
    cube = np.stack([_s2_reflectance(item, k) for k in keys])
    chip = 32
    h, w = (labels.shape[0] // chip) * chip, (labels.shape[1] // chip) * chip
    lab = labels[:h, :w].reshape(h // chip, chip, w // chip, chip).transpose(0, 2, 1, 3)
    lab = lab.reshape(-1, chip * chip)
    clear = np.isin(_scl_10m(item), (2, 4, 5, 6))[:h, :w]
    clear = clear.reshape(h // chip, chip, w // chip, chip).mean(axis=(1, 3)).ravel()
    feats = cube[:, :h, :w].reshape(10, h // chip, chip, w // chip, chip).mean(axis=(2, 4))
    feats = feats.reshape(10, -1).T
    major = np.array([np.bincount(row, minlength=91).argmax() for row in lab])
    purity = np.array([np.mean(row == m) for row, m in zip(lab, major)])
    keep = (purity >= 0.7) & (clear >= 0.99) & np.isin(major, CODES)
    x, y = feats[keep], major[keep]
    assert len(np.unique(y)) == 8 and len(y) > 200

    def accuracy(columns: list[int]) -> float:
        train = np.arange(len(y)) % 2 == 0
        z = np.log(x[:, columns])
        centroids = {c: z[train & (y == c)].mean(axis=0) for c in np.unique(y[train])}
        classes = np.array(list(centroids))
        dist = np.stack([((z[~train] - centroids[c]) ** 2).sum(axis=1) for c in classes])
        return float(np.mean(classes[dist.argmin(axis=0)] == y[~train]))

    ms, rgb = accuracy(list(range(10))), accuracy([0, 1, 2])
    assert ms > 0.75
    assert ms > rgb + 0.06, (ms, rgb)  # v1: + 0.15; v2's sub-types leave partial cues in the visible


def test_crops_change_between_dates_forests_do_not(catalog: pystac.Catalog) -> None:
    items = _items(catalog, "sentinel-2-l2a")
    labels = _labels_on_grid(catalog, "eu", items[0].assets["B02"].get_absolute_href(), truth=True)
    (truth,) = [i for i in _items(catalog, "ackd-demo-truth") if i.properties["ackd:demo_region"] == "eu"]
    harvested = _read(truth, "subtype")[0] == truth.properties["ackd:subtypes"].index("cropland/harvested") + 1
    first, last = items[0], items[2]
    clear = np.isin(_scl_10m(first), (4, 5)) & np.isin(_scl_10m(last), (4, 5))
    before, after = _s2_reflectance(first, "B8A"), _s2_reflectance(last, "B8A")

    def spread(code: int) -> float:
        keep = clear & (labels == code)
        return float(np.std(np.log(after[keep] / before[keep])))

    crop_spread, forest_spread = spread(40), spread(10)
    assert crop_spread > 2 * forest_spread
    # Growing crops are green on every date; harvested fields (stubble over soil) are not.
    for item in items:
        red, nir = _s2_reflectance(item, "B04"), _s2_reflectance(item, "B08")
        crop = np.isin(_scl_10m(item), (4, 5)) & (labels == 40)
        ndvi = (nir - red) / (nir + red)
        assert np.mean(ndvi[crop & ~harvested] < 0.3) < 0.08
        assert np.median(ndvi[crop & harvested]) < np.median(ndvi[crop & ~harvested]) - 0.2


# --- NAIP ----------------------------------------------------------------------------------


def test_naip_items(catalog: pystac.Catalog) -> None:
    items = _items(catalog, "naip")
    region = demo_regions(SCALE)["us"]
    assert len({i.id for i in items}) == len(items) == 4
    assert len({i.datetime for i in items}) >= 2  # two flights
    lefts, bottoms, rights, tops = [], [], [], []
    for item in items:
        assert re.fullmatch(r"ia_m_\d{7}_(ne|nw|se|sw)_15_100_\d{8}", item.id)
        assert item.properties["naip:state"] == "ia" and item.properties["naip:year"] == "2021"
        assert item.properties["gsd"] == 1.0
        assert set(item.assets) == {"image"}
        proj = ProjectionExtension.ext(item)
        assert proj.epsg == 26915
        with rasterio.open(item.assets["image"].get_absolute_href()) as src:
            assert src.count == 4 and set(src.dtypes) == {"uint8"}
            assert src.crs.to_epsg() == 26915 and src.res == (1.0, 1.0) and src.nodata == 0
            assert list(src.transform)[:6] == pytest.approx(proj.transform)
            assert list(src.shape) == proj.shape
            lefts.append(src.bounds.left)
            bottoms.append(src.bounds.bottom)
            rights.append(src.bounds.right)
            tops.append(src.bounds.top)
        names = [b["name"] for b in item.assets["image"].extra_fields["eo:bands"]]
        assert names == ["Red", "Green", "Blue", "NIR"]
    assert (min(lefts), min(bottoms), max(rights), max(tops)) == region.bounds


def test_naip_tiles_join_seamlessly(catalog: pystac.Catalog) -> None:
    """Across a tile edge within one flight the scene continues: no jump in the NIR."""
    first_flight = _items(catalog, "naip")[0].datetime
    items = [i for i in _items(catalog, "naip") if i.datetime == first_flight]
    tops = sorted(items, key=lambda i: -i.bbox[3])
    upper, lower = tops[0], tops[-1]
    assert upper.bbox[1] == pytest.approx(lower.bbox[3], abs=1e-3)
    a, b = _read(upper, "image")[3].astype(float), _read(lower, "image")[3].astype(float)
    edge = np.abs(a[-1] - b[0]).mean()
    inside = np.abs(a[-2] - a[-1]).mean()
    assert edge < 1.5 * inside + 2


def test_naip_herbaceous_classes_close_in_rgb(catalog: pystac.Catalog) -> None:
    """In NAIP's RGB, grass, crop and wetland differ by a faint trace; its NIR separates them more."""
    item = _items(catalog, "naip")[0]
    image = _read(item, "image").astype(np.float64)
    labels = _labels_on_grid(catalog, "us", item.assets["image"].get_absolute_href(), truth=True)
    med = {c: np.median(image[:, labels == c], axis=1)
           for c in (30, 40, 90) if (labels == c).sum() > 5000}
    assert len(med) >= 2
    for a in med:
        for b in med:
            if a < b:
                gap = np.abs(np.log(med[a] / med[b]))
                assert gap[:3].max() < 0.25, (a, b, gap)  # red, green, blue: a trace
                assert gap[3] > gap[:3].mean(), (a, b, gap)  # NIR: more


# --- WorldCover ----------------------------------------------------------------------------


def test_worldcover_items(catalog: pystac.Catalog) -> None:
    items = _items(catalog, "esa-worldcover")
    assert sorted(i.properties["ackd:demo_region"] for i in items) == ["eu", "us"]
    assert sorted(i.properties["ackd:demo_region"] for i in _items(catalog, "ackd-demo-truth")) == ["eu", "us"]
    for item in items:
        region = demo_regions(SCALE)[item.properties["ackd:demo_region"]]
        assert re.fullmatch(r"ESA_WorldCover_10m_2021_v200_[NS]\d{2}[EW]\d{3}", item.id)
        # A yearly product, as on Planetary Computer: no instant, the year's interval.
        assert item.datetime is None
        assert item.common_metadata.start_datetime.isoformat().startswith("2021-01-01")
        assert item.common_metadata.end_datetime.isoformat().startswith("2021-12-31")
        assert item.properties["esa_worldcover:product_version"] == "2.0.0"
        classes = item.assets["map"].extra_fields["classification:classes"]
        assert [c["value"] for c in classes] == list(CODES)
        with rasterio.open(item.assets["map"].get_absolute_href()) as src:
            assert src.crs.to_epsg() == 4326 and src.dtypes[0] == "uint8" and src.nodata == 0
            assert src.res == pytest.approx((1 / 12000, 1 / 12000))
            west, south, east, north = region.bbox_lonlat()
            assert src.bounds.left < west and src.bounds.right > east
            assert src.bounds.bottom < south and src.bounds.top > north
            values = set(np.unique(src.read(1)).tolist())
        assert values == {0, *CODES}  # every class, nothing else, nodata outside the region
    summaries = catalog.get_child("esa-worldcover").summaries.to_dict()
    assert [c["value"] for c in summaries["classification:classes"]] == list(CODES)


# --- budget and layout ---------------------------------------------------------------------


@pytest.mark.slow
def test_every_class_leaves_enough_chips_at_scale_1() -> None:
    """The demo preset samples chips >= 50 % one class of the map: 900 per class of 240 m (MS),
    720 of 128 m (RGB), with room for cloud, swath-edge and tile-edge rejects."""
    wanted = {"eu": (24, 1, 900 * 1.15), "us": (128, 10, 720 * 1.07)}  # chip px, upsampling, chips
    for name, region in demo_regions(1.0).items():
        labels, _ = demo_label_map(region, seed=0)  # the map, on the region's 10 m grid
        chip, up, need = wanted[name]
        if up > 1:
            labels = np.repeat(np.repeat(labels, 10, axis=0), 10, axis=1)  # 128 m chips on a 1 m grid
        counts = _pure_chip_counts(labels, chip, purity=0.5)
        print(name, counts)
        assert min(counts.values()) >= need, (name, counts)


def test_all_classes_appear_at_scale_quarter() -> None:
    for region in demo_regions(0.25).values():
        labels, _ = demo_label_map(region, seed=0)
        assert set(np.unique(labels).tolist()) == set(CODES)


def test_class_priors_differ_between_regions() -> None:
    share = {}
    for name, region in demo_regions(0.4).items():
        labels, _ = demo_label_map(region, seed=0, truth=True)
        share[name] = {c: float(np.mean(labels == c)) for c in CODES}
    assert share["us"][90] > share["eu"][90] + 0.04  # more wetland in Iowa
    assert share["us"][20] > share["eu"][20] + 0.02  # and more shrubland
    assert share["eu"][30] > share["us"][30] + 0.04  # more grassland in Germany


@pytest.mark.parametrize("name", ["eu", "us"])
def test_labels_only_rendering_matches_the_full_render(name: str) -> None:
    region = demo_regions(0.25)[name]
    land = build_landscape(STYLES[name], region.bounds, 0)
    x0, y_top = region.bounds[0] + 500.0, region.bounds[3] - 300.0
    fast = render_landcover(land, x0, y_top, 300, 400, labels_only=True)
    full = render_landcover(land, x0, y_top, 300, 400)
    assert np.array_equal(fast.label, full.label)
    assert np.array_equal(fast.subtype, full.subtype)
    assert len(np.unique(full.label)) > 1 and len(np.unique(full.subtype)) > 2
    labels, subtypes, pixel = demo_truth_labels(region, seed=0)
    assert labels.shape == subtypes.shape and pixel == STYLES[name].pixel


# --- determinism, atomicity, cache ---------------------------------------------------------


def test_same_seed_same_bytes_other_seed_differs(catalog_path: Path, tmp_path: Path) -> None:
    again = build_demo_catalog(tmp_path / "again", seed=0, scale=SCALE, progress=False).parent
    reference = _sha256_tree(catalog_path.parent)
    assert _sha256_tree(again) == reference  # 4 NAIP tiles rendered by 2 threads, in any order
    a = _sha256_tree(build_demo_catalog(tmp_path / "a", seed=0, scale=0.1, progress=False).parent)
    b = _sha256_tree(build_demo_catalog(tmp_path / "b", seed=1, scale=0.1, progress=False).parent)
    assert a.keys() == b.keys()
    rasters = [k for k in a if k.endswith(".tif")]
    assert rasters and all(a[k] != b[k] for k in rasters)


def test_build_refuses_bad_targets_and_skips_finished_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(DemoWorldError, match="file"):
        build_demo_catalog(a_file, scale=0.1, progress=False)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("x")
    with pytest.raises(DemoWorldError, match="not empty"):
        build_demo_catalog(busy, scale=0.1, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with caplog.at_level(logging.WARNING):
        path = build_demo_catalog(empty, scale=0.1, progress=False)
    assert not [r for r in caplog.records if r.name.startswith("rasterio")]  # GDAL is content
    assert path == empty / "catalog.json" and path.is_file()
    stamp = path.stat().st_mtime_ns
    assert build_demo_catalog(empty, scale=0.1, progress=False) == path
    assert path.stat().st_mtime_ns == stamp  # a finished catalog is not rebuilt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "empty", "file"]  # no leftovers


def test_cached_catalog_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACKD_BENCH_CACHE", str(tmp_path))
    folder = tmp_path / f"demo-world-v{DEMO_WORLD_VERSION}-{generator_digest()}-seed3-scale0.5"
    folder.mkdir()
    (folder / "catalog.json").write_text("{}")  # a finished catalog: found, not rebuilt
    assert cached_demo_catalog(seed=3, scale=0.5, progress=False) == folder / "catalog.json"
    other = tmp_path / "elsewhere" / folder.name
    other.mkdir(parents=True)
    (other / "catalog.json").write_text("{}")
    found = cached_demo_catalog(seed=3, scale=0.5, cache_dir=other.parent, progress=False)
    assert found == other / "catalog.json"


def test_the_cache_key_follows_the_generator_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Editing any module of the generator gives a new cache folder: an old world is never reused."""
    import ackd_bench.curation.demo.world as world

    before = generator_digest()
    source = tmp_path / "demo"
    shutil.copytree(Path(world.__file__).parent, source, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(world, "__file__", str(source / "world.py"))
    assert generator_digest() == before  # the same bytes elsewhere: the same key
    noise = source / "noise.py"
    noise.write_text(noise.read_text() + "\n# a change\n")
    assert generator_digest() != before
