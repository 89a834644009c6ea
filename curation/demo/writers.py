"""Writers of the demo world's assets: Sentinel-2 scenes, NAIP tiles, the land-cover map, the truth.

The scene and tile writers run in worker processes (the world renders on every core); each takes
only small arguments and builds the region's landscape itself, once per process.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pystac

from .layout import STYLES, Landscape, build_landscape
from .naip import NAIP_FLIGHTS, NaipTile, render_naip_tile
from .rasters import (
    grid_transform,
    lonlat_geometry,
    proj_fields,
    region_polygon,
    worldcover_map,
    worldcover_tile_name,
    write_cog,
)
from .sentinel2 import (
    BANDS_10M,
    PAIR_S2_ACQUISITIONS,
    PAIR_S2_EPSG,
    PAIR_S2_TILE,
    S2Scene,
    render_s2_scenes,
    valid_footprint,
)
from .stac_items import S2_TILE, naip_item, naip_item_id, s2_item, truth_item, worldcover_item
from .truth import FACTOR_SCALE, TRUTH_COLLECTION, TruthLayers

if TYPE_CHECKING:
    from .world import DemoRegion


def item_dir(root: Path, collection_id: str, item_id: str) -> Path:
    """Where pystac's default layout puts an item; its assets sit beside its JSON."""
    folder = root / collection_id / item_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@functools.lru_cache(maxsize=2)
def landscape(name: str, bounds: tuple[float, float, float, float], seed: int, pixel: float | None = None) -> Landscape:
    """The landscape of region ``name`` (its style), built once per process; ``pixel`` overrides the style's."""
    style = STYLES[name] if pixel is None else replace(STYLES[name], pixel=pixel)
    return build_landscape(style, bounds, seed)


def write_s2(root: Path, region: DemoRegion, seed: int) -> tuple[list[pystac.Item], TruthLayers, np.ndarray]:
    """Render the Sentinel-2 scenes and write one item (11 COGs) per acquisition.

    Returns:
        (the items, the region's 10 m truth, its 10 m land-cover map codes).
    """
    scenes, truth, wc_map = render_s2_scenes(landscape(region.name, region.bounds, seed))
    items = [_write_s2_scene(root, region, scene, region.epsg, S2_TILE) for scene in scenes]
    return items, truth, wc_map


def write_pair_s2(root: Path, site: DemoRegion, seed: int) -> list[pystac.Item]:
    """The pair site's Sentinel-2 scenes, rendered from its landscape at 10 m, in WGS 84 / UTM."""
    land = landscape(site.name, site.bounds, seed, pixel=10.0)  # the same layout as NAIP's
    scenes, _, _ = render_s2_scenes(land, acquisitions=PAIR_S2_ACQUISITIONS)
    return [_write_s2_scene(root, site, scene, PAIR_S2_EPSG, PAIR_S2_TILE) for scene in scenes]


def _write_s2_scene(root: Path, region: DemoRegion, scene: S2Scene, epsg: int, tile: str) -> pystac.Item:
    """Write the 11 COGs of one acquisition (in EPSG ``epsg``, MGRS ``tile``) and return its item."""
    acq = scene.acquisition
    minx, _, _, maxy = region.bounds
    folder = item_dir(root, "sentinel-2-l2a", acq.item_id(tile))
    crs = f"EPSG:{epsg}"
    assets_proj = {}
    for band, data in [*scene.bands.items(), ("SCL", scene.scl)]:
        pixel = 10.0 if band in BANDS_10M else 20.0
        transform = grid_transform(pixel, minx, maxy)
        write_cog(folder / f"{band}.tif", data, transform, crs, nodata=0, categorical=band == "SCL")
        assets_proj[band] = proj_fields(transform, data.shape, epsg)
    footprint = lonlat_geometry(valid_footprint(region.bounds, acq), epsg)
    return s2_item(acq, footprint, scene.scl, assets_proj, tile)


