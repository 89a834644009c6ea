"""Towns of the demo world: street grids, blocks, houses with driveways, yard trees and shadows.

A town's sub-type sets its make-up: dense centres (big houses on narrow lots, many halls), residential
suburbs (houses in gardens), industrial estates (halls in parking lots).
"""

from __future__ import annotations

import math

import numpy as np

from .classes import BUILT
from .classes import GRASS as GRASS_CODE
from .layout import Landscape
from .materials import (
    ASPHALT,
    CONCRETE,
    FOREST,
    GRASS,
    ROOF,
    LandcoverWindow,
    Points,
    put,
    shadow_length,
    sun_vector,
)
from .noise import hash_uniform
from .objects import Bricks, brick_layout, crown_shade, object_traits
from .subtypes import SUBTYPE_NAMES, subtype_id

S_BLOCK, S_BLOCK_KIND, S_LOT, S_TREE = 7000, 8000, 9000, 10000
DENSE, INDUSTRIAL = subtype_id("built_up/dense"), subtype_id("built_up/industrial")
# Per sub-type: share of park blocks, share of hall blocks, lot width range (metres), density boost.
PARK, HALLS, LOT_MIN, LOT_MAX, BOOST = range(5)
_MAKEUP = np.tile(np.array([0.06, 0.06, 17.0, 27.0, 0.0]), (len(SUBTYPE_NAMES) + 1, 1))  # residential
_MAKEUP[DENSE] = (0.03, 0.30, 12.0, 16.0, 0.3)
_MAKEUP[INDUSTRIAL] = (0.02, 0.85, 17.0, 27.0, 0.1)


def _makeup(subtype: np.ndarray, column: int) -> np.ndarray:
    """One column of the town make-up per point, by its sub-type (residential for any other)."""
    return _MAKEUP[np.asarray(subtype, np.int64), column]


