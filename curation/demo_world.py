"""The embedded demo world: a seeded procedural landscape served as a static STAC catalog.

Planetary Computer is not reachable offline, so the curation pipeline can run on this instead:
two disjoint regions (``eu``: Sentinel-2 L2A over central Germany; ``us``: NAIP over Iowa) with
an ESA-WorldCover-like label map, rendered into COGs under a self-contained STAC catalog with
Planetary Computer's collection ids, asset keys and metadata fields. On request the world also
holds a *pair site* east of the ``us`` region, imaged by both sensors, for ``paired`` and
``partial`` builds. See DESIGN.md, "The embedded demo world".
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pystac
from rasterio.warp import transform_bounds
from tqdm import tqdm

from ackd_bench.benchmark.errors import AckdBenchError

from .demo_catalog import (
    S2_TILE,
    collection,
    naip_item,
    naip_item_id,
    s2_item,
    worldcover_item,
)
from .demo_landcover import render_landcover
from .demo_layout import PAIR_BLOCK_M, STYLES, Landscape, build_landscape
from .demo_naip import NAIP_FLIGHTS, NaipTile, naip_tiles, render_naip_tile
from .demo_rasters import (
    grid_transform,
    lonlat_geometry,
    proj_fields,
    region_polygon,
    worldcover_map,
    worldcover_tile_name,
    write_cog,
)
from .demo_s2 import (
    BANDS_10M,
    PAIR_S2_ACQUISITIONS,
    PAIR_S2_EPSG,
    PAIR_S2_TILE,
    STRIP_ROWS,
    S2Scene,
    render_s2_scenes,
    valid_footprint,
)

DEMO_WORLD_VERSION: str = "1"
DEMO_COLLECTIONS = ("sentinel-2-l2a", "naip", "esa-worldcover")
DEMO_DATE_RANGE = ("2021-01-01T00:00:00Z", "2023-12-31T23:59:59Z")
CACHE_ENV = "ACKD_BENCH_CACHE"
MAX_SCALE = 2.0
_REGION_GRID_M = 20.0  # region sides are whole 20 m Sentinel-2 pixels
_BASE_REGIONS = {
    "eu": (32632, (500000.0, 5520000.0, 540000.0, 5560000.0), ("sentinel-2-l2a",)),
    "us": (26915, (400000.0, 4642000.0, 408000.0, 4650000.0), ("naip",)),
}
# South-west corner of the pair site: on the block grid, east of the us region at any scale.
_PAIR_ORIGIN = (219 * PAIR_BLOCK_M, 2418 * PAIR_BLOCK_M)


class DemoWorldError(AckdBenchError, FileExistsError):
    """The demo catalog cannot be built where it was asked to: something else is there."""


@dataclass(frozen=True)
class DemoRegion:
    """One region of the demo world.

    Attributes:
        name: "eu", "us" or "pair" (the pair site).
        epsg: native projected CRS of the region.
        bounds: (minx, miny, maxx, maxy) in that CRS, metres.
        collections: imagery collections rendered over it (esa-worldcover covers both).
    """

    name: str
    epsg: int
    bounds: tuple[float, float, float, float]
    collections: tuple[str, ...]

    def bbox_lonlat(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees, of the region's densified outline."""
        crs = f"EPSG:{self.epsg}"
        return tuple(transform_bounds(crs, "EPSG:4326", *self.bounds, densify_pts=21))


def demo_regions(scale: float = 1.0) -> dict[str, DemoRegion]:
    """The two regions; ``scale`` shrinks each side from the same south-west origin.

    Args:
        scale: side length factor in (0, 2]; sides are rounded to whole 20 m pixels.

    Raises:
        ValueError: if ``scale`` is out of range or leaves a region without a pixel.
    """
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and 0 < scale <= MAX_SCALE):
        raise ValueError(f"demo world scale must be in (0, {MAX_SCALE:g}], got {scale!r}")
    regions = {}
    for name, (epsg, (minx, miny, maxx, maxy), collections) in _BASE_REGIONS.items():
        side_x = round((maxx - minx) * scale / _REGION_GRID_M) * _REGION_GRID_M
        side_y = round((maxy - miny) * scale / _REGION_GRID_M) * _REGION_GRID_M
        if min(side_x, side_y) < 10 * _REGION_GRID_M:
            raise ValueError(f"demo world scale {scale!r} is too small for region {name!r}")
        bounds = (minx, miny, minx + side_x, miny + side_y)
        regions[name] = DemoRegion(name, epsg, bounds, collections)
    return regions


