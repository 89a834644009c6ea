"""Surface reflectance of the demo world at the ten Sentinel-2 bands.

Values follow /work/shared/reference/spectra.md. Grassland, green cropland and herbaceous wetland
share one visible-band distribution and differ only from the red edge on: the knowledge a
multispectral teacher holds and an RGB student lacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .demo_materials import (
    ASPHALT,
    CONCRETE,
    CROP,
    FOREST,
    GRASS,
    ROCK,
    ROOF,
    SHRUB,
    SOIL,
    WATER,
    WETVEG,
    LandcoverWindow,
)

S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
VISIBLE = slice(0, 3)  # B02, B03, B04
BEYOND_VISIBLE = slice(3, 10)  # red edge, NIR, SWIR

_SPECTRA = {  # B02 B03 B04 B05 B06 B07 B08 B8A B11 B12
    "water_clear": (0.06, 0.05, 0.03, 0.02, 0.015, 0.012, 0.01, 0.01, 0.005, 0.003),
    "water_turbid": (0.08, 0.09, 0.07, 0.05, 0.03, 0.02, 0.02, 0.02, 0.01, 0.005),
    "broadleaf": (0.03, 0.05, 0.03, 0.08, 0.22, 0.30, 0.33, 0.34, 0.17, 0.08),
    "needleleaf": (0.02, 0.035, 0.02, 0.05, 0.14, 0.18, 0.20, 0.21, 0.10, 0.045),
    "shrub": (0.04, 0.065, 0.055, 0.11, 0.21, 0.26, 0.28, 0.29, 0.22, 0.13),
    # Green herbaceous covers: only the bands beyond the visible differ (see module docstring).
    "grass": (np.nan, np.nan, np.nan, 0.11, 0.22, 0.27, 0.29, 0.30, 0.25, 0.15),
    "crop": (np.nan, np.nan, np.nan, 0.10, 0.30, 0.40, 0.44, 0.45, 0.22, 0.11),
    "wetveg": (np.nan, np.nan, np.nan, 0.08, 0.16, 0.19, 0.20, 0.21, 0.12, 0.06),
    "roof_tile": (0.08, 0.09, 0.17, 0.22, 0.25, 0.27, 0.28, 0.29, 0.35, 0.30),
    "roof_grey": (0.07, 0.075, 0.08, 0.085, 0.09, 0.095, 0.10, 0.10, 0.11, 0.10),
    "roof_brown": (0.06, 0.06, 0.075, 0.09, 0.10, 0.11, 0.115, 0.12, 0.14, 0.12),
    "roof_white": (0.32, 0.34, 0.35, 0.36, 0.37, 0.37, 0.38, 0.38, 0.40, 0.36),
    "asphalt": (0.07, 0.08, 0.09, 0.10, 0.11, 0.12, 0.12, 0.13, 0.15, 0.14),
    "concrete": (0.18, 0.20, 0.22, 0.23, 0.24, 0.25, 0.26, 0.26, 0.30, 0.27),
    "rock": (0.18, 0.24, 0.30, 0.33, 0.35, 0.37, 0.38, 0.39, 0.45, 0.40),
    "thick_cloud": (0.45, 0.45, 0.46, 0.47, 0.48, 0.48, 0.49, 0.49, 0.40, 0.30),
}


def spectrum(name: str) -> np.ndarray:
    """A reference spectrum as a float32 vector over :data:`S2_BANDS`."""
    return np.asarray(_SPECTRA[name], np.float32)


@dataclass(frozen=True)
class Appearance:
    """How a region looks: soil colour, vegetation vigour, roofs, crop calendar.

    Attributes:
        green_visible: B02-B04 of green herbaceous vegetation (grass, crop, wetland alike).
        soil: bare-soil spectrum (eu: brown loess; us: dark prairie mollisol).
        vigour: multiplier on the red edge/NIR of crops and grass.
        roof_cuts: roof tone thresholds; tones below the first are ``roof_first``, then grey,
            then white from the last.
        roof_first: the region's typical pitched-roof spectrum.
        crop_vigour: per crop type, per date, multiplier on red edge/NIR (season and type).
        harvested: per date, share of crop parcels already bare.
    """

    green_visible: tuple[float, float, float]
    soil: tuple[float, ...]
    vigour: float
    roof_cuts: tuple[float, float]
    roof_first: str
    crop_vigour: tuple[tuple[float, ...], ...]
    harvested: tuple[float, ...]


APPEARANCE = {
    # Cereal, maize, rapeseed, sugar beet; 2021-07-14, 2022-06-19, 2023-08-08.
    "eu": Appearance(
        green_visible=(0.037, 0.068, 0.048),
        soil=(0.10, 0.14, 0.18, 0.21, 0.23, 0.25, 0.26, 0.27, 0.33, 0.28),
        vigour=0.97,
        roof_cuts=(0.6, 0.9),
        roof_first="roof_tile",
        crop_vigour=((0.78, 1.05, 0.72), (1.05, 0.75, 1.12), (0.82, 1.0, 0.76), (1.0, 0.85, 1.1)),
        harvested=(0.03, 0.01, 0.05),
    ),
    # Corn, soybean; NAIP flights of July and August.
    "us": Appearance(
        green_visible=(0.034, 0.072, 0.044),
        soil=(0.055, 0.075, 0.095, 0.11, 0.125, 0.135, 0.145, 0.15, 0.21, 0.18),
        vigour=1.08,
        roof_cuts=(0.45, 0.9),
        roof_first="roof_grey",
        crop_vigour=((1.05, 1.0), (0.95, 1.02)),
        harvested=(0.02, 0.02),
    ),
}


def _green(appearance: Appearance, name: str) -> np.ndarray:
    """A green herbaceous spectrum: the shared visible part joined to its own red edge/SWIR."""
    out = spectrum(name)
    out[VISIBLE] = appearance.green_visible
    return out


def _material_spectra(
    material: int, obj: np.ndarray, appearance: Appearance, date: int
) -> np.ndarray:
    """Spectra (n, 10) of ``n`` pixels of one material, given their object uniforms (3, n)."""
    n = obj.shape[1]
    kind, phase = obj[1][:, None], obj[2]
    if material == FOREST:
        out = spectrum("needleleaf") + kind * (spectrum("broadleaf") - spectrum("needleleaf"))
    elif material == WATER:
        out = spectrum("water_clear") + kind * (spectrum("water_turbid") - spectrum("water_clear"))
    elif material == ROOF:
        low, high = appearance.roof_cuts
        out = np.where(kind < low, spectrum(appearance.roof_first),
                       np.where(kind < high, spectrum("roof_grey"), spectrum("roof_white")))
        if appearance.roof_first == "roof_grey":
            out = np.where((kind >= 0.25) & (kind < low), spectrum("roof_brown"), out)
    elif material == CROP:
        out = _crop_spectra(obj, appearance, date)
    elif material in (GRASS, WETVEG):
        out = np.tile(_green(appearance, "grass" if material == GRASS else "wetveg"), (n, 1))
        if material == GRASS:
            # Meadows are mown now and then: a cut meadow has less leaf in the NIR.
            mown = ((phase * (7 + 3 * date)) % 1.0) < 0.15
            out[:, BEYOND_VISIBLE] *= np.where(mown, 0.85, appearance.vigour)[:, None]
    else:
        name = {SHRUB: "shrub", SOIL: None, ASPHALT: "asphalt", CONCRETE: "concrete", ROCK: "rock"}
        if material == SOIL:
            base = np.asarray(appearance.soil, np.float32)
        else:
            base = spectrum(name[material])
        out = np.tile(base, (n, 1))
    return np.asarray(out, np.float32) * _object_factor(obj[0])


def _object_factor(u: np.ndarray) -> np.ndarray:
    """Per-object brightness (±20 %, all bands together) with a small visible/NIR tilt."""
    level = 0.8 + 0.4 * u
    tilt = 1.0 + 0.12 * ((u * 13.0) % 1.0 - 0.5)
    factor = np.repeat(level[:, None], 10, axis=1)
    factor[:, BEYOND_VISIBLE] *= tilt[:, None]
    return factor.astype(np.float32)


def _crop_spectra(obj: np.ndarray, appearance: Appearance, date: int) -> np.ndarray:
    """Crops: type-dependent vigour at this date; a few parcels already harvested (bare soil)."""
    n_types = len(appearance.crop_vigour)
    crop_type = np.minimum((obj[1] * n_types).astype(np.int64), n_types - 1)
    vigour = np.asarray([row[date] for row in appearance.crop_vigour], np.float32)[crop_type]
    out = np.tile(_green(appearance, "crop"), (obj.shape[1], 1))
    out[:, 3:8] *= (vigour * appearance.vigour)[:, None]
    # Drying leaves reflect more in the SWIR.
    out[:, 8:10] *= (1.0 + 0.8 * (1.0 - vigour))[:, None]
    harvested = obj[2] < appearance.harvested[date]
    out[harvested] = np.asarray(appearance.soil, np.float32) * 1.1
    return out


def surface_reflectance(
    win: LandcoverWindow,
    appearance: Appearance,
    date: int,
    bands: tuple[int, ...] = tuple(range(10)),
) -> np.ndarray:
    """Surface reflectance of a window at the given band indices (into :data:`S2_BANDS`).

    Mixes each pixel's primary and secondary material, lays sub-pixel asphalt over it, and
    applies its shading and structural texture.

    Returns:
        float32 array (len(bands), h, w).
    """
    shape = win.label.shape
    material = win.material.reshape(-1)
    second = win.second.reshape(-1)
    mix = win.mix.reshape(-1)
    obj = win.obj.reshape(3, -1)
    primary = _spectra_by_material(material, obj, appearance, date)
    mixed = (mix > 0) & (material != WETVEG)
    if mixed.any():
        other = _spectra_by_material(second[mixed], obj[:, mixed], appearance, date)
        w = mix[mixed][:, None]
        primary[mixed] = (1.0 - w) * primary[mixed] + w * other
    wet = (material == WETVEG) & (mix > 0)
    if wet.any():
        # Standing water under the reeds darkens the red edge, NIR and SWIR, not the visible.
        w = mix[wet][:, None]
        water = spectrum("water_turbid")[BEYOND_VISIBLE]
        primary[wet, BEYOND_VISIBLE] = (1.0 - w) * primary[wet, BEYOND_VISIBLE] + w * water
    paved = win.paved.reshape(-1)
    road = paved > 0
    if road.any():
        w = paved[road][:, None]
        primary[road] = (1.0 - w) * primary[road] + w * spectrum("asphalt")
    light = (win.shade * win.texture).reshape(-1, 1)
    out = primary[:, list(bands)] * light
    return np.ascontiguousarray(out.T).reshape(len(bands), *shape)


def _spectra_by_material(
    material: np.ndarray, obj: np.ndarray, appearance: Appearance, date: int
) -> np.ndarray:
    """Spectra (n, 10) of pixels of mixed materials, one material at a time."""
    out = np.zeros((len(material), 10), np.float32)
    for m in np.unique(material):
        if m == 0:
            continue
        sel = material == m
        out[sel] = _material_spectra(int(m), obj[:, sel], appearance, date)
    return out
