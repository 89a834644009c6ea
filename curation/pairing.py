"""Semantic consistency: which AOIs each modality samples, and co-located MS/RGB chip pairs.

``asymmetric`` builds sample MS and RGB chips from disjoint AOIs. ``paired`` builds sample both
over the shared AOIs (the preset's ``paired_aois``, else its RGB AOIs) and keep only pairs: an
RGB chip inside an MS chip of the same class, its ``pair_id``. ``partial:F`` builds take
round(F x per_class) pairs per class there and the rest of each modality from its own AOIs,
away from every chosen chip of the other modality. The read stage itself stays the build's:
this module decides what to read, in which order, and how the results pair up.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.geometry

from ackd_bench.curation.presets import BBox, ModalitySpec, Preset

MODALITIES = ("ms", "rgb")
FIRST_ROUND_FACTOR = 1.25  # pairs tried per pair wanted in the first round (MS QA rejects some)
# Reads ``candidates`` of a modality until ``per_class`` of each class pass QA (or they run out);
# returns the chosen rows with their read ``record`` and ``array``.
ReadFn = Callable[[str, pd.DataFrame, int], pd.DataFrame]


@dataclass(frozen=True)
class ConsistencyPlan:
    """Where each modality's chips come from.

    Attributes:
        fraction: share of RGB chips to co-locate (0 asymmetric, 1 paired).
        aois: per modality, the AOIs searched (candidate ``aoi`` indexes into them).
        shared: per modality, indices of the AOIs where co-located chips are sampled.
        unpaired: per modality, indices of the AOIs the other chips come from.
    """

    fraction: float
    aois: dict[str, tuple[BBox, ...]]
    shared: dict[str, frozenset[int]]
    unpaired: dict[str, frozenset[int]]

    def spec(self, preset: Preset, modality: str) -> ModalitySpec:
        """The preset's modality with the AOIs this plan searches."""
        return replace(getattr(preset, modality), aois=self.aois[modality])

    def pairs_per_class(self, per_class: int) -> int:
        return round(self.fraction * per_class)


def plan_consistency(preset: Preset) -> ConsistencyPlan:
    """The AOIs of each modality under the preset's consistency mode."""
    fraction = preset.paired_fraction
    own = {m: getattr(preset, m).aois for m in MODALITIES}
    if fraction == 0.0:
        every = {m: frozenset(range(len(own[m]))) for m in MODALITIES}
        return ConsistencyPlan(0.0, own, {m: frozenset() for m in MODALITIES}, every)
    shared = preset.shared_aois()
    if fraction == 1.0:
        every = frozenset(range(len(shared)))
        return ConsistencyPlan(1.0, {m: shared for m in MODALITIES}, {m: every for m in MODALITIES},
                               {m: frozenset() for m in MODALITIES})
    aois = {"ms": own["ms"] + shared, "rgb": own["rgb"] + tuple(a for a in shared if a not in own["rgb"])}
    return ConsistencyPlan(
        fraction, aois,
        {m: frozenset(i for i, a in enumerate(aois[m]) if a in shared and (m == "rgb" or i >= len(own["ms"])))
         for m in MODALITIES},
        {m: frozenset(range(len(own[m]))) for m in MODALITIES},
    )


def lonlat_boxes(chips: pd.DataFrame) -> gpd.GeoSeries:
    """Chip footprints (``minx..maxy`` in each row's ``crs``) as lon/lat polygons, aligned with ``chips``."""
    parts = []
    for crs, part in chips.groupby("crs", sort=True):
        boxes = shapely.box(part["minx"], part["miny"], part["maxx"], part["maxy"])
        parts.append(gpd.GeoSeries(boxes, index=part.index, crs=crs).to_crs(4326))
    if not parts:
        return gpd.GeoSeries([], crs=4326)
    return pd.concat(parts).reindex(chips.index).set_crs(4326, allow_override=True)


