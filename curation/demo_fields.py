"""Rural structure of the demo world: fields, centre pivots, forest stands, crowns, shrubs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from .demo_layout import Landscape
from .demo_materials import (
    CROP,
    FOREST,
    GRASS,
    SHRUB,
    SOIL,
    LandcoverWindow,
    Points,
    put,
    sun_vector,
)
from .demo_noise import fbm_points, hash_uniform, jittered_nearest

S_PARCEL, S_PIVOT, S_STAND, S_CROWN, S_SHRUB, S_COVER = 1000, 2000, 3000, 4000, 5000, 6000
PLSS_CELL = 402.336  # a quarter-quarter section (1/4 mile): the grain of Midwest fields


def rotate(
    x: np.ndarray, y: np.ndarray, angle: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in a frame rotated by ``angle`` (radians)."""
    c, s = np.cos(angle), np.sin(angle)
    return x * c + y * s, -x * s + y * c


def zone_table(land: Landscape, stream: int) -> np.ndarray:
    """One uniform per zone (cheap per-point zone attributes by indexing)."""
    return hash_uniform(land.seed, stream, np.arange(len(land.zone_class)))


def _lerp(bounds: tuple[float, float], t: np.ndarray) -> np.ndarray:
    return bounds[0] + (bounds[1] - bounds[0]) * t


@dataclass
class Bricks:
    """Points located in a brick layout: rows of rectangles whose widths vary row by row.

    Attributes:
        pu, pv: position inside the rectangle along and across its row (metres).
        width, length: the rectangle's size along and across the row (metres).
        zone, row, col: integer keys of the rectangle, for hashing its attributes.
    """

    pu: np.ndarray
    pv: np.ndarray
    width: np.ndarray
    length: np.ndarray
    zone: np.ndarray
    row: np.ndarray
    col: np.ndarray

    def edge(self) -> np.ndarray:
        """Distance (metres) to the nearest side of the rectangle."""
        return np.minimum(
            np.minimum(self.pu, self.width - self.pu), np.minimum(self.pv, self.length - self.pv)
        )

    def uniforms(self, seed: int, stream: int, *extra: np.ndarray) -> tuple[np.ndarray, ...]:
        """Three uniforms per rectangle (or per sub-object when ``extra`` keys are given)."""
        keys = (self.zone, self.row, self.col, *extra)
        return tuple(hash_uniform(seed, stream + k, *keys) for k in range(3))


def brick_layout(
    land: Landscape,
    x: np.ndarray,
    y: np.ndarray,
    zone: np.ndarray,
    stream: int,
    width: tuple[float, float],
    length: tuple[float, float],
    spread_deg: float | None = None,
) -> Bricks:
    """Straight-edged rectangles in rows of varying width, oriented per zone (old-world fields).

    Args:
        spread_deg: orientation spread in degrees across zones; the style's field spread if None.
    """
    spread = np.radians(land.style.field_angle_spread if spread_deg is None else spread_deg)
    angle = zone_table(land, stream) * spread
    u, v = rotate(x, y, angle[zone])
    row_len = _lerp(length, zone_table(land, stream + 100))[zone]
    row = np.floor(v / row_len).astype(np.int64)
    row_width = _lerp(width, hash_uniform(land.seed, stream, zone, row, 1))
    shifted = u + hash_uniform(land.seed, stream, zone, row, 2) * row_width
    col = np.floor(shifted / row_width).astype(np.int64)
    return Bricks(
        pu=shifted - col * row_width,
        pv=v - row * row_len,
        width=row_width,
        length=row_len,
        zone=zone,
        row=row,
        col=col,
    )


def natural_uniforms(land: Landscape, pts: Points, stream: int) -> tuple[np.ndarray, ...]:
    """Object uniforms for covers without parcels (shrub, wetland, bare): smooth in space.

    Smooth noise pushed through the normal CDF is close to uniform on [0, 1], so these covers
    draw their brightness factor from the same distribution as parcels do.
    """
    fields = []
    for k, cell in enumerate((700.0, 900.0, 500.0)):
        noise = fbm_points(land.seed, stream + k, pts.x, pts.y, cell, 3)
        fields.append(special.ndtr(noise / 0.25).astype(np.float32))
    return tuple(fields)


