"""Surface materials of the demo world and the per-pixel record a land-cover window carries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Material ids: what is physically on the ground, finer than the WorldCover class on top of it
# (a built-up pixel can be a roof, a street or a lawn).
FOREST, SHRUB, GRASS, CROP, SOIL, WETVEG, WATER, ROOF, ASPHALT, CONCRETE, ROCK = range(1, 12)
MATERIAL_NAMES = (
    "none", "forest", "shrub", "grass", "crop", "soil", "wetland vegetation", "water", "roof",
    "asphalt", "concrete", "rock",
)

# Sun for shadows and crown shading: a summer mid-morning to midday pass at ~42-50°N.
SUN_AZIMUTH_DEG = 155.0
SUN_ELEVATION_DEG = 58.0


def sun_vector() -> tuple[float, float, float]:
    """Unit vector towards the sun (east, north, up)."""
    az, el = np.radians(SUN_AZIMUTH_DEG), np.radians(SUN_ELEVATION_DEG)
    return float(np.sin(az) * np.cos(el)), float(np.cos(az) * np.cos(el)), float(np.sin(el))


@dataclass
class LandcoverWindow:
    """Everything known about each pixel of a rendered window of the world.

    Attributes:
        label: WorldCover code (uint8), what the ``esa-worldcover`` map says.
        material: primary material id (uint8).
        second: secondary material id (uint8), mixed in with fraction ``mix``.
        mix: float32 fraction of ``second`` in the pixel (sub-pixel mixing at 10 m; for wetland
            vegetation it is the standing-water fraction).
        paved: float32 fraction of asphalt laid over the pixel (roads narrower than a pixel).
        shade: float32 illumination factor (crown shading, building and tree shadows).
        texture: float32 structural brightness texture (crop rows, pivot rings, terraces).
        obj: float32 (3, h, w) uniforms of the object the pixel belongs to (parcel, stand,
            building, water body): [0] brightness factor, [1] type or parameter, [2] phenology.
        zone: int32 land-use zone index.
    """

    label: np.ndarray
    material: np.ndarray
    second: np.ndarray
    mix: np.ndarray
    paved: np.ndarray
    shade: np.ndarray
    texture: np.ndarray
    obj: np.ndarray
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
            obj=np.full((3, *shape), 0.5, np.float32),
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
        if name == "obj":
            for k in range(3):
                window.obj[k].reshape(-1)[points.flat] = value[k]
        else:
            getattr(window, name).reshape(-1)[points.flat] = value