def write_naip_tile(root: Path, region: DemoRegion, seed: int, tile: NaipTile
                    ) -> tuple[pystac.Item, TruthLayers, np.ndarray]:
    """Render one NAIP tile and write its item; also return its 2 m truth and 10 m map codes."""
    image, truth, wc_map = render_naip_tile(landscape(region.name, region.bounds, seed), tile)
    when = NAIP_FLIGHTS[tile.flight].datetime
    geometry = lonlat_geometry(region_polygon(tile.bounds), region.epsg)
    item_id = naip_item_id(tile, geometry[1], when)
    transform = grid_transform(1.0, tile.bounds[0], tile.bounds[3])
    write_cog(item_dir(root, "naip", item_id) / "image.tif", image, transform, f"EPSG:{region.epsg}", nodata=0)
    proj = proj_fields(transform, image.shape[1:], region.epsg)
    return naip_item(tile, item_id, when, geometry, proj), truth, wc_map


def mosaic(region: DemoRegion, tiles: list[NaipTile], parts: list, pixel: float):
    """Assemble a region's raster (2-D codes or `TruthLayers`) on a ``pixel`` grid from its tiles' pieces."""
    minx, miny, maxx, maxy = region.bounds
    shape = int(round((maxy - miny) / pixel)), int(round((maxx - minx) / pixel))
    out = (TruthLayers.empty(*shape, parts[0].factors.shape[0]) if isinstance(parts[0], TruthLayers)
           else np.zeros(shape, np.uint8))
    for tile, part in zip(tiles, parts):
        top = int(round((maxy - tile.bounds[3]) / pixel))
        left = int(round((tile.bounds[0] - minx) / pixel))
        if isinstance(out, TruthLayers):
            out.put(top, left, part)
        else:
            out[top : top + part.shape[0], left : left + part.shape[1]] = part
    return out


def write_worldcover(root: Path, region: DemoRegion, codes: np.ndarray, id_suffix: str = "") -> pystac.Item:
    """Reproject a region's 10 m map codes to the WorldCover grid and write its item."""
    minx, _, _, maxy = region.bounds
    bbox = region.bbox_lonlat()
    wc_map, transform = worldcover_map(codes, grid_transform(10.0, minx, maxy), region.epsg, bbox)
    tile_name = worldcover_tile_name(bbox)
    item_id = f"ESA_WorldCover_10m_2021_v200_{tile_name}{id_suffix}"  # the pair site shares us's tile
    write_cog(item_dir(root, "esa-worldcover", item_id) / "map.tif", wc_map, transform, "EPSG:4326", nodata=0,
              categorical=True)
    west, south, east, north = (transform.c, transform.f + wc_map.shape[0] * transform.e,
                                transform.c + wc_map.shape[1] * transform.a, transform.f)
    geometry = lonlat_geometry(region_polygon((west, south, east, north)), 4326)
    proj = proj_fields(transform, wc_map.shape, 4326)
    return worldcover_item(item_id, tile_name, region.name, geometry, proj)


def write_truth(root: Path, region: DemoRegion, truth: TruthLayers, pixel: float, source: str) -> pystac.Item:
    """Write a region's truth rasters (in its own CRS, on a ``pixel`` grid) and their item."""
    minx, _, _, maxy = region.bounds
    folder = item_dir(root, TRUTH_COLLECTION, f"demo-truth-{region.name}")
    transform = grid_transform(pixel, minx, maxy)
    crs = f"EPSG:{region.epsg}"
    write_cog(folder / "class.tif", truth.label, transform, crs, nodata=0, categorical=True)
    write_cog(folder / "subtype.tif", truth.subtype, transform, crs, nodata=None, categorical=True)
    write_cog(folder / "factors.tif", truth.factors, transform, crs, nodata=None, scale=1.0 / FACTOR_SCALE)
    proj = {key: proj_fields(transform, truth.label.shape, region.epsg) for key in ("class", "subtype", "factors")}
    geometry = lonlat_geometry(region_polygon(region.bounds), region.epsg)
    return truth_item(folder.name, region.name, source, geometry, proj)
