"""`build-dataset`: runs plan → search → sample → read/QA → split → write, resumably."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
import shapely.geometry

from ackd_bench.benchmark.dataset import atomic_write_text, is_complete_dataset, write_dataset
from ackd_bench.benchmark.errors import AckdBenchError, DatasetExistsError
from ackd_bench.curation.assemble import MODALITIES, assemble, build_manifest
from ackd_bench.curation.parallel import map_threads
from ackd_bench.curation.presets import DEMO_CATALOG, ModalitySpec, Preset
from ackd_bench.curation.reading import ItemRef, gdal_env, rank_items, read_chip
from ackd_bench.curation.sampling import (
    ChipGrid, candidate_chips, plan_grid, rank_candidates, read_label_grid,
)
from ackd_bench.curation.stac import Catalog, CatalogError

# Candidates tried per class in the first read round, relative to the number wanted: enough
# to absorb typical cloud/nodata rejections without reading far more chips than kept.
FIRST_ROUND_FACTOR = 1.25
BATCH = 128


class BuildError(AckdBenchError):
    """A build cannot go on (no data for a class, overlapping AOIs in asymmetric mode, ...)."""


@dataclass
class BuildReport:
    """What a finished build did, for the CLI summary and the manifest."""

    out: Path
    fingerprint: str
    counts: dict[str, Any]
    rejected: dict[str, Counter] = field(default_factory=dict)
    shortfalls: dict[str, dict[str, int]] = field(default_factory=dict)


def build_dataset(preset: Preset, out: Path, *, workers: int = 4, progress: bool = True,
                  force: bool = False) -> BuildReport:
    """Build the benchmark described by ``preset`` into ``out`` (dataset format v1).

    Each stage's result is kept in a work folder beside ``out`` (``.NAME.build-KEY``), so a
    build that was interrupted resumes where it stopped; the dataset appears at ``out`` only
    when complete (atomic rename), and the work folder is removed then.

    Args:
        preset: what to build (catalogue, AOIs, taxonomy, thresholds, seed).
        out: the dataset directory to create.
        workers: concurrent chip reads.
        progress: show progress bars on stderr.
        force: rebuild even when ``out`` already holds this very build (same preset, catalogue).

    Raises:
        CatalogError: the catalogue cannot be opened or searched.
        DatasetExistsError: ``out`` is a file or a foreign non-empty directory.
        BuildError: the catalogue cannot provide a class at all, or the preset is inconsistent.
    """
    out = Path(out)
    complete = _check_out(out)
    _check_disjoint(preset)
    if complete and not force and (done := _finished_build(out, preset)) is not None:
        return done
    catalog_url, extra = _resolve_catalog(preset, progress)
    key = hashlib.sha256(json.dumps([preset.to_dict(), extra], sort_keys=True).encode()).hexdigest()[:12]
    work = out.parent / f".{out.name}.build-{key}"
    work.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(catalog_url, sign=preset.sign)

    queries, chosen, report = {}, {}, BuildReport(out=out, fingerprint="", counts={})
    for modality in MODALITIES:
        spec: ModalitySpec = getattr(preset, modality)
        items, grids, queries[modality] = _search_stage(catalog, preset, spec, modality, work, progress)
        candidates = _sample_stage(catalog, preset, spec, modality, grids, work, progress)
        chosen[modality], report.rejected[modality] = _read_stage(
            catalog, preset, spec, modality, candidates, items, work, workers, progress,
        )
        short = _shortfall(chosen[modality], preset)
        if short:
            report.shortfalls[modality] = short
            print(f"warning: {modality}: fewer than {preset.per_class} chips for {short}", file=sys.stderr)

    samples, arrays = assemble(preset, chosen)
    manifest = build_manifest(
        preset, catalog_url=catalog_url, catalog_mode="api" if catalog.is_api else "static",
        queries=queries, rejected=report.rejected, shortfalls=report.shortfalls, samples=samples, extra=extra,
    )
    from ackd_bench.curation.card import write_card

    write_dataset(out, manifest=manifest, samples=samples, arrays=arrays, card=write_card)
    report.fingerprint = json.loads((out / "dataset.json").read_text())["fingerprint"]
    report.counts = json.loads((out / "dataset.json").read_text())["counts"]
    shutil.rmtree(work, ignore_errors=True)
    return report


def _finished_build(out: Path, preset: Preset) -> BuildReport | None:
    """The report of the (verified, complete) dataset at ``out`` if the same preset built it, else None."""
    manifest = json.loads((out / "dataset.json").read_text())
    if manifest["provenance"].get("preset") != preset.to_dict():
        return None
    return BuildReport(out=out, fingerprint=manifest["fingerprint"], counts=manifest["counts"])


def _check_out(out: Path) -> bool:
    """Refuse a file or a foreign folder at ``out``; True when it holds a complete dataset (verified once)."""
    if out.exists() and not out.is_dir():
        raise DatasetExistsError(f"--out {out} is a file; choose a directory path")
    if not (out.is_dir() and any(out.iterdir())):
        return False
    if not is_complete_dataset(out):
        raise DatasetExistsError(
            f"--out {out} is a non-empty directory that is not an ackd-bench dataset; choose another path"
        )
    return True


def _check_disjoint(preset: Preset) -> None:
    ms = shapely.union_all([shapely.geometry.box(*a) for a in preset.ms.aois])
    rgb = shapely.union_all([shapely.geometry.box(*a) for a in preset.rgb.aois])
    if ms.intersects(rgb) and ms.intersection(rgb).area > 0:
        raise BuildError(
            f"preset {preset.name!r} is asymmetric but its MS and RGB AOIs overlap; make them disjoint"
        )


def _resolve_catalog(preset: Preset, progress: bool) -> tuple[str, dict[str, Any]]:
    if preset.catalog != DEMO_CATALOG:
        return preset.catalog, {"catalog": preset.catalog}
    from ackd_bench.curation.demo_world import DEMO_WORLD_VERSION, cached_demo_catalog

    path = cached_demo_catalog(progress=progress)
    return str(path), {"catalog": DEMO_CATALOG, "demo_world_version": DEMO_WORLD_VERSION}


def _item_ref(item, catalog: Catalog) -> ItemRef:
    from pystac.extensions.projection import ProjectionExtension

    # pystac migrates PC's proj:epsg to proj:code on read; the extension reads either.
    epsg = ProjectionExtension.ext(item).epsg if ProjectionExtension.has_extension(item) else None
    keep = ("eo:cloud_cover", "s2:processing_baseline", "naip:year", "s2:mgrs_tile")
    return ItemRef(
        id=item.id, collection=item.collection_id or "",
        datetime=(item.datetime or item.common_metadata.start_datetime).isoformat().replace("+00:00", "Z"),
        epsg=epsg, assets={k: catalog.href(item, k) for k in item.assets},
        properties={k: item.properties[k] for k in keep if k in item.properties},
    )


def _search_stage(catalog: Catalog, preset: Preset, spec: ModalitySpec, modality: str, work: Path,
                  progress: bool) -> tuple[list[ItemRef], list[ChipGrid], list[dict]]:
    """One search per AOI for the imagery and one for the labels; the chip grid of each AOI."""
    done = work / f"search-{modality}.json"
    if done.exists():
        state = json.loads(done.read_text())
        items = [ItemRef(**d) for d in state["items"]]
        return items, [ChipGrid(**g) for g in state["grids"]], state["queries"]
    items: dict[str, ItemRef] = {}
    labels: dict[str, list[ItemRef]] = {}
    grids, queries = [], []
    query = {"eo:cloud_cover": {"lt": spec.max_item_cloud}} if spec.max_item_cloud is not None else None
    footprints: dict[str, dict] = {}
    for i, aoi in enumerate(_bar(spec.aois, progress, f"search {modality}")):
        found = catalog.search(collection=spec.collection, bbox=aoi, datetime_range=spec.datetime, query=query)
        lab = catalog.search(collection=preset.labels.collection, bbox=aoi, datetime_range="../..")
        queries += [found.query, lab.query]
        if not found.items:
            raise CatalogError(f"no {spec.collection} items in {catalog.url} for AOI {aoi} and {spec.datetime}",
                               url=catalog.url)
        if not lab.items:
            raise CatalogError(f"no {preset.labels.collection} items in {catalog.url} cover AOI {aoi}",
                               url=catalog.url)
        refs = [_item_ref(it, catalog) for it in found.items]
        missing = sorted({b.asset for b in spec.bands} - set(refs[0].assets))
        if missing:
            raise CatalogError(f"{spec.collection} items lack asset(s) {', '.join(missing)}", url=catalog.url)
        items.update({r.id: r for r in refs})
        footprints.update({it.id: it.geometry for it in found.items})
        labels[str(i)] = [_item_ref(it, catalog) for it in lab.items]
        grids.append(_grid_for(catalog, i, aoi, refs, spec))
    state = {"items": [r.to_dict() for r in items.values()], "labels": {k: [r.to_dict() for r in v] for k, v in labels.items()},
             "grids": [g.__dict__ for g in grids], "queries": queries,
             "footprints": [{"id": k, "geometry": v} for k, v in sorted(footprints.items())]}
    atomic_write_text(done, json.dumps(state, sort_keys=True))
    return list(items.values()), grids, queries


def _grid_for(catalog: Catalog, index: int, aoi, refs: list[ItemRef], spec: ModalitySpec) -> ChipGrid:
    """The chip grid of an AOI: in the imagery's most common CRS, aligned to its pixel grid."""
    epsgs = Counter(r.epsg for r in refs if r.epsg)
    ref = next((r for r in refs if r.epsg == epsgs.most_common(1)[0][0]), refs[0]) if epsgs else refs[0]
    href = catalog.readable_href(ref.assets[spec.bands[0].asset])
    with gdal_env(), rasterio.open(href) as src:
        crs = f"EPSG:{src.crs.to_epsg()}" if src.crs.to_epsg() else src.crs.to_wkt()
        origin = (src.transform.c, src.transform.f)
    return plan_grid(index, aoi, crs, spec, origin=origin)


