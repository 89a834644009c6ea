"""Objects of the demo world: brick layouts (fields, stands, blocks), their traits, and tree crowns.

An object is anything with one sub-type and one set of appearance factors: a field, a forest stand,
a town block, a lake. Its traits are hashed from integer keys, so every window of the world that
sees a piece of the object gives it the same traits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .layout import Landscape
from .materials import Points, shadow_length, sun_vector
from .noise import hash_key, hash_uniform, jittered_nearest, value_noise_points
from .portable_math import cos, radians, sin
from .subtypes import FACTORS, draw_factors, draw_subtypes

S_NATURAL = 900


def rotate(x: np.ndarray, y: np.ndarray, c: np.ndarray | float, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in a frame rotated by the angle whose cosine and sine are ``c`` and ``s``."""
    return x * c + y * s, -x * s + y * c


def zone_table(land: Landscape, stream: int) -> np.ndarray:
    """One uniform per zone (cheap per-point zone attributes by indexing)."""
    return hash_uniform(land.seed, stream, np.arange(len(land.zone_class)))


def lerp(bounds: tuple[float, float], t: np.ndarray) -> np.ndarray:
    return bounds[0] + (bounds[1] - bounds[0]) * t


@dataclass
class Traits:
    """What an object is and how it looks: sub-type id, factors (5, n), and a free parameter ``kind``."""

    subtype: np.ndarray
    factors: np.ndarray
    kind: np.ndarray


def object_traits(land: Landscape, code: int, stream: int, *keys: np.ndarray, subtype: np.ndarray | None = None,
                  exclude: tuple[str, ...] = ()) -> Traits:
    """Traits of objects of class ``code`` identified by integer keys (broadcast together).

    One 64-bit hash per object gives everything: 16 bits pick the sub-type (from the region's
    priors, unless ``subtype`` is given), 8 bits each the five factor draws and ``kind``.
    """
    h = hash_key(land.seed, stream, *keys)

    def byte(k: int) -> np.ndarray:
        return (((h >> np.uint64(8 * k)) & np.uint64(0xFF)).astype(np.float32) + np.float32(0.5)) / np.float32(256.0)

    if subtype is None:
        u = (h >> np.uint64(48)).astype(np.float64) / 65536.0
        subtype = draw_subtypes(land.style.name, code, u, exclude)
    subtype = np.broadcast_to(np.asarray(subtype, np.uint8), h.shape)
    factors = draw_factors(land.style.name, subtype, tuple(byte(k) for k in range(len(FACTORS))))
    return Traits(subtype.copy(), factors, byte(5))


def natural_traits(land: Landscape, pts: Points, code: int, stream: int, subtype: np.ndarray,
                   wobble: float = 0.12) -> Traits:
    """Traits of covers without parcels (shrub, wetland, bare, lakes): one draw per zone and sub-type,
    varied smoothly in space by up to ``wobble`` per factor (cells of a few hundred metres)."""
    traits = object_traits(land, code, stream, pts.zone, subtype, subtype=subtype)
    for k in range(len(FACTORS)):
        noise = value_noise_points(land.seed, S_NATURAL + 10 * k, pts.x, pts.y, 350.0)
        traits.factors[k] = np.clip(traits.factors[k] + np.float32(wobble) * noise, 0.0, 1.0)
    return traits


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

    def keys(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.zone, self.row, self.col


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
    spread = radians(land.style.field_angle_spread if spread_deg is None else spread_deg)
    angle = zone_table(land, stream) * spread
    u, v = rotate(x, y, cos(angle)[zone], sin(angle)[zone])
    row_len = lerp(length, zone_table(land, stream + 100))[zone]
    row = np.floor(v / row_len).astype(np.int64)
    row_width = lerp(width, hash_uniform(land.seed, stream, zone, row, 1))
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
    reach = shadow_length(height)
    norm = math.sqrt(sx * sx + sy * sy)
    in_shadow, *_ = _crown_at(seed, stream, x + reach * sx / norm, y + reach * sy / norm, cell, radius, cover)
    nz = np.sqrt(np.clip(1.0 - (dx**2 + dy**2) / r**2, 0.0, 1.0))
    lit = np.clip((dx * sx + dy * sy) / r + nz * sz, 0.0, 1.0)
    shade = np.where(inside, 0.55 + 0.6 * lit, np.where(in_shadow, 0.3, np.nan))
    return shade.astype(np.float32)


def crown_presence(cover: np.ndarray | float, radius: tuple[float, float]) -> np.ndarray:
    """Share of grid cells that must hold a crown for crowns to cover ``cover`` of the ground."""
    mean_r2 = (radius[0] ** 2 + radius[0] * radius[1] + radius[1] ** 2) / 3.0
    return np.clip(np.asarray(cover, np.float32) / np.float32(np.pi * mean_r2), 0.0, 1.0)


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
    r = cell * lerp(radius, hash_uniform(seed, stream, row, col, 7))
    present = hash_uniform(seed, stream, row, col, 8) < cover
    return present & (dx**2 + dy**2 < r**2), dx, dy, r
