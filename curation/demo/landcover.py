"""Render any window of a demo region's land cover: labels, sub-types, materials, factors, illumination.

A window is given by its top-left corner and shape in the region's pixel grid; everything is
computed from global coordinates, so adjacent windows join without seams. The labels are the
world's truth; `landcover_map` derives the imperfect ``esa-worldcover`` map from them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .classes import BARE, BUILT, CROP, GRASS, SHRUB, TREE, WATER, WETLAND
from .fields import farmland_parcels, render_farmland
from .layout import Landscape
from .materials import CROP as CROP_MATERIAL
from .materials import (
    ASPHALT,
    CONCRETE,
    ROCK,
    SAND,
    SOIL,
    WETVEG,
    LandcoverWindow,
    Points,
    put,
)
from .materials import GRASS as GRASS_MATERIAL
from .materials import WATER as WATER_MATERIAL
from .noise import fbm_grid, fbm_points, hash_uniform, value_noise_points
from .objects import natural_traits
from .portable_math import cos, exp, sin
from .settlement import mark_parks, render_town
from .subtypes import COVER, TURBIDITY, draw_factors, subtype_id
from .woodland import BROADLEAF, forest_stands, render_forest, render_shrubland

S_FINE_WARP, S_WATER, S_WETLAND, S_BARE, S_RIVER = 11000, 12000, 13000, 14000, 15000
OPEN_LAND = (GRASS, CROP, SHRUB, BARE)
ROCKY, SANDY = subtype_id("bare_sparse/rock"), subtype_id("bare_sparse/sand")
TURBID, REEDS = subtype_id("water/turbid"), subtype_id("herbaceous_wetland/vegetated")


def render_landcover(
    land: Landscape, x0: float, y_top: float, height: int, width: int, labels_only: bool = False
) -> LandcoverWindow:
    """Render the window whose top-left corner is (x0, y_top), in the region's pixel size.

    Args:
        labels_only: only the true labels and sub-types are needed (the same ones, much faster);
            the other layers are then incomplete.

    Returns:
        the window's per-pixel record (labels, sub-types, materials, factors, shading).
    """
    pixel = land.style.pixel
    xs = x0 + (np.arange(width) + 0.5) * pixel
    ys = y_top - (np.arange(height) + 0.5) * pixel
    win = LandcoverWindow.empty(height, width)
    rows, cols = _coarse_position(land, xs, ys)
    n_rows, n_cols = land.zone.shape
    cell = (_clip_index(rows, n_rows), _clip_index(cols, n_cols))
    win.zone[:] = land.zone[cell]
    win.label[:] = land.cell_class[cell]
    win.subtype[:] = land.cell_subtype[cell]

    def points(code: int) -> Points:
        flat = np.flatnonzero(win.label.reshape(-1) == code)
        return Points(flat, xs[flat % width], ys[flat // width], win.zone.reshape(-1)[flat])

    if labels_only:
        mark_parks(land, win, points(BUILT))
        for code in (CROP, GRASS):
            pts = points(code)
            put(win, pts, subtype=farmland_parcels(land, pts, code)[0].subtype)
        put(win, points(TREE), subtype=forest_stands(land, points(TREE)).subtype)
    else:
        render_forest(land, win, points(TREE))
        render_shrubland(land, win, points(SHRUB))
        render_farmland(land, win, points(GRASS), GRASS_MATERIAL)
        render_farmland(land, win, points(CROP), CROP_MATERIAL)
        render_town(land, win, points(BUILT))
        _render_bare(land, win, points(BARE))
        _render_wetland(land, win, points(WETLAND))
    water = points(WATER)
    # Distance to the lake shore, interpolated from the coarse grid (cell centres at +0.5).
    shore = ndimage.map_coordinates(
        land.water_dist,
        [rows.reshape(-1)[water.flat] - 0.5, cols.reshape(-1)[water.flat] - 0.5],
        order=1,
        mode="nearest",
    )
    _render_lakes(land, win, water, shore, labels_only)
    _overlay_rivers(land, win, xs, ys, labels_only)
    _overlay_roads(land, win, xs, ys)
    return win


def _coarse_position(
    land: Landscape, xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fractional coarse-grid (row, col) of each pixel, through a fine warp that frays edges."""
    coarse = land.style.coarse
    amp = 1.5 * coarse
    finest = 2 * land.style.pixel
    # Octaves down to two pixels turn the coarse grid's staircase into ragged natural edges.
    warp_x = amp * fbm_grid(land.seed, S_FINE_WARP, xs, ys, 4 * coarse, 5, 0.6, min_cell=finest)
    warp_y = amp * fbm_grid(land.seed, S_FINE_WARP + 1, xs, ys, 4 * coarse, 5, 0.6, min_cell=finest)
    rows = (land.grid_y0 - (ys[:, None] + warp_y)) / coarse
    cols = (xs[None, :] + warp_x - land.grid_x0) / coarse
    return rows, cols


