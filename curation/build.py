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

import numpy as np
import pandas as pd
import rasterio
import shapely
import shapely.geometry

from ackd_bench.benchmark.boundary import InputError, check_output_dir
from ackd_bench.benchmark.dataset import is_complete_dataset, write_dataset
from ackd_bench.benchmark.dataset.files import atomic_write_text
from ackd_bench.benchmark.errors import AckdBenchError, DatasetExistsError
from ackd_bench.curation.assemble import MODALITIES, assemble, build_manifest
from ackd_bench.curation.catalog_profiles import OFFSET_PROPERTIES
from ackd_bench.curation.latent import ITEM_PROPERTIES, latent_block, latent_stage
from ackd_bench.curation.pairing import lonlat_boxes, plan_consistency, select_consistent
from ackd_bench.curation.parallel import ReadPool
from ackd_bench.curation.presets import DEMO_CATALOG, ModalitySpec, Preset
from ackd_bench.curation.reading import ItemRef, close_open_datasets, gdal_env, rank_items, read_chip
from ackd_bench.curation.remote import RemoteError, RetryPolicy
from ackd_bench.curation.sampling import (
    ChipGrid, candidate_chips, plan_grid, rank_candidates, read_label_grid,
)
from ackd_bench.curation.stac import Catalog, CatalogError

# Candidates tried per class in the first read round, relative to the number wanted: enough
# to absorb typical cloud/nodata rejections without reading far more chips than kept.
FIRST_ROUND_FACTOR = 1.25
BATCH = 128
REJECTS_FILE = "rejects.parquet"  # every candidate chip that was read and rejected, and why


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


