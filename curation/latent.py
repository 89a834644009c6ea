"""The latent stage: what is really on the ground of each chosen chip (format v2's ``latent_*`` columns).

With a preset's ``latent`` collection (truth rasters, such as the demo world's), each chip's true
class composition, the sub-type of its majority class and the mean appearance factors of that
class are read from the truth assets like any other asset. Without one, or for a chip no truth item
covers, the composition is the land-cover map's (the label grid the sample stage read), and the
sub-type and factors are unknown ("" and []).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
import shapely.geometry
from rasterio.enums import Resampling

from ackd_bench.benchmark.dataset.files import atomic_write_text
from ackd_bench.curation.pairing import lonlat_boxes
from ackd_bench.curation.parallel import ReadPool
from ackd_bench.curation.presets import LatentSpec, Preset
from ackd_bench.curation.reading import ItemRef, gdal_env, open_dataset, open_window
from ackd_bench.curation.remote import Remote

SUBTYPES_KEY, FACTORS_KEY, SOURCE_KEY = "ackd:subtypes", "ackd:factors", "ackd:truth_source"
ITEM_PROPERTIES = (SUBTYPES_KEY, FACTORS_KEY, SOURCE_KEY)  # kept with each truth item by the search stage
DIGITS = 6  # latent values are rounded to this many decimals


def latent_stage(catalog: Any, preset: Preset, modality: str, chosen: pd.DataFrame, work: Path, read_pool: ReadPool,
                 progress: Callable[[int], Any]) -> tuple[pd.DataFrame, list[ItemRef]]:
    """Each chosen chip's latent truth (:func:`read_latent`), read in parallel and kept in the work folder.

    Args:
        catalog: the catalogue of the truth collection (None without one).
        work: the build's work folder (its ``search-MODALITY.json`` lists the truth items found).
        progress: makes a progress bar for a number of chips (a context manager with ``update``).

    Returns:
        The chips with ``latent_composition``, ``latent_subtype`` and ``latent_factors``, and the
        truth items found for the modality's AOIs.
    """
    state = json.loads((work / f"search-{modality}.json").read_text())
    truth_items = [ItemRef(**d) for d in state.get("latent", [])]
    done = work / f"latent-{modality}.json"
    records = json.loads(done.read_text()) if done.exists() else {}
    todo = chosen[~chosen["candidate_id"].isin(set(records))]
    if len(todo):
        footprints = {d["id"]: shapely.geometry.shape(d["geometry"]) for d in state.get("latent_footprints", [])}
        covering = chip_truth_items(todo, truth_items, footprints) if truth_items else [None] * len(todo)
        crosswalk = {code: preset.labels.classes.index(name) for code, name in preset.labels.crosswalk}
        rows = todo[["candidate_id", "minx", "miny", "maxx", "maxy", "crs", "composition"]].to_dict("records")
        kwargs = {"spec": preset.latent, "crosswalk": crosswalk, "n_classes": len(preset.labels.classes),
                  "px": getattr(preset, modality).chip_px, "remote": catalog.signer if catalog is not None else None}
        if any(item is not None for item in covering):
            with progress(len(rows)) as bar:
                got = read_pool.map(read_latent, rows, covering, on_done=bar.update, **kwargs)
        else:  # nothing to read: the map's composition
            got = [read_latent(row, None, **kwargs) for row in rows]
        records.update({row["candidate_id"]: rec for row, rec in zip(rows, got)})
        atomic_write_text(done, json.dumps(records, sort_keys=True))
    chosen = chosen.copy()
    for column in ("latent_composition", "latent_subtype", "latent_factors"):
        chosen[column] = [records[c][column] for c in chosen["candidate_id"]]
    return chosen, truth_items


def latent_block(preset: Preset, truth_items: list[ItemRef]) -> dict[str, Any]:
    """The manifest's ``latent`` block: factor and sub-type names, and where the truth comes from."""
    if preset.latent is None or not truth_items:
        return {"factors": [], "subtypes": [], "source": f"land-cover map ({preset.labels.collection})"}
    first = truth_items[0].properties
    return {"factors": list(first.get(FACTORS_KEY, [])), "subtypes": list(first.get(SUBTYPES_KEY, [])),
            "source": str(first.get(SOURCE_KEY, preset.latent.collection))}


