"""The split and write stages' inputs: the sample table, the chip arrays and the manifest."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely.geometry

from ackd_bench.benchmark.version import package_version
from ackd_bench.curation.presets import Preset
from ackd_bench.curation.splitting import assign_blocks

MODALITIES = ("ms", "rgb")
LATENT_COLUMNS = ("latent_composition", "latent_subtype", "latent_factors")


def assemble(preset: Preset, chosen: dict[str, pd.DataFrame]) -> tuple[gpd.GeoDataFrame, dict[str, np.ndarray]]:
    """Split every modality's chosen chips by spatial blocks and lay them out in the dataset format.

    Args:
        preset: the build's preset.
        chosen: per modality, the accepted candidates with their read ``record`` and ``array``.
            RGB chips of paired/partial builds carry ``pair_id`` (their MS partner, or ""); chips
            with ``latent_*`` columns (the latent stage) keep them.

    Returns:
        The sample table (footprints in EPSG:4326) and the N×C×H×W arrays, rows sorted by sample id.
        With pairs, the table has a ``pair_id`` column; a paired RGB chip takes its partner's
        split and spatial block (``paired:BLOCK``), so a pair never straddles two splits.
    """
    frames, arrays = [], {}
    n_classes = len(preset.labels.classes)
    paired = "pair_id" in chosen["rgb"].columns
    split_of: dict[str, tuple[str, str]] = {}
    for modality in MODALITIES:
        spec = getattr(preset, modality)
        chips = chosen[modality].sort_values("candidate_id").reset_index(drop=True)
        if paired and modality == "rgb":
            chips["pair_id"] = chips["pair_id"].fillna("").astype(str)
            _pair_splits(chips, split_of, preset.modality_split(modality), preset.seed, n_classes)
        else:
            split = preset.modality_split(modality)
            chips["split"] = assign_blocks(chips, split, preset.seed, n_classes) if len(chips) else []
            split_of.update(zip(chips["candidate_id"], zip(chips["split"], chips["block"])))
        records = chips["record"].tolist()
        hrefs = [
            json.dumps({b.name: r["item"]["assets"][b.asset] for b in spec.bands}, sort_keys=True)
            for r in records
        ]
        frame = pd.DataFrame({
            "sample_id": chips["candidate_id"],
            "modality": modality,
            "split": chips["split"],
            "label": chips["label"].astype(np.int64),
            "label_name": [preset.labels.classes[k] for k in chips["label"]],
            "crs": chips["crs"],
            "datetime": [r["item"]["datetime"] for r in records],
            "item_id": [r["item"]["id"] for r in records],
            "collection": spec.collection,
            "hrefs": hrefs,
            "cloud_fraction": [float(r["cloud_fraction"]) for r in records],
            "nodata_fraction": [float(r["nodata_fraction"]) for r in records],
            "purity": chips["purity"].astype(np.float64),
            "block": chips["block"],
            "array_index": np.arange(len(chips), dtype=np.int64),
        })
        if paired:
            frame["pair_id"] = chips["pair_id"] if modality == "rgb" else ""
        for column in LATENT_COLUMNS:
            if column in chips:
                frame[column] = chips[column]
        frame["geometry"] = _footprints_lonlat(chips)
        frames.append(frame)
        arrays[modality] = (np.stack(chips["array"].tolist()) if len(chips)
                            else np.zeros((0, len(spec.bands), spec.chip_px, spec.chip_px), spec.dtype))
    samples = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs="EPSG:4326")
    return samples, arrays


def _pair_splits(rgb: pd.DataFrame, ms_split: dict[str, tuple[str, str]], fractions, seed: int,
                 n_classes: int) -> None:
    """Paired RGB chips take their partner's split and block; the others get spatial blocks of their own."""
    rgb["split"] = ""
    has = rgb["pair_id"] != ""
    rgb.loc[has, "split"] = [ms_split[p][0] for p in rgb.loc[has, "pair_id"]]
    rgb.loc[has, "block"] = [f"paired:{ms_split[p][1]}" for p in rgb.loc[has, "pair_id"]]
    if (~has).any():
        rgb.loc[~has, "split"] = assign_blocks(rgb[~has], fractions, seed, n_classes)


def pair_days_apart(samples: gpd.GeoDataFrame) -> list[float]:
    """Days between the scenes of each pair (RGB chip and its MS partner), in sample order."""
    if "pair_id" not in samples.columns:
        return []
    when = dict(zip(samples["sample_id"], pd.to_datetime(samples["datetime"], utc=True, format="ISO8601")))
    rgb = samples[(samples["modality"] == "rgb") & (samples["pair_id"] != "")]
    return [abs((when[s] - when[p]).total_seconds()) / 86400.0 for s, p in zip(rgb["sample_id"], rgb["pair_id"])]