def build_dataset(preset: Preset, out: Path, *, workers: int = 4, scheduler: str | None = None,
                  progress: bool = True, force: bool = False, retry: RetryPolicy | None = None,
                  allow_shortfall: bool = False) -> BuildReport:
    """Build the benchmark described by ``preset`` into ``out`` (the dataset format).

    Each stage's result is kept in a work folder beside ``out`` (``.NAME.build-KEY``), so a
    build that was interrupted resumes where it stopped; the dataset appears at ``out`` only
    when complete (atomic rename), and the work folder is removed then.

    Args:
        preset: what to build (catalogue, AOIs, taxonomy, thresholds, seed).
        out: the dataset directory to create.
        workers: dask workers of the local cluster that reads the chips (threads of this process,
            each reading ``parallel.READS_PER_WORKER`` chips at a time); ignored with an address.
        scheduler: None for a local dask cluster; ``"tcp://HOST:PORT"`` to read on a running
            dask cluster; ``"threads"`` (this process) or ``"sync"`` (sequential). The dataset is
            the same whichever runs the reads.
        progress: show progress bars on stderr.
        force: rebuild even when ``out`` already holds this very build (same preset, catalogue).
        retry: retries and timeouts of STAC requests and COG reads (default `RetryPolicy()`).
            Chips whose reads still fail are replaced like QA rejects and listed in
            ``rejects.parquet`` with every attempt; retries that succeed leave the dataset unchanged.
        allow_shortfall: accept classes with fewer chips than asked (at least one each), with a
            warning and the counts in ``provenance.shortfalls``; by default a shortfall is a
            `BuildError` and nothing is written (the finished stages are kept for the rerun).

    Raises:
        CatalogError: the catalogue cannot be opened or searched.
        DatasetExistsError: ``out`` is a file or a foreign non-empty directory.
        BuildError: a class falls short of the chips asked for (see ``allow_shortfall``), the
            catalogue cannot provide a class at all, or the preset is inconsistent.
        SchedulerError: ``scheduler`` cannot be reached or was lost (finished reads are kept).
    """
    out = Path(out)
    complete = _check_out(out)
    _check_disjoint(preset)
    if complete and not force and (done := _finished_build(out, preset)) is not None:
        return done
    catalog_url, extra = _resolve_catalog(preset, progress)
    sources = {source: preset.source_catalog(source)[0] for source in _sources(preset)}
    if len(set(sources.values())) > 1:  # a profile's `via`: some source has a catalogue of its own
        extra["catalogs"] = sources
    key = hashlib.sha256(json.dumps([preset.to_dict(), extra], sort_keys=True).encode()).hexdigest()[:12]
    work = out.parent / f".{out.name}.build-{key}"
    catalogs = _open_catalogs(preset, catalog_url, retry)  # a catalogue that cannot be opened leaves no trace
    work.mkdir(parents=True, exist_ok=True)
    catalog = catalogs["ms"]
    read_pool = ReadPool(workers=workers, scheduler=scheduler)  # a local cluster starts on the first read

    queries, chosen, rejects, report = {}, {}, {}, BuildReport(out=out, fingerprint="", counts={})
    plan = plan_consistency(preset)  # which AOIs each modality samples (asymmetric: its own)
    specs = {m: plan.spec(preset, m) for m in MODALITIES}
    items, candidates = {}, {}
    for modality in MODALITIES:
        items[modality], grids, queries[modality] = _search_stage(
            catalogs[modality], preset, specs[modality], modality, work, progress, label_catalog=catalogs["labels"],
            latent_catalog=catalogs.get("latent"))
        candidates[modality] = _sample_stage(catalogs["labels"], preset, specs[modality], modality, grids, work, progress)

    def read(modality: str, subset: pd.DataFrame, per_class: int) -> pd.DataFrame:
        got, counts, rejected = _read_stage(catalogs[modality], preset.with_overrides(per_class=per_class),
                                            specs[modality], modality, subset, items[modality], work, read_pool, progress)
        report.rejected[modality] = report.rejected.get(modality, Counter()) + counts
        rejects[modality] = rejects.get(modality, []) + rejected
        return got

    if plan.fraction == 0.0:
        chosen = {m: read(m, candidates[m], preset.modality_per_class(m)) for m in MODALITIES}
    else:
        rgb_state = json.loads((work / "search-rgb.json").read_text())
        footprints = [shapely.geometry.shape(f["geometry"]) for f in rgb_state["footprints"]]
        chosen = select_consistent(preset, plan, candidates, footprints, read)
    for modality in MODALITIES:
        report.rejected.setdefault(modality, Counter())
        rejects.setdefault(modality, [])
        short = _shortfall(chosen[modality], preset, modality)
        if short:
            report.shortfalls[modality] = short
    _check_shortfalls(report.shortfalls, preset, rejects, allow_shortfall)
    truth_items = {}
    for modality in MODALITIES:
        chosen[modality], truth_items[modality] = latent_stage(
            catalogs.get("latent"), preset, modality, chosen[modality], work, read_pool,
            lambda n: _progress(n, progress, f"latent {modality}"))

    read_pool.close()
    close_open_datasets()  # the handles this thread kept (scheduler "sync"); workers' went with them
    samples, arrays = assemble(preset, chosen)
    manifest = build_manifest(
        preset, catalog_url=catalog_url, catalog_mode="api" if catalog.is_api else "static",
        queries=queries, rejected=report.rejected, shortfalls=report.shortfalls, samples=samples, extra=extra,
    )
    manifest["latent"] = latent_block(preset, truth_items["ms"] + truth_items["rgb"])
    write_dataset(out, manifest=manifest, samples=samples, arrays=arrays, card=_card_and_rejects(preset, rejects))
    _print_read_summary(out, rejects)
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
    try:
        check_output_dir(out)
    except InputError as err:
        raise DatasetExistsError(str(err)) from None
    if not (out.is_dir() and any(out.iterdir())):
        return False
    if not is_complete_dataset(out):
        raise DatasetExistsError(
            f"--out {out} is a non-empty directory that is not an ackd-bench dataset; choose another path"
        )
    return True


def _check_disjoint(preset: Preset) -> None:
    """Chips that must not be co-located come from disjoint AOIs (asymmetric, and partial's unpaired chips)."""
    if preset.paired_fraction == 1.0:
        return  # paired: both modalities come from the shared AOIs only
    rgb_aois = preset.rgb.aois + (preset.shared_aois() if preset.paired_fraction else ())
    ms = shapely.union_all([shapely.geometry.box(*a) for a in preset.ms.aois])
    rgb = shapely.union_all([shapely.geometry.box(*a) for a in rgb_aois])
    if ms.intersects(rgb) and ms.intersection(rgb).area > 0:
        raise BuildError(
            f"preset {preset.name!r} is {preset.consistency} but its MS and RGB AOIs overlap; make them disjoint"
            " (or build it with --consistency paired)"
        )