def _sample_stage(catalog: Catalog, preset: Preset, spec: ModalitySpec, modality: str,
                  grids: list[ChipGrid], work: Path, progress: bool) -> pd.DataFrame:
    done = work / f"candidates-{modality}.parquet"
    if done.exists():
        return pd.read_parquet(done)
    state = json.loads((work / f"search-{modality}.json").read_text())
    frames = []
    for grid in _bar(grids, progress, f"labels {modality}"):
        label_items = [ItemRef(**d) for d in state["labels"][str(grid.aoi)]]
        codes = read_label_grid(catalog, preset.labels, label_items, grid, preset.purity_samples)
        frames.append(candidate_chips(codes, grid, preset.labels, preset.purity_samples, preset.purity,
                                      modality, spec.block_chips))
    ranked = rank_candidates(pd.concat(frames, ignore_index=True), preset.seed, len(preset.labels.classes))
    empty = [c for k, c in enumerate(preset.labels.classes) if not (ranked["label"] == k).any()]
    if empty:
        raise BuildError(
            f"{modality}: no chip of class(es) {', '.join(empty)} reaches purity {preset.purity:g} in the AOIs;"
            " enlarge the AOIs or lower --purity"
        )
    tmp = done.with_suffix(".tmp")
    ranked.to_parquet(tmp)
    tmp.replace(done)
    return ranked