def _shares(subtype: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(park share, park + hall share) per point."""
    park = _makeup(subtype, PARK)
    return park, park + _makeup(subtype, HALLS)

# Object codes of the metre-scale town model.
LAWN, STREET, SIDEWALK, HOUSE, DRIVEWAY, YARD_TREE, HALL, PARKING = range(8)
HEIGHT = {HOUSE: 5.0, YARD_TREE: 8.0, HALL: 9.0}


def _blocks(land: Landscape, x: np.ndarray, y: np.ndarray, zone: np.ndarray) -> Bricks:
    """Town blocks; block edges are street centrelines. Old towns turn, Midwest towns do not."""
    spread = 90.0 if land.style.field_angle_spread else 0.0
    return brick_layout(land, x, y, zone, S_BLOCK, land.style.block, land.style.block, spread)


def _block_kind(land: Landscape, blocks: Bricks) -> np.ndarray:
    """One uniform per block: below the park share a park, then a hall (commercial), else houses."""
    return hash_uniform(land.seed, S_BLOCK_KIND, blocks.zone, blocks.row, blocks.col)


def render_town(land: Landscape, win: LandcoverWindow, pts: Points) -> None:
    """Built-up zones: a sub-pixel mixture at 10 m, explicit houses and shadows at 1 m."""
    if len(pts) == 0:
        return
    blocks = _blocks(land, pts.x, pts.y, pts.zone)
    kind = _block_kind(land, blocks)
    subtype = win.subtype.reshape(-1)[pts.flat]
    traits = object_traits(land, BUILT, S_BLOCK + 200, *blocks.keys(), subtype=subtype)
    put(win, pts, factors=traits.factors, kind=traits.kind)
    if land.style.pixel > 2.0:
        _render_town_mixture(land, win, pts, blocks, kind, subtype)
    else:
        _render_town_objects(land, win, pts, subtype)
    park = mark_parks(land, win, pts, kind)
    put(win, park, material=GRASS, second=FOREST, mix=0.3, paved=0.0, subtype=0)
    if land.style.pixel <= 2.0 and len(park):
        shade = crown_shade(land.seed, S_TREE, park.x, park.y, 7.0, (0.3, 0.5), 0.35, height=8.0)
        crowns = ~np.isnan(shade) & (shade != np.float32(0.3))
        put(win, park, mix=0.0, shade=np.where(np.isnan(shade), 1.0, shade).astype(np.float32))
        put(win, park.where(crowns), material=FOREST)


def mark_parks(
    land: Landscape, win: LandcoverWindow, pts: Points, kind: np.ndarray | None = None
) -> Points:
    """Label town parks as grassland (WorldCover maps parks by what grows there); return them."""
    if kind is None:
        kind = _block_kind(land, _blocks(land, pts.x, pts.y, pts.zone))
    park_share, _ = _shares(win.subtype.reshape(-1)[pts.flat])
    park = pts.where(kind < park_share)
    put(win, park, label=GRASS_CODE)
    return park


def _render_town_mixture(
    land: Landscape, win: LandcoverWindow, pts: Points, blocks: Bricks, kind: np.ndarray, subtype: np.ndarray
) -> None:
    """10 m town pixels: street, roof and garden fractions from the block geometry.

    Houses line the streets of central-European perimeter blocks, so roofs crowd the band just
    behind the street and gardens fill the block interiors; town centres are denser.
    """
    pixel = land.style.pixel
    half_street = land.style.street_width / 2
    edge = blocks.edge()
    paved = np.clip((half_street - edge) / pixel + 0.5, 0.0, 1.0)
    density = np.clip(0.45 + _town_depth(land, pts) / 1500.0 + _makeup(subtype, BOOST), 0.45, 1.0)
    depth = 10.0 + 8.0 * density
    band = np.minimum(edge - (half_street + 3.0), half_street + 3.0 + depth - edge)
    in_band = np.clip(band / pixel + 0.5, 0.0, 1.0)
    roof = in_band * (0.55 + 0.45 * density) + (1.0 - in_band) * 0.3 * density
    park_share, hall_share = _shares(subtype)
    commercial = (kind >= park_share) & (kind < hall_share)
    roof = np.where(commercial, np.where(edge > half_street + 6.0, 0.75, roof), roof)
    put(
        win,
        pts,
        material=ROOF,
        second=np.where(commercial, CONCRETE, GRASS).astype(np.uint8),
        mix=(1.0 - roof).astype(np.float32),
        paved=paved.astype(np.float32),
    )


def _town_depth(land: Landscape, pts: Points) -> np.ndarray:
    """Distance (metres) from the town's edge, read from the coarse layout."""
    style = land.style
    n_rows, n_cols = land.zone.shape
    rows = np.clip(((land.grid_y0 - pts.y) / style.coarse).astype(np.int64), 0, n_rows - 1)
    cols = np.clip(((pts.x - land.grid_x0) / style.coarse).astype(np.int64), 0, n_cols - 1)
    return land.built_dist[rows, cols]


def town_objects(
    land: Landscape, x: np.ndarray, y: np.ndarray, zone: np.ndarray, subtype: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Metre-scale town model: which object covers each point, and that object's uniform.

    Residential blocks hold two rows of lots back to back, each lot a house set back from the
    street with a driveway and a tree in the back yard; commercial blocks hold one hall in a
    parking lot.

    Returns:
        (object code per point (uint8), roof tone in [0, 1] (float32; halls >= 0.9), whether a
        house point lies on the roof plane facing the block's first street (bool)).
    """
    blocks = _blocks(land, x, y, zone)
    kind = _block_kind(land, blocks)
    half_street = land.style.street_width / 2
    edge = blocks.edge()
    code = np.full(len(x), LAWN, np.uint8)
    facing_first = blocks.pv < blocks.length / 2
    depth_in = np.where(facing_first, blocks.pv, blocks.length - blocks.pv)
    low, high = _makeup(subtype, LOT_MIN), _makeup(subtype, LOT_MAX)
    lot_width = low + (high - low) * hash_uniform(land.seed, S_LOT, blocks.zone, blocks.row, blocks.col)
    lot = np.floor(blocks.pu / lot_width).astype(np.int64)
    along = blocks.pu - lot * lot_width
    keys = (blocks.zone, blocks.row, blocks.col, lot, facing_first.astype(np.int64))
    h = [hash_uniform(land.seed, S_LOT + 1 + k, *keys) for k in range(6)]
    house_w = np.minimum(9.0 + 7.0 * h[0], lot_width - 6.0)
    house_d = 9.0 + 5.0 * h[1]
    front = half_street + 6.0 + 6.0 * h[2]
    centre = lot_width / 2 + (h[3] - 0.5) * (lot_width - house_w - 5.0)
    in_house = (np.abs(along - centre) < house_w / 2) & (depth_in > front)
    in_house &= depth_in < front + house_d
    drive_x = centre + house_w / 2 + 2.0
    in_drive = (np.abs(along - drive_x) < 1.5) & (depth_in > half_street)
    in_drive &= depth_in < front + 0.6 * house_d
    tree_x = 4.0 + h[4] * (lot_width - 8.0)
    tree_y = front + house_d + 5.0 + 5.0 * h[5]
    tree_r = 2.5 + 2.0 * h[5]
    in_tree = (along - tree_x) ** 2 + (depth_in - tree_y) ** 2 < tree_r**2
    in_tree &= depth_in < blocks.length / 2
    code[in_tree] = YARD_TREE
    code[in_drive] = DRIVEWAY
    code[in_house] = HOUSE
    park_share, hall_share = _shares(subtype)
    commercial = (kind >= park_share) & (kind < hall_share)
    hall = (np.abs(blocks.pu - blocks.width / 2) < 0.36 * blocks.width) & (
        np.abs(blocks.pv - blocks.length / 2) < 0.32 * blocks.length
    )
    code[commercial] = np.where(hall[commercial], HALL, PARKING)
    code[edge < half_street + 1.8] = SIDEWALK
    code[edge < half_street] = STREET
    tone = np.where(code == HALL, 0.9 + 0.1 * h[0], 0.85 * h[0]).astype(np.float32)
    return code, tone, (depth_in < front + house_d / 2) == facing_first


def _render_town_objects(land: Landscape, win: LandcoverWindow, pts: Points, subtype: np.ndarray) -> None:
    """1 m town pixels: materials from the object model, shadows from objects up-sun."""
    code, roof_tone, first_plane = town_objects(land, pts.x, pts.y, pts.zone, subtype)
    material = np.select(
        [code == STREET, code == PARKING, code == SIDEWALK, code == DRIVEWAY,
         (code == HOUSE) | (code == HALL), code == YARD_TREE],
        [ASPHALT, ASPHALT, CONCRETE, CONCRETE, ROOF, FOREST],
        GRASS,
    ).astype(np.uint8)
    shade = np.ones(len(pts), np.float32)
    sx, sy, _ = sun_vector()
    horizontal = math.sqrt(sx * sx + sy * sy)
    for caster, height in HEIGHT.items():
        reach = shadow_length(height)
        for step in (0.5, 1.0):
            up_sun, _, _ = town_objects(
                land,
                pts.x + step * reach * sx / horizontal,
                pts.y + step * reach * sy / horizontal,
                pts.zone,
                subtype,
            )
            shadowed = (up_sun == caster) & (code != caster) & (code != HALL)
            shade[shadowed] = 0.35
    # Gable roofs: the plane facing the southern street of a north-south block faces the sun.
    ridge = np.where(code == HOUSE, np.where(first_plane, 1.1, 0.88), 1.0)
    roof = (code == HOUSE) | (code == HALL)
    put(win, pts, material=material, second=material, mix=0.0, paved=0.0,
        shade=(shade * ridge).astype(np.float32))
    put(win, pts.where(roof), kind=roof_tone[roof])
    put(win, pts.where(code == YARD_TREE), kind=0.9)  # broadleaved