def _resolve_catalog(preset: Preset, progress: bool) -> tuple[str, dict[str, Any]]:
    if preset.catalog != DEMO_CATALOG:
        return preset.catalog, {"catalog": preset.catalog}
    from ackd_bench.curation.demo.world import DEMO_WORLD_VERSION, cached_demo_catalog

    # Co-located chips come from the pair site, rendered only into worlds that need it.
    pair_site = preset.paired_fraction > 0
    path = cached_demo_catalog(progress=progress, pair_site=pair_site)
    return str(path), {"catalog": DEMO_CATALOG, "demo_world_version": DEMO_WORLD_VERSION,
                       **({"demo_pair_site": True} if pair_site else {})}


def _sources(preset: Preset) -> tuple[str, ...]:
    """What a build reads: the two modalities, the labels, and the truth rasters when the preset names them."""
    return ("ms", "rgb", "labels", "latent") if preset.latent is not None else ("ms", "rgb", "labels")


def _open_catalogs(preset: Preset, main_url: str, retry: RetryPolicy | None) -> dict[str, Catalog]:
    """The catalogue of each source (ms, rgb, labels, latent); one client per distinct (URL, signing)."""
    opened: dict[tuple[str, bool], Catalog] = {}
    catalogs = {}
    for source in _sources(preset):
        url, sign = preset.source_catalog(source)
        url = main_url if url == preset.catalog else url  # the main one, the demo resolved to its path
        if (url, sign) not in opened:
            opened[(url, sign)] = Catalog(url, sign=sign, retry=retry)
        catalogs[source] = opened[(url, sign)]
    return catalogs


def _item_ref(item, catalog: Catalog) -> ItemRef:
    from pystac.extensions.projection import ProjectionExtension

    # pystac migrates PC's proj:epsg to proj:code on read; the extension reads either.
    epsg = ProjectionExtension.ext(item).epsg if ProjectionExtension.has_extension(item) else None
    keep = ("eo:cloud_cover", "naip:year", "s2:mgrs_tile", *OFFSET_PROPERTIES, *ITEM_PROPERTIES)
    return ItemRef(
        id=item.id, collection=item.collection_id or "",
        datetime=(item.datetime or item.common_metadata.start_datetime).isoformat().replace("+00:00", "Z"),
        epsg=epsg, assets={k: catalog.href(item, k) for k in item.assets},
        properties={k: item.properties[k] for k in keep if k in item.properties},
    )


def _search_stage(catalog: Catalog, preset: Preset, spec: ModalitySpec, modality: str, work: Path,
                  progress: bool, *, label_catalog: Catalog | None = None, latent_catalog: Catalog | None = None,
                  ) -> tuple[list[ItemRef], list[ChipGrid], list[dict]]:
    """One search per AOI for the imagery, one for the labels (in ``label_catalog``, default
    ``catalog``) and, with a preset's ``latent`` collection, one for the truth rasters (in
    ``latent_catalog``); the chip grid of each AOI."""
    label_catalog = label_catalog or catalog
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
    truth: dict[str, ItemRef] = {}
    truth_footprints: dict[str, dict] = {}
    for i, aoi in enumerate(_bar(spec.aois, progress, f"search {modality}")):
        found = catalog.search(collection=spec.collection, bbox=aoi, datetime_range=spec.datetime, query=query)
        lab = label_catalog.search(collection=preset.labels.collection, bbox=aoi,
                                   datetime_range=preset.labels.datetime or "../..")
        queries += [found.query, lab.query]
        if not found.items:
            raise CatalogError(f"no {spec.collection} items in {catalog.url} for AOI {aoi} and {spec.datetime}",
                               url=catalog.url)
        if not lab.items:
            raise CatalogError(f"no {preset.labels.collection} items in {label_catalog.url} cover AOI {aoi}",
                               url=label_catalog.url)
        refs = [_item_ref(it, catalog) for it in found.items]
        missing = sorted({b.asset for b in spec.bands} - set(refs[0].assets))
        if missing:
            raise CatalogError(f"{spec.collection} items lack asset(s) {', '.join(missing)}", url=catalog.url)
        items.update({r.id: r for r in refs})
        footprints.update({it.id: it.geometry for it in found.items})
        labels[str(i)] = [_item_ref(it, label_catalog) for it in lab.items]
        if preset.latent is not None:
            found_truth = latent_catalog.search(collection=preset.latent.collection, bbox=aoi, datetime_range="../..")
            queries.append(found_truth.query)
            truth.update({it.id: _item_ref(it, latent_catalog) for it in found_truth.items})
            truth_footprints.update({it.id: it.geometry for it in found_truth.items})
        grids.append(_grid_for(catalog, i, aoi, refs, spec))
    state = {"items": [r.to_dict() for r in items.values()], "labels": {k: [r.to_dict() for r in v] for k, v in labels.items()},
             "grids": [g.__dict__ for g in grids], "queries": queries,
             "footprints": [{"id": k, "geometry": v} for k, v in sorted(footprints.items())],
             "latent": [truth[k].to_dict() for k in sorted(truth)],
             "latent_footprints": [{"id": k, "geometry": v} for k, v in sorted(truth_footprints.items())]}
    atomic_write_text(done, json.dumps(state, sort_keys=True))
    return list(items.values()), grids, queries