def _chip_items(candidates: pd.DataFrame, items: list[ItemRef], footprints: dict[str, Any],
                prefer: str) -> dict[str, list[ItemRef]]:
    """For every candidate chip, the items whose footprint contains it, in preference order."""
    boxes = gpd.GeoSeries(
        [shapely.geometry.box(*b) for b in candidates[["minx", "miny", "maxx", "maxy"]].to_numpy()],
        crs=candidates["crs"].iloc[0],
    ).to_crs(4326)
    inside = {it.id: shapely.contains(footprints[it.id], boxes.values) for it in items}
    ranked = rank_items(items, prefer)
    return {cid: [it for it in ranked if inside[it.id][i]] for i, cid in enumerate(candidates["candidate_id"])}


def _read_stage(catalog: Catalog, preset: Preset, spec: ModalitySpec, modality: str,
                candidates: pd.DataFrame, items: list[ItemRef], work: Path, workers: int,
                progress: bool) -> tuple[pd.DataFrame, Counter]:
    """Read chips class by class in rank order until ``per_class`` pass QA (or candidates run out)."""
    state = json.loads((work / f"search-{modality}.json").read_text())
    footprints = {d["id"]: shapely.geometry.shape(d["geometry"]) for d in state["footprints"]}
    results: dict[str, dict[str, Any]] = {}
    arrays: dict[str, np.ndarray] = {}
    n_classes = len(preset.labels.classes)
    want = {k: preset.per_class for k in range(n_classes)}
    tried = {k: 0 for k in range(n_classes)}
    factor = FIRST_ROUND_FACTOR
    while True:
        todo = []
        for k in range(n_classes):
            ok = sum(1 for r in results.values() if r["label"] == k and r["reject"] is None)
            missing = want[k] - ok
            if missing <= 0:
                continue
            part = candidates[(candidates["label"] == k) & (candidates["rank"] >= tried[k])]
            take = part.nsmallest(int(np.ceil(missing * factor)) + 2, "rank")
            tried[k] += len(take)
            todo.append(take)
        todo = [t for t in todo if len(t)]
        if not todo:
            break
        batch = pd.concat(todo, ignore_index=True)
        chip_items = _chip_items(batch, items, footprints, spec.prefer)
        _read_batches(catalog, preset, spec, modality, batch, chip_items, work, workers, progress, results, arrays)
        factor = 1.5  # later rounds only top up classes whose chips were rejected more often
    return _select(preset, candidates, results, arrays), Counter(
        _reason_kind(r["reject"]) for r in results.values() if r["reject"]
    )


