"""Real recorded STAC items (``tests/data/stac-items``) as a local catalogue the curation can build from.

The items are kept as recorded (see ``SOURCES.md`` there). `write_local_catalog` copies them into
a static catalog whose asset hrefs point at local COGs written with the band layout of the real
assets: the resolution, data type and nodata the items state (``proj:transform``,
``raster:bands``) and the block size of the real files where it is known (Earth Search's
Sentinel-2 COGs: 1024 x 1024 tiles, DEFLATE; the others are assumed alike). A local COG covers a
10 km window of the item's footprint (the real files cover 110 km), on the item's own pixel grid,
so chips read from it have the geometry a read of the real asset would have.

No Planetary Computer ``esa-worldcover`` item that covers the recorded imagery is published, so
the land-cover items of the build are made from the recorded v200 and v100 items: the same
keys, with the id, tile, footprint and ``proj:transform`` of the 3° tile that holds the imagery.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import shapely.geometry
from rasterio.transform import Affine
from rasterio.warp import transform as warp_points
from rasterio.warp import transform_bounds

ITEMS_DIR = Path(__file__).parent / "data" / "stac-items"
WORLDCOVER_RES = 1 / 12000  # ESA WorldCover's pixel (degrees), as in the recorded items' proj:transform
WINDOW_M = 10240.0  # side of the Sentinel-2 window written for each item (metres)
NAIP_WINDOW_M = 1280.0  # side of the NAIP window
AOI_HALF_FRACTION = 0.3  # the AOI is the window's central 60 % (rotation of lon/lat vs UTM stays inside)

# Base digital numbers of the imagery written (reflectance x 10^4 for Sentinel-2; before any offset).
S2_BASE = 500
NAIP_BASE = (90, 120, 60, 150)


@dataclass(frozen=True)
class Layout:
    """How one kind of asset is written: data type, nodata, bands, tile size."""

    dtype: str
    nodata: int | None
    count: int = 1
    blocksize: int = 1024


# Asset layouts by collection, as the recorded items and the real files have them.
S2_LAYOUT = Layout("uint16", 0)
SCL_LAYOUT = Layout("uint8", 0)
NAIP_LAYOUT = Layout("uint8", None, count=4, blocksize=512)
WORLDCOVER_LAYOUT = Layout("uint8", 0)


def recorded_items(catalogue: str | None = None, collection: str | None = None) -> list[Path]:
    """The recorded item files, optionally of one catalogue (folder) and collection."""
    pattern = f"{catalogue or '*'}/{collection or '*'}/*.json"
    return sorted(ITEMS_DIR.glob(pattern))


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def catalogue_of(path: Path) -> str:
    return Path(path).relative_to(ITEMS_DIR).parts[0]


def asset_resolution(item: dict, key: str) -> float:
    """The pixel size of an asset from its ``proj:transform`` (asset's own, else the item's)."""
    transform = item["assets"][key].get("proj:transform") or item["properties"]["proj:transform"]
    return float(transform[0])


def _grid_origin(item: dict, key: str) -> tuple[float, float]:
    transform = item["assets"][key].get("proj:transform") or item["properties"]["proj:transform"]
    return float(transform[2]), float(transform[5])


@dataclass
class Window:
    """The square written for one imagery item, in its CRS, and the AOI inside it (lon/lat)."""

    epsg: int
    west: float
    north: float
    side: float

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.west, self.north - self.side, self.west + self.side, self.north

    def lonlat(self, shrink: float = 0.0) -> tuple[float, float, float, float]:
        w, s, e, n = self.bounds
        d = shrink * self.side
        return transform_bounds(f"EPSG:{self.epsg}", "EPSG:4326", w + d, s + d, e - d, n - d)

    @property
    def aoi(self) -> tuple[float, float, float, float]:
        """The AOI: the window's central part, in lon/lat (rounded inwards to 1e-5°)."""
        w, s, e, n = self.lonlat(shrink=0.5 - AOI_HALF_FRACTION)
        return (math.ceil(w * 1e5) / 1e5, math.ceil(s * 1e5) / 1e5, math.floor(e * 1e5) / 1e5,
                math.floor(n * 1e5) / 1e5)


def imagery_window(item: dict, grid_asset: str, coarsest: float) -> Window:
    """A `WINDOW_M` square around a point inside the item's footprint, on its coarsest band's grid."""
    epsg = item["properties"]["proj:epsg"]
    point = shapely.geometry.shape(item["geometry"]).representative_point()
    (x,), (y,) = warp_points("EPSG:4326", f"EPSG:{epsg}", [point.x], [point.y])
    x0, y0 = _grid_origin(item, grid_asset)
    west = x0 + round((x - WINDOW_M / 2 - x0) / coarsest) * coarsest
    north = y0 + round((y + WINDOW_M / 2 - y0) / coarsest) * coarsest
    return Window(epsg=epsg, west=west, north=north, side=WINDOW_M)


