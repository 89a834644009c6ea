"""Croissant 1.0 metadata (written with mlcroissant) and its records table, one row per chip."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ackd_bench.benchmark.dataset.export.common import (
    ExportError,
    card_description,
    check_license,
    chip_path,
    export_fingerprint,
    records_path,
)
from ackd_bench.benchmark.dataset.files import fsync_dir
from ackd_bench.benchmark.dataset.schema import MODALITIES
from ackd_bench.benchmark.dataset.store import Dataset, load_dataset

__all__ = ["check_croissant_target", "export_croissant", "write_croissant"]


def export_croissant(dataset: Path | Dataset, file: Path, *, stac_dir: Path | None = None, license: str = "other",
                     force: bool = False) -> Path:
    """Write Croissant 1.0 metadata to ``file`` and its records table beside it (``records_path``).

    Args:
        dataset: A dataset directory (verified first) or a loaded dataset.
        file: The Croissant JSON-LD file to write (``*.json``).
        stac_dir: A STAC export of the same dataset at or below ``file``'s folder: each record then
            names its chip's GeoTIFF by relative path, and a ``chips`` file set lists them.
        license: SPDX identifier of the data licence, or ``other``.
        force: Overwrite an existing ``file`` and records table.

    Returns:
        ``file``.

    Raises:
        ExportError: mlcroissant is missing, a target exists (without ``force``), or ``stac_dir``
            is not below ``file``'s folder or not an export of this dataset.
    """
    file = Path(file).absolute()
    check_license(license)
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    check_croissant_target(file, ds.root, force)
    chips = None
    if stac_dir is not None:
        stac_dir = Path(stac_dir).absolute()
        if not stac_dir.is_relative_to(file.parent):
            raise ExportError(f"put the Croissant file in {stac_dir} or above it, so that its records can "
                              f"name the chips by relative path (got {file})")
        if export_fingerprint(stac_dir) != ds.fingerprint:
            raise ExportError(f"{stac_dir} is not a STAC export of {ds.root}; run `ackd-bench export "
                              f"{ds.root} --stac {stac_dir}` first")
        chips = stac_dir.relative_to(file.parent).as_posix()
        chips = "" if chips == "." else chips
    file.parent.mkdir(parents=True, exist_ok=True)
    write_croissant(ds, file, chips=chips, license=license)
    return file


def check_croissant_target(file: Path, dataset_root: Path, force: bool) -> None:
    """Raise ExportError unless ``file`` (and its records table) may be written and mlcroissant is installed."""
    import importlib.util

    if importlib.util.find_spec("mlcroissant") is None:
        raise ExportError("Croissant export needs mlcroissant; install it with `pip install 'ackd-bench[croissant]'`")
    file = Path(file).absolute()
    if file.suffix != ".json":
        raise ExportError(f"the Croissant file must end in .json (got {file.name})")
    if file.parent.resolve().is_relative_to(Path(dataset_root).resolve()):
        raise ExportError(f"{file} is inside the dataset {dataset_root}; write it somewhere else")
    for target in (file, records_path(file)):
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise ExportError(f"{target} exists and is not a regular file; choose another --croissant file")
        if target.exists() and not force:
            raise ExportError(f"{target} already exists; pass --force to overwrite it")


# Records table columns: (name, Croissant data type, description). ``labels`` (multi-label datasets)
# and ``chip`` (next to a STAC export) are added when they apply.
RECORD_COLUMNS = [
    ("sample_id", "TEXT", "Unique chip id (also the STAC item id)."),
    ("modality", "TEXT", "Sensor modality: ms or rgb."),
    ("split", "TEXT", "Spatial-block split: train, val or test."),
    ("label", "INTEGER", "Class id, an index into the taxonomy (see label_name)."),
    ("label_name", "TEXT", "Class name of label."),
    ("labels", "TEXT", "Multi-label chips: every class name present, space-separated."),
    ("datetime", "TEXT", "Acquisition time of the source scene (ISO 8601, UTC)."),
    ("crs", "TEXT", "Native CRS of the chip's pixel grid."),
    ("west", "FLOAT", "Footprint bounds: west longitude (EPSG:4326)."),
    ("south", "FLOAT", "Footprint bounds: south latitude (EPSG:4326)."),
    ("east", "FLOAT", "Footprint bounds: east longitude (EPSG:4326)."),
    ("north", "FLOAT", "Footprint bounds: north latitude (EPSG:4326)."),
    ("lon", "FLOAT", "Footprint centroid longitude (EPSG:4326)."),
    ("lat", "FLOAT", "Footprint centroid latitude (EPSG:4326)."),
    ("footprint", "TEXT", "Chip footprint polygon as WKT (EPSG:4326)."),
    ("source_item", "TEXT", "STAC item id of the source scene."),
    ("source_collection", "TEXT", "STAC collection of the source scene."),
    ("array_file", "TEXT", "The dataset's N x C x H x W array that holds the chip (ms.npy or rgb.npy)."),
    ("array_index", "INTEGER", "Row of the chip in array_file."),
    ("chip", "TEXT", "The chip as a georeferenced GeoTIFF (path relative to this file)."),
]


def _records_csv(ds: Dataset, columns: list[str], chips: str | None) -> bytes:
    """The records table: one row per chip, ordered by modality, then array index."""
    order = ds.samples["modality"].map({m: i for i, m in enumerate(MODALITIES)})
    rows = ds.samples.iloc[np.lexsort((ds.samples["array_index"].to_numpy(), order.to_numpy()))]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows.itertuples(index=False):
        west, south, east, north = row.geometry.bounds
        centre = row.geometry.centroid
        labels = json.loads(row.labels) if getattr(row, "labels", "") else []
        value = {"labels": " ".join(ds.classes[k] for k in labels), "west": west, "south": south, "east": east,
                 "north": north, "lon": centre.x, "lat": centre.y, "footprint": row.geometry.wkt,
                 "source_item": row.item_id, "source_collection": row.collection,
                 "array_file": f"{row.modality}.npy", "chip": f"{chips}/{chip_path(row)}".lstrip("/")}
        writer.writerow([value[c] if c in value else getattr(row, c) for c in columns])
    return buf.getvalue().encode("utf-8")


def write_croissant(ds: Dataset, file: Path, *, chips: str | None, license: str) -> None:
    """Write the records table and ``file`` (Croissant JSON-LD): both staged, then renamed."""
    import mlcroissant as mlc

    skip = {"labels"} - set(ds.samples.columns) | (set() if chips is not None else {"chip"})
    columns = [c for c in RECORD_COLUMNS if c[0] not in skip]
    table = _records_csv(ds, [c[0] for c in columns], chips)
    records = records_path(file).name
    fields = [mlc.Field(id=f"samples/{name}", name=name, description=text, data_types=[getattr(mlc.DataType, kind)],
                        source=mlc.Source(file_object=records, extract=mlc.Extract(column=name)))
              for name, kind, text in columns]
    distribution: list[Any] = [mlc.FileObject(
        id=records, name=records, description="One row per chip.", content_url=records,
        encoding_formats=["text/csv"], sha256=hashlib.sha256(table).hexdigest())]
    if chips is not None:
        distribution.append(mlc.FileSet(
            id="chips", name="chips", description="Every chip as a georeferenced GeoTIFF (the chip field).",
            includes=[f"{chips}/*/*/*/*.tif".lstrip("/")], encoding_formats=["image/tiff"]))
    m = ds.manifest
    metadata = mlc.Metadata(
        name=m["name"], description=card_description(ds), version=m["version"], license=[license],
        cite_as=f"{m['name']} {m['version']} (ackd-bench dataset, fingerprint sha256:{ds.fingerprint})",
        date_published=dt.datetime.now(dt.timezone.utc).replace(microsecond=0),
        keywords=["remote sensing", "cross-modal knowledge distillation", *MODALITIES], distribution=distribution,
        record_sets=[mlc.RecordSet(id="samples", name="samples", description="One record per chip.",
                                   key=["samples/sample_id"], fields=fields)])
    document = (json.dumps(metadata.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    staged = []
    try:
        for target, data in ((file.with_name(records), table), (file, document)):
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            staged.append((tmp, target))
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, target in staged:  # the table first: the metadata's presence marks a complete pair
            os.replace(tmp, target)
        fsync_dir(file.parent)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
