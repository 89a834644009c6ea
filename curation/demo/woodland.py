"""Woody covers of the demo world: forest stands (needleleaf, broadleaf, open) and shrubland.

Canopy ``cover`` decides how much understory shows between crowns. At 1 m the crowns are drawn
(large and sparse in open woodland, small and dense in shrubland); at 10 m the pixel is a mixture.
Open woodland and dense shrubland, or sparse shrubland and dry grassland, therefore look alike from
both sensors: the classes overlap where nature lets them.
"""

from __future__ import annotations

import numpy as np

from .classes import SHRUB as SHRUB_CODE
from .classes import TREE
from .layout import Landscape
from .materials import FOREST, GRASS, SHRUB, SOIL, LandcoverWindow, Points, put
from .noise import fbm_points
from .objects import Traits, brick_layout, crown_presence, crown_shade, natural_traits, object_traits
from .subtypes import COVER, subtype_id

S_STAND, S_CROWN, S_SHRUB, S_COVER = 3000, 4000, 5000, 6000
NEEDLELEAF, BROADLEAF, OPEN = (subtype_id(f"tree_cover/{n}") for n in ("needleleaf", "broadleaf", "open"))
# Crowns per sub-type: (grid cell in metres, radius range as a share of the cell, height in metres).
CROWNS = {NEEDLELEAF: (4.5, (0.45, 0.7), 14.0), BROADLEAF: (6.0, (0.45, 0.75), 16.0), OPEN: (8.0, (0.35, 0.6), 10.0)}
SHRUB_CROWN = (3.5, (0.3, 0.55), 2.0)
GAP_SOIL = 0.3  # share of bare soil in the sunlit ground between crowns (1 m)


def render_forest(land: Landscape, win: LandcoverWindow, pts: Points, subtype: int | None = None) -> None:
    """Forest stands: a sub-type per stand (or ``subtype`` for all), crowns over an understory.

    ``kind`` is the leaf type, from 0 (needleleaf) to 1 (broadleaf); open woodland is broadleaved.
    """
    if len(pts) == 0:
        return
    traits = forest_stands(land, pts, subtype)
    leaf = np.where(traits.subtype == NEEDLELEAF, 0.25 * traits.kind, 0.7 + 0.3 * traits.kind)
    cover = traits.factors[COVER]
    put(win, pts, material=FOREST, second=GRASS, mix=(1.0 - cover).astype(np.float32), subtype=traits.subtype,
        factors=traits.factors, kind=leaf.astype(np.float32))
    if land.style.pixel > 2.0:
        # Canopy clumps and gaps below the 10 m pixel still modulate its brightness.
        clumps = fbm_points(land.seed, S_CROWN, pts.x, pts.y, 60.0, 3)
        put(win, pts, shade=(1.0 + 0.25 * clumps).astype(np.float32))
        return
    for kind, (cell, radius, height) in CROWNS.items():
        mine = traits.subtype == kind
        if not mine.any():
            continue
        sub = pts.where(mine)
        shade = crown_shade(land.seed, S_CROWN + kind, sub.x, sub.y, cell, radius,
                            crown_presence(cover[mine], radius), height=height)
        crown = ~np.isnan(shade) & (shade != np.float32(0.3))
        # Understory: dark under a closed canopy, sunlit grass and soil between the crowns of an
        # open one (as between shrubs).
        lit = np.clip((1.0 - cover[mine]) / 0.5, 0.0, 1.0)  # closed canopy: 0; half open or more: 1
        gap = np.where(np.isnan(shade), 0.45 + 0.55 * lit, shade)
        put(win, sub, material=np.where(crown, FOREST, GRASS).astype(np.uint8),
            second=np.where(crown, GRASS, SOIL).astype(np.uint8), mix=np.where(crown, 0.0, GAP_SOIL).astype(np.float32),
            shade=np.where(crown, shade, gap).astype(np.float32))


def forest_stands(land: Landscape, pts: Points, subtype: int | None = None) -> Traits:
    """The traits of the stand of every forest point (``subtype`` for all of them, if given)."""
    stands = brick_layout(land, pts.x, pts.y, pts.zone, S_STAND, (150.0, 400.0), (150.0, 450.0))
    fixed = None if subtype is None else np.full(len(pts), subtype, np.uint8)
    return object_traits(land, TREE, S_STAND + 200, *stands.keys(), subtype=fixed)


def render_shrubland(land: Landscape, win: LandcoverWindow, pts: Points) -> None:
    """Shrubs on dry grass and soil; their cover (dense or sparse sub-type) varies over ~150 m."""
    if len(pts) == 0:
        return
    subtype = win.subtype.reshape(-1)[pts.flat]
    traits = natural_traits(land, pts, SHRUB_CODE, S_SHRUB, subtype)
    noise = fbm_points(land.seed, S_COVER, pts.x, pts.y, 150.0, 3)
    cover = np.clip(traits.factors[COVER] + 0.25 * noise, 0.05, 0.95).astype(np.float32)
    traits.factors[COVER] = cover
    put(win, pts, material=SHRUB, second=GRASS, mix=1.0 - cover, factors=traits.factors, kind=traits.kind)
    if land.style.pixel > 2.0:
        return
    cell, radius, height = SHRUB_CROWN
    shade = crown_shade(land.seed, S_SHRUB, pts.x, pts.y, cell, radius, crown_presence(cover, radius), height=height)
    on_shrub = ~np.isnan(shade) & (shade != np.float32(0.3))
    put(win, pts, material=np.where(on_shrub, SHRUB, GRASS).astype(np.uint8),
        second=np.where(on_shrub, GRASS, SOIL).astype(np.uint8), mix=np.where(on_shrub, 0.0, GAP_SOIL).astype(np.float32),
        shade=np.where(np.isnan(shade), 1.0, shade).astype(np.float32))
