"""The demo world's ``esa-worldcover`` map: the true land cover, with the errors a real product makes.

ESA reports about 77 % overall accuracy for WorldCover 2021 (v200), most of the confusion among
grassland, cropland, shrubland and herbaceous wetland. Here errors come in patches (the segments of
a jittered grid of ~100 m) and depend on what is really there: an early-season field is mapped as
grassland half the time, open woodland often as shrubland, reeds as grassland, a dense forest almost
never as anything else. The build's labels come from this map; the truth stays in the truth rasters.
"""

from __future__ import annotations

import numpy as np

from .classes import BARE, BUILT, CLASS_CODES, CROP, GRASS, SHRUB, TREE, WATER, WETLAND
from .noise import fbm_grid, hash_uniform, jittered_nearest
from .subtypes import SUBTYPE_NAMES, subtype_id

S_MAP = 40000
SEGMENT_M = 500.0  # typical size of a patch the map gets wrong
# Per sub-type: the classes the map takes it for, and how often (the rest of the time it is right).
CONFUSION: dict[str, tuple[tuple[int, float], ...]] = {
    "tree_cover/needleleaf": ((SHRUB, 0.03),),
    "tree_cover/broadleaf": ((SHRUB, 0.04), (GRASS, 0.02)),
    "tree_cover/open": ((SHRUB, 0.18), (GRASS, 0.10)),
    "shrubland/dense": ((GRASS, 0.30), (TREE, 0.08), (WETLAND, 0.04)),
    "shrubland/sparse": ((GRASS, 0.32), (BARE, 0.06), (CROP, 0.05)),
    "grassland/pasture": ((CROP, 0.26), (SHRUB, 0.06), (WETLAND, 0.04)),
    "grassland/meadow": ((CROP, 0.20), (WETLAND, 0.14)),
    "grassland/dry": ((SHRUB, 0.26), (CROP, 0.08), (BARE, 0.06)),
    "cropland/centre_pivot": ((GRASS, 0.06),),
    "cropland/strip": ((GRASS, 0.16),),
    "cropland/early": ((GRASS, 0.55),),
    "cropland/harvested": ((GRASS, 0.24), (BARE, 0.10)),
    "built_up/dense": ((BARE, 0.03),),
    "built_up/residential": ((GRASS, 0.06), (TREE, 0.04)),
    "built_up/industrial": ((BARE, 0.08),),
    "bare_sparse/rock": ((BUILT, 0.02), (SHRUB, 0.03)),
    "bare_sparse/sand": ((GRASS, 0.03), (BUILT, 0.02)),
    "bare_sparse/sparse": ((GRASS, 0.14), (SHRUB, 0.12)),
    "water/clear": ((WETLAND, 0.01),),
    "water/turbid": ((WETLAND, 0.04),),
    "herbaceous_wetland/open": ((GRASS, 0.18), (WATER, 0.10)),
    "herbaceous_wetland/vegetated": ((GRASS, 0.30), (SHRUB, 0.08), (CROP, 0.06)),
}
# Pixels without a sub-type (roads, town parks): per class.
CLASS_CONFUSION: dict[int, tuple[tuple[int, float], ...]] = {
    BUILT: ((BARE, 0.03),), GRASS: ((TREE, 0.12),), TREE: (), SHRUB: (), CROP: (), BARE: (), WATER: (), WETLAND: (),
}


def _tables() -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error probabilities (rows: sub-type ids then 100 + class code) and the classes they map to."""
    rows = 100 + max(CLASS_CODES) + 1
    width = max(len(v) for v in [*CONFUSION.values(), *CLASS_CONFUSION.values()])
    cumulative = np.zeros((rows, width), np.float32)
    target = np.zeros((rows, width), np.uint8)

    def fill(row: int, confusions: tuple[tuple[int, float], ...]) -> None:
        total = 0.0
        for k, (code, p) in enumerate(confusions):
            total += p
            cumulative[row, k], target[row, k] = total, code
        cumulative[row, len(confusions):] = total

    for name, confusions in CONFUSION.items():
        fill(subtype_id(name), confusions)
    for code, confusions in CLASS_CONFUSION.items():
        fill(100 + code, confusions)
    return cumulative, target


assert set(CONFUSION) == set(SUBTYPE_NAMES), "every sub-type needs a row of CONFUSION"
_CUMULATIVE, _TARGET = _tables()


def map_labels(seed: int, labels: np.ndarray, subtypes: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The map's codes for a window of true codes and sub-types on a grid (rows ``ys``, columns ``xs``).

    Every pixel of an error patch that holds the same sub-type is mapped the same way, so errors
    are patchy, as in a real product; 0 (nodata) stays 0.
    """
    warp_x = 0.3 * SEGMENT_M * fbm_grid(seed, S_MAP, xs, ys, 2 * SEGMENT_M, 3)
    warp_y = 0.3 * SEGMENT_M * fbm_grid(seed, S_MAP + 1, xs, ys, 2 * SEGMENT_M, 3)
    rows, cols, _, _ = jittered_nearest(seed, S_MAP, xs[None, :] + warp_x, ys[:, None] + warp_y, SEGMENT_M)
    row = np.where(subtypes > 0, subtypes.astype(np.int64), 100 + labels.astype(np.int64))
    u = hash_uniform(seed, S_MAP + 2, rows, cols, row)
    wrong = u < _CUMULATIVE[row, -1]
    pick = (u[..., None] >= _CUMULATIVE[row]).sum(axis=-1)  # the first confusion whose cumulative exceeds u
    out = labels.copy()
    out[wrong] = _TARGET[row[wrong], pick[wrong]]
    return np.where(labels == 0, 0, out).astype(np.uint8)
