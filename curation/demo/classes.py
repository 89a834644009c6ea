"""The land-cover classes of the demo world: ESA WorldCover codes and the benchmark's names for them."""

from __future__ import annotations

# ESA WorldCover codes used by the demo world (0 is nodata).
TREE, SHRUB, GRASS, CROP, BUILT, BARE, WATER, WETLAND = 10, 20, 30, 40, 50, 60, 80, 90
CLASS_CODES = (TREE, SHRUB, GRASS, CROP, BUILT, BARE, WATER, WETLAND)
# Benchmark class names of the codes (the demo preset's crosswalk).
CLASS_NAMES = {TREE: "tree_cover", SHRUB: "shrubland", GRASS: "grassland", CROP: "cropland",
               BUILT: "built_up", BARE: "bare_sparse", WATER: "water", WETLAND: "herbaceous_wetland"}