def chip_truth_items(chips: pd.DataFrame, truth_items: list[ItemRef], footprints: dict[str, Any]) -> list[ItemRef | None]:
    """For every chip, the first truth item (by id) whose footprint contains it, else None."""
    boxes = lonlat_boxes(chips).values
    ordered = sorted(truth_items, key=lambda it: it.id)
    inside = [shapely.contains(footprints[it.id], boxes) for it in ordered]
    return [next((it for it, hit in zip(ordered, inside) if hit[i]), None) for i in range(len(chips))]


def read_latent(chip: dict[str, Any], item: ItemRef | None, *, spec: LatentSpec | None, crosswalk: dict[int, int],
                n_classes: int, px: int, remote: Remote) -> dict[str, Any]:
    """The latent record of one chip (a candidate row with bounds, ``crs`` and map ``composition``).

    The truth rasters are sampled (nearest) at the centres of the chip's ``px`` × ``px`` pixels,
    whatever their own resolution: every chip pixel counts once.

    Returns:
        ``latent_composition`` (class shares in taxonomy order, summing to 1), ``latent_subtype``
        ("" unknown) and ``latent_factors`` ([] unknown).
    """
    unknown = {"latent_composition": _normalised(chip["composition"]), "latent_subtype": "", "latent_factors": []}
    if spec is None or item is None:
        return unknown
    bounds = (chip["minx"], chip["miny"], chip["maxx"], chip["maxy"])
    with gdal_env(remote.policy):
        codes = _read_truth(remote, item.assets[spec.class_asset], chip["crs"], bounds, px)
        if codes is None:
            return unknown
        classes = np.full(codes.shape[1:], -1, np.int64)
        for code, k in crosswalk.items():
            classes[codes[0] == code] = k
        counts = np.bincount(classes[classes >= 0], minlength=n_classes).astype(np.float64)
        if counts.sum() == 0:
            return unknown
        majority = classes == int(np.argmax(counts))
        record = {"latent_composition": _normalised(counts), "latent_subtype": "", "latent_factors": []}
        names = item.properties.get(SUBTYPES_KEY, [])
        if spec.subtype_asset in item.assets and names:
            ids = _read_truth(remote, item.assets[spec.subtype_asset], chip["crs"], bounds, px)[0][majority]
            ids = ids[(ids > 0) & (ids <= len(names))]
            if len(ids):
                record["latent_subtype"] = names[int(np.argmax(np.bincount(ids)) - 1)]
        if spec.factors_asset in item.assets and item.properties.get(FACTORS_KEY):
            bands = _read_truth(remote, item.assets[spec.factors_asset], chip["crs"], bounds, px, scaled=True)
            record["latent_factors"] = [round(float(b[majority].sum() / majority.sum()), DIGITS) for b in bands]
    return record


def _normalised(counts: Any) -> list[float]:
    """Shares that sum to 1 (rounded; the largest share absorbs the rounding)."""
    counts = np.asarray(counts, np.float64)
    shares = np.round(counts / counts.sum(), DIGITS)
    shares[int(np.argmax(shares))] += 1.0 - shares.sum()
    return [round(float(v), DIGITS) + 0.0 for v in shares]


def _read_truth(remote: Remote, href: str, crs: str, bounds: tuple[float, ...], px: int, scaled: bool = False
                ) -> np.ndarray | None:
    """Every band of a truth asset at the centres of the chip's px × px pixels (nearest).

    With ``scaled``, values are multiplied by each band's scale (float64).
    """
    def read(readable: str) -> np.ndarray | None:
        with open_dataset(readable) as src:
            ds, window, inside = open_window(src, crs, bounds)
            try:
                if not inside:
                    return None
                shape = (ds.count, px, px)
                values = ds.read(window=window, out_shape=shape, resampling=Resampling.nearest)
                if scaled:
                    return values.astype(np.float64) * np.asarray(ds.scales, np.float64)[:, None, None]
                return values
            finally:
                if ds is not src:
                    ds.close()

    return remote.read(href, read)
