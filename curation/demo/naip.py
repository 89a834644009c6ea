"""NAIP-like aerial RGB+NIR tiles of the ``us`` region: 1 m, uint8, per-flight radiometry."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .landcover import render_landcover
from .landcover_map import map_labels
from .layout import Landscape
from .noise import fbm_grid, sensor_noise
from .portable_math import power
from .spectra import APPEARANCE, surface_reflectance
from .subtypes import FACTORS
from .truth import TruthLayers, block_majority, quantise_factors

NAIP_TILE_M = 4000.0  # about a DOQQ; few 128 m chips straddle two tiles
STRIP_M = 1000  # tiles are rendered in strips of this many 1 m rows
TRUTH_STEP = 2  # truth rasters keep every second 1 m pixel (2 m)
NAIP_BANDS = ("Red", "Green", "Blue", "NIR")
NAIP_S2_EQUIVALENT = (2, 1, 0, 6)  # indices of B04, B03, B02, B08 in the S2 band list
S_NAIP_TEXTURE, S_NAIP_SENSOR = 30000, 31000
LUT_LEVELS = 1 << 18  # reflectance levels of the camera curve: steps of at most ~0.4 DN


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
    """The region cut into 4 km tiles from its north-west corner (the last ones may be smaller)."""
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
    level = np.rint(np.clip(gain * reflectance, 0.0, 1.0) * np.float32(LUT_LEVELS - 1)).astype(np.int64)
    dn = _gamma_lut(flight.gamma)[level]
    dn += offset
    grey = dn[:3].mean(axis=0)
    dn[:3] = grey + np.float32(flight.saturation) * (dn[:3] - grey)
    return np.clip(np.rint(dn), 1, 255).astype(np.uint8)


@functools.cache
def _gamma_lut(gamma: float) -> np.ndarray:
    """255 * x**(1/gamma) on LUT_LEVELS levels of x in [0, 1] (float32), computed portably once."""
    levels = np.arange(LUT_LEVELS, dtype=np.float64) / (LUT_LEVELS - 1)
    return (255.0 * power(levels, 1.0 / gamma)).astype(np.float32)


def render_naip_tile(land: Landscape, tile: NaipTile) -> tuple[np.ndarray, TruthLayers, np.ndarray]:
    """Render one tile, strip by strip.

    Returns:
        (image (4, h, w) uint8 in R, G, B, NIR order, the tile's truth at 2 m, its 10 m
        ``esa-worldcover`` map codes).
    """
    flight = NAIP_FLIGHTS[tile.flight]
    height, width = tile.shape()
    minx, _, _, maxy = tile.bounds
    image = np.zeros((len(NAIP_BANDS), height, width), np.uint8)
    truth = TruthLayers.empty(height // TRUTH_STEP, width // TRUTH_STEP, len(FACTORS))
    wc_map = np.zeros((height // 10, width // 10), np.uint8)
    for top in range(0, height, STRIP_M):
        rows = min(STRIP_M, height - top)
        y_top = maxy - top
        win = render_landcover(land, minx, y_top, rows, width)
        xs = minx + np.arange(width) + 0.5
        ys = y_top - np.arange(rows) - 0.5
        win.texture *= 1.0 + 0.05 * fbm_grid(land.seed, S_NAIP_TEXTURE, xs, ys, 8.0, 3)
        reflectance = surface_reflectance(win, APPEARANCE["us"], tile.flight, NAIP_S2_EQUIVALENT)
        rng = np.random.default_rng([land.seed, S_NAIP_SENSOR, tile.row, tile.col, top])
        reflectance += np.float32(0.002) * sensor_noise(rng, reflectance.shape)
        image[:, top : top + rows] = naip_dn(reflectance, flight)
        layers = TruthLayers(win.label, win.subtype, quantise_factors(win.factors))
        truth.put(top // TRUTH_STEP, 0, layers.subsample(TRUTH_STEP))
        labels10, subtypes10 = block_majority(win.label, win.subtype, 10)
        wc_map[top // 10 : (top + rows) // 10] = map_labels(land.seed, labels10, subtypes10, xs[5::10], ys[5::10])
    return image, truth, wc_map