def pair_candidates(ms: pd.DataFrame, rgb: pd.DataFrame, rgb_footprints: list) -> pd.DataFrame:
    """For each MS candidate, its RGB partner: the most central same-class RGB candidate inside it.

    Only RGB candidates inside one RGB item's footprint qualify (one item can be read for them).
    MS chips never overlap, so an RGB chip has at most one MS chip around it.

    Args:
        ms, rgb: candidates (``candidate_id, label, rank, crs, minx..maxy``) of the shared AOIs.
        rgb_footprints: lon/lat footprints of the RGB items found there.

    Returns:
        ``ms_id, rgb_id, label, rank`` (the MS candidate's rank), one row per MS candidate that
        has a partner, sorted by label and rank.
    """
    columns = ["ms_id", "rgb_id", "label", "rank"]
    none = pd.DataFrame({"ms_id": [], "rgb_id": [], "label": np.zeros(0, np.int64), "rank": np.zeros(0, np.int64)})
    if ms.empty or rgb.empty or not rgb_footprints:
        return none
    rgb_geo = gpd.GeoDataFrame(rgb[["candidate_id", "label"]], geometry=lonlat_boxes(rgb))
    inside_item = shapely.STRtree(rgb_footprints).query(rgb_geo.geometry.values, predicate="within")
    rgb_geo = rgb_geo.iloc[np.unique(inside_item[0])]
    ms_geo = gpd.GeoDataFrame(ms[["candidate_id", "label", "rank"]], geometry=lonlat_boxes(ms))
    hits = gpd.sjoin(rgb_geo, ms_geo, predicate="within", lsuffix="rgb", rsuffix="ms")
    hits = hits[hits["label_rgb"] == hits["label_ms"]]
    if hits.empty:
        return none
    # Centres compared in degrees, a degree of longitude shrunk by cos(latitude): only the order
    # of candidates within one 640 m chip matters, which this keeps.
    inner = shapely.centroid(np.asarray(hits.geometry.values))
    outer = shapely.centroid(np.asarray(ms_geo.geometry.loc[hits["index_ms"]].values))
    dx = (shapely.get_x(inner) - shapely.get_x(outer)) * np.cos(np.radians(shapely.get_y(outer)))
    dy = shapely.get_y(inner) - shapely.get_y(outer)
    table = pd.DataFrame({"ms_id": hits["candidate_id_ms"].to_numpy(), "rgb_id": hits["candidate_id_rgb"].to_numpy(),
                          "label": hits["label_ms"].to_numpy(np.int64), "rank": hits["rank"].to_numpy(np.int64),
                          "distance": np.hypot(dx, dy)})
    best = table.sort_values(["ms_id", "distance", "rgb_id"]).drop_duplicates("ms_id")
    return best.sort_values(["label", "rank"])[columns].reset_index(drop=True)


def _reranked(chips: pd.DataFrame) -> pd.DataFrame:
    """``chips`` with ``rank`` renumbered 0, 1, ... within each class, order kept (the read stage's contract)."""
    chips = chips.sort_values(["label", "rank"], kind="stable").copy()
    chips["rank"] = chips.groupby("label").cumcount().to_numpy(np.int64)
    return chips.reset_index(drop=True)