def demo_pair_site(scale: float = 1.0) -> DemoRegion:
    """The pair site: a square of 3 × 3 to 5 × 5 land-use blocks imaged by Sentinel-2 and NAIP.

    It holds paired and partial builds' co-located chips. Unlike the regions it never shrinks
    below 3 × 3 blocks (5.76 km), the least that leaves co-located chips of every class.

    Args:
        scale: as for :func:`demo_regions`; 5 × 5 blocks at scale 1.
    """
    demo_regions(scale)  # the same range check
    blocks = min(5, max(3, round(5 * scale)))
    west, south = _PAIR_ORIGIN
    side = blocks * PAIR_BLOCK_M
    return DemoRegion("pair", 26915, (west, south, west + side, south + side), ("sentinel-2-l2a", "naip"))


def demo_label_map(region: DemoRegion, seed: int = 0) -> tuple[np.ndarray, float]:
    """The region's WorldCover labels at its finest resolution, without rendering imagery.

    Fast (labels only); the same labels the catalog's imagery and ``esa-worldcover`` map show.
    Rows run south from the region's north-west corner.

    Returns:
        (uint8 label map, pixel size in metres: 10 for ``eu``, 1 for ``us`` and ``pair``).
    """
    land = build_landscape(STYLES[region.name], region.bounds, seed)
    pixel = land.style.pixel
    minx, miny, maxx, maxy = region.bounds
    height, width = int(round((maxy - miny) / pixel)), int(round((maxx - minx) / pixel))
    labels = np.zeros((height, width), np.uint8)
    step = 2000
    for top in range(0, height, step):
        for left in range(0, width, step):
            rows, cols = min(step, height - top), min(step, width - left)
            window = render_landcover(land, minx + left * pixel, maxy - top * pixel, rows, cols,
                                      labels_only=True)
            labels[top : top + rows, left : left + cols] = window.label
    return labels, pixel


def default_cache_dir() -> Path:
    """$ACKD_BENCH_CACHE, else ~/.cache/ackd-bench."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "ackd-bench"


def cached_demo_catalog(
    *, seed: int = 0, scale: float = 1.0, cache_dir: Path | None = None, progress: bool = True,
    pair_site: bool = False,
) -> Path:
    """The demo catalog for (seed, scale) from the cache, built there first if missing.

    Args:
        seed: world seed.
        scale: region side factor (see :func:`demo_regions`).
        cache_dir: cache root; default :func:`default_cache_dir`.
        progress: show a progress bar while building.
        pair_site: the world with the pair site (its own cache folder, ``...-pairs``).

    Returns:
        path of the catalog's ``catalog.json``.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / f"demo-world-v{DEMO_WORLD_VERSION}-seed{seed}-scale{scale:g}{'-pairs' if pair_site else ''}"
    return build_demo_catalog(folder, seed=seed, scale=scale, progress=progress, pair_site=pair_site)


def build_demo_catalog(
    out_dir: Path, *, seed: int = 0, scale: float = 1.0, progress: bool = True, pair_site: bool = False
) -> Path:
    """Render the demo world and write it as a self-contained static STAC catalog.

    The catalog is built in a temporary sibling folder and renamed into place, so ``out_dir``
    either holds a finished catalog or nothing; ``catalog.json`` is written last. A finished
    catalog is not rebuilt.

    Args:
        out_dir: folder of the catalog (created; must not exist, be empty, or hold a catalog).
        seed: world seed; same seed and scale give byte-identical files.
        scale: region side factor (see :func:`demo_regions`).
        progress: show a progress bar.
        pair_site: also render the pair site (:func:`demo_pair_site`). The rest of the world is
            the same, byte for byte, with or without it.

    Returns:
        path of ``out_dir/catalog.json``.

    Raises:
        DemoWorldError: if ``out_dir`` is a file or a non-empty folder without a catalog.
        ValueError: if ``seed`` or ``scale`` is out of range.
    """
    out_dir = Path(out_dir)
    seed, scale = _check_seed(seed), float(scale)  # 1 and 1.0 must give the same bytes
    catalog_json = out_dir / "catalog.json"
    if catalog_json.is_file():
        return catalog_json
    _check_target(out_dir)
    regions = demo_regions(scale)
    if pair_site:
        regions["pair"] = demo_pair_site(scale)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # No dot in the staging name: pystac takes a folder name with an "extension" for a file.
    staging = Path(tempfile.mkdtemp(prefix="_demo_world_building_", dir=out_dir.parent))
    try:
        _write_world(staging, regions, seed, scale, progress)
        _sync_tree(staging)
        os.chmod(staging, 0o755)
        try:
            os.replace(staging, out_dir)  # atomic; allowed onto an empty folder
        except OSError:
            if not catalog_json.is_file():  # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return catalog_json


