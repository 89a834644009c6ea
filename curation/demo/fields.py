"""Farmland of the demo world: crop and grass parcels, centre pivots, and their metre-scale texture.

Each parcel is an object with a sub-type (cropland: centre pivot, strip, early season, harvested;
grassland: pasture, meadow, dry) and factors. Its canopy ``cover`` sets how much soil shows through,
which a 10 m pixel sees as a mixture and a 1 m pixel as rows, swaths or patches: early-season rows
with soil between them, mowing swaths, grazed patches, stubble lines. Those patterns are what an
aerial RGB image shows of differences that Sentinel-2 sees in its red edge and NIR.
"""

from __future__ import annotations

import numpy as np

from .classes import CROP as CROP_CODE
from .classes import GRASS as GRASS_CODE
from .layout import Landscape
from .materials import CROP, GRASS, SOIL, LandcoverWindow, Points, put
from .noise import fbm_points, hash_uniform
from .objects import Traits, brick_layout, object_traits
from .portable_math import sin
from .subtypes import COVER, GREENNESS, subtype_id

S_PARCEL, S_PIVOT, S_TEXTURE = 1000, 2000, 2500
PLSS_CELL = 402.336  # a quarter-quarter section (1/4 mile): the grain of Midwest fields
PIVOT, STRIP, EARLY, HARVESTED = (subtype_id(f"cropland/{n}") for n in ("centre_pivot", "strip", "early", "harvested"))
PASTURE, MEADOW, DRY = (subtype_id(f"grassland/{n}") for n in ("pasture", "meadow", "dry"))


def render_farmland(land: Landscape, win: LandcoverWindow, pts: Points, material: int) -> None:
    """Crop (``material`` CROP) or grass (GRASS) parcels with their sub-types, factors and texture."""
    if len(pts) == 0:
        return
    traits, edge, along, pivot = farmland_parcels(land, pts, CROP_CODE if material == CROP else GRASS_CODE)
    soil = 1.0 - traits.factors[COVER]
    put(win, pts, material=material, second=SOIL, mix=soil.astype(np.float32), subtype=traits.subtype,
        factors=traits.factors, kind=traits.kind)
    if land.style.pixel <= 2.0:
        _texture(land, win, pts, traits, soil, edge, along)
    if pivot is not None and pivot.any():
        _pivots(land, win, pts, pivot, traits)


def farmland_parcels(land: Landscape, pts: Points, code: int
                     ) -> tuple[Traits, np.ndarray, np.ndarray, np.ndarray | None]:
    """The parcel of every point of crop (``code`` CROP) or grass land, and its traits.

    Returns:
        traits, distance to the parcel edge, position along the planting rows, and whether the point
        lies in a centre pivot's square (None outside the survey-grid layout).
    """
    if land.style.field_angle_spread == 0.0:
        return _sections(land, pts, code)
    stream = S_PARCEL + code
    bricks = brick_layout(land, pts.x, pts.y, pts.zone, stream, land.style.parcel_width, land.style.parcel_length)
    traits = object_traits(land, code, stream + 200, *bricks.keys(), exclude=("centre_pivot",))
    return traits, bricks.edge(), np.where(traits.kind < 0.5, bricks.pu, bricks.pv), None


