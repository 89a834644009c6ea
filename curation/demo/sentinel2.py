"""Sentinel-2 L2A scenes of the demo world: three dates with clouds, shadows, cirrus and SCL."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from shapely.geometry import Polygon, box

from .landcover import render_landcover
from .landcover_map import map_labels
from .layout import Landscape
from .materials import LandcoverWindow, sun_vector
from .noise import fbm_grid, sensor_noise
from .portable_math import cos, radians, sin
from .spectra import APPEARANCE, S2_BANDS, spectrum, surface_reflectance
from .subtypes import FACTORS
from .truth import TruthLayers, quantise_factors

BANDS_10M = ("B02", "B03", "B04", "B08")
BANDS_20M = ("B05", "B06", "B07", "B8A", "B11", "B12")
SCL_NODATA, SCL_DARK, SCL_SHADOW, SCL_VEGETATION, SCL_NOT_VEGETATED, SCL_WATER = 0, 2, 3, 4, 5, 6
SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_CIRRUS = 8, 9, 10
SCL_FLAGGED = (SCL_SHADOW, SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_CIRRUS)
S_CLOUD, S_CIRRUS, S_TERRAIN, S_TEXTURE, S_SENSOR = 20000, 21000, 22000, 23000, 24000
SWATH_TILT_DEG = 12.0  # a descending orbit's swath edge runs a little east of north
CLOUD_SHADOW_OFFSET_M = 500.0  # cloud-base height × tan(solar zenith), ~800 m × tan(32°)
STRIP_ROWS = 400  # 10 m rows rendered at once (even: 20 m pixels never straddle strips)


@dataclass(frozen=True)
class S2Acquisition:
    """One Sentinel-2 L2A acquisition over a demo region.

    Attributes:
        datetime: sensing time (UTC, ISO 8601).
        platform: "Sentinel-2A" or "Sentinel-2B".
        baseline: processing baseline; from "04.00" DN = reflectance × 10000 + 1000.
        relative_orbit: relative orbit number.
        cloud_cover: target share of the scene flagged cloud, cirrus or shadow (roughly).
        swath_edge: whether the scene lies at the swath edge (its east is no data).
        season: the region's appearance date (crop calendar) the scene shows; None: its
            position among the region's acquisitions.
    """

    datetime: str
    platform: str
    baseline: str
    relative_orbit: int
    cloud_cover: float
    swath_edge: bool
    season: int | None = None

    @property
    def offset(self) -> int:
        """The L2A radiometric offset in DN (BOA_ADD_OFFSET), -1000 reflectance DN from 04.00."""
        return 1000 if self.baseline >= "04.00" else 0

    def item_id(self, tile: str) -> str:
        """A Planetary-Computer-like product id, e.g. S2A_MSIL2A_20210714T103031_R108_T32UNA_..."""
        stamp = self.datetime[:19].replace("-", "").replace(":", "")
        mission = "S2A" if self.platform.endswith("A") else "S2B"
        processed = f"{stamp[:8]}T235959"
        return f"{mission}_MSIL2A_{stamp}_R{self.relative_orbit:03d}_T{tile}_{processed}"


S2_ACQUISITIONS = (
    S2Acquisition("2021-07-14T10:30:31.024000Z", "Sentinel-2A", "03.00", 108, 0.10, False),
    S2Acquisition("2022-06-19T10:36:29.024000Z", "Sentinel-2B", "04.00", 65, 0.30, True),
    S2Acquisition("2023-08-08T10:30:31.024000Z", "Sentinel-2A", "05.09", 108, 0.50, False),
)
# Over the pair site: summer 2021, days from the two NAIP flights (2021-07-15 and 2021-08-02), so
# paired chips are seen by both sensors at nearly the same time; seasons index the us appearance.
PAIR_S2_TILE = "15TVG"
PAIR_S2_EPSG = 32615  # WGS 84 / UTM 15N; PROJ relates it to NAIP's NAD83 / UTM 15N by a null shift
PAIR_S2_ACQUISITIONS = (
    S2Acquisition("2021-07-13T17:09:21.024000Z", "Sentinel-2B", "03.00", 69, 0.10, False, season=0),
    S2Acquisition("2021-07-28T17:09:19.024000Z", "Sentinel-2A", "03.01", 69, 0.30, False, season=0),
    S2Acquisition("2021-08-07T17:09:29.024000Z", "Sentinel-2A", "03.01", 69, 0.05, False, season=1),
)


@dataclass
class S2Scene:
    """Rendered L2A rasters of one acquisition: DN per band (10 m or 20 m grid) and SCL (20 m)."""

    acquisition: S2Acquisition
    bands: dict[str, np.ndarray]
    scl: np.ndarray


def swath_edge_x(bounds: tuple[float, ...], y: np.ndarray | float) -> np.ndarray | float:
    """Easting of the swath edge at northing ``y``: a slanted line leaving ~25 % of the region."""
    minx, miny, maxx, maxy = bounds
    tilt = radians(SWATH_TILT_DEG)
    slope = float(sin(tilt) / cos(tilt))
    return minx + 0.75 * (maxx - minx) + (y - (miny + maxy) / 2) * slope


def valid_footprint(bounds: tuple[float, ...], acquisition: S2Acquisition) -> Polygon:
    """The part of the region with data, in the region's CRS."""
    region = box(*bounds)
    if not acquisition.swath_edge:
        return region
    minx, miny, maxx, maxy = bounds
    west = box(minx - 1, miny, maxx, maxy).intersection(
        Polygon([(minx - 1, miny), (swath_edge_x(bounds, miny), miny),
                 (swath_edge_x(bounds, maxy), maxy), (minx - 1, maxy)])
    )
    return region.intersection(west)