def _check_seed(seed: int) -> int:
    """Seeds are non-negative integers (numpy's seed sequences refuse negative ones)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"demo world seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_target(out_dir: Path) -> None:
    """Refuse to build over a file or over a folder that holds something else."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DemoWorldError(
            f"{out_dir} is a file, not a folder; pass a folder for the demo catalog"
        )
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise DemoWorldError(
            f"{out_dir} is not empty and holds no catalog.json; choose an empty or new folder"
        )


def _sync_tree(folder: Path) -> None:
    """fsync every file and folder so a crash after the rename cannot leave torn files."""
    for path in sorted(folder.rglob("*")) + [folder]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_world(
    root: Path, regions: dict[str, DemoRegion], seed: int, scale: float, progress: bool
) -> None:
    """Render the regions (and the pair site, if asked), write their COGs and the STAC catalog."""
    eu, us, pair = regions["eu"], regions["us"], regions.get("pair")
    tiles = naip_tiles(us.bounds)
    pair_tiles = naip_tiles(pair.bounds) if pair else []
    eu_strips = math.ceil(round((eu.bounds[3] - eu.bounds[1]) / 10.0) / STRIP_ROWS)
    # One step per Sentinel-2 strip, NAIP tile, and write; they take comparable time.
    steps = eu_strips + len(tiles) + 3 + (len(pair_tiles) + 2 if pair else 0)
    with tqdm(total=steps, desc="demo world", unit="step", disable=not progress, leave=False) as bar:
        eu_land = build_landscape(STYLES["eu"], eu.bounds, seed)
        us_land = build_landscape(STYLES["us"], us.bounds, seed)
        pair_land = build_landscape(STYLES["pair"], pair.bounds, seed) if pair else None
        with ThreadPoolExecutor(max_workers=2) as pool:
            # Sentinel-2 renders strip by strip in one worker while NAIP tiles fill the other.
            s2_job = pool.submit(_write_s2, root, eu, eu_land, bar)
            naip_jobs = [
                pool.submit(_write_naip_tile, root, us, us_land, tile, bar) for tile in tiles
            ]
            pair_jobs = [pool.submit(_write_pair_s2, root, pair, seed, bar)] if pair else []
            pair_jobs += [pool.submit(_write_naip_tile, root, pair, pair_land, t, bar) for t in pair_tiles]
            try:
                s2_items, eu_labels = s2_job.result()
                naip_results = [job.result() for job in naip_jobs]
                pair_results = [job.result() for job in pair_jobs]
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # fail fast, not after every tile
                raise
        naip_items = [item for item, _ in naip_results]
        us_labels = _mosaic_labels(us, tiles, [labels for _, labels in naip_results])
        wc_items = [
            _write_worldcover(root, eu, eu_labels),
            _write_worldcover(root, us, us_labels),
        ]
        bar.update(2)
        description = (
            "A deterministic procedural world shaped like Planetary Computer's collections: "
            "Sentinel-2 L2A over a central-German region, NAIP over an Iowa region, and an "
            "ESA-WorldCover-like label map of both. Synthetic data for testing and demos."
        )
        meta = {"version": DEMO_WORLD_VERSION, "seed": seed, "scale": scale}
        if pair:
            s2_items += pair_results[0]
            naip_items += [item for item, _ in pair_results[1:]]
            pair_labels = _mosaic_labels(pair, pair_tiles, [labels for _, labels in pair_results[1:]])
            wc_items.append(_write_worldcover(root, pair, pair_labels, id_suffix="_pair-site"))
            description += " A pair site east of the Iowa region is imaged by both sensors."
            meta["pair_site"] = True
        catalog = pystac.Catalog(
            id="ackd-bench-demo-world",
            title=f"ackd-bench demo world (seed {seed}, scale {scale:g})",
            description=description,
            extra_fields={"ackd:demo_world": meta},
        )
        for collection_id, items in zip(DEMO_COLLECTIONS, (s2_items, naip_items, wc_items)):
            catalog.add_child(collection(collection_id, items))
        catalog.normalize_hrefs(str(root))
        catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
        bar.update(1)


def _item_dir(root: Path, collection_id: str, item_id: str) -> Path:
    """Where pystac's default layout puts an item; its assets sit beside its JSON."""
    folder = root / collection_id / item_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_s2(
    root: Path, region: DemoRegion, land: Landscape, bar: tqdm
) -> tuple[list[pystac.Item], np.ndarray]:
    """Render the Sentinel-2 scenes and write one item (11 COGs) per acquisition."""
    scenes, labels = render_s2_scenes(land, lambda rows: bar.update(1))
    items = [_write_s2_scene(root, region, scene, region.epsg, S2_TILE) for scene in scenes]
    return items, labels


