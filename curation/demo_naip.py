"""NAIP-like aerial RGB+NIR tiles of the ``us`` region: 1 m, uint8, per-flight radiometry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .demo_landcover import render_landcover
from .demo_layout import CLASS_CODES, Landscape
from .demo_noise import fbm_grid
from .demo_spectra import APPEARANCE, surface_reflectance

NAIP_TILE_M = 2000.0
NAIP_BANDS = ("Red", "Green", "Blue", "NIR")
NAIP_S2_EQUIVALENT = (2, 1, 0, 6)  # indices of B04, B03, B02, B08 in the S2 band list
S_NAIP_TEXTURE, S_NAIP_SENSOR = 30000, 31000


@dataclass(frozen=True)
class NaipFlight:
    """One acquisition flight: its date and its camera's radiometric mapping.

    DN = clip(255 · (gain · ρ)^(1/γ) + offset), then a colour-saturation boost about the
    pixel's grey level: brighter and more saturated than reflectance × 255, unlike any other
    flight.
    """

    datetime: str
    gain: tuple[float, float, float, float]
    gamma: float
    offset: tuple[float, float, float, float]
    saturation: float


NAIP_FLIGHTS = (
    NaipFlight("2021-07-15T16:42:10Z", (2.4, 2.45, 2.9, 1.5), 1.9, (6.0, 4.0, 10.0, 2.0), 1.2),
    NaipFlight("2021-08-02T17:05:48Z", (2.2, 2.55, 2.6, 1.65), 2.15, (2.0, 7.0, 15.0, 0.0), 1.12),
)


@dataclass(frozen=True)
class NaipTile:
    """One DOQQ-like tile of the region's 2 km grid (rows counted from the north)."""

    row: int
    col: int
    bounds: tuple[float, float, float, float]

    @property
    def flight(self) -> int:
        """Flight lines run north-south, so neighbouring columns were flown on different days."""
        return self.col % len(NAIP_FLIGHTS)

    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the tile at 1 m."""
        minx, miny, maxx, maxy = self.bounds
        return int(round(maxy - miny)), int(round(maxx - minx))


def naip_tiles(bounds: tuple[float, float, float, float]) -> list[NaipTile]:
    """The region cut into 2 km tiles from its north-west corner (the last ones may be smaller)."""
    minx, miny, maxx, maxy = bounds
    tiles = []
    for row, top in enumerate(np.arange(maxy, miny, -NAIP_TILE_M)):
        for col, left in enumerate(np.arange(minx, maxx, NAIP_TILE_M)):
            tile_bounds = (float(left), float(max(miny, top - NAIP_TILE_M)),
                           float(min(maxx, left + NAIP_TILE_M)), float(top))
            tiles.append(NaipTile(row, col, tile_bounds))
    return tiles


def naip_dn(reflectance: np.ndarray, flight: NaipFlight) -> np.ndarray:
    """Camera DN (uint8, 1..255; 0 is nodata) of reflectance (4, h, w) in R, G, B, NIR order."""
    gain = np.asarray(flight.gain, np.float32)[:, None, None]
    offset = np.asarray(flight.offset, np.float32)[:, None, None]
    dn = 255.0 * np.power(np.clip(gain * reflectance, 0.0, 1.0), np.float32(1.0 / flight.gamma))
    dn += offset
    grey = dn[:3].mean(axis=0)
    dn[:3] = grey + np.float32(flight.saturation) * (dn[:3] - grey)
    return np.clip(np.rint(dn), 1, 255).astype(np.uint8)


def majority_10m(labels: np.ndarray, factor: int = 10) -> np.ndarray:
    """WorldCover-like 10 m labels from a 1 m map by majority of each block (ties: lower code)."""
    h, w = labels.shape
    blocks = labels.reshape(h // factor, factor, w // factor, factor)
    counts = np.stack([(blocks == code).sum(axis=(1, 3)) for code in CLASS_CODES])
    return np.asarray(CLASS_CODES, np.uint8)[np.argmax(counts, axis=0)]


def render_naip_tile(land: Landscape, tile: NaipTile) -> tuple[np.ndarray, np.ndarray]:
    """Render one tile.

    Returns:
        (image (4, h, w) uint8 in R, G, B, NIR order, 10 m majority labels (h/10, w/10)).
    """
    flight = NAIP_FLIGHTS[tile.flight]
    rows, cols = tile.shape()
    minx, _, _, maxy = tile.bounds
    win = render_landcover(land, minx, maxy, rows, cols)
    xs = minx + np.arange(cols) + 0.5
    ys = maxy - np.arange(rows) - 0.5
    win.texture *= 1.0 + 0.05 * fbm_grid(land.seed, S_NAIP_TEXTURE, xs, ys, 8.0, 3)
    reflectance = surface_reflectance(win, APPEARANCE["us"], tile.flight, NAIP_S2_EQUIVALENT)
    rng = np.random.default_rng([land.seed, S_NAIP_SENSOR, tile.row, tile.col])
    reflectance += np.float32(0.002) * rng.standard_normal(reflectance.shape, dtype=np.float32)
    return naip_dn(reflectance, flight), majority_10m(win.label)