def _clip_index(position: np.ndarray, size: int) -> np.ndarray:
    """Integer cell index of fractional positions, clamped to the grid."""
    return np.clip(np.floor(position).astype(np.int64), 0, size - 1)


def _render_lakes(land: Landscape, win: LandcoverWindow, pts: Points, shore: np.ndarray, labels_only: bool) -> None:
    """Lakes and ponds: clear or turbid (sub-type), murkier in the shallows, ringed by reeds."""
    if len(pts) == 0:
        return
    lo, hi = land.style.shore_ring
    belt = lo + (hi - lo) * (0.5 + 0.9 * fbm_points(land.seed, S_WATER, pts.x, pts.y, 400.0, 3))
    reeds = pts.where(shore < belt)
    put(win, reeds, label=WETLAND, subtype=REEDS)
    if labels_only:
        return
    traits = natural_traits(land, pts, WATER, S_WATER + 1, win.subtype.reshape(-1)[pts.flat], wobble=0.05)
    traits.factors[TURBIDITY] = np.clip(traits.factors[TURBIDITY] + 0.3 * exp(-shore / 80.0), 0.0, 1.0)
    put(win, pts, material=WATER_MATERIAL, second=WATER_MATERIAL, mix=0.0, factors=traits.factors)
    if len(reeds):
        ring = natural_traits(land, reeds, WETLAND, S_WATER + 2, np.full(len(reeds), REEDS, np.uint8))
        put(win, reeds, material=WETVEG, second=WATER_MATERIAL, mix=(1.0 - ring.factors[COVER]), factors=ring.factors)


def _render_wetland(land: Landscape, win: LandcoverWindow, pts: Points) -> None:
    """Herbaceous wetland: reeds over standing water (open: mostly water); at metre scale, pools."""
    if len(pts) == 0:
        return
    traits = natural_traits(land, pts, WETLAND, S_WETLAND, win.subtype.reshape(-1)[pts.flat])
    wetness = fbm_points(land.seed, S_WETLAND + 1, pts.x, pts.y, 60.0, 3)
    water = np.clip(1.0 - traits.factors[COVER] + 0.5 * wetness, 0.0, 1.0).astype(np.float32)
    put(win, pts, material=WETVEG, second=WATER_MATERIAL, mix=water, factors=traits.factors, kind=traits.kind)
    if land.style.pixel > 2.0:
        return
    mottle = fbm_points(land.seed, S_WETLAND + 2, pts.x, pts.y, 6.0, 2)
    put(win, pts, mix=np.clip(water - 0.2, 0.0, 1.0), texture=(1.0 + 0.2 * mottle).astype(np.float32))
    put(win, pts.where(water > 0.6), material=WATER_MATERIAL, mix=0.0, texture=1.0)


def _render_bare(land: Landscape, win: LandcoverWindow, pts: Points) -> None:
    """Bare ground: quarries and rock (terraced), sand (rippled), sparse grass and shrub on soil."""
    if len(pts) == 0:
        return
    subtype = win.subtype.reshape(-1)[pts.flat]
    traits = natural_traits(land, pts, BARE, S_BARE, subtype)
    patchiness = fbm_points(land.seed, S_BARE + 1, pts.x, pts.y, 250.0, 3)
    level = fbm_points(land.seed, S_BARE + 2, pts.x, pts.y, 1200.0, 2)
    terraces = 1.0 + 0.2 * ((level * 6.0) % 1.0 - 0.5)
    ripples = 1.0 + 0.04 * sin(2 * np.pi * (pts.x * 0.8 + pts.y * 0.6) / 4.0)
    vegetation = np.clip(traits.factors[COVER] * (1.0 + patchiness), 0.0, 1.0)
    material = np.select([subtype == ROCKY, subtype == SANDY], [ROCK, SAND], SOIL).astype(np.uint8)
    second = np.where(subtype == ROCKY, SOIL, GRASS_MATERIAL).astype(np.uint8)
    mix = np.where(subtype == ROCKY, np.clip(0.35 + 0.6 * patchiness, 0.0, 0.9), vegetation)
    texture = np.select([subtype == ROCKY, subtype == SANDY], [terraces, ripples], 1.0)
    if land.style.pixel <= 2.0:
        texture = texture * (1.0 + 0.08 * value_noise_points(land.seed, S_BARE + 3, pts.x, pts.y, 3.0))
    else:
        texture = np.where(subtype == SANDY, 1.0, texture)  # ripples average out in a 10 m pixel
    put(win, pts, material=material, second=second, mix=mix.astype(np.float32), texture=texture.astype(np.float32),
        factors=traits.factors, kind=traits.kind)