def render_farmland(land: Landscape, win: LandcoverWindow, pts: Points, material: int) -> None:
    """Crop or grass parcels: per-parcel uniforms, field margins and row texture at metre scale."""
    if len(pts) == 0:
        return
    if land.style.field_angle_spread == 0.0:
        _render_sections(land, win, pts, material)
        return
    stream = S_PARCEL + 10 * material
    bricks = brick_layout(
        land, pts.x, pts.y, pts.zone, stream, land.style.parcel_width, land.style.parcel_length
    )
    obj = bricks.uniforms(land.seed, stream + 200)
    put(win, pts, material=material, obj=obj)
    _field_texture(land, win, pts, bricks.edge(), bricks.pu, obj)


def _render_sections(land: Landscape, win: LandcoverWindow, pts: Points, material: int) -> None:
    """Midwest fields on the survey grid: whole, halved, or irrigated by a centre pivot."""
    cell = PLSS_CELL
    row = np.floor(pts.y / cell).astype(np.int64)
    col = np.floor(pts.x / cell).astype(np.int64)
    pu, pv = pts.x - col * cell, pts.y - row * cell
    layout = hash_uniform(land.seed, S_PIVOT, row, col)
    pivot_share = land.style.pivot_fraction if material == CROP else 0.0
    is_pivot = layout < pivot_share
    split_x = (layout >= pivot_share) & (layout < pivot_share + 0.35)
    split_y = (layout >= pivot_share + 0.35) & (layout < pivot_share + 0.7)
    half = np.where(split_x, pu >= cell / 2, 0) + np.where(split_y, 2 * (pv >= cell / 2), 0)
    width = np.where(split_x, cell / 2, cell)
    height = np.where(split_y, cell / 2, cell)
    pu_local, pv_local = pu % width, pv % height
    edge = np.minimum(
        np.minimum(pu_local, width - pu_local), np.minimum(pv_local, height - pv_local)
    )
    obj = tuple(hash_uniform(land.seed, S_PARCEL + k, row, col, half) for k in range(3))
    put(win, pts, material=material, obj=obj)
    along = np.where(obj[1] < 0.5, pu_local, pv_local)
    _field_texture(land, win, pts, edge, along, obj)
    if not is_pivot.any():
        return
    radius = np.hypot(pu - cell / 2, pv - cell / 2)
    inside = is_pivot & (radius < 0.48 * cell)
    corner = is_pivot & ~inside
    # Corners the pivot arm never reaches stay dry: sparse grass on bare soil.
    put(win, pts.where(corner), material=GRASS, second=SOIL, mix=0.55)
    if land.style.pixel <= 2.0:
        # Concentric wheel tracks and circular planting rows.
        rings = 1.0 + 0.05 * np.sin(2 * np.pi * radius / 6.0)
        rings = np.where(np.abs((radius + 22.0) % 45.0 - 22.0) < 0.8, 0.82, rings)
        put(win, pts.where(inside), texture=rings[inside].astype(np.float32))


def _field_texture(
    land: Landscape,
    win: LandcoverWindow,
    pts: Points,
    edge: np.ndarray,
    along: np.ndarray,
    obj: tuple[np.ndarray, ...],
) -> None:
    """Rows and tramlines inside fields, grassy margins between them (visible at metre scale)."""
    if land.style.pixel > 2.0:
        return
    period = 3.0 + 4.0 * obj[2]
    rows = 1.0 + 0.06 * np.sin(2 * np.pi * along / period)
    put(win, pts, texture=rows.astype(np.float32))
    put(win, pts.where(edge < 1.6), material=GRASS)