def read_pairs(pairs: pd.DataFrame, ms: pd.DataFrame, rgb: pd.DataFrame, read: ReadFn,
               wanted: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read pairs in rank order until ``wanted`` pairs per class pass QA on both sides.

    Each round reads the RGB partners first, then their MS chips, each MS chip preferring the
    scene nearest its partner's date (``prefer`` column), so a pair is seen at nearly one time.

    Returns:
        The MS chips and the RGB chips (``pair_id``: the MS partner) of the pairs kept, the
        first ``wanted`` per class in pair order.
    """
    ms_by_id, rgb_by_id = ms.set_index("candidate_id", drop=False), rgb.set_index("candidate_id", drop=False)
    pairs = pairs.assign(pair_rank=np.arange(len(pairs)))
    untried = pairs
    good_ms, good_rgb = [], []
    complete: dict[int, int] = {}
    factor = FIRST_ROUND_FACTOR
    while True:
        todo = [group.head(math.ceil((wanted - complete.get(int(label), 0)) * factor) + 1)
                for label, group in untried.groupby("label", sort=True) if complete.get(int(label), 0) < wanted]
        if not todo:
            break
        batch = pd.concat(todo)
        untried = untried.drop(batch.index)
        most = int(batch["label"].value_counts().max())
        rgb_rows = rgb_by_id.loc[batch["rgb_id"]].assign(rank=batch["rank"].to_numpy(), pair_id=batch["ms_id"].to_numpy(),
                                                         pair_rank=batch["pair_rank"].to_numpy())
        rgb_ok = read("rgb", _reranked(rgb_rows), most)
        date_of = {pid: rec["item"]["datetime"][:10] for pid, rec in zip(rgb_ok["pair_id"], rgb_ok["record"])}
        batch = batch[batch["ms_id"].isin(set(date_of))]
        if len(batch):
            ms_rows = ms_by_id.loc[batch["ms_id"]].assign(
                rank=batch["rank"].to_numpy(), pair_rank=batch["pair_rank"].to_numpy(),
                prefer=[f"nearest:{date_of[m]}" for m in batch["ms_id"]],
            )
            ms_ok = read("ms", _reranked(ms_rows), most)
            good_ms.append(ms_ok)
            good_rgb.append(rgb_ok[rgb_ok["pair_id"].isin(set(ms_ok["candidate_id"]))])
            for label, n in ms_ok["label"].value_counts().items():
                complete[int(label)] = complete.get(int(label), 0) + int(n)
        factor = 1.5  # later rounds only top up classes whose pairs failed QA more often
    if not good_ms:
        return ms.iloc[:0].assign(record=[], array=[]), rgb.iloc[:0].assign(record=[], array=[], pair_id=[])
    ms_all = pd.concat(good_ms).sort_values(["label", "pair_rank"]).groupby("label").head(wanted)
    rgb_all = pd.concat(good_rgb)
    return ms_all, rgb_all[rgb_all["pair_id"].isin(set(ms_all["candidate_id"]))]


def select_consistent(preset: Preset, plan: ConsistencyPlan, candidates: dict[str, pd.DataFrame],
                      rgb_footprints: list, read: ReadFn) -> dict[str, pd.DataFrame]:
    """The chips of a paired or partial build: pairs first, then each modality's unpaired chips.

    Args:
        preset: the build's preset (``per_class``).
        plan: from :func:`plan_consistency`, with ``fraction`` > 0.
        candidates: ranked candidates per modality, over ``plan.aois``.
        rgb_footprints: lon/lat footprints of the RGB items (for readable partners).
        read: the build's read stage for a subset of candidates.

    Returns:
        Chosen chips per modality; RGB rows carry ``pair_id`` ("" for unpaired chips). MS chips
        of the shared AOIs are in split blocks of ``paired_block_chips``.
    """
    ms, rgb = candidates["ms"], candidates["rgb"]
    shared = ms["aoi"].isin(plan.shared["ms"])
    side = preset.paired_block_chips or preset.ms.block_chips
    ms = ms.assign(block=np.where(shared, [f"a{a}_b{r // side:03d}_{c // side:03d}" for a, r, c in
                                           zip(ms["aoi"], ms["row"], ms["col"])], ms["block"]))
    wanted = plan.pairs_per_class(preset.per_class)
    pairs = pair_candidates(ms[ms["aoi"].isin(plan.shared["ms"])], rgb[rgb["aoi"].isin(plan.shared["rgb"])],
                            rgb_footprints)
    chosen_ms, chosen_rgb = read_pairs(pairs, ms, rgb, read, wanted) if wanted else (ms.iloc[:0], rgb.iloc[:0])
    rest = {m: preset.modality_per_class(m) - wanted for m in MODALITIES}
    if rest["ms"] > 0:
        # The MS side's extra budget (its per_class above the pairs): its own AOIs, or in a paired
        # build, which has none, the shared AOIs' MS chips that are not part of a pair.
        own_ms = ms[ms["aoi"].isin(plan.unpaired["ms"] or plan.shared["ms"])
                    & ~ms["candidate_id"].isin(chosen_ms["candidate_id"] if len(chosen_ms) else [])]
        if len(own_ms):
            chosen_ms = pd.concat([chosen_ms, read("ms", _reranked(own_ms), rest["ms"])])
    if rest["rgb"] > 0:
        # Unpaired RGB chips keep clear of every chosen MS chip (and of the partners already read).
        pool = rgb[rgb["aoi"].isin(plan.unpaired["rgb"]) & ~rgb["candidate_id"].isin(pairs["rgb_id"])]
        if len(chosen_ms) and len(pool):
            taken = shapely.STRtree(lonlat_boxes(chosen_ms).values)
            near = taken.query(lonlat_boxes(pool).values, predicate="intersects")[0]
            pool = pool.drop(pool.index[np.unique(near)])
        if len(pool):
            chosen_rgb = pd.concat([chosen_rgb, read("rgb", _reranked(pool), rest["rgb"]).assign(pair_id="")])
    return {"ms": chosen_ms.drop(columns=["prefer", "pair_rank", "pair_id"], errors="ignore"),
            "rgb": chosen_rgb.drop(columns=["prefer", "pair_rank"], errors="ignore")}
