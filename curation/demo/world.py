"""The embedded demo world: a seeded procedural landscape served as a static STAC catalog.

Planetary Computer is not reachable offline, so the curation pipeline can run on this instead:
two disjoint regions (``eu``: Sentinel-2 L2A over central Germany; ``us``: NAIP over Iowa) with
an ESA-WorldCover-like label map (with a real map's errors), rendered into COGs under a
self-contained STAC catalog with Planetary Computer's collection ids, asset keys and metadata
fields, plus a collection of its own with the world's latent truth (true class, sub-type and
appearance factors per pixel). On request the world also holds a *pair site* east of the ``us``
region, imaged by both sensors, for ``paired`` and ``partial`` builds. See DESIGN.md, "The
embedded demo world", and the README's "The demo world".
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pystac
from rasterio.warp import transform_bounds
from tqdm import tqdm

from ackd_bench.benchmark.errors import AckdBenchError

from .landcover import render_landcover
from .landcover_map import map_labels
from .layout import PAIR_BLOCK_M, STYLES, build_landscape
from .naip import TRUTH_STEP, naip_tiles
from .stac_items import collection
from .truth import TRUTH_COLLECTION, block_majority
from .writers import mosaic, write_naip_tile, write_pair_s2, write_s2, write_truth, write_worldcover

DEMO_WORLD_VERSION: str = "2"
DEMO_COLLECTIONS = ("sentinel-2-l2a", "naip", "esa-worldcover", TRUTH_COLLECTION)
TRUTH_SOURCE = f"ackd-bench demo world v{DEMO_WORLD_VERSION}"
DEMO_DATE_RANGE = ("2021-01-01T00:00:00Z", "2023-12-31T23:59:59Z")
CACHE_ENV = "ACKD_BENCH_CACHE"
MAX_SCALE = 2.0
_REGION_GRID_M = 20.0  # region sides are whole 20 m Sentinel-2 pixels
_BASE_REGIONS = {
    "eu": (32632, (500000.0, 5520000.0, 536000.0, 5556000.0), ("sentinel-2-l2a",)),
    "us": (26915, (400000.0, 4642000.0, 412000.0, 4654000.0), ("naip",)),
}
# South-west corner of the pair site: on the block grid, east of the us region at any scale.
_PAIR_ORIGIN = (226 * PAIR_BLOCK_M, 2418 * PAIR_BLOCK_M)


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


def demo_label_map(region: DemoRegion, seed: int = 0, *, truth: bool = False) -> tuple[np.ndarray, float]:
    """A region's land-cover codes without rendering imagery (fast: labels only).

    Rows run south from the region's north-west corner.

    Args:
        truth: the true codes at the region's finest pixel instead of the ``esa-worldcover``
            map's codes (with its errors) on the region's 10 m grid.

    Returns:
        (uint8 codes, pixel size in metres: 10 for the map and ``eu``; 1 for the truth of ``us``
        and ``pair``).
    """
    labels, subtypes, pixel = demo_truth_labels(region, seed)
    if truth:
        return labels, pixel
    factor = int(round(10.0 / pixel))
    labels10, subtypes10 = block_majority(labels, subtypes, factor) if factor > 1 else (labels, subtypes)
    minx, _, _, maxy = region.bounds
    xs = minx + (np.arange(labels10.shape[1]) + 0.5) * 10.0
    ys = maxy - (np.arange(labels10.shape[0]) + 0.5) * 10.0
    return map_labels(seed, labels10, subtypes10, xs, ys), 10.0


def demo_truth_labels(region: DemoRegion, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """A region's true codes and sub-type ids at its finest pixel (labels only, no imagery).

    Returns:
        (codes, sub-type ids, pixel size in metres).
    """
    land = build_landscape(STYLES[region.name], region.bounds, seed)
    pixel = land.style.pixel
    minx, miny, maxx, maxy = region.bounds
    height, width = int(round((maxy - miny) / pixel)), int(round((maxx - minx) / pixel))
    labels = np.zeros((height, width), np.uint8)
    subtypes = np.zeros((height, width), np.uint8)
    step = 2000
    for top in range(0, height, step):
        for left in range(0, width, step):
            rows, cols = min(step, height - top), min(step, width - left)
            window = render_landcover(land, minx + left * pixel, maxy - top * pixel, rows, cols,
                                      labels_only=True)
            labels[top : top + rows, left : left + cols] = window.label
            subtypes[top : top + rows, left : left + cols] = window.subtype
    return labels, subtypes, pixel


def default_cache_dir() -> Path:
    """$ACKD_BENCH_CACHE, else ~/.cache/ackd-bench."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "ackd-bench"