def _sections(land: Landscape, pts: Points, code: int) -> tuple[Traits, np.ndarray, np.ndarray, np.ndarray]:
    """Midwest parcels on the survey grid: whole, halved, or (cropland) a centre pivot's square.

    Returns:
        traits, distance to the parcel edge, position along the planting rows, whether the
        point lies in a pivot's square.
    """
    cell = PLSS_CELL
    row = np.floor(pts.y / cell).astype(np.int64)
    col = np.floor(pts.x / cell).astype(np.int64)
    pu, pv = pts.x - col * cell, pts.y - row * cell
    layout = hash_uniform(land.seed, S_PIVOT, row, col)
    pivot_share = land.style.pivot_fraction if code == CROP_CODE else 0.0
    is_pivot = layout < pivot_share
    split_x = (layout >= pivot_share) & (layout < pivot_share + 0.35)
    split_y = (layout >= pivot_share + 0.35) & (layout < pivot_share + 0.7)
    half = np.where(split_x, pu >= cell / 2, 0) + np.where(split_y, 2 * (pv >= cell / 2), 0)
    width = np.where(split_x, cell / 2, cell)
    height = np.where(split_y, cell / 2, cell)
    pu_local, pv_local = pu % width, pv % height
    edge = np.minimum(np.minimum(pu_local, width - pu_local), np.minimum(pv_local, height - pv_local))
    traits = object_traits(land, code, S_PARCEL, row, col, half, exclude=("centre_pivot",))
    traits.subtype[is_pivot] = PIVOT
    if is_pivot.any():
        redo = object_traits(land, code, S_PARCEL, row[is_pivot], col[is_pivot], half[is_pivot],
                             subtype=np.full(int(is_pivot.sum()), PIVOT, np.uint8))
        traits.factors[:, is_pivot], traits.kind[is_pivot] = redo.factors, redo.kind
    along = np.where(traits.kind < 0.5, pu_local, pv_local)
    return traits, edge, along, is_pivot


def _texture(land: Landscape, win: LandcoverWindow, pts: Points, traits: Traits, soil: np.ndarray,
             edge: np.ndarray, along: np.ndarray) -> None:
    """Metre-scale structure: where soil shows (rows, patches) and brightness patterns (swaths, stubble)."""
    st = traits.subtype
    period = 3.0 + 4.0 * traits.kind  # planting rows, metres
    rows = 0.5 + 0.5 * sin(2 * np.pi * along / period)
    patches = fbm_points(land.seed, S_TEXTURE, pts.x, pts.y, 5.0, 2)
    # Soil share per pixel: its parcel mean (1 - cover) redistributed by a pattern of mean ~1.
    pattern = np.select(
        [st == EARLY, st == HARVESTED, (st == PASTURE) | (st == DRY)],
        [2.0 * (1.0 - rows), 1.0 + 0.8 * (rows - 0.5), 1.0 + 1.6 * patches],
        1.0,
    )
    texture = np.select(
        [(st == STRIP) | (st == PIVOT), st == MEADOW, st == PASTURE],
        [1.0 + 0.06 * (2 * rows - 1), 1.0 + 0.05 * np.sign(sin(2 * np.pi * along / 12.0)), 1.0 + 0.06 * patches],
        1.0,
    )
    put(win, pts, mix=np.clip(soil * pattern, 0.0, 1.0).astype(np.float32), texture=texture.astype(np.float32))
    put(win, pts.where(edge < 1.6), material=GRASS, mix=0.1)  # grassy margins between parcels


def _pivots(land: Landscape, win: LandcoverWindow, pts: Points, pivot: np.ndarray, traits: Traits) -> None:
    """A centre pivot irrigates a circle; the corners its arm never reaches stay dry."""
    cell = PLSS_CELL
    cx = (np.floor(pts.x / cell) + 0.5) * cell
    cy = (np.floor(pts.y / cell) + 0.5) * cell
    radius = np.sqrt((pts.x - cx) ** 2 + (pts.y - cy) ** 2)
    corner = pivot & (radius >= 0.48 * cell)
    dry = traits.factors[:, corner].copy()
    dry[GREENNESS] = 0.2
    put(win, pts.where(corner), material=GRASS, second=SOIL, mix=0.55, factors=dry)
    inside = pivot & ~corner
    if land.style.pixel <= 2.0 and inside.any():
        # Concentric wheel tracks and circular planting rows.
        r = radius[inside]
        rings = 1.0 + 0.05 * sin(2 * np.pi * r / 6.0)
        rings = np.where(np.abs((r + 22.0) % 45.0 - 22.0) < 0.8, 0.82, rings)
        put(win, pts.where(inside), texture=rings.astype(np.float32))
