"""The plan and sample stages: chip grids over AOIs, and pure-class candidate chips from a land-cover map."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from ackd_bench.curation.presets import LabelSpec, ModalitySpec
from ackd_bench.curation.reading import gdal_env
from ackd_bench.curation.remote import RemoteError
from ackd_bench.curation.stac import Catalog, CatalogError


@dataclass(frozen=True)
class ChipGrid:
    """A lattice of non-overlapping chips over one AOI, in a projected CRS.

    Chips are squares of ``chip_m`` metres; chip (row, col) spans
    ``x0 + col*chip_m .. x0 + (col+1)*chip_m`` and ``y1 - (row+1)*chip_m .. y1 - row*chip_m``.
    Because chips tile the plane, no two candidates overlap, whatever is selected.
    """

    aoi: int
    crs: str
    x0: float
    y1: float
    chip_m: float
    rows: int
    cols: int

    def bounds(self, row: np.ndarray, col: np.ndarray) -> np.ndarray:
        """Chip bounds (minx, miny, maxx, maxy), shape (n, 4)."""
        minx = self.x0 + col * self.chip_m
        maxy = self.y1 - row * self.chip_m
        return np.stack([minx, maxy - self.chip_m, minx + self.chip_m, maxy], axis=1)


def plan_grid(aoi_index: int, aoi: tuple[float, float, float, float], crs: str, spec: ModalitySpec,
              origin: tuple[float, float] | None = None) -> ChipGrid:
    """The chip lattice covering a lon/lat AOI in ``crs``, snapped to the imagery's pixel grid.

    Args:
        aoi_index: position of the AOI in the preset (part of chip ids).
        aoi: lon/lat bbox.
        crs: the projected CRS the imagery is delivered in (e.g. ``EPSG:32632``).
        spec: the modality (its gsd and chip size).
        origin: a pixel corner of the imagery grid (x, y); chips are aligned to it.
    """
    minx, miny, maxx, maxy = transform_bounds("EPSG:4326", crs, *aoi, densify_pts=21)
    ox, oy = origin if origin is not None else (0.0, 0.0)
    # Snap inwards to whole pixels of the imagery grid, so reads need no resampling.
    x0 = ox + math.ceil((minx - ox) / spec.gsd) * spec.gsd
    y1 = oy + math.floor((maxy - oy) / spec.gsd) * spec.gsd
    cols = int((maxx - x0) // spec.chip_m)
    rows = int((y1 - miny) // spec.chip_m)
    if rows <= 0 or cols <= 0:
        raise CatalogError(f"AOI {aoi} is smaller than one {spec.chip_m:g} m chip")
    return ChipGrid(aoi=aoi_index, crs=crs, x0=x0, y1=y1, chip_m=spec.chip_m, rows=rows, cols=cols)


def read_label_grid(catalog: Catalog, labels: LabelSpec, items: list, grid: ChipGrid,
                    samples_per_chip: int) -> np.ndarray:
    """Land-cover codes over the whole chip lattice, ``samples_per_chip`` samples per chip side.

    The land-cover product (any CRS; WorldCover is EPSG:4326) is warped with nearest-neighbour
    onto the lattice. Items are read newest first (their datetime or start_datetime, then id,
    descending): where maps of several years or versions cover a place (Planetary Computer's
    WorldCover 2021 v200 and 2020 v100 tiles), the newest map labels it and older ones only fill
    its gaps; once the lattice has no gap left, no further item is read.

    Returns:
        uint8/uint16 codes of shape (rows * L, cols * L); 0 where no product covers.
    """
    size = grid.chip_m / samples_per_chip
    transform = Affine(size, 0.0, grid.x0, 0.0, -size, grid.y1)
    shape = (grid.rows * samples_per_chip, grid.cols * samples_per_chip)
    mosaic = None

    def warp(href: str) -> np.ndarray:
        with rasterio.open(href) as src, WarpedVRT(
            src, crs=CRS.from_user_input(grid.crs), transform=transform, width=shape[1],
            height=shape[0], resampling=Resampling.nearest, nodata=0,
        ) as vrt:
            return vrt.read(1)

    newest_first = sorted(items, key=lambda it: (it.time.timestamp(), it.id), reverse=True)
    with gdal_env(catalog.retry):
        for item in newest_first:
            if mosaic is not None and not (mosaic == 0).any():
                break  # every sample labelled: older maps would change nothing
            if labels.asset not in item.assets:
                raise CatalogError(f"{labels.collection} item {item.id} has no asset {labels.asset!r}")
            try:
                codes = catalog.signer.read(item.assets[labels.asset], warp)  # signed, retried
            except RemoteError as err:
                raise CatalogError(f"cannot read land-cover asset: {err}", url=err.url,
                                   status=err.failure.status) from err
            mosaic = codes if mosaic is None else np.where(mosaic == 0, codes, mosaic)
    if mosaic is None:
        raise CatalogError(f"no {labels.collection} item covers AOI {grid.aoi}")
    return mosaic


def candidate_chips(codes: np.ndarray, grid: ChipGrid, labels: LabelSpec, samples_per_chip: int,
                    purity: float, modality: str, block_chips: int) -> pd.DataFrame:
    """Chips of the lattice whose majority benchmark class covers at least ``purity`` of them.

    Chips touching land-cover nodata, or whose majority is a code outside the crosswalk, are
    never candidates.

    Returns:
        One row per candidate: ``candidate_id, modality, aoi, row, col, minx..maxy, crs, label,
        purity, block``, and ``composition``: the map's share of each class over the chip (taxonomy
        order; codes outside the crosswalk left out, so the shares sum to at most 1).
    """
    n = samples_per_chip
    lut = np.full(max(256, int(codes.max()) + 1), -1, dtype=np.int16)
    for code, name in labels.crosswalk:
        lut[code] = labels.classes.index(name)
    classes = lut[codes].reshape(grid.rows, n, grid.cols, n).transpose(0, 2, 1, 3).reshape(grid.rows, grid.cols, n * n)
    nodata = (codes == 0).reshape(grid.rows, n, grid.cols, n).any(axis=(1, 3))
    counts = np.stack([(classes == k).sum(axis=-1) for k in range(len(labels.classes))], axis=-1)
    majority = counts.argmax(axis=-1)
    share = counts.max(axis=-1) / float(n * n)
    keep = (share >= purity) & ~nodata
    row, col = np.nonzero(keep)
    bounds = grid.bounds(row, col)
    crs_tag = grid.crs.replace("EPSG:", "")
    return pd.DataFrame({
        "candidate_id": [f"{modality}_a{grid.aoi}_{crs_tag}_r{r:04d}_c{c:04d}" for r, c in zip(row, col)],
        "modality": modality,
        "aoi": grid.aoi,
        "row": row.astype(np.int64),
        "col": col.astype(np.int64),
        "minx": bounds[:, 0], "miny": bounds[:, 1], "maxx": bounds[:, 2], "maxy": bounds[:, 3],
        "crs": grid.crs,
        "label": majority[row, col].astype(np.int64),
        "purity": share[row, col].astype(np.float64),
        "block": [f"a{grid.aoi}_b{r // block_chips:03d}_{c // block_chips:03d}" for r, c in zip(row, col)],
        "composition": list(counts[row, col] / float(n * n)),
    })


def rank_candidates(candidates: pd.DataFrame, seed: int, n_classes: int) -> pd.DataFrame:
    """Shuffle candidates within each class reproducibly; adds ``rank`` (0 = tried first)."""
    ranked = []
    for k in range(n_classes):
        part = candidates[candidates["label"] == k].sort_values("candidate_id")
        modality_salt = sum(map(ord, str(part["modality"].iloc[0]))) if len(part) else 0
        rng = np.random.default_rng([seed, k, modality_salt])
        part = part.iloc[rng.permutation(len(part))].copy()
        part["rank"] = np.arange(len(part))
        ranked.append(part)
    return pd.concat(ranked, ignore_index=True) if ranked else candidates.assign(rank=[])
