"""Land-cover maps of several years or versions over one place: the preset's year is searched, the newest
map labels, older ones only fill its gaps and are not read when there is none (issue 16, fix 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pyproj import Transformer
from affine import Affine

from ackd_bench.curation.presets import LabelSpec, PresetError
from ackd_bench.curation.reading import ItemRef
from ackd_bench.curation.sampling import ChipGrid, read_label_grid
from ackd_bench.curation.stac import Catalog

# One WorldCover tile (real tiles are 3° × 3°; this one is 0.1° × 0.1° at 1/1000°), imaged in two
# versions as Planetary Computer serves every tile: the 2020 map (v100) and the 2021 map (v200).
WEST, NORTH, PX, SIDE = 8.0, 1.1, 0.001, 100
V2021 = "2021-01-01T00:00:00Z/2021-12-31T23:59:59Z"


def _map(path: Path, codes: np.ndarray) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=SIDE, height=SIDE, count=1, dtype="uint8", nodata=0,
                       crs="EPSG:4326", transform=Affine(PX, 0.0, WEST, 0.0, -PX, NORTH), tiled=True,
                       blockxsize=64, blockysize=64) as dst:
        dst.write(codes, 1)
    return str(path)


def _item(year: int, version: str, href: str) -> pystac.Item:
    """An item in the shape of the real ones (stactools-packages/esa-worldcover examples; Planetary Computer)."""
    tile = "N00E006"
    bbox = [WEST, NORTH - SIDE * PX, WEST + SIDE * PX, NORTH]
    item = pystac.Item(
        id=f"ESA_WorldCover_10m_{year}_v{version.replace('.', '')[:3]}_{tile}",
        geometry={"type": "Polygon", "coordinates": [[[bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[2], bbox[3]],
                                                      [bbox[0], bbox[3]], [bbox[0], bbox[1]]]]},
        bbox=bbox, datetime=None,
        properties={"start_datetime": f"{year}-01-01T00:00:00Z", "end_datetime": f"{year}-12-31T23:59:59Z",
                    "esa_worldcover:product_version": version, "esa_worldcover:product_tile": tile},
    )
    item.add_asset("map", pystac.Asset(href=href, media_type=pystac.MediaType.COG, roles=["data"]))
    return item


def _ref(item: pystac.Item) -> ItemRef:
    return ItemRef(id=item.id, collection="esa-worldcover", datetime=item.properties["start_datetime"], epsg=4326,
                   assets={"map": item.assets["map"].href})


@pytest.fixture()
def versions(tmp_path):
    """The 2020 v100 map says cropland (40) everywhere; the 2021 v200 map says tree cover (10), with a gap
    (no data) over the western fifth."""
    v200 = np.full((SIDE, SIDE), 10, np.uint8)
    v200[:, :20] = 0
    old = _item(2020, "1.0.0", _map(tmp_path / "v100.tif", np.full((SIDE, SIDE), 40, np.uint8)))
    new = _item(2021, "2.0.0", _map(tmp_path / "v200.tif", v200))
    catalog = pystac.Catalog("demo", "two versions")
    collection = pystac.Collection("esa-worldcover", "WorldCover", pystac.Extent(
        pystac.SpatialExtent([old.bbox]), pystac.TemporalExtent([[None, None]])))
    catalog.add_child(collection)
    collection.add_items([old, new])
    catalog.normalize_and_save(str(tmp_path / "stac"), pystac.CatalogType.SELF_CONTAINED)
    return tmp_path, old, new


def _grid() -> ChipGrid:
    """A 6 × 6 lattice of 1 km chips in UTM 32N inside the tile, its west edge in the v200 gap."""
    x0, y1 = Transformer.from_crs(4326, 32632, always_xy=True).transform(WEST + 0.005, NORTH - 0.01)
    return ChipGrid(aoi=0, crs="EPSG:32632", x0=x0, y1=y1, chip_m=1000.0, rows=6, cols=6)


def test_the_presets_year_selects_the_v200_map(versions):
    root, old, new = versions
    catalog = Catalog(str(root / "stac" / "catalog.json"))
    bbox = tuple(old.bbox)
    anytime = catalog.search(collection="esa-worldcover", bbox=bbox, datetime_range="../..").items
    assert sorted(i.id for i in anytime) == sorted([old.id, new.id])
    chosen = catalog.search(collection="esa-worldcover", bbox=bbox, datetime_range=V2021).items
    assert [i.id for i in chosen] == [new.id]
    # a range item intersecting the interval is found, as a STAC API finds it (2020 map, mid-2020 window)
    mid = catalog.search(collection="esa-worldcover", bbox=bbox, datetime_range="2020-06-01/2020-06-30").items
    assert [i.id for i in mid] == [old.id]


def test_the_newest_map_labels_and_the_older_fills_only_its_gaps(versions):
    root, old, new = versions
    labels = LabelSpec(classes=("tree_cover", "cropland"), crosswalk=((10, "tree_cover"), (40, "cropland")))
    catalog = Catalog(str(root / "stac" / "catalog.json"))
    # the search order of the ids puts the 2020 map first; the newest must still win
    codes = read_label_grid(catalog, labels, [_ref(old), _ref(new)], _grid(), 4)
    lon = Transformer.from_crs(32632, 4326, always_xy=True).transform(
        _grid().x0 + (np.arange(24) + 0.5) * 250.0, np.full(24, _grid().y1 - 125.0))[0]
    in_gap = lon < WEST + 20 * PX
    assert in_gap.any() and (~in_gap).any()
    assert (codes[:, ~in_gap] == 10).all()  # v200 wherever it has data
    assert (codes[:, in_gap] == 40).all()   # v100 only in v200's gap


def test_an_older_map_is_not_read_when_the_newest_covers_everything(versions, tmp_path):
    root, old, new = versions
    full = _item(2021, "2.0.0", _map(tmp_path / "v200-full.tif", np.full((SIDE, SIDE), 10, np.uint8)))
    missing = _ref(old)
    missing.assets["map"] = str(tmp_path / "no-such-map.tif")  # reading it would fail
    labels = LabelSpec(classes=("tree_cover",), crosswalk=((10, "tree_cover"),))
    codes = read_label_grid(Catalog(str(root / "stac" / "catalog.json")), labels, [missing, _ref(full)], _grid(), 4)
    assert (codes == 10).all()


def test_a_label_datetime_must_be_an_interval():
    assert LabelSpec(datetime=V2021).datetime == V2021
    with pytest.raises(PresetError, match="labels: datetime must be an interval"):
        LabelSpec(datetime="2021")
