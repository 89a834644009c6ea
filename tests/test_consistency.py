"""The consistency knob: asymmetric, paired and partial:F builds on the small demo world with its pair site."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from click.testing import CliRunner

from ackd_bench.benchmark.cli import main
from ackd_bench.benchmark.dataset import load_dataset
from ackd_bench.curation.build import BuildError, build_dataset
from ackd_bench.curation.demo.world import build_demo_catalog, demo_pair_site, demo_regions
from ackd_bench.curation.pairing import pair_candidates, plan_consistency
from ackd_bench.curation.presets import demo_preset, get_preset

SMALL_SCALE = 0.4  # as conftest's small world
CODES = {10, 20, 30, 40, 50, 60, 80, 90}


@pytest.fixture(scope="module")
def pair_world(tmp_path_factory) -> Path:
    """The small world plus its pair site (imaged by Sentinel-2 and NAIP alike)."""
    return build_demo_catalog(tmp_path_factory.mktemp("pairworld") / "catalog", seed=0, scale=SMALL_SCALE,
                              progress=False, pair_site=True)


@pytest.fixture(scope="module")
def built(pair_world, tmp_path_factory):
    """Builds on the pair world, one per (mode, per_class), loaded (and verified) once."""
    done = {}

    def build(mode: str, per_class: int):
        if (mode, per_class) not in done:
            out = tmp_path_factory.mktemp("consistency") / f"{mode.replace(':', '_')}-{per_class}"
            preset = demo_preset(SMALL_SCALE).with_overrides(catalog=str(pair_world), per_class=per_class,
                                                             consistency=mode)
            build_dataset(preset, out, scheduler="threads", progress=False)
            done[(mode, per_class)] = (out, load_dataset(out))
        return done[(mode, per_class)]

    return build


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def _within(region, samples: gpd.GeoDataFrame) -> bool:
    return bool(samples.within(shapely.box(*region.bbox_lonlat())).all())


def test_pair_site_leaves_the_rest_of_the_world_unchanged(small_world, pair_world):
    plain, paired = _tree(small_world.parent), _tree(pair_world.parent)
    shared = [k for k in plain if not k.endswith(("catalog.json", "collection.json"))]
    assert shared and all(paired[k] == plain[k] for k in shared)  # every eu/us file, byte for byte
    site_s2 = sorted(k for k in paired if k.startswith("sentinel-2-l2a/") and "T15TVG" in k and k.endswith("B08.tif"))
    assert len(site_s2) == 3
    for key in site_s2:
        with rasterio.open(pair_world.parent / key) as src:
            assert src.crs.to_epsg() == 32615  # Sentinel-2 in WGS 84 / UTM, NAIP in NAD83 / UTM
            assert (src.bounds.left, src.bounds.bottom) == demo_pair_site(SMALL_SCALE).bounds[:2]
    (wc,) = [k for k in paired if k.endswith("pair-site/map.tif")]
    with rasterio.open(pair_world.parent / wc) as src:
        assert set(np.unique(src.read(1)).tolist()) == {0, *CODES}  # every class at the site
    meta = json.loads((pair_world).read_text())["ackd:demo_world"]
    assert meta["pair_site"] is True


def test_paired_build_co_locates_every_rgb_chip(built):
    out, ds = built("paired", 3)
    consistency = ds.manifest["consistency"]
    assert consistency["mode"] == "paired" and consistency["overlap"] == 1.0
    assert consistency["pairs"] == consistency["pairs_wanted"] == 3 * 8
    assert consistency["days_apart"]["max"] <= 31  # scenes of summer 2021, NAIP flown in July/August
    samples = ds.samples
    ms, rgb = samples[samples["modality"] == "ms"], samples[samples["modality"] == "rgb"]
    for part in (ms, rgb):
        assert part["label"].value_counts().to_dict() == {k: 3 for k in range(8)}
        assert _within(demo_pair_site(SMALL_SCALE), part)
    partner = ms.set_index("sample_id").loc[rgb["pair_id"]]
    assert (partner["label"].to_numpy() == rgb["label"].to_numpy()).all()
    assert (partner["split"].to_numpy() == rgb["split"].to_numpy()).all()
    assert all(shapely.within(rgb.geometry.to_numpy(), partner.geometry.to_numpy()))
    assert rgb["pair_id"].is_unique and (ms["pair_id"] == "").all()
    assert set(ms["split"]) == {"train", "val", "test"}  # the site's small split blocks (paired_block_chips)
    assert "co-located pairs (`pair_id`): 24 of 24" in (out / "card.md").read_text()


def test_partial_build_co_locates_half(built):
    _, ds = built("partial:0.5", 4)
    consistency = ds.manifest["consistency"]
    assert consistency["mode"] == "partial:0.5" and consistency["overlap"] == 0.5
    assert consistency["pairs"] == consistency["pairs_wanted"] == 2 * 8
    samples = ds.samples
    ms, rgb = samples[samples["modality"] == "ms"], samples[samples["modality"] == "rgb"]
    paired, unpaired = rgb[rgb["pair_id"] != ""], rgb[rgb["pair_id"] == ""]
    assert paired["label"].value_counts().to_dict() == unpaired["label"].value_counts().to_dict() == {k: 2 for k in range(8)}
    assert _within(demo_regions(SMALL_SCALE)["us"], unpaired)  # the rest from the disjoint region
    assert not shapely.STRtree(ms.geometry.to_numpy()).query(unpaired.geometry.to_numpy(), predicate="intersects").size
    co_located = ms["sample_id"].isin(paired["pair_id"])
    assert _within(demo_pair_site(SMALL_SCALE), ms[co_located])
    assert _within(demo_regions(SMALL_SCALE)["eu"], ms[~co_located])
    # Splits stay spatial per modality: a block (paired chips: their partner's) is in one split.
    assert samples.groupby(["modality", "block"])["split"].nunique().max() == 1


def test_asymmetric_build_on_the_pair_world_is_the_default_build(built, small_dataset, small_preset):
    """The pair site changes nothing for asymmetric builds: same fingerprint as without it."""
    _, ds = built("asymmetric", small_preset.per_class)
    assert ds.manifest["consistency"] == {"mode": "asymmetric", "overlap": 0.0}
    assert "pair_id" not in ds.samples.columns
    assert ds.fingerprint == json.loads((small_dataset / "dataset.json").read_text())["fingerprint"]


def test_paired_build_with_a_larger_ms_budget(pair_world, tmp_path):
    """MS's own per_class above RGB's (as the demo preset's 900 vs 720): a paired build has no MS AOI of
    its own, so the extra MS chips come from the pair site's unpaired candidates (this failed with
    KeyError 'label' before)."""
    base = demo_preset(SMALL_SCALE).with_overrides(catalog=str(pair_world), per_class=2, consistency="paired")
    preset = dataclasses.replace(base, ms=dataclasses.replace(base.ms, per_class=3))
    out = tmp_path / "paired-more-ms"
    build_dataset(preset, out, scheduler="threads", progress=False)
    samples = load_dataset(out).samples
    ms, rgb = samples[samples["modality"] == "ms"], samples[samples["modality"] == "rgb"]
    assert ms["label"].value_counts().to_dict() == {k: 3 for k in range(8)}
    assert rgb["label"].value_counts().to_dict() == {k: 2 for k in range(8)}
    assert set(rgb["pair_id"]) <= set(ms["sample_id"]) and rgb["pair_id"].is_unique
    assert _within(demo_pair_site(SMALL_SCALE), ms)


def test_demo_consistency_preset_builds_are_alike_but_for_pairing():
    """The experiment's preset: one split for both modalities and one budget, so the three builds only
    differ in their co-located share."""
    preset = get_preset("demo-consistency")
    assert preset.modality_split("ms") == preset.modality_split("rgb") == (0.6, 0.1, 0.3)
    assert preset.modality_per_class("ms") == preset.modality_per_class("rgb") == 100
    assert preset.consistency == "asymmetric" and preset.paired_aois


def test_plan_consistency_aois():
    default = get_preset("eu-s2__us-naip")
    eu, us = default.ms.aois, default.rgb.aois
    plan = plan_consistency(default)
    assert plan.fraction == 0 and plan.aois == {"ms": eu, "rgb": us} and not plan.shared["ms"]
    paired = plan_consistency(default.with_overrides(consistency="paired"))
    assert paired.aois == {"ms": us, "rgb": us}  # Sentinel-2 is global: sampled where NAIP is
    partial = plan_consistency(default.with_overrides(consistency="partial:0.3"))
    assert partial.aois == {"ms": eu + us, "rgb": us}
    assert partial.shared == {"ms": frozenset({3, 4, 5}), "rgb": frozenset({0, 1, 2})}
    assert partial.unpaired == {"ms": frozenset({0, 1, 2}), "rgb": frozenset({0, 1, 2})}
    assert partial.pairs_per_class(150) == 45
    demo = plan_consistency(demo_preset(SMALL_SCALE).with_overrides(consistency="partial:0.5"))
    assert demo.aois["rgb"][1] == demo_pair_site(SMALL_SCALE).bbox_lonlat()
    assert demo.shared["rgb"] == frozenset({1}) and demo.unpaired["rgb"] == frozenset({0})


def _chips(rows) -> pd.DataFrame:
    """Candidates from (id, label, rank, minx, miny, side) in EPSG:32615."""
    return pd.DataFrame([{"candidate_id": c, "label": k, "rank": r, "crs": "EPSG:32615", "minx": x, "miny": y,
                          "maxx": x + side, "maxy": y + side} for c, k, r, x, y, side in rows])


def test_pair_candidates_picks_the_central_same_class_chip_inside():
    x, y = 420480.0, 4642560.0
    ms = _chips([("m0", 0, 0, x, y, 640.0), ("m1", 1, 0, x + 640, y, 640.0), ("m2", 2, 0, x + 1280, y, 640.0)])
    rgb = _chips([
        ("r_edge", 0, 0, x, y, 128.0),                  # inside m0, at its corner
        ("r_centre", 0, 1, x + 256, y + 256, 128.0),    # inside m0, at its centre: chosen
        ("r_other", 0, 2, x + 896, y + 256, 128.0),     # inside m1 but of another class
        ("r_across", 1, 1, x + 576, y + 256, 128.0),    # straddles m0 and m1
        ("r_m2", 2, 0, x + 1536, y + 256, 128.0),       # inside m2, but outside every RGB item
    ])
    item = shapely.box(*gpd.GeoSeries([shapely.box(x, y, x + 1280, y + 640)], crs=32615).to_crs(4326).total_bounds)
    pairs = pair_candidates(ms, rgb, [item])
    assert pairs[["ms_id", "rgb_id", "label"]].values.tolist() == [["m0", "r_centre", 0]]


def test_partial_needs_disjoint_aois_paired_does_not(tmp_path):
    same = get_preset("us-s2__us-naip-paired")
    with pytest.raises(BuildError, match="partial:0.5 but its MS and RGB AOIs overlap"):
        build_dataset(same.with_overrides(consistency="partial:0.5"), tmp_path / "x", progress=False)
    with pytest.raises(BuildError, match="asymmetric but its MS and RGB AOIs overlap"):
        build_dataset(same.with_overrides(consistency="asymmetric"), tmp_path / "y", progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_consistency_option_and_presets_listing(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["build-dataset", "--catalog", "demo", "--consistency", "half", "--out",
                               str(tmp_path / "x")])
    assert res.exit_code != 0 and "consistency must be asymmetric, paired or partial:F" in res.output
    assert not (tmp_path / "x").exists()
    res = runner.invoke(main, ["presets"])
    assert res.exit_code == 0
    lines = res.output.splitlines()
    assert lines[0].startswith("eu-s2__us-naip (default)")
    for name in ("demo", "us-s2__us-naip-paired", "planetary-computer", "earth-search"):
        (line,) = [line for line in lines if line.startswith(name + " ")]
        assert len(line.split(None, 1)[1]) > 20  # a one-line description


def test_partial_with_pairs_in_the_rgb_aois(pair_world, tmp_path):
    """The default preset's layout: no paired_aois, so pairs come from the RGB AOIs, and the
    unpaired RGB chips of the same AOIs keep clear of every MS chip."""
    site = demo_pair_site(SMALL_SCALE).bbox_lonlat()
    base = demo_preset(SMALL_SCALE)
    preset = base.with_overrides(catalog=str(pair_world), per_class=2, consistency="partial:0.5", paired_aois=(),
                                 rgb=dataclasses.replace(base.rgb, aois=(site,)))
    assert preset.shared_aois() == (site,)
    build_dataset(preset, tmp_path / "ds", scheduler="threads", progress=False)
    ds = load_dataset(tmp_path / "ds")
    assert ds.manifest["consistency"]["overlap"] == 0.5 and ds.manifest["consistency"]["pairs"] == 8
    samples = ds.samples
    ms, rgb = samples[samples["modality"] == "ms"], samples[samples["modality"] == "rgb"]
    unpaired = rgb[rgb["pair_id"] == ""]
    assert len(unpaired) == 8 and _within(demo_pair_site(SMALL_SCALE), unpaired)
    assert not shapely.STRtree(ms.geometry.to_numpy()).query(unpaired.geometry.to_numpy(), predicate="intersects").size