def _axis_points(win: LandcoverWindow, xs: np.ndarray, ys: np.ndarray, keep: np.ndarray) -> Points:
    """Points of the window where ``keep`` (h, w) holds."""
    flat = np.flatnonzero(keep.reshape(-1))
    width = len(xs)
    return Points(flat, xs[flat % width], ys[flat // width], win.zone.reshape(-1)[flat])


def _paint_water(land: Landscape, win: LandcoverWindow, pts: Points, turbidity: float) -> None:
    """Open river water over whatever was there."""
    if len(pts) == 0:
        return
    ones = np.ones(len(pts), np.float32)
    factors = draw_factors(land.style.name, np.full(len(pts), TURBID, np.uint8), (0.5 * ones, ones, ones, ones, ones))
    factors[TURBIDITY] = turbidity
    put(win, pts, label=WATER, subtype=TURBID, material=WATER_MATERIAL, second=WATER_MATERIAL, mix=0.0, paved=0.0,
        shade=1.0, texture=1.0, factors=factors)


def _overlay_rivers(
    land: Landscape, win: LandcoverWindow, xs: np.ndarray, ys: np.ndarray, labels_only: bool
) -> None:
    """Rivers cut through everything; reeds line their banks in open land, trees beyond (us)."""
    for river in land.rivers:
        c, s = float(cos(river.angle)), float(sin(river.angle))
        across = (ys[:, None] - river.origin[1]) * c - (xs[None, :] - river.origin[0]) * s
        near = _axis_points(win, xs, ys, np.abs(across) < river.reach() + 60.0)
        if len(near) == 0:
            continue
        dist, along = river.distance(near.x, near.y)
        wobble = value_noise_points(
            land.seed, S_RIVER + river.index, along, np.zeros_like(along), 700.0
        )
        half = river.half_width * (1.0 + 0.25 * wobble)
        bank = river.buffer * (0.9 + 0.8 * wobble)
        open_land = np.isin(win.label.reshape(-1)[near.flat], OPEN_LAND)
        riparian = near.where(open_land & (dist >= half) & (dist < half + bank))
        put(win, riparian, label=WETLAND, subtype=REEDS, paved=0.0, shade=1.0, texture=1.0)
        if not labels_only and len(riparian):
            traits = natural_traits(land, riparian, WETLAND, S_RIVER + 50, np.full(len(riparian), REEDS, np.uint8))
            put(win, riparian, material=WETVEG, second=WATER_MATERIAL, mix=1.0 - traits.factors[COVER],
                factors=traits.factors)
        if land.style.name == "us":
            outer = half + bank + 40.0 * (1.0 + wobble)
            belt = near.where(open_land & (dist >= half + bank) & (dist < outer))
            put(win, belt, label=TREE, subtype=BROADLEAF, paved=0.0, texture=1.0)
            if not labels_only:
                render_forest(land, win, belt, subtype=BROADLEAF)
        _paint_water(land, win, near.where(dist < half), 0.55 + 0.15 * river.index)


def _overlay_roads(land: Landscape, win: LandcoverWindow, xs: np.ndarray, ys: np.ndarray) -> None:
    """Main roads (eu) and the one-mile section-line road grid (us); none across lakes."""
    pixel = land.style.pixel
    for road in land.roads:
        c, s = float(cos(road.angle)), float(sin(road.angle))
        across = (ys[:, None] - road.origin[1]) * c - (xs[None, :] - road.origin[0]) * s
        near = _axis_points(win, xs, ys, np.abs(across) < road.reach())
        near = near.where(win.label.reshape(-1)[near.flat] != WATER)
        dist, _ = road.distance(near.x, near.y)
        cover = np.clip((road.half_width - dist) / pixel + 0.5, 0.0, 1.0).astype(np.float32)
        paved = win.paved.reshape(-1)
        paved[near.flat] = np.maximum(paved[near.flat], cover)
        put(win, near.where(cover >= 0.5), label=BUILT, subtype=0)
    spacing = land.style.section_roads
    if not spacing:
        return
    to_line_x = np.abs((xs + spacing / 2) % spacing - spacing / 2)
    to_line_y = np.abs((ys + spacing / 2) % spacing - spacing / 2)
    dist = np.minimum(to_line_x[None, :], to_line_y[:, None])
    near = _axis_points(win, xs, ys, dist < 9.0)
    near = near.where(win.label.reshape(-1)[near.flat] != WATER)
    dist_near = dist.reshape(-1)[near.flat]
    ditch = near.where((dist_near >= 4.0) & np.isin(win.label.reshape(-1)[near.flat], OPEN_LAND))
    put(win, ditch, material=GRASS_MATERIAL, second=GRASS_MATERIAL, mix=0.0, texture=1.0, shade=1.0)
    col, row = near.flat % len(xs), near.flat // len(xs)
    north_south = to_line_x[col] < to_line_y[row]
    line = np.floor(np.where(north_south, xs[col], ys[row]) / spacing + 0.5).astype(np.int64)
    # Most section-line roads are gravel; some are paved county roads.
    gravel = hash_uniform(land.seed, S_RIVER + 99, line, north_south.astype(np.int64)) < 0.6
    surface = np.where(gravel, CONCRETE, ASPHALT).astype(np.uint8)
    road = dist_near < 4.0
    put(win, near.where(road), label=BUILT, subtype=0, material=surface[road], second=surface[road], mix=0.0,
        paved=0.0, texture=1.0, shade=1.0, kind=0.5)
