"""The dataset format (v2; v1 loads unchanged): write a dataset directory atomically, load, verify, summarise."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

from ackd_bench.benchmark.dataset.files import atomic_write_bytes, atomic_write_text, sha256_file
from ackd_bench.benchmark.dataset.read import read_dataset_parts
from ackd_bench.benchmark.dataset.schema import (
    LATENT_COLUMNS,
    MODALITIES,
    READABLE_SCHEMA_VERSIONS,
    SAMPLE_COLUMNS,
    SCHEMA_VERSION,
    SPLITS,
    FormatViolation,
    check_arrays,
    check_manifest,
    check_samples,
    compute_fingerprint,
)
from ackd_bench.benchmark.dataset.write import (
    FILLED_KEYS,
    CardWriter,
    check_target,
    clean_stale_staging,
    normalise_samples,
    swap_into_place,
    write_payload,
)
from ackd_bench.benchmark.errors import (
    DatasetCorruptError,
    DatasetNotFoundError,
    DatasetSchemaError,
)

__all__ = [
    "LATENT_COLUMNS",
    "MODALITIES",
    "READABLE_SCHEMA_VERSIONS",
    "SAMPLE_COLUMNS",
    "SCHEMA_VERSION",
    "SPLITS",
    "CardWriter",
    "Dataset",
    "atomic_write_bytes",
    "atomic_write_text",
    "compute_fingerprint",
    "is_complete_dataset",
    "latent_arrays",
    "load_dataset",
    "sha256_file",
    "summarize",
    "verify_dataset",
    "write_dataset",
]


def write_dataset(
    out_dir: Path,
    *,
    manifest: dict[str, Any],
    samples: gpd.GeoDataFrame,
    arrays: dict[str, np.ndarray],
    card: CardWriter | None = None,
) -> Path:
    """Write a complete dataset (format v2) to ``out_dir`` atomically.

    Everything is written and fsync'd in a staging dir beside ``out_dir``, which is then renamed
    onto it, so ``out_dir`` only ever holds a complete dataset. An existing dataset there is
    replaced only after the new one is complete; anything else there raises.

    Args:
        out_dir: Destination directory (created with its parents if missing).
        manifest: The caller's blocks (name, version, taxonomy, modalities, consistency,
            provenance, splits; ``latent`` with latent truth). On success it is updated in place
            with ``schema_version``, ``created_by``, ``counts``, ``files`` and ``fingerprint``.
        samples: One row per chip with exactly the format's columns, plus optional ones:
            ``pair_id``, ``labels``, and latent truth as the three columns ``latent_composition``
            (class shares, one per taxonomy class), ``latent_subtype`` ("" unknown) and
            ``latent_factors`` ([] unknown) on this GeoDataFrame, with the manifest's
            ``latent: {"factors", "subtypes", "source"}`` block (see ``dataset_schema``).
        arrays: ``{"ms": N_ms x C x H x W, "rgb": N_rgb x 3 x H x W}`` in the manifest dtypes.
        card: Called as ``card(staging_dir, manifest, samples, arrays)`` before checksumming,
            so the files it writes are listed in ``checksums.sha256``.

    Returns:
        ``out_dir``.

    Raises:
        DatasetSchemaError: The inputs break a format rule (nothing is written).
        DatasetExistsError: ``out_dir`` is a file, a link, or a foreign non-empty directory.
    """
    out_dir = Path(out_dir).absolute()
    check_target(out_dir)
    try:
        check_manifest(manifest)
        check_samples(samples, manifest, strict_dtypes=False)
        rows = samples["modality"].value_counts().to_dict()
        check_arrays(manifest, arrays, rows)
    except FormatViolation as exc:
        raise DatasetSchemaError(f"cannot write dataset: {exc.file}: {exc.reason}") from None
    table = normalise_samples(samples)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(out_dir.parent, out_dir.name)
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    staging.mkdir()
    try:
        filled = write_payload(staging, manifest, table, arrays, card)
        check_target(out_dir)  # something may have appeared there during a long build
        swap_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    manifest.update({key: filled[key] for key in FILLED_KEYS})
    return out_dir


@dataclass
class Dataset:
    """A loaded dataset: manifest, sample table and memory-mapped arrays.

    Attributes:
        root: The dataset directory.
        manifest: Parsed ``dataset.json``.
        samples: The sample table (GeoDataFrame, EPSG:4326 footprints).
        ms: ``N_ms x C x H x W`` multispectral chips (read-only memory map).
        rgb: ``N_rgb x 3 x H x W`` RGB chips (read-only memory map).
    """

    root: Path
    # Left out of repr: printing a dataset should not dump its table and arrays.
    manifest: dict[str, Any] = field(repr=False)
    samples: gpd.GeoDataFrame = field(repr=False)
    ms: np.ndarray = field(repr=False)
    rgb: np.ndarray = field(repr=False)

    @property
    def classes(self) -> list[str]:
        """Class names, indexed by class id."""
        return [entry["name"] for entry in self.manifest["taxonomy"]]

    @property
    def has_latent(self) -> bool:
        """True if the samples carry latent truth (format v2 ``latent_*`` columns)."""
        return "latent" in self.manifest

    @property
    def fingerprint(self) -> str:
        """The content fingerprint (sha256 hex): the exact bytes, as `inspect` verifies them."""
        return self.manifest["fingerprint"]

    @property
    def recipe_fingerprint(self) -> str:
        """The recipe fingerprint (sha256 hex): what the build chose (`compute_recipe_fingerprint`)."""
        return self.manifest["recipe_fingerprint"]

    def subset(self, modality: str, split: str) -> tuple[np.ndarray, np.ndarray, gpd.GeoDataFrame]:
        """Return the chips, int64 labels and sample rows of one modality and split.

        Rows are in array order. The chips are copied into memory (fancy indexing of the map).
        """
        if modality not in MODALITIES or split not in SPLITS:
            raise ValueError(f"modality must be in {MODALITIES} and split in {SPLITS}")
        mask = (self.samples["modality"] == modality) & (self.samples["split"] == split)
        rows = self.samples[mask].sort_values("array_index")
        index = rows["array_index"].to_numpy(dtype=np.int64)
        chips = np.asarray(getattr(self, modality)[index])
        return chips, rows["label"].to_numpy(dtype=np.int64), rows


def load_dataset(path: Path, *, verify: bool = True) -> Dataset:
    """Open a dataset (format v2, or v1); arrays are memory-mapped read-only.

    Args:
        path: The dataset directory.
        verify: Also run every check of :func:`verify_dataset` (hashes all files). Without it,
            only structure is checked: manifest, columns, dtypes, shapes and counts.

    Raises:
        DatasetNotFoundError: Nothing dataset-like at ``path``.
        DatasetCorruptError: A file is missing, altered or inconsistent.
    """
    manifest, samples, arrays, _ = read_dataset_parts(path, verify=verify)
    return Dataset(Path(path), manifest, samples, arrays["ms"], arrays["rgb"])


def verify_dataset(path: Path) -> dict[str, Any]:
    """Check a dataset completely and return a short report.

    Checks: files present, checksums, schema_version, parquet columns and dtypes, array
    shapes/dtypes against manifest and samples, counts against samples, and the fingerprint
    recomputed from the data.

    Returns:
        ``{"path", "name", "version", "schema_version", "fingerprint", "files_checked",
        "samples": {modality: n}, "unlisted_files": [...]}``.

    Raises:
        DatasetNotFoundError: Nothing dataset-like at ``path``.
        DatasetCorruptError: The first problem found, naming the file and the reason.
    """
    return read_dataset_parts(path, verify=True)[3]


def label_sets(rows: gpd.GeoDataFrame, n_classes: int) -> np.ndarray:
    """(N, K) float32 multi-hot class sets of sample rows: their ``labels`` lists when the
    modality is multi-label (non-empty entries), else one-hot of ``label``."""
    sets = np.zeros((len(rows), n_classes), dtype=np.float32)
    sets[np.arange(len(rows)), rows["label"].to_numpy(dtype=np.int64)] = 1.0
    if "labels" in rows.columns:
        for i, text in enumerate(rows["labels"]):
            if text:
                sets[i, json.loads(text)] = 1.0
    return sets


def latent_arrays(rows: gpd.GeoDataFrame, n_classes: int, n_factors: int) -> dict[str, np.ndarray]:
    """Latent truth of sample rows as arrays, in row order.

    Returns:
        ``composition`` (N, K) float64; ``subtype`` (N,) str ("" unknown); ``factors`` (N, F)
        float64, rows of NaN where unknown.

    Raises:
        ValueError: the rows carry no latent columns.
    """
    if not set(LATENT_COLUMNS) <= set(rows.columns):
        raise ValueError("these sample rows carry no latent truth columns")
    composition = np.zeros((len(rows), n_classes), dtype=np.float64)
    factors = np.full((len(rows), n_factors), np.nan, dtype=np.float64)
    for i, (c, f) in enumerate(zip(rows["latent_composition"], rows["latent_factors"])):
        composition[i] = c
        if len(f):
            factors[i] = f
    return {"composition": composition, "subtype": rows["latent_subtype"].to_numpy(dtype=str),
            "factors": factors}


def is_complete_dataset(path: Path) -> bool:
    """True if ``path`` holds a dataset that passes :func:`verify_dataset` (hashes every file)."""
    try:
        verify_dataset(path)
    except (DatasetNotFoundError, DatasetCorruptError):
        return False
    return True


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
        lines.append("  " + "  ".join(cells).rstrip())
        if number == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines


def summarize(ds: Dataset) -> str:
    """Return a human-readable summary: identity, modalities, consistency and a counts table.

    The counts table has one row per class (plus a total row) and one column per
    modality x split (plus a total per modality).
    """
    m = ds.manifest
    consistency = m["consistency"]
    lines = [
        f"Dataset      {m['name']} {m['version']}  ({ds.root})",
        f"Fingerprint  {m['fingerprint']}",
        f"Recipe       {m['recipe_fingerprint']}",
        f"Created by   {m.get('created_by', 'unknown')}, schema_version {m['schema_version']}",
        f"Consistency  {consistency['mode']} (overlap {consistency['overlap']})",
    ]
    if ds.has_latent:
        latent, samples = m["latent"], ds.samples
        subtypes = int((samples["latent_subtype"] != "").sum())
        factors = int(sum(len(f) > 0 for f in samples["latent_factors"]))
        lines.append(
            f"Latent truth present ({latent['source']}): class composition on all {len(samples)} chips, "
            f"sub-type on {subtypes} ({len(latent['subtypes'])} sub-types), factors on {factors} "
            f"({', '.join(latent['factors']) or 'none'})"
        )
    lines.append("Modalities")
    for modality in MODALITIES:
        spec = m["modalities"][modality]
        lines.append(
            f"  {modality:<4} {spec['collection']}: {len(spec['bands'])} bands "
            f"({' '.join(spec['bands'])}), {spec['chip_px']} px at {spec['gsd']} m, "
            f"{spec['dtype']} (scale {spec['scale']}, offset {spec['offset']}), "
            f"{spec['label_type']}-label"
        )
    header = ["class"] + [f"{mo}/{s}" for mo in MODALITIES for s in (*SPLITS, "all")]
    rows = [header]
    counts = m["counts"]
    for name in [*ds.classes, "total"]:
        row = [name]
        for modality in MODALITIES:
            per_split = [
                sum(counts[modality][s].values()) if name == "total" else counts[modality][s][name]
                for s in SPLITS
            ]
            row += [str(n) for n in per_split] + [str(sum(per_split))]
        rows.append(row)
    lines += ["Counts (chips)", *_table(rows)]
    return "\n".join(lines)