def write_cog(path: Path, data: np.ndarray, transform: Affine, crs: str, layout: Layout) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = data if data.ndim == 3 else data[None]
    profile = {"driver": "COG", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": layout.dtype, "crs": crs, "transform": transform, "nodata": layout.nodata,
               "compress": "DEFLATE", "predictor": "2", "blocksize": layout.blocksize}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(layout.dtype))


def _pattern(height: int, width: int) -> np.ndarray:
    """A small deterministic texture (0..6) so chips are not constant."""
    return (np.arange(width)[None, :] // 7 + np.arange(height)[:, None] // 5) % 7


def s2_offset_dn(item: dict) -> int:
    """What ESA's processing adds to the DN of this scene's files, by its own metadata (the truth the
    local files are written with): +1000 from baseline 04.00, unless Earth Search says it removed it."""
    props = item["properties"]
    if props.get("earthsearch:boa_offset_applied") is True:
        return 0
    return 1000 if float(props["s2:processing_baseline"]) >= 4.0 else 0


def write_s2(item: dict, bands: dict[str, str], qa_asset: str, folder: Path) -> tuple[dict, Window]:
    """Local COGs of an S2 item's bands (``{benchmark band: asset key}``) and QA asset; the item with
    those assets' hrefs pointing at them (relative), and the window written."""
    window = imagery_window(item, qa_asset, asset_resolution(item, qa_asset))
    crs = f"EPSG:{window.epsg}"
    out = copy.deepcopy(item)
    offset = s2_offset_dn(item)
    for index, key in enumerate([*bands.values(), qa_asset]):
        res = asset_resolution(item, key)
        n = int(round(window.side / res))
        transform = Affine(res, 0.0, window.west, 0.0, -res, window.north)
        if key == qa_asset:
            data, layout = np.full((n, n), 4, dtype=np.int64), SCL_LAYOUT  # SCL 4: vegetation (clear)
        else:
            data, layout = S2_BASE + 100 * index + _pattern(n, n) + offset, S2_LAYOUT
        write_cog(folder / f"{key}.tif", data, transform, crs, layout)
        out["assets"][key]["href"] = f"./{key}.tif"
    return out, window


def write_naip(item: dict, folder: Path) -> tuple[dict, Window]:
    """A local 4-band COG for a NAIP item's ``image`` asset; the item pointing at it."""
    res = asset_resolution(item, "image")
    window = imagery_window(item, "image", res)
    n = int(round(NAIP_WINDOW_M / res))  # NAIP is fine: 1.3 km hold plenty of chips
    shift = round((window.side / res - n) / 2) * res  # whole pixels: stays on the item's grid
    window = Window(window.epsg, window.west + shift, window.north - shift, n * res)
    pattern = _pattern(n, n).astype(np.uint8)
    data = np.stack([np.uint8(base) + pattern for base in NAIP_BASE])
    write_cog(folder / "image.tif", data, Affine(res, 0.0, window.west, 0.0, -res, window.north),
              f"EPSG:{window.epsg}", NAIP_LAYOUT)
    out = copy.deepcopy(item)
    out["assets"]["image"]["href"] = "./image.tif"
    return out, window


def worldcover_tile(lon: float, lat: float) -> tuple[str, int, int]:
    """ESA WorldCover's 3° tile holding a point: its name (``N48E006``) and south-west corner."""
    south, west = 3 * math.floor(lat / 3), 3 * math.floor(lon / 3)
    return f"{'N' if south >= 0 else 'S'}{abs(south):02d}{'E' if west >= 0 else 'W'}{abs(west):03d}", west, south


def write_worldcover(template: dict, windows: list[Window], folder: Path,
                     codes: tuple[int, int]) -> list[tuple[Path, dict]]:
    """Land-cover items in the recorded item's shape for the tiles holding ``windows``, each with a
    local map: ``codes[0]`` west of each window's centre, ``codes[1]`` east of it, 0 elsewhere."""
    version = template["properties"]["esa_worldcover:product_version"]
    year = template["properties"]["start_datetime"][:4]
    tiles: dict[tuple[str, int, int], list[Window]] = {}
    for window in windows:
        w, s, e, n = window.lonlat()
        tiles.setdefault(worldcover_tile((w + e) / 2, (s + n) / 2), []).append(window)
    items = []
    for (name, west_tile, south_tile), members in sorted(tiles.items()):
        boxes = [m.lonlat() for m in members]
        w = min(b[0] for b in boxes) - 0.01
        s = min(b[1] for b in boxes) - 0.01
        e = max(b[2] for b in boxes) + 0.01
        n = max(b[3] for b in boxes) + 0.01
        # Snap the local map to the tile's pixel grid.
        col0 = math.floor((w - west_tile) / WORLDCOVER_RES)
        row0 = math.floor((south_tile + 3 - n) / WORLDCOVER_RES)
        width = math.ceil((e - west_tile) / WORLDCOVER_RES) - col0
        height = math.ceil((south_tile + 3 - s) / WORLDCOVER_RES) - row0
        west, north = west_tile + col0 * WORLDCOVER_RES, south_tile + 3 - row0 * WORLDCOVER_RES
        lon = west + (np.arange(width) + 0.5) * WORLDCOVER_RES
        lat = north - (np.arange(height) + 0.5) * WORLDCOVER_RES
        data = np.zeros((height, width), dtype=np.int64)
        for m in members:
            mw, ms, me, mn = m.lonlat()
            inside = ((lat[:, None] >= ms - 0.005) & (lat[:, None] <= mn + 0.005)
                      & (lon[None, :] >= mw - 0.005) & (lon[None, :] <= me + 0.005))
            centre = (mw + me) / 2
            data[inside & (lon[None, :] < centre)] = codes[0]
            data[inside & (lon[None, :] >= centre)] = codes[1]
        item_id = f"ESA_WorldCover_10m_{year}_v{version.replace('.', '')[:3]}_{name}"
        sub = folder / item_id
        write_cog(sub / "map.tif", data, Affine(WORLDCOVER_RES, 0.0, west, 0.0, -WORLDCOVER_RES, north),
                  "EPSG:4326", WORLDCOVER_LAYOUT)
        item = copy.deepcopy(template)
        item["id"] = item_id
        item["properties"]["esa_worldcover:product_tile"] = name
        tile_box = [west_tile, south_tile, west_tile + 3, south_tile + 3]
        item["bbox"] = tile_box
        item["geometry"] = json.loads(json.dumps(shapely.geometry.mapping(shapely.geometry.box(*tile_box))))  # lists
        for key, asset in item["assets"].items():
            if "proj:transform" in asset:
                res = asset["proj:transform"][0]
                asset["proj:transform"] = [res, 0.0, float(west_tile), 0.0, -res, float(south_tile + 3)]
            asset["href"] = "./map.tif" if key == "map" else f"./missing-{key}"
        items.append((sub, item))
    return items


def write_static_catalog(root: Path, entries: list[tuple[str, Path, dict]]) -> Path:
    """A static catalog at ``root/catalog.json``: ``entries`` of (collection, item folder, item JSON).

    Items are written as given (raw JSON, as a catalogue serves them) into their folder, next to
    their COGs; asset hrefs that are not local files are pointed at a local path that does not exist
    (never read), so no test reaches for the real hosts.
    """
    collections: dict[str, list[tuple[Path, dict]]] = {}
    for collection, folder, item in entries:
        collections.setdefault(collection, []).append((folder, item))
    links = []
    for collection, members in sorted(collections.items()):
        coll_dir = root / collection
        item_links, boxes, times = [], [], []
        for folder, item in members:
            item = copy.deepcopy(item)
            for key, asset in item["assets"].items():
                if not (folder / asset["href"]).resolve().is_file() or "://" in asset["href"]:
                    asset["href"] = f"./missing-{key}"
            item["collection"] = collection
            item["links"] = []
            path = folder / f"{item['id']}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(item, indent=1))
            item_links.append({"rel": "item", "href": path.relative_to(coll_dir).as_posix(), "type": "application/json"})
            boxes.append(item["bbox"])
            props = item["properties"]
            times += [t for t in (props.get("datetime"), props.get("start_datetime"), props.get("end_datetime")) if t]
        coll = {
            "type": "Collection", "stac_version": "1.0.0", "id": collection, "description": f"recorded {collection} items",
            "license": "proprietary",
            "extent": {"spatial": {"bbox": [[min(b[0] for b in boxes), min(b[1] for b in boxes),
                                             max(b[2] for b in boxes), max(b[3] for b in boxes)]]},
                       "temporal": {"interval": [[min(times), max(times)]]}},
            "links": [{"rel": "root", "href": "../catalog.json"}, *item_links],
        }
        coll_dir.mkdir(parents=True, exist_ok=True)
        (coll_dir / "collection.json").write_text(json.dumps(coll, indent=1))
        links.append({"rel": "child", "href": f"./{collection}/collection.json", "type": "application/json"})
    catalog = {"type": "Catalog", "stac_version": "1.0.0", "id": "recorded-items",
               "description": "Real recorded STAC items with local assets", "links": [
                   {"rel": "root", "href": "./catalog.json"}, {"rel": "self", "href": "./catalog.json"}, *links]}
    (root / "catalog.json").write_text(json.dumps(catalog, indent=1))
    return root / "catalog.json"
