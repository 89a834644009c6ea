"""Candidate chips: purity from the land-cover map, crosswalk, nodata exclusion, ranking."""

import numpy as np
import pytest

from ackd_bench.curation.presets import LabelSpec, demo_preset
from ackd_bench.curation.sampling import ChipGrid, candidate_chips, plan_grid, rank_candidates

LABELS = LabelSpec(classes=("forest", "water"), crosswalk=((10, "forest"), (80, "water")))


def _grid(rows, cols):
    return ChipGrid(aoi=0, crs="EPSG:32632", x0=500000.0, y1=5560000.0, chip_m=640.0, rows=rows, cols=cols)


def test_purity_majority_and_nodata():
    n = 4  # label samples per chip side
    codes = np.full((2 * n, 3 * n), 10, dtype=np.uint8)
    codes[:n, n:2 * n] = 80                 # chip (0,1): pure water
    codes[0, 2 * n:3 * n] = 80              # chip (0,2): 4 + 1 of 16 samples water ...
    codes[1, 2 * n] = 80                    # ... so forest holds 11/16
    codes[n:, :n][0, 0] = 0                 # chip (1,0): touches nodata -> never a candidate
    codes[n:, n:2 * n][:2, :] = 50          # chip (1,1): 8/16 unmapped built-up, 8/16 forest
    got = candidate_chips(codes, _grid(2, 3), LABELS, n, purity=0.6, modality="ms", block_chips=2)
    by_pos = {(r, c): (lab, pur) for r, c, lab, pur in got[["row", "col", "label", "purity"]].itertuples(index=False)}
    assert by_pos[(0, 0)] == (0, 1.0)
    assert by_pos[(0, 1)] == (1, 1.0)
    assert by_pos[(0, 2)] == (0, pytest.approx(11 / 16))
    assert (1, 0) not in by_pos
    assert (1, 1) not in by_pos  # forest covers only half; unmapped codes never count for a class
    assert by_pos[(1, 2)] == (0, 1.0)
    # Chip bounds tile the grid: chip (0, 1) starts one chip east of the origin.
    row = got[(got["row"] == 0) & (got["col"] == 1)].iloc[0]
    assert (row["minx"], row["maxy"], row["maxx"] - row["minx"]) == (500640.0, 5560000.0, 640.0)
    assert row["block"] == "a0_b000_000"


def test_rank_is_a_seeded_permutation_within_class():
    codes = np.full((4, 40), 10, dtype=np.uint8)
    codes[:, 20:] = 80
    cands = candidate_chips(codes, _grid(1, 10), LABELS, 4, purity=0.9, modality="rgb", block_chips=2)
    a = rank_candidates(cands, seed=0, n_classes=2)
    b = rank_candidates(cands, seed=0, n_classes=2)
    c = rank_candidates(cands, seed=1, n_classes=2)
    assert a["candidate_id"].tolist() == b["candidate_id"].tolist()
    assert a["candidate_id"].tolist() != c["candidate_id"].tolist()
    for k in (0, 1):
        part = a[a["label"] == k]
        assert sorted(part["rank"]) == list(range(5))


def test_plan_grid_snaps_to_pixel_grid_inside_aoi():
    spec = demo_preset(0.25).ms
    aoi = (9.0, 50.0, 9.1, 50.05)
    grid = plan_grid(0, aoi, "EPSG:32632", spec, origin=(499980.0, 5600040.0))
    assert (grid.x0 - 499980.0) % 10 == 0 and (grid.y1 - 5600040.0) % 10 == 0
    bounds = grid.bounds(np.array([grid.rows - 1]), np.array([grid.cols - 1]))[0]
    from rasterio.warp import transform_bounds

    minx, miny, maxx, maxy = transform_bounds("EPSG:4326", "EPSG:32632", *aoi, densify_pts=21)
    assert grid.x0 >= minx and grid.y1 <= maxy and bounds[2] <= maxx and bounds[1] >= miny