def _grid_for(catalog: Catalog, index: int, aoi, refs: list[ItemRef], spec: ModalitySpec) -> ChipGrid:
    """The chip grid of an AOI: in the imagery's most common CRS, aligned to its pixel grid."""
    epsgs = Counter(r.epsg for r in refs if r.epsg)
    ref = next((r for r in refs if r.epsg == epsgs.most_common(1)[0][0]), refs[0]) if epsgs else refs[0]
    try:
        with gdal_env(catalog.retry):
            crs, origin = catalog.signer.read(ref.assets[spec.bands[0].asset], _grid_origin)
    except RemoteError as err:
        raise CatalogError(f"cannot plan the chip grid of AOI {aoi}: {err}", url=err.url,
                           status=err.failure.status) from err
    return plan_grid(index, aoi, crs, spec, origin=origin)


def _grid_origin(href: str) -> tuple[str, tuple[float, float]]:
    with rasterio.open(href) as src:
        crs = f"EPSG:{src.crs.to_epsg()}" if src.crs.to_epsg() else src.crs.to_wkt()
        return crs, (src.transform.c, src.transform.f)


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
    """For every candidate chip, the items whose footprint contains it, in preference order.

    A ``prefer`` column, where candidates have one, overrides ``prefer`` per chip (paired MS
    chips prefer the scene nearest their RGB partner's date).
    """
    boxes = lonlat_boxes(candidates)  # each row in its own CRS (AOIs may lie in several UTM zones)
    inside = {it.id: shapely.contains(footprints[it.id], boxes.values) for it in items}
    wishes = candidates["prefer"].tolist() if "prefer" in candidates else [prefer] * len(candidates)
    ranked = {wish: rank_items(items, wish) for wish in set(wishes)}
    return {cid: [it for it in ranked[wish] if inside[it.id][i]]
            for i, (cid, wish) in enumerate(zip(candidates["candidate_id"], wishes))}


def _read_stage(catalog: Catalog, preset: Preset, spec: ModalitySpec, modality: str,
                candidates: pd.DataFrame, items: list[ItemRef], work: Path, read_pool: ReadPool,
                progress: bool) -> tuple[pd.DataFrame, Counter, list[dict[str, Any]]]:
    """Read chips class by class in rank order until ``per_class`` pass QA (or candidates run out).

    Returns:
        The chosen chips, rejections counted by kind, and the read record of every rejected chip.
    """
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
        _read_batches(catalog, preset, spec, modality, batch, chip_items, work, read_pool, progress, results, arrays)
        factor = 1.5  # later rounds only top up classes whose chips were rejected more often
    rejected = [results[c] for c in sorted(results) if results[c]["reject"]]
    return _select(preset, candidates, results, arrays), Counter(_reason_kind(r["reject"]) for r in rejected), rejected


def _read_batches(catalog, preset, spec, modality, batch, chip_items, work, read_pool, progress, results, arrays):
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
            # Workers get the rows, their items and a picklable `Remote`, never the catalogue client.
            reads = read_pool.map(
                read_chip, chunk, [chip_items[r["candidate_id"]] for r in chunk], on_done=bar.update,
                spec=spec, max_cloud=preset.max_cloud, max_nodata=preset.max_nodata, remote=catalog.signer,
            )
            _save_batch(work, modality, name, chunk, reads, results, arrays)


