"""Surface reflectance of the demo world at the ten Sentinel-2 bands.

Values follow /work/shared/reference/spectra.md. Vegetation is a mix of a green and a senescent
end-member set by the object's greenness; moisture darkens the SWIR (and wet soil in the visible);
brightness scales every band; cover (set by the renderers) mixes a material with its background.
Grassland, cropland and herbaceous wetland differ most in the red edge, NIR and SWIR, but their
visible bands are not identical: leaf vigour, standing water and soil between the rows leave a
faint trace in RGB, as in real imagery. Early-season crop is drawn close to pasture in every band.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .materials import (
    ASPHALT,
    CONCRETE,
    CROP,
    FOREST,
    GRASS,
    ROCK,
    ROOF,
    SAND,
    SHRUB,
    SOIL,
    VEGETATION,
    WATER,
    WETVEG,
    LandcoverWindow,
)
from .subtypes import BRIGHTNESS, GREENNESS, MOISTURE, TURBIDITY, subtype_id

S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
EARLY, HARVESTED = subtype_id("cropland/early"), subtype_id("cropland/harvested")
YOUNG_CROP = 0.85  # how far an early-season canopy's spectrum lies towards grass

_SPECTRA = {  # B02 B03 B04 B05 B06 B07 B08 B8A B11 B12
    "water_clear": (0.06, 0.05, 0.03, 0.02, 0.015, 0.012, 0.01, 0.01, 0.005, 0.003),
    "water_turbid": (0.08, 0.09, 0.07, 0.05, 0.03, 0.02, 0.02, 0.02, 0.01, 0.005),
    # Vegetation: green and senescent end-members.
    "broadleaf": (0.03, 0.05, 0.03, 0.08, 0.22, 0.30, 0.33, 0.34, 0.17, 0.08),
    "broadleaf_dry": (0.04, 0.06, 0.06, 0.10, 0.18, 0.22, 0.24, 0.25, 0.20, 0.11),
    "needleleaf": (0.02, 0.035, 0.02, 0.05, 0.14, 0.18, 0.20, 0.21, 0.10, 0.045),
    "needleleaf_dry": (0.03, 0.045, 0.04, 0.07, 0.13, 0.16, 0.17, 0.18, 0.13, 0.07),
    "shrub": (0.035, 0.06, 0.045, 0.10, 0.21, 0.26, 0.28, 0.29, 0.19, 0.10),
    "shrub_dry": (0.055, 0.075, 0.082, 0.12, 0.17, 0.20, 0.21, 0.22, 0.27, 0.19),
    "grass": (0.034, 0.074, 0.044, 0.105, 0.27, 0.34, 0.37, 0.38, 0.23, 0.115),
    "grass_dry": (0.07, 0.094, 0.11, 0.14, 0.18, 0.20, 0.22, 0.23, 0.34, 0.27),
    "crop": (0.032, 0.078, 0.038, 0.10, 0.32, 0.43, 0.47, 0.48, 0.21, 0.095),
    "crop_dry": (0.075, 0.098, 0.118, 0.15, 0.19, 0.21, 0.23, 0.24, 0.36, 0.29),
    "wetveg": (0.035, 0.073, 0.045, 0.08, 0.19, 0.23, 0.25, 0.26, 0.13, 0.06),
    "wetveg_dry": (0.068, 0.093, 0.106, 0.11, 0.15, 0.17, 0.18, 0.19, 0.21, 0.14),
    "roof_tile": (0.08, 0.09, 0.17, 0.22, 0.25, 0.27, 0.28, 0.29, 0.35, 0.30),
    "roof_grey": (0.07, 0.075, 0.08, 0.085, 0.09, 0.095, 0.10, 0.10, 0.11, 0.10),
    "roof_brown": (0.06, 0.06, 0.075, 0.09, 0.10, 0.11, 0.115, 0.12, 0.14, 0.12),
    "roof_white": (0.32, 0.34, 0.35, 0.36, 0.37, 0.37, 0.38, 0.38, 0.40, 0.36),
    "asphalt": (0.07, 0.08, 0.09, 0.10, 0.11, 0.12, 0.12, 0.13, 0.15, 0.14),
    "concrete": (0.18, 0.20, 0.22, 0.23, 0.24, 0.25, 0.26, 0.26, 0.30, 0.27),
    "rock": (0.18, 0.24, 0.30, 0.33, 0.35, 0.37, 0.38, 0.39, 0.45, 0.40),
    "sand": (0.22, 0.28, 0.33, 0.36, 0.38, 0.40, 0.41, 0.42, 0.50, 0.44),
    "thick_cloud": (0.45, 0.45, 0.46, 0.47, 0.48, 0.48, 0.49, 0.49, 0.40, 0.30),
}
_VEGETATION_NAMES = {SHRUB: "shrub", GRASS: "grass", CROP: "crop", WETVEG: "wetveg"}


def spectrum(name: str) -> np.ndarray:
    """A reference spectrum as a float32 vector over :data:`S2_BANDS`."""
    return np.asarray(_SPECTRA[name], np.float32)


@dataclass(frozen=True)
class Appearance:
    """How a region looks beyond its factors: soil colour, roofs, crop calendar.

    Attributes:
        soil: bare-soil spectrum (eu: brown loess; us: dark prairie mollisol).
        roof_cuts: roof tone thresholds; tones below the first are ``roof_first``, then grey,
            then white from the last.
        roof_first: the region's typical pitched-roof spectrum.
        crop_vigour: per crop type, per date, factor on the greenness of growing crops.
    """

    soil: tuple[float, ...]
    roof_cuts: tuple[float, float]
    roof_first: str
    crop_vigour: tuple[tuple[float, ...], ...]


APPEARANCE = {
    # Cereal, maize, rapeseed, sugar beet; 2021-07-14, 2022-06-19, 2023-08-08.
    "eu": Appearance(
        soil=(0.10, 0.14, 0.18, 0.21, 0.23, 0.25, 0.26, 0.27, 0.33, 0.28),
        roof_cuts=(0.6, 0.9),
        roof_first="roof_tile",
        crop_vigour=((0.7, 1.05, 0.55), (1.1, 0.7, 1.2), (0.75, 1.0, 0.6), (1.1, 0.8, 1.2)),
    ),
    # Corn, soybean; NAIP flights of July and August.
    "us": Appearance(
        soil=(0.055, 0.075, 0.095, 0.11, 0.125, 0.135, 0.145, 0.15, 0.21, 0.18),
        roof_cuts=(0.45, 0.9),
        roof_first="roof_grey",
        crop_vigour=((1.05, 1.0), (0.95, 1.02)),
    ),
}


class _Bands:
    """The band indices being rendered, and which of them the factor effects touch."""

    def __init__(self, bands: tuple[int, ...]) -> None:
        self.index = np.asarray(bands, np.int64)
        self.visible = np.flatnonzero(self.index < 3)
        self.swir = np.flatnonzero(self.index >= 8)
        self.not_swir = np.flatnonzero(self.index < 8)

    def of(self, name: str) -> np.ndarray:
        """A reference spectrum at these bands, as a column (b, 1)."""
        return spectrum(name)[self.index][:, None]

    def values(self, values: tuple[float, ...]) -> np.ndarray:
        return np.asarray(values, np.float32)[self.index][:, None]


def _vegetation(bands: _Bands, material: int, subtype: np.ndarray, kind: np.ndarray,
                greenness: np.ndarray) -> np.ndarray:
    """Spectra (b, n) of vegetation: senescent + greenness * (green - senescent)."""
    if material == FOREST:
        leaf = kind[None, :]  # 0 needleleaf .. 1 broadleaf
        green = bands.of("needleleaf") + leaf * (bands.of("broadleaf") - bands.of("needleleaf"))
        dry = bands.of("needleleaf_dry") + leaf * (bands.of("broadleaf_dry") - bands.of("needleleaf_dry"))
    else:
        name = _VEGETATION_NAMES[material]
        green, dry = bands.of(name), bands.of(f"{name}_dry")
        if material == CROP:
            # A young canopy looks like grass; a harvested field's stubble like dry crop.
            young = ((subtype == EARLY) * np.float32(YOUNG_CROP))[None, :]
            green = green + young * (bands.of("grass") - green)
            dry = dry + young * (bands.of("grass_dry") - dry)
    return dry + greenness[None, :] * (green - dry)


def _material_spectra(bands: _Bands, material: int, subtype: np.ndarray, kind: np.ndarray, factors: np.ndarray,
                      appearance: Appearance, date: int) -> np.ndarray:
    """Spectra (b, n) of ``n`` pixels of one material, from their sub-types, ``kind`` and factors (5, n)."""
    n = len(subtype)
    greenness, moisture = factors[GREENNESS], factors[MOISTURE]
    if material in VEGETATION:
        if material == CROP:
            n_types = len(appearance.crop_vigour)
            crop_type = np.minimum((kind * n_types).astype(np.int64), n_types - 1)
            vigour = np.asarray([row[date] for row in appearance.crop_vigour], np.float32)[crop_type]
            greenness = np.where(subtype == HARVESTED, greenness, np.clip(greenness * vigour, 0.0, 1.0))
        out = _vegetation(bands, material, subtype, kind, greenness)
        out[bands.visible] *= 1.02 - 0.04 * moisture
    elif material == WATER:
        t = factors[TURBIDITY][None, :]
        out = bands.of("water_clear") + t * (bands.of("water_turbid") - bands.of("water_clear"))
    elif material == ROOF:
        low, high = appearance.roof_cuts
        tone = kind[None, :]
        out = np.where(tone < low, bands.of(appearance.roof_first),
                       np.where(tone < high, bands.of("roof_grey"), bands.of("roof_white")))
        if appearance.roof_first == "roof_grey":
            out = np.where((tone >= 0.25) & (tone < low), bands.of("roof_brown"), out)
    else:
        base = {SOIL: bands.values(appearance.soil), ASPHALT: bands.of("asphalt"), CONCRETE: bands.of("concrete"),
                ROCK: bands.of("rock"), SAND: bands.of("sand")}[material]
        out = np.repeat(base, n, axis=1)
        if material in (SOIL, SAND):
            out[bands.not_swir] *= 1.08 - 0.25 * moisture  # wet soil is darker
    out = np.asarray(out, np.float32)
    if material in (*VEGETATION, SOIL, SAND):
        out[bands.swir] *= 1.25 - 0.5 * moisture  # leaf and soil water absorb in the SWIR
    return out * (0.85 + 0.3 * factors[BRIGHTNESS])[None, :]


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
    which = _Bands(tuple(bands))
    material = win.material.reshape(-1)
    subtype = win.subtype.reshape(-1)
    kind = win.kind.reshape(-1)
    factors = win.factors.reshape(win.factors.shape[0], -1)
    out = _spectra_by_material(which, material, subtype, kind, factors, appearance, date)
    mix = win.mix.reshape(-1)
    mixed = np.flatnonzero(mix > 0)
    if len(mixed):
        other = _spectra_by_material(which, win.second.reshape(-1)[mixed], subtype[mixed], kind[mixed],
                                     factors[:, mixed], appearance, date)
        w = mix[mixed]
        out[:, mixed] += w * (other - out[:, mixed])
    paved = win.paved.reshape(-1)
    road = np.flatnonzero(paved > 0)
    if len(road):
        out[:, road] += paved[road] * (which.of("asphalt") - out[:, road])
    out *= (win.shade * win.texture).reshape(-1)
    return out.reshape(len(which.index), *win.label.shape)


def _spectra_by_material(bands: _Bands, material: np.ndarray, subtype: np.ndarray, kind: np.ndarray,
                         factors: np.ndarray, appearance: Appearance, date: int) -> np.ndarray:
    """Spectra (b, n) of pixels of mixed materials, one material at a time."""
    out = np.zeros((len(bands.index), len(material)), np.float32)
    order = np.argsort(material, kind="stable")
    edges = np.searchsorted(material[order], np.arange(material.max(initial=0) + 2))
    for m in range(1, len(edges) - 1):
        sel = order[edges[m]:edges[m + 1]]
        if len(sel):
            out[:, sel] = _material_spectra(bands, m, subtype[sel], kind[sel], factors[:, sel], appearance, date)
    return out