def consistency_block(preset: Preset, samples: gpd.GeoDataFrame) -> dict[str, Any]:
    """The manifest's ``consistency``: the mode asked for and what the data measure.

    ``overlap`` is measured from the footprints (share of RGB chips touching an MS chip), never
    copied from the preset. Builds with pairs add how many there are, how many were asked for,
    and how far apart in time the two scenes of a pair are.
    """
    block: dict[str, Any] = {"mode": preset.consistency, "overlap": measured_overlap(samples)}
    if "pair_id" in samples.columns:
        days = pair_days_apart(samples)
        block["pairs"] = len(days)
        block["pairs_wanted"] = round(preset.paired_fraction * preset.per_class) * len(preset.labels.classes)
        if days:
            block["days_apart"] = {"median": round(float(np.median(days)), 2), "max": round(float(max(days)), 2)}
    return block


def _footprints_lonlat(chips: pd.DataFrame) -> list:
    geoms = [None] * len(chips)
    for crs, part in chips.groupby("crs"):
        boxes = gpd.GeoSeries(
            [shapely.geometry.box(*b) for b in part[["minx", "miny", "maxx", "maxy"]].to_numpy()], crs=crs,
        ).to_crs(4326)
        for i, geom in zip(part.index, boxes):
            geoms[i] = geom
    return geoms


def measured_overlap(samples: gpd.GeoDataFrame) -> float:
    """Fraction of RGB chips whose footprint intersects some MS chip's footprint."""
    rgb = samples[samples["modality"] == "rgb"]
    ms = samples[samples["modality"] == "ms"]
    if rgb.empty or ms.empty:
        return 0.0
    hits = gpd.sjoin(rgb[["sample_id", "geometry"]], ms[["geometry"]], predicate="intersects")
    return float(hits["sample_id"].nunique() / len(rgb))


def build_manifest(preset: Preset, *, catalog_url: str, catalog_mode: str, queries: dict[str, list],
                   rejected: dict[str, Counter], shortfalls: dict[str, dict[str, int]],
                   samples: gpd.GeoDataFrame, extra: dict[str, Any]) -> dict[str, Any]:
    """Everything the manifest says besides counts, file checksums and fingerprint."""
    modalities = {}
    for modality in MODALITIES:
        spec = getattr(preset, modality)
        ms = modality == "ms"
        modalities[modality] = {
            "collection": spec.collection,
            "bands": spec.band_names,
            "gsd": spec.gsd,
            "dtype": spec.dtype,
            # MS is stored as L2A reflectance * 1e4 (processing-baseline offset removed); RGB as
            # the sensor's 8-bit digital numbers, which are not reflectance.
            "scale": 1e-4 if ms else 1.0,
            "offset": 0.0,
            "units": "reflectance" if ms else "digital numbers",
            "nodata": 0,
            "chip_px": spec.chip_px,
            "label_type": "single",
        }
    accepted = samples["modality"].value_counts()
    return {
        "name": preset.name,
        "version": preset.version,
        "taxonomy": [
            {"id": k, "name": name, "source_codes": preset.labels.source_codes(name)}
            for k, name in enumerate(preset.labels.classes)
        ],
        "modalities": modalities,
        "consistency": consistency_block(preset, samples),
        "provenance": {
            "catalog": extra.get("catalog", catalog_url),
            "catalog_mode": catalog_mode,
            "signed": preset.sign,
            "label_source": {"collection": preset.labels.collection, "asset": preset.labels.asset},
            "queries": queries,
            "preset": preset.to_dict(),
            "seed": preset.seed,
            "ackd_bench_version": package_version(),
            **{k: v for k, v in extra.items() if k != "catalog"},
            "qa": {
                m: {"accepted": int(accepted.get(m, 0)), "rejected": dict(sorted(rejected.get(m, {}).items()))}
                for m in MODALITIES
            },
            "shortfalls": shortfalls,
        },
        "splits": {
            "policy": "spatial blocks, class-balanced greedy assignment",
            "fractions": list(preset.split),
            **({"fractions_by_modality": {m: list(preset.modality_split(m)) for m in MODALITIES}}
               if any(getattr(preset, m).split is not None for m in MODALITIES) else {}),
            "block_m": {m: getattr(preset, m).chip_m * getattr(preset, m).block_chips for m in MODALITIES},
            "seed": preset.seed,
        },
    }
