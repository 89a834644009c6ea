"""Sub-types and appearance factors: the within-class structure both sensors of the demo world see.

Every land-cover class comes in a few sub-types (cropland: centre pivot, strip fields, early season,
harvested; tree cover: needleleaf, broadleaf, open; ...) whose shares differ between the regions, and
every object (a field, a stand, a lake) carries five appearance factors in [0, 1] drawn from its
sub-type's ranges, shifted per region. The spectra (`spectra`) are functions of sub-type and factors,
so what distinguishes two chips is visible to Sentinel-2 and NAIP alike, and some sub-types of
different classes are close in both (early-season crop and pasture, open woodland and dense shrub,
sparse shrub and dry grass, harvested fields and sparse bare ground).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classes import BARE, BUILT, CLASS_CODES, CLASS_NAMES, CROP, GRASS, SHRUB, TREE, WATER, WETLAND
FACTORS = ("brightness", "greenness", "moisture", "cover", "turbidity")
BRIGHTNESS, GREENNESS, MOISTURE, COVER, TURBIDITY = range(len(FACTORS))
REGIONS = ("eu", "us")


@dataclass(frozen=True)
class SubType:
    """One sub-type of a land-cover class.

    Attributes:
        code: WorldCover code of its class.
        name: short name; the full name is ``CLASS/name`` (e.g. ``cropland/centre_pivot``).
        priors: share of the class's objects of this sub-type, per region (``eu``, ``us``).
        factors: (low, high) range of each factor (see :data:`FACTORS`) its objects draw from.
    """

    code: int
    name: str
    priors: tuple[float, float]
    factors: tuple[tuple[float, float], ...]

    @property
    def full_name(self) -> str:
        return f"{CLASS_NAMES[self.code]}/{self.name}"


def _st(code: int, name: str, eu: float, us: float, b=(0.3, 0.8), g=(0.0, 0.0), m=(0.3, 0.6), c=(0.9, 1.0),
        t=(0.0, 0.0)) -> SubType:
    return SubType(code, name, (eu, us), (b, g, m, c, t))


# Factor ranges: b brightness, g greenness (leaf vigour), m moisture, c cover (of the class's main
# material over its background: canopy over soil, roofs over gardens, reeds over open water),
# t turbidity (water). Confusable pairs across classes share most of their ranges.
SUBTYPES: tuple[SubType, ...] = (
    _st(TREE, "needleleaf", 0.45, 0.10, g=(0.55, 0.85), m=(0.4, 0.7), c=(0.8, 0.98)),
    _st(TREE, "broadleaf", 0.40, 0.55, g=(0.65, 0.95), m=(0.4, 0.7), c=(0.75, 0.95)),
    _st(TREE, "open", 0.15, 0.35, b=(0.4, 0.9), g=(0.35, 0.65), m=(0.2, 0.5), c=(0.35, 0.6)),
    _st(SHRUB, "dense", 0.65, 0.30, b=(0.4, 0.9), g=(0.35, 0.65), m=(0.2, 0.5), c=(0.5, 0.75)),
    _st(SHRUB, "sparse", 0.35, 0.70, b=(0.5, 1.0), g=(0.15, 0.45), m=(0.1, 0.35), c=(0.15, 0.35)),
    _st(GRASS, "pasture", 0.45, 0.35, g=(0.5, 0.8), m=(0.4, 0.7), c=(0.85, 0.98)),
    _st(GRASS, "meadow", 0.40, 0.15, g=(0.7, 0.95), m=(0.5, 0.8), c=(0.92, 1.0)),
    _st(GRASS, "dry", 0.15, 0.50, b=(0.5, 1.0), g=(0.1, 0.4), m=(0.05, 0.3), c=(0.65, 0.85)),
    _st(CROP, "centre_pivot", 0.0, 0.35, b=(0.3, 0.7), g=(0.8, 1.0), m=(0.6, 0.9), c=(0.9, 1.0)),
    _st(CROP, "strip", 0.55, 0.40, g=(0.65, 0.95), m=(0.4, 0.7), c=(0.85, 1.0)),
    _st(CROP, "early", 0.25, 0.10, g=(0.5, 0.8), m=(0.4, 0.7), c=(0.8, 0.95)),
    _st(CROP, "harvested", 0.20, 0.15, b=(0.4, 0.9), g=(0.0, 0.2), m=(0.1, 0.45), c=(0.1, 0.3)),
    _st(BUILT, "dense", 0.35, 0.10, m=(0.0, 0.3), g=(0.0, 0.2), c=(0.8, 1.0)),
    _st(BUILT, "residential", 0.45, 0.65, m=(0.2, 0.5), g=(0.3, 0.6), c=(0.4, 0.65)),
    _st(BUILT, "industrial", 0.20, 0.25, b=(0.5, 1.0), m=(0.0, 0.3), g=(0.0, 0.15), c=(0.7, 0.95)),
    _st(BARE, "rock", 0.50, 0.15, b=(0.4, 0.9), g=(0.0, 0.1), m=(0.0, 0.3), c=(0.0, 0.1)),
    _st(BARE, "sand", 0.20, 0.35, b=(0.6, 1.0), g=(0.0, 0.05), m=(0.0, 0.25), c=(0.0, 0.05)),
    _st(BARE, "sparse", 0.30, 0.50, g=(0.1, 0.35), m=(0.1, 0.4), c=(0.1, 0.3)),
    _st(WATER, "clear", 0.65, 0.30, m=(1.0, 1.0), c=(0.0, 0.0), t=(0.0, 0.3)),
    _st(WATER, "turbid", 0.35, 0.70, m=(1.0, 1.0), c=(0.0, 0.0), t=(0.55, 1.0)),
    _st(WETLAND, "open", 0.35, 0.60, g=(0.4, 0.8), m=(0.75, 1.0), c=(0.25, 0.5), t=(0.4, 0.9)),
    _st(WETLAND, "vegetated", 0.65, 0.40, g=(0.5, 0.85), m=(0.55, 0.8), c=(0.7, 0.95), t=(0.3, 0.7)),
)
SUBTYPE_NAMES: tuple[str, ...] = tuple(s.full_name for s in SUBTYPES)  # id k + 1 is SUBTYPES[k]; 0 unknown
# Region shifts of the factors (added, then clipped to [0, 1]): Iowa in August is drier, browner
# and brighter than central Germany in summer.
REGION_SHIFT = {"eu": (0.0, 0.0, 0.0, 0.0, 0.0), "us": (0.06, -0.08, -0.1, 0.0, 0.0)}
_ROAD = 0  # road and street pixels of the built-up class carry no sub-type


def subtype_id(full_name: str) -> int:
    """The id (1-based) of a sub-type by its full name, e.g. ``cropland/early``."""
    return SUBTYPE_NAMES.index(full_name) + 1


def subtypes_of(code: int) -> list[int]:
    """Ids of the sub-types of a WorldCover class."""
    return [k + 1 for k, s in enumerate(SUBTYPES) if s.code == code]


def class_of_subtype() -> np.ndarray:
    """WorldCover code per sub-type id (uint8, index 0: 0)."""
    return np.array([0, *[s.code for s in SUBTYPES]], np.uint8)


def draw_subtypes(region: str, code: int, u: np.ndarray, exclude: tuple[str, ...] = ()) -> np.ndarray:
    """Sub-type ids of objects of one class, from uniforms ``u`` and the region's priors.

    Args:
        region: "eu" or "us".
        code: WorldCover code of the objects' class.
        u: uniform in [0, 1) per object.
        exclude: short names of sub-types not to draw (e.g. pivots outside the survey-grid layout);
            the others keep their relative priors.
    """
    ids = [k for k in subtypes_of(code) if SUBTYPES[k - 1].name not in exclude]
    weights = np.array([SUBTYPES[k - 1].priors[REGIONS.index(region)] for k in ids], np.float64)
    cumulative = np.cumsum(weights) / weights.sum()
    pick = np.minimum(np.searchsorted(cumulative, np.asarray(u, np.float64), side="right"), len(ids) - 1)
    return np.asarray(ids, np.uint8)[pick]


def _factor_tables(region: str) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of every factor (5, n_subtypes + 1), region shift included; column 0: neutral."""
    low = np.array([(0.5, 0.0, 0.5, 1.0, 0.0), *[[lo for lo, _ in s.factors] for s in SUBTYPES]], np.float32).T
    high = np.array([(0.5, 0.0, 0.5, 1.0, 0.0), *[[hi for _, hi in s.factors] for s in SUBTYPES]], np.float32).T
    shift = np.asarray(REGION_SHIFT[region], np.float32)[:, None]
    low[:, 1:] += shift
    high[:, 1:] += shift
    return low, high


_FACTOR_TABLES = {region: _factor_tables(region) for region in REGIONS}


def draw_factors(region: str, subtype: np.ndarray, u: tuple[np.ndarray, ...]) -> np.ndarray:
    """Factors (5, n) float32 of objects, from their sub-type ids and five uniforms each.

    Objects without a sub-type (id 0) get neutral factors (0.5, 0, 0.5, 1, 0).
    """
    low, high = _FACTOR_TABLES[region]
    index = np.asarray(subtype, np.intp)
    lo, hi = np.take(low, index, axis=1), np.take(high, index, axis=1)
    out = np.empty(lo.shape, np.float32)
    for k in range(len(FACTORS)):
        np.multiply(hi[k] - lo[k], u[k], out=out[k])
        out[k] += lo[k]
    return np.clip(out, 0.0, 1.0, out=out)


def subtype_priors(region: str) -> dict[str, float]:
    """Share of each sub-type within its class in a region, by full name."""
    index = REGIONS.index(region)
    totals = {code: sum(s.priors[index] for s in SUBTYPES if s.code == code) for code in CLASS_CODES}
    return {s.full_name: s.priors[index] / totals[s.code] for s in SUBTYPES}
