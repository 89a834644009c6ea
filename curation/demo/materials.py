"""Surface materials of the demo world and the per-pixel record a land-cover window carries."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .portable_math import cos, radians, sin

# Material ids: what is physically on the ground, finer than the WorldCover class on top of it
# (a built-up pixel can be a roof, a street or a lawn).
FOREST, SHRUB, GRASS, CROP, SOIL, WETVEG, WATER, ROOF, ASPHALT, CONCRETE, ROCK, SAND = range(1, 13)
MATERIAL_NAMES = (
    "none", "forest", "shrub", "grass", "crop", "soil", "wetland vegetation", "water", "roof",
    "asphalt", "concrete", "rock", "sand",
)
VEGETATION = (FOREST, SHRUB, GRASS, CROP, WETVEG)

NEUTRAL_FACTORS = (0.5, 0.0, 0.5, 1.0, 0.0)  # brightness, greenness, moisture, cover, turbidity

# Sun for shadows and crown shading: a summer mid-morning to midday pass at ~42-50°N.
SUN_AZIMUTH_DEG = 155.0
SUN_ELEVATION_DEG = 58.0


def sun_vector() -> tuple[float, float, float]:
    """Unit vector towards the sun (east, north, up)."""
    az, el = radians(SUN_AZIMUTH_DEG), radians(SUN_ELEVATION_DEG)
    return float(sin(az) * cos(el)), float(cos(az) * cos(el)), float(sin(el))


def shadow_length(height: float) -> float:
    """Length (metres) of the shadow an object of ``height`` metres casts on flat ground."""
    _, _, sz = sun_vector()
    return height * math.sqrt(1.0 - sz * sz) / sz


@dataclass
class LandcoverWindow:
    """Everything known about each pixel of a rendered window of the world.

    Attributes:
        label: true WorldCover code (uint8); the ``esa-worldcover`` map errs on it (`landcover_map`).
        material: primary material id (uint8).
        second: secondary material id (uint8), mixed in with fraction ``mix``.
        mix: float32 fraction of ``second`` in the pixel (sub-pixel mixing at 10 m: soil under a
            sparse canopy, gardens between roofs, open water among reeds).
        paved: float32 fraction of asphalt laid over the pixel (roads narrower than a pixel).
        shade: float32 illumination factor (crown shading, building and tree shadows).
        texture: float32 structural brightness texture (crop rows, pivot rings, terraces).
        subtype: uint8 sub-type id of the object the pixel belongs to (`subtypes`; 0 none).
        kind: float32 parameter of the object: crop type, roof tone, leaf type (0 needle, 1 broad).
        factors: float32 (5, h, w) appearance factors of the object (`subtypes.FACTORS`).
        zone: int32 land-use zone index.
    """

    label: np.ndarray
    material: np.ndarray
    second: np.ndarray
    mix: np.ndarray
    paved: np.ndarray
    shade: np.ndarray
    texture: np.ndarray
    subtype: np.ndarray
    kind: np.ndarray
    factors: np.ndarray
    zone: np.ndarray

    @classmethod
    def empty(cls, height: int, width: int) -> LandcoverWindow:
        """A window of the given shape with neutral values everywhere."""
        shape = (height, width)
        return cls(
            label=np.zeros(shape, np.uint8),
            material=np.zeros(shape, np.uint8),
            second=np.zeros(shape, np.uint8),
            mix=np.zeros(shape, np.float32),
            paved=np.zeros(shape, np.float32),
            shade=np.ones(shape, np.float32),
            texture=np.ones(shape, np.float32),
            subtype=np.zeros(shape, np.uint8),
            kind=np.full(shape, 0.5, np.float32),
            factors=np.tile(np.array(NEUTRAL_FACTORS, np.float32)[:, None, None], (1, *shape)),
            zone=np.zeros(shape, np.int32),
        )


@dataclass
class Points:
    """A subset of a window's pixels, addressed by flat index, with their map coordinates."""

    flat: np.ndarray
    x: np.ndarray
    y: np.ndarray
    zone: np.ndarray

    def where(self, keep: np.ndarray) -> Points:
        """The points for which ``keep`` is true."""
        return Points(self.flat[keep], self.x[keep], self.y[keep], self.zone[keep])

    def __len__(self) -> int:
        return len(self.flat)


def put(window: LandcoverWindow, points: Points, **values: np.ndarray | float) -> None:
    """Write per-point values (or scalars) into the named window layers."""
    for name, value in values.items():
        if name == "factors":
            for k in range(window.factors.shape[0]):
                window.factors[k].reshape(-1)[points.flat] = value[k]
        else:
            getattr(window, name).reshape(-1)[points.flat] = value