def _save_batch(work: Path, modality: str, name: str, chunk: list[dict], reads, results, arrays) -> None:
    records, stack = [], []
    for row, got in zip(chunk, reads):
        rec = {
            "candidate_id": row["candidate_id"], "label": int(row["label"]), "reject": got.reject,
            "item": got.item.to_dict() if got.item else None, "cloud_fraction": got.cloud_fraction,
            "nodata_fraction": got.nodata_fraction, "attempts": got.attempts,
            "failure": got.failure, "retries": got.retries,
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


def _check_shortfalls(shortfalls: dict[str, dict[str, int]], preset: Preset,
                      rejects: dict[str, list[dict[str, Any]]], allow: bool) -> None:
    """Refuse a short build (an empty class always; any shortfall unless ``allow``), naming why chips were lost."""
    for modality, short in shortfalls.items():
        wanted = preset.modality_per_class(modality)
        counts = ", ".join(f"{name} {n}" for name, n in short.items())
        lost = Counter(_reason_kind(r["reject"]) for r in rejects.get(modality, []))
        why = (f"; rejected candidates: {', '.join(f'{k} {v}' for k, v in lost.most_common(3))}" if lost
               else "; the catalogue offered no more candidates")
        if not allow or 0 in short.values():
            empty = [name for name, n in short.items() if n == 0]
            hint = (f"{', '.join(empty)} would be empty, which no dataset may be" if empty and allow
                    else "or rerun with --allow-shortfall to accept a short dataset (recorded in dataset.json)")
            raise BuildError(f"{modality}: fewer than the {wanted} chips per class asked for ({counts} chips){why}; "
                             f"check the catalogue and AOIs, lower --per-class, {hint}")
        print(f"warning: {modality}: fewer than {wanted} chips for {short}; recorded in provenance.shortfalls",
              file=sys.stderr)


def _shortfall(chosen: pd.DataFrame, preset: Preset, modality: str) -> dict[str, int]:
    counts = chosen["label"].value_counts()
    return {name: int(counts.get(k, 0)) for k, name in enumerate(preset.labels.classes)
            if counts.get(k, 0) < preset.modality_per_class(modality)}


def _rejects_table(preset: Preset, rejects: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """One row per rejected candidate: which chip, why, and (read failures) which href and each attempt."""
    rows, seen = [], set()
    for modality, records in rejects.items():
        for rec in records:
            if (modality, rec["candidate_id"]) in seen:
                continue  # a candidate offered to several read rounds is read (and listed) once
            seen.add((modality, rec["candidate_id"]))
            failure = rec.get("failure")
            rows.append({
                "candidate_id": rec["candidate_id"], "modality": modality, "label": rec["label"],
                "label_name": preset.labels.classes[rec["label"]],
                "kind": "read" if failure else "qa", "reason": _reason_kind(rec["reject"]), "detail": rec["reject"],
                "item_id": (rec.get("item") or {}).get("id"), "href": failure["href"] if failure else None,
                "status": failure["status"] if failure else None,
                "attempts": json.dumps(failure["attempts"] if failure else rec["attempts"], sort_keys=True),
            })
    columns = ["candidate_id", "modality", "label", "label_name", "kind", "reason", "detail", "item_id", "href",
               "status", "attempts"]
    table = pd.DataFrame(rows, columns=columns).sort_values(["modality", "candidate_id"], ignore_index=True)
    return table.astype({"label": "int64", "status": "Int64"})


def _card_and_rejects(preset: Preset, rejects: dict[str, list[dict[str, Any]]]):
    """The ``card`` writer of `write_dataset`, plus ``rejects.parquet`` (checksummed like the card)."""
    from ackd_bench.curation.card import write_card

    table = _rejects_table(preset, rejects)

    def write(staging: Path, manifest, samples, arrays) -> None:
        write_card(staging, manifest, samples, arrays)
        table.to_parquet(staging / REJECTS_FILE, index=False)

    return write


def _print_read_summary(out: Path, rejects: dict[str, list[dict[str, Any]]]) -> None:
    """Warn about chips lost to read failures, counted by reason; they are listed in rejects.parquet."""
    for modality, records in rejects.items():
        failed = Counter({r["candidate_id"]: r["failure"]["reason"] for r in records if r.get("failure")}.values())
        if failed:
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(failed.items()))
            print(f"warning: {modality}: {sum(failed.values())} chips could not be read after retries ({counts}); "
                  f"they were replaced and are listed with every attempt in {out / REJECTS_FILE}", file=sys.stderr)


def _reason_kind(reason: str) -> str:
    return reason.split(" ", 1)[0] if reason.split(" ", 1)[0] in ("cloud", "nodata") else reason.split(":")[0]


def _bar(seq, progress: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(seq, desc=desc, disable=not progress, leave=False, file=sys.stderr)


def _progress(total: int, progress: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, unit="chip", file=sys.stderr)