def render_forest(
    land: Landscape, win: LandcoverWindow, pts: Points, broadleaf: float | None
) -> None:
    """Forest stands (per-stand uniforms, broadleaf share) with crowns and gaps at metre scale.

    Args:
        broadleaf: fixed broadleaf fraction, or None for a per-stand mix of needleleaf and
            broadleaf stands (central-European forestry).
    """
    if len(pts) == 0:
        return
    stands = brick_layout(land, pts.x, pts.y, pts.zone, S_STAND, (150.0, 400.0), (150.0, 450.0))
    obj = stands.uniforms(land.seed, S_STAND + 200)
    if broadleaf is None:
        kind = np.where(obj[1] < 0.45, 0.1 + 0.2 * obj[1], 0.7 + 0.3 * obj[1])
    else:
        kind = np.full(len(pts), broadleaf)
    put(win, pts, material=FOREST, obj=(obj[0], kind.astype(np.float32), obj[2]))
    if land.style.pixel <= 2.0:
        shade = crown_shade(
            land.seed, S_CROWN, pts.x, pts.y, cell=5.5, radius=(0.45, 0.75), cover=1.0
        )
        put(win, pts, shade=np.where(np.isnan(shade), 0.45, shade).astype(np.float32))
    else:
        # Canopy clumps and gaps below the 10 m pixel still modulate its brightness.
        clumps = fbm_points(land.seed, S_CROWN, pts.x, pts.y, 60.0, 3)
        put(win, pts, shade=(1.0 + 0.25 * clumps).astype(np.float32))


def crown_shade(
    seed: int,
    stream: int,
    x: np.ndarray,
    y: np.ndarray,
    cell: float,
    radius: tuple[float, float],
    cover: float | np.ndarray,
    height: float = 4.0,
) -> np.ndarray:
    """Illumination of round crowns on a jittered grid; NaN between crowns.

    A crown is a dome lit by the sun; ground between crowns is NaN, or 0.3 where a crown up-sun
    casts its shadow. ``cover`` (scalar or per point) is the share of grid cells holding a crown.

    Returns:
        float32 shade factor per point (NaN on unshadowed ground between crowns).
    """
    sx, sy, sz = sun_vector()
    inside, dx, dy, r = _crown_at(seed, stream, x, y, cell, radius, cover)
    shadow_len = height / np.tan(np.arcsin(sz))
    norm = np.hypot(sx, sy)
    in_shadow, *_ = _crown_at(
        seed, stream, x + shadow_len * sx / norm, y + shadow_len * sy / norm, cell, radius, cover
    )
    nz = np.sqrt(np.clip(1.0 - (dx**2 + dy**2) / r**2, 0.0, 1.0))
    lit = np.clip((dx * sx + dy * sy) / r + nz * sz, 0.0, 1.0)
    shade = np.where(inside, 0.55 + 0.6 * lit, np.where(in_shadow, 0.3, np.nan))
    return shade.astype(np.float32)


def _crown_at(
    seed: int,
    stream: int,
    x: np.ndarray,
    y: np.ndarray,
    cell: float,
    radius: tuple[float, float],
    cover: float | np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Whether each point lies in a crown, its offset from the crown centre, the crown radius."""
    row, col, dx, dy = jittered_nearest(seed, stream, x, y, cell)
    r = cell * _lerp(radius, hash_uniform(seed, stream, row, col, 7))
    present = hash_uniform(seed, stream, row, col, 8) < cover
    return present & (dx**2 + dy**2 < r**2), dx, dy, r


def render_shrubland(land: Landscape, win: LandcoverWindow, pts: Points) -> None:
    """Shrubs scattered on bare soil and dry grass; at 10 m a shrub/soil mixture by cover."""
    if len(pts) == 0:
        return
    obj = natural_uniforms(land, pts, S_SHRUB)
    noise = fbm_points(land.seed, S_COVER, pts.x, pts.y, 150.0, 3)
    cover = np.clip(land.style.shrub_cover + 0.9 * noise, 0.2, 0.95)
    if land.style.pixel > 2.0:
        put(win, pts, material=SHRUB, second=SOIL, mix=(1.0 - cover).astype(np.float32), obj=obj)
        return
    shade = crown_shade(land.seed, S_SHRUB, pts.x, pts.y, cell=6.0, radius=(0.28, 0.55),
                        cover=cover, height=2.0)
    on_shrub = ~np.isnan(shade) & (shade != np.float32(0.3))
    put(win, pts, material=SOIL, second=GRASS, mix=0.45, obj=obj,
        shade=np.where(np.isnan(shade), 1.0, shade).astype(np.float32))
    put(win, pts.where(on_shrub), material=SHRUB, mix=0.0)