def generator_digest() -> str:
    """A digest of the world generator's source (every module of this package) and its version.

    The cache is keyed by it, so a changed generator never reuses a world rendered by an older one
    (a version number that someone forgot to raise once let a stale cache stand in for the world).
    """
    digest = hashlib.sha256(f"v{DEMO_WORLD_VERSION}".encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return digest.hexdigest()[:12]


def cached_demo_catalog(
    *, seed: int = 0, scale: float = 1.0, cache_dir: Path | None = None, progress: bool = True,
    pair_site: bool = False,
) -> Path:
    """The demo catalog for (seed, scale) from the cache, built there first if missing.

    The cache folder is keyed by the generator's source (`generator_digest`) as well as by seed and
    scale: a world is never reused across generator changes.

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
    folder = root / (f"demo-world-v{DEMO_WORLD_VERSION}-{generator_digest()}-seed{seed}-scale{scale:g}"
                     f"{'-pairs' if pair_site else ''}")
    return build_demo_catalog(folder, seed=seed, scale=scale, progress=progress, pair_site=pair_site)


def build_demo_catalog(
    out_dir: Path, *, seed: int = 0, scale: float = 1.0, progress: bool = True, pair_site: bool = False
) -> Path:
    """Render the demo world and write it as a self-contained static STAC catalog.

    The catalog is built in a temporary sibling folder and renamed into place, so ``out_dir``
    either holds a finished catalog or nothing; ``catalog.json`` is written last. A finished
    catalog is not rebuilt. The rendering runs in two spawned worker processes, so a script that
    calls this at import time needs Python's ``if __name__ == "__main__":`` guard.

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
    """Render the regions (and the pair site, if asked), write their COGs and the STAC catalog.

    Sentinel-2 and every NAIP tile render in two worker processes (NumPy holds the GIL too often
    for threads to use both cores); results come back in submission order, so the bytes written
    do not depend on which finishes first.
    """
    eu, us, pair = regions["eu"], regions["us"], regions.get("pair")
    tiles = naip_tiles(us.bounds)
    pair_tiles = naip_tiles(pair.bounds) if pair else []
    steps = 1 + len(tiles) + 1 + (len(pair_tiles) + 1 if pair else 0)
    with tqdm(total=steps, desc="demo world", unit="step", disable=not progress, leave=False) as bar, \
            ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        # The longest job (all Sentinel-2 scenes) first; NAIP tiles fill the other process.
        s2_job = pool.submit(write_s2, root, eu, seed)
        naip_jobs = [pool.submit(write_naip_tile, root, us, seed, tile) for tile in tiles]
        pair_jobs = [pool.submit(write_pair_s2, root, pair, seed)] if pair else []
        pair_jobs += [pool.submit(write_naip_tile, root, pair, seed, t) for t in pair_tiles]
        for job in (s2_job, *naip_jobs, *pair_jobs):
            job.add_done_callback(lambda _: bar.update(1))
        try:
            s2_items, eu_truth, eu_map = s2_job.result()
            naip_results = [job.result() for job in naip_jobs]
            pair_results = [job.result() for job in pair_jobs]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # fail fast, not after every tile
            raise
        naip_items = [item for item, _, _ in naip_results]
        wc_items = [
            write_worldcover(root, eu, eu_map),
            write_worldcover(root, us, mosaic(us, tiles, [m for _, _, m in naip_results], 10.0)),
        ]
        truth_items = [
            write_truth(root, eu, eu_truth, 10.0, TRUTH_SOURCE),
            write_truth(root, us, mosaic(us, tiles, [t for _, t, _ in naip_results], TRUTH_STEP), TRUTH_STEP,
                        TRUTH_SOURCE),
        ]
        description = (
            "A deterministic procedural world shaped like Planetary Computer's collections: "
            "Sentinel-2 L2A over a central-German region, NAIP over an Iowa region, an "
            "ESA-WorldCover-like label map of both (with a real map's errors), and the world's "
            "latent truth. Synthetic data for testing and demos."
        )
        meta = {"version": DEMO_WORLD_VERSION, "seed": seed, "scale": scale}
        if pair:
            s2_items += pair_results[0]
            site = pair_results[1:]
            naip_items += [item for item, _, _ in site]
            wc_items.append(write_worldcover(root, pair, mosaic(pair, pair_tiles, [m for _, _, m in site], 10.0),
                                             id_suffix="_pair-site"))
            truth_items.append(write_truth(root, pair, mosaic(pair, pair_tiles, [t for _, t, _ in site], TRUTH_STEP),
                                           TRUTH_STEP, TRUTH_SOURCE))
            description += " A pair site east of the Iowa region is imaged by both sensors."
            meta["pair_site"] = True
        catalog = pystac.Catalog(
            id="ackd-bench-demo-world",
            title=f"ackd-bench demo world (seed {seed}, scale {scale:g})",
            description=description,
            extra_fields={"ackd:demo_world": meta},
        )
        for collection_id, items in zip(DEMO_COLLECTIONS, (s2_items, naip_items, wc_items, truth_items)):
            catalog.add_child(collection(collection_id, items))
        catalog.normalize_hrefs(str(root))
        catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
        bar.update(1)
