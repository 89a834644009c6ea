"""Raster output of the demo world: COG writing, lon/lat footprints, the WorldCover grid."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.warp import reproject
import shapely
from shapely.geometry import Polygon, box, mapping

WORLDCOVER_PIXEL_DEG = 1.0 / 12000.0  # ESA WorldCover's 10 m grid is 1/12000 degree
WORLDCOVER_MARGIN_DEG = 0.002
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


def grid_transform(pixel: float, west: float, north: float) -> Affine:
    """North-up affine transform (built directly: affine's ``*`` on Affine is being deprecated)."""
    return Affine(pixel, 0.0, west, 0.0, -pixel, north)


def write_cog(
    path: Path,
    data: np.ndarray,
    transform: Affine,
    crs: str,
    nodata: int | None,
    categorical: bool = False,
    scale: float | None = None,
) -> None:
    """Write a (bands, h, w) or (h, w) array as a deflate-compressed, tiled COG with overviews.

    Args:
        nodata: the nodata value, or None for none.
        categorical: class maps get nearest-neighbour overviews, reflectances averaged ones.
        scale: stored scale of every band (value = DN * scale), as GDAL metadata.
    """
    if data.ndim == 2:
        data = data[None]
    count, height, width = data.shape
    profile = {
        "driver": "COG",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "DEFLATE",
        "predictor": "2",
        "blocksize": 256,  # chips are small: a read decompresses less around them than with 512
        "overview_resampling": "NEAREST" if categorical else "AVERAGE",
        "num_threads": "1",  # one thread per file; files are written in parallel instead
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if scale is not None:
            dst.scales = [scale] * count


def proj_fields(transform: Affine, shape: tuple[int, int], epsg: int) -> dict:
    """The projection-extension fields of an asset, as Planetary Computer writes them."""
    height, width = shape
    minx, maxy = transform.c, transform.f
    maxx, miny = minx + width * transform.a, maxy + height * transform.e
    return {
        "proj:epsg": epsg,
        "proj:shape": [height, width],
        "proj:transform": list(transform)[:6],
        "proj:bbox": [minx, miny, maxx, maxy],
    }


def lonlat_geometry(polygon: Polygon, epsg: int) -> tuple[dict, list[float]]:
    """GeoJSON geometry and bbox in lon/lat of a polygon given in EPSG ``epsg`` (densified)."""
    to_lonlat = Transformer.from_crs(epsg, 4326, always_xy=True)
    step = max(polygon.length / 16.0, 1e-9)
    dense = shapely.segmentize(polygon, step)
    lonlat = shapely.transform(dense, to_lonlat.transform, interleaved=False)
    lonlat = Polygon([(round(x, 7), round(y, 7)) for x, y in lonlat.exterior.coords])
    return mapping(lonlat), [round(v, 7) for v in lonlat.bounds]


def worldcover_grid(bbox_lonlat: tuple[float, ...]) -> tuple[Affine, tuple[int, int]]:
    """The WorldCover-aligned lon/lat grid covering a bbox plus a small margin."""
    west, south, east, north = bbox_lonlat
    cols0 = math.floor((west - WORLDCOVER_MARGIN_DEG) / WORLDCOVER_PIXEL_DEG)
    cols1 = math.ceil((east + WORLDCOVER_MARGIN_DEG) / WORLDCOVER_PIXEL_DEG)
    rows0 = math.floor((south - WORLDCOVER_MARGIN_DEG) / WORLDCOVER_PIXEL_DEG)
    rows1 = math.ceil((north + WORLDCOVER_MARGIN_DEG) / WORLDCOVER_PIXEL_DEG)
    transform = grid_transform(WORLDCOVER_PIXEL_DEG, cols0 * WORLDCOVER_PIXEL_DEG,
                               rows1 * WORLDCOVER_PIXEL_DEG)
    return transform, (rows1 - rows0, cols1 - cols0)


def worldcover_map(
    labels: np.ndarray, transform: Affine, epsg: int, bbox_lonlat: tuple[float, ...]
) -> tuple[np.ndarray, Affine]:
    """Reproject a 10 m label map (nearest) onto the WorldCover lon/lat grid; 0 outside."""
    dst_transform, shape = worldcover_grid(bbox_lonlat)
    out = np.zeros(shape, np.uint8)
    reproject(
        source=labels,
        destination=out,
        src_transform=transform,
        src_crs=f"EPSG:{epsg}",
        src_nodata=0,
        dst_transform=dst_transform,
        dst_crs="EPSG:4326",
        dst_nodata=0,
        resampling=Resampling.nearest,
    )
    return out, dst_transform


def worldcover_tile_name(bbox_lonlat: tuple[float, ...]) -> str:
    """Name of the 3 × 3 degree WorldCover tile holding the bbox's south-west corner."""
    lat = math.floor(bbox_lonlat[1] / 3) * 3
    lon = math.floor(bbox_lonlat[0] / 3) * 3
    return f"{'N' if lat >= 0 else 'S'}{abs(lat):02d}{'E' if lon >= 0 else 'W'}{abs(lon):03d}"


def region_polygon(bounds: tuple[float, float, float, float]) -> Polygon:
    """The region's rectangle in its own CRS."""
    return box(*bounds)