@dataclass
class _Sky:
    """Atmosphere of one date on the 20 m grid: cloud opacity and brightness, cirrus, shadow."""

    alpha: np.ndarray
    glow: np.ndarray
    cirrus: np.ndarray
    shadow: np.ndarray
    valid: np.ndarray

    def scl_flags(self) -> np.ndarray:
        """SCL codes of flagged pixels (0 where the surface shows): cloud > shadow > cirrus."""
        flags = np.zeros(self.alpha.shape, np.uint8)
        flags[self.cirrus > 0] = SCL_CIRRUS
        flags[self.shadow > 0] = SCL_SHADOW
        flags[self.alpha > 0] = SCL_CLOUD_MEDIUM
        flags[self.alpha >= 0.8] = SCL_CLOUD_HIGH
        return flags


def _sky(land: Landscape, acq: S2Acquisition, date: int, xs: np.ndarray, ys: np.ndarray) -> _Sky:
    """Clouds as thresholded fractal noise, cirrus streaks, and shadows cast down-sun."""
    seed = land.seed
    sx, sy, _ = sun_vector()
    norm = math.sqrt(sx * sx + sy * sy)
    shift_c = int(round(CLOUD_SHADOW_OFFSET_M * sx / norm / 20.0))
    shift_r = int(round(-CLOUD_SHADOW_OFFSET_M * sy / norm / 20.0))
    pad = max(abs(shift_c), abs(shift_r)) + 1
    before, after = 20.0 * np.arange(pad, 0, -1), 20.0 * np.arange(1, pad + 1)
    ext_x = np.concatenate([xs[0] - before, xs, xs[-1] + after])
    ext_y = np.concatenate([ys[0] + before, ys, ys[-1] - after])
    field = fbm_grid(seed, S_CLOUD + date, ext_x, ext_y, 4000.0, 7, 0.55, min_cell=40.0)
    inner = field[pad:-pad, pad:-pad]
    threshold = float(np.quantile(inner, 1.0 - 0.7 * acq.cloud_cover))
    core = float(np.quantile(inner, 1.0 - 0.35 * acq.cloud_cover))
    depth = np.clip((field - threshold) / (core - threshold), 0.0, 1.0)
    alpha_ext = np.where(field > threshold, 0.45 + 0.55 * depth, 0.0).astype(np.float32)
    # A ground point lies in shadow when a cloud hangs up-sun of it.
    rows, cols = inner.shape
    shadow = alpha_ext[pad + shift_r : pad + shift_r + rows, pad + shift_c : pad + shift_c + cols]
    # Cirrus: thin streaks, stretched along the upper-level wind.
    streaks = fbm_grid(seed, S_CIRRUS + date, xs, ys * 4.0, 6000.0, 6, 0.6, min_cell=80.0)
    cut = float(np.quantile(streaks, 1.0 - 0.2 * acq.cloud_cover))
    cirrus = np.clip((streaks - cut) / (1.0 - cut) * 4.0, 0.0, 1.0).astype(np.float32)
    alpha = alpha_ext[pad:-pad, pad:-pad]
    valid = np.ones(alpha.shape, bool)
    if acq.swath_edge:
        valid = xs[None, :] < swath_edge_x(land.bounds, ys)[:, None]
    return _Sky(alpha, (0.85 + 0.25 * depth[pad:-pad, pad:-pad]).astype(np.float32), cirrus,
                shadow.copy(), valid)