def _write_pair_s2(root: Path, site: DemoRegion, seed: int, bar: tqdm) -> list[pystac.Item]:
    """The pair site's Sentinel-2 scenes, rendered from its landscape at 10 m, in WGS 84 / UTM."""
    land = build_landscape(replace(STYLES["pair"], pixel=10.0), site.bounds, seed)  # same layout
    scenes, _ = render_s2_scenes(land, acquisitions=PAIR_S2_ACQUISITIONS)
    bar.update(1)
    return [_write_s2_scene(root, site, scene, PAIR_S2_EPSG, PAIR_S2_TILE) for scene in scenes]


def _write_s2_scene(root: Path, region: DemoRegion, scene: S2Scene, epsg: int, tile: str) -> pystac.Item:
    """Write the 11 COGs of one acquisition (in EPSG ``epsg``, MGRS ``tile``) and return its item."""
    acq = scene.acquisition
    minx, _, _, maxy = region.bounds
    folder = _item_dir(root, "sentinel-2-l2a", acq.item_id(tile))
    crs = f"EPSG:{epsg}"
    assets_proj = {}
    for band, data in [*scene.bands.items(), ("SCL", scene.scl)]:
        pixel = 10.0 if band in BANDS_10M else 20.0
        transform = grid_transform(pixel, minx, maxy)
        write_cog(folder / f"{band}.tif", data, transform, crs, nodata=0, categorical=band == "SCL")
        assets_proj[band] = proj_fields(transform, data.shape, epsg)
    footprint = lonlat_geometry(valid_footprint(region.bounds, acq), epsg)
    return s2_item(acq, footprint, scene.scl, assets_proj, tile)


def _write_naip_tile(
    root: Path, region: DemoRegion, land: Landscape, tile: NaipTile, bar: tqdm
) -> tuple[pystac.Item, np.ndarray]:
    """Render one NAIP tile and write its item; also return its 10 m majority labels."""
    image, labels = render_naip_tile(land, tile)
    when = NAIP_FLIGHTS[tile.flight].datetime
    geometry = lonlat_geometry(region_polygon(tile.bounds), region.epsg)
    item_id = naip_item_id(tile, geometry[1], when)
    transform = grid_transform(1.0, tile.bounds[0], tile.bounds[3])
    write_cog(_item_dir(root, "naip", item_id) / "image.tif", image, transform,
              f"EPSG:{region.epsg}", nodata=0)
    proj = proj_fields(transform, image.shape[1:], region.epsg)
    bar.update(1)
    return naip_item(tile, item_id, when, geometry, proj), labels


def _mosaic_labels(
    region: DemoRegion, tiles: list[NaipTile], parts: list[np.ndarray]
) -> np.ndarray:
    """Assemble the 10 m label map of a region from its tiles' pieces."""
    minx, miny, maxx, maxy = region.bounds
    mosaic = np.zeros((int(round((maxy - miny) / 10)), int(round((maxx - minx) / 10))), np.uint8)
    for tile, part in zip(tiles, parts):
        top = int(round((maxy - tile.bounds[3]) / 10))
        left = int(round((tile.bounds[0] - minx) / 10))
        mosaic[top : top + part.shape[0], left : left + part.shape[1]] = part
    return mosaic


def _write_worldcover(root: Path, region: DemoRegion, labels: np.ndarray, id_suffix: str = "") -> pystac.Item:
    """Reproject a region's 10 m labels to the WorldCover grid and write its item."""
    minx, _, _, maxy = region.bounds
    bbox = region.bbox_lonlat()
    wc_map, transform = worldcover_map(labels, grid_transform(10.0, minx, maxy), region.epsg, bbox)
    tile_name = worldcover_tile_name(bbox)
    item_id = f"ESA_WorldCover_10m_2021_v200_{tile_name}{id_suffix}"  # the pair site shares us's tile
    write_cog(_item_dir(root, "esa-worldcover", item_id) / "map.tif", wc_map, transform,
              "EPSG:4326", nodata=0, categorical=True)
    west, south, east, north = (transform.c, transform.f + wc_map.shape[0] * transform.e,
                                transform.c + wc_map.shape[1] * transform.a, transform.f)
    geometry = lonlat_geometry(region_polygon((west, south, east, north)), 4326)
    proj = proj_fields(transform, wc_map.shape, 4326)
    return worldcover_item(item_id, tile_name, region.name, geometry, proj)