def _read_batches(catalog, preset, spec, modality, batch, chip_items, work, workers, progress, results, arrays):
    rows = batch.to_dict("records")
    chunks = [rows[i:i + BATCH] for i in range(0, len(rows), BATCH)]
    pending = []
    for chunk in chunks:
        ids = [r["candidate_id"] for r in chunk]
        name = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
        if not _load_batch(work, modality, name, results, arrays):
            pending.append((name, chunk))
    total = sum(len(c) for _, c in pending)
    if not total:
        return
    with _progress(total, progress, f"read {modality}") as bar:
        for name, chunk in pending:
            reads = map_threads(
                lambda r: read_chip(r, chip_items[r["candidate_id"]], spec, max_cloud=preset.max_cloud,
                                    max_nodata=preset.max_nodata, href_for=catalog.readable_href),
                chunk, workers=workers, on_done=bar.update,
            )
            _save_batch(work, modality, name, chunk, reads, results, arrays)


def _save_batch(work: Path, modality: str, name: str, chunk: list[dict], reads, results, arrays) -> None:
    records, stack = [], []
    for row, got in zip(chunk, reads):
        rec = {
            "candidate_id": row["candidate_id"], "label": int(row["label"]), "reject": got.reject,
            "item": got.item.to_dict() if got.item else None, "cloud_fraction": got.cloud_fraction,
            "nodata_fraction": got.nodata_fraction, "attempts": got.attempts,
        }
        if got.array is not None:
            rec["slot"] = len(stack)
            stack.append(got.array)
        records.append(rec)
    if stack:
        tmp = work / f"read-{modality}-{name}.tmp.npy"
        np.save(tmp, np.stack(stack))
        tmp.replace(work / f"read-{modality}-{name}.npy")
    # The record file is written last: its presence marks the batch complete.
    atomic_write_text(work / f"read-{modality}-{name}.json", json.dumps(records))
    _load_batch(work, modality, name, results, arrays)


def _load_batch(work: Path, modality: str, name: str, results, arrays) -> bool:
    rec_path = work / f"read-{modality}-{name}.json"
    if not rec_path.exists():
        return False
    records = json.loads(rec_path.read_text())
    stack = np.load(work / f"read-{modality}-{name}.npy") if any("slot" in r for r in records) else None
    for rec in records:
        if "slot" in rec:
            arrays[rec["candidate_id"]] = stack[rec["slot"]]
        results[rec["candidate_id"]] = rec
    return True


def _select(preset: Preset, candidates: pd.DataFrame, results: dict, arrays: dict) -> pd.DataFrame:
    ok = candidates[candidates["candidate_id"].map(lambda c: c in results and results[c]["reject"] is None)]
    keep = ok.sort_values(["label", "rank"]).groupby("label", sort=True).head(preset.per_class).copy()
    keep["record"] = keep["candidate_id"].map(results)
    keep["array"] = keep["candidate_id"].map(arrays)
    return keep


def _shortfall(chosen: pd.DataFrame, preset: Preset) -> dict[str, int]:
    counts = chosen["label"].value_counts()
    return {name: int(counts.get(k, 0)) for k, name in enumerate(preset.labels.classes)
            if counts.get(k, 0) < preset.per_class}


def _reason_kind(reason: str) -> str:
    return reason.split(" ", 1)[0] if reason.split(" ", 1)[0] in ("cloud", "nodata") else reason.split(":")[0]


def _bar(seq, progress: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(seq, desc=desc, disable=not progress, leave=False, file=sys.stderr)


def _progress(total: int, progress: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, unit="chip", file=sys.stderr)