def _terrain_shade(land: Landscape, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Lambertian illumination of a hilly terrain (~300 m relief) relative to flat ground."""
    step = xs[1] - xs[0]
    ext_y = np.concatenate([[ys[0] + step], ys, [ys[-1] - step]])
    ext_x = np.concatenate([[xs[0] - step], xs, [xs[-1] + step]])
    height = 300.0 * fbm_grid(land.seed, S_TERRAIN, ext_x, ext_y, 9000.0, 7, 0.5, min_cell=60.0)
    d_north, d_east = np.gradient(height, step)
    d_north = -d_north[1:-1, 1:-1]  # rows run south
    d_east = d_east[1:-1, 1:-1]
    sx, sy, sz = sun_vector()
    normal = np.sqrt(1.0 + d_east**2 + d_north**2)
    cos_i = (-d_east * sx - d_north * sy + sz) / normal
    return np.clip(cos_i / sz, 0.3, 1.4).astype(np.float32)


def _surface_scl(refl20: np.ndarray) -> np.ndarray:
    """Sen2Cor-like surface classes from 20 m reflectance (10, h, w): water, dark, vegetation."""
    b03, b04, b08 = refl20[1], refl20[2], refl20[6]
    ndvi = (b08 - b04) / np.maximum(b08 + b04, 1e-6)
    ndwi = (b03 - b08) / np.maximum(b03 + b08, 1e-6)
    brightness = refl20.mean(axis=0)
    scl = np.full(b03.shape, SCL_NOT_VEGETATED, np.uint8)
    scl[ndvi > 0.35] = SCL_VEGETATION
    scl[(brightness < 0.055) & (ndvi <= 0.6)] = SCL_DARK
    scl[(ndwi > 0.2) & (b08 < 0.08)] = SCL_WATER
    return scl


def _mean2(a: np.ndarray) -> np.ndarray:
    """2 × 2 block mean over the last two axes (10 m to 20 m)."""
    *lead, h, w = a.shape
    return a.reshape(*lead, h // 2, 2, w // 2, 2).mean(axis=(-3, -1))


def _up2(a: np.ndarray) -> np.ndarray:
    """Nearest-neighbour 2× upsampling (20 m to 10 m)."""
    return np.repeat(np.repeat(a, 2, axis=-2), 2, axis=-1)


def render_s2_scenes(
    land: Landscape,
    advance: Callable[[int], None] | None = None,
    acquisitions: tuple[S2Acquisition, ...] = S2_ACQUISITIONS,
) -> tuple[list[S2Scene], TruthLayers, np.ndarray]:
    """Render every acquisition over the region, strip by strip.

    Args:
        land: the region's landscape, with a 10 m pixel.
        advance: progress callback, called after each strip with its number of 10 m rows.
        acquisitions: the scenes to render (default: the ``eu`` region's).

    Returns:
        (the scenes, the region's 10 m truth, its 10 m ``esa-worldcover`` map codes).
    """
    minx, miny, maxx, maxy = land.bounds
    height, width = int(round((maxy - miny) / 10.0)), int(round((maxx - minx) / 10.0))
    xs20 = minx + (np.arange(width // 2) + 0.5) * 20.0
    ys20 = maxy - (np.arange(height // 2) + 0.5) * 20.0
    skies = [_sky(land, acq, d, xs20, ys20) for d, acq in enumerate(acquisitions)]
    scenes = [
        S2Scene(
            acq,
            {b: np.zeros((height, width) if b in BANDS_10M else (height // 2, width // 2),
                         np.uint16) for b in S2_BANDS},
            np.zeros((height // 2, width // 2), np.uint8),
        )
        for acq in acquisitions
    ]
    truth = TruthLayers.empty(height, width, len(FACTORS))
    wc_map = np.zeros((height, width), np.uint8)
    for top in range(0, height, STRIP_ROWS):
        rows = min(STRIP_ROWS, height - top)
        win = render_landcover(land, minx, maxy - top * 10.0, rows, width)
        xs = minx + (np.arange(width) + 0.5) * 10.0
        ys = maxy - (top + np.arange(rows) + 0.5) * 10.0
        truth.put(top, 0, TruthLayers(win.label, win.subtype, quantise_factors(win.factors)))
        wc_map[top : top + rows] = map_labels(land.seed, win.label, win.subtype, xs, ys)
        win.shade *= _terrain_shade(land, xs, ys)
        win.texture *= 1.0 + 0.06 * fbm_grid(land.seed, S_TEXTURE, xs, ys, 40.0, 2)
        for date, scene in enumerate(scenes):
            sky = skies[date]
            sl = slice(top // 2, (top + rows) // 2)
            _render_strip(land, win, date, scene, sky, sl, top, rows)
        if advance is not None:
            advance(rows)
    return scenes, truth, wc_map


def _render_strip(
    land: Landscape,
    win: LandcoverWindow,
    date: int,
    scene: S2Scene,
    sky: _Sky,
    sl: slice,
    top: int,
    rows: int,
) -> None:
    """Surface → atmosphere → DN for one strip of one date; SCL from the 20 m surface."""
    acq = scene.acquisition
    season = date if acq.season is None else acq.season
    surface = surface_reflectance(win, APPEARANCE[land.style.name], season)
    rng = np.random.default_rng([land.seed, S_SENSOR, date, top])
    alpha, glow, cirrus = _up2(sky.alpha[sl]), _up2(sky.glow[sl]), _up2(sky.cirrus[sl])
    shadow = _up2(sky.shadow[sl])
    cloud = spectrum("thick_cloud")[:, None, None]
    # Shadows keep diffuse skylight; cirrus adds a thin, nearly flat veil; clouds are opaque-ish.
    toa = surface * (1.0 - 0.65 * shadow)
    toa += cirrus * (0.06 * np.linspace(1.0, 0.5, 10, dtype=np.float32))[:, None, None]
    toa = (1.0 - alpha) * toa + alpha * glow * cloud
    scl_surface = _surface_scl(_mean2(surface))
    flags = sky.scl_flags()[sl]
    valid = sky.valid[sl]
    scene.scl[sl] = np.where(valid, np.where(flags > 0, flags, scl_surface), SCL_NODATA)
    valid10 = _up2(valid)
    for k, band in enumerate(S2_BANDS):
        if band in BANDS_10M:
            values, mask, target = toa[k], valid10, scene.bands[band][top : top + rows]
        else:
            values, mask, target = _mean2(toa[k]), valid, scene.bands[band][sl]
        values = values + np.float32(0.003) * sensor_noise(rng, values.shape)
        dn = np.clip(np.rint(np.maximum(values, 0.0) * 10000.0) + acq.offset, 1, 65535)
        target[:] = np.where(mask, dn, 0).astype(np.uint16)
