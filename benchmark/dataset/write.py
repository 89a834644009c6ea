"""Writer side of the dataset format (writes v2): output-path safety, staging, durable payload, atomic swap."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from ackd_bench.benchmark.dataset.files import (
    atomic_write_bytes,
    atomic_write_text,
    format_checksums,
    fsync_dir,
    hash_files,
    list_files,
    parse_checksums,
)
from ackd_bench.benchmark.dataset.schema import (
    CHECKSUMS_FILE,
    MANIFEST_FILE,
    MODALITIES,
    OPTIONAL_SAMPLE_COLUMNS,
    SAMPLE_COLUMNS,
    SAMPLES_FILE,
    SCHEMA_VERSION,
    compute_fingerprint,
    compute_recipe_fingerprint,
    count_samples,
)
from ackd_bench.benchmark.errors import DatasetExistsError
from ackd_bench.benchmark.version import package_version

CardWriter = Callable[[Path, dict, gpd.GeoDataFrame, dict[str, np.ndarray]], None]
FILLED_KEYS = ("schema_version", "created_by", "counts", "files", "fingerprint", "recipe_fingerprint")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def looks_like_dataset(root: Path) -> bool:
    """True if ``root`` holds an ackd-bench dataset and nothing else, so replacing it loses nothing."""
    try:
        manifest = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
        listed = parse_checksums((root / CHECKSUMS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or type(manifest.get("schema_version")) is not int:
        return False
    return set(list_files(root)) <= set(listed) | {MANIFEST_FILE, CHECKSUMS_FILE}


def check_target(out_dir: Path) -> None:
    """Refuse any output path whose replacement could destroy something that is not ours."""
    if out_dir.is_symlink():
        raise DatasetExistsError(f"{out_dir} is a symbolic link; pass the real directory as --out")
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise DatasetExistsError(f"{out_dir} exists and is not a directory; choose another --out")
    if any(out_dir.iterdir()) and not looks_like_dataset(out_dir):
        raise DatasetExistsError(
            f"{out_dir} is a non-empty directory that is not an ackd-bench dataset (nothing was "
            "touched); choose a new or empty --out"
        )


def clean_stale_staging(parent: Path, name: str) -> None:
    """Remove staging dirs of killed writers; put back a dataset a killed swap left aside."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.(partial|old)-(\d+)$")
    for entry in sorted(parent.iterdir()):
        match = pattern.match(entry.name)
        if not match or not entry.is_dir():
            continue
        pid = int(match.group(2))
        if pid != os.getpid() and _pid_alive(pid):
            continue  # another live writer owns it
        if match.group(1) == "old" and not (parent / name).exists():
            os.rename(entry, parent / name)
        else:
            shutil.rmtree(entry)


def swap_into_place(staging: Path, out_dir: Path) -> None:
    """Move the finished staging dir onto ``out_dir``, keeping any old dataset until it succeeds."""
    if out_dir.exists():
        # POSIX cannot rename onto a non-empty directory, so move the old one aside first;
        # a crash between the two renames is repaired by clean_stale_staging on the next write.
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        os.rename(out_dir, old)
        try:
            os.rename(staging, out_dir)
        except BaseException:
            os.rename(old, out_dir)
            raise
        fsync_dir(out_dir.parent)
        shutil.rmtree(old)
    else:
        os.rename(staging, out_dir)
        fsync_dir(out_dir.parent)


def normalise_samples(samples: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Return the table with the format's column order and dtypes, rows ordered by modality, array_index.

    Number lists (the latent columns) become float64 arrays, stored as parquet list<double> (also
    when every list is empty, where a plain Python list would leave the element type unknown).
    """
    columns = {**SAMPLE_COLUMNS, **{c: k for c, k in OPTIONAL_SAMPLE_COLUMNS.items() if c in samples.columns}}
    table = samples[list(columns)].copy()
    for column, kind in columns.items():
        if kind in ("int", "float", "str"):
            table[column] = table[column].astype({"int": "int64", "float": "float64", "str": str}[kind])
        elif kind == "floats":
            arrays = [np.asarray(v, dtype=np.float64) for v in table[column]]
            table[column] = pd.Series(arrays, index=table.index, dtype=object)
    order = table["modality"].map({m: i for i, m in enumerate(MODALITIES)})
    table = table.iloc[np.lexsort((table["array_index"].to_numpy(), order.to_numpy()))]
    return table.reset_index(drop=True)


def write_payload(
    staging: Path,
    manifest: dict[str, Any],
    table: gpd.GeoDataFrame,
    arrays: dict[str, np.ndarray],
    card: CardWriter | None,
) -> dict[str, Any]:
    """Write every file of the dataset into ``staging``; return the completed manifest."""
    for modality in MODALITIES:
        with open(staging / f"{modality}.npy", "wb") as f:
            np.save(f, arrays[modality], allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
    table.to_parquet(staging / SAMPLES_FILE, index=False)
    _fsync_file(staging / SAMPLES_FILE)

    filled = copy.deepcopy(manifest)
    filled.pop("files", None)
    filled.pop("fingerprint", None)
    filled.pop("recipe_fingerprint", None)
    filled["schema_version"] = SCHEMA_VERSION
    filled["created_by"] = f"ackd-bench {package_version()}"  # the code that wrote these files
    filled["counts"] = count_samples(table, filled)
    if card is not None:
        card(staging, copy.deepcopy(filled), table.copy(), arrays)

    names = [n for n in list_files(staging) if n not in (MANIFEST_FILE, CHECKSUMS_FILE)]
    for name in names:
        _fsync_file(staging / name)  # the card callable's files were not fsync'd by us
    filled["files"] = hash_files(staging, names)
    filled["fingerprint"] = compute_fingerprint(
        filled, table, {m: filled["files"][f"{m}.npy"] for m in MODALITIES}
    )
    filled["recipe_fingerprint"] = compute_recipe_fingerprint(filled, table)
    manifest_bytes = (json.dumps(filled, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()
    listed = dict(filled["files"])
    listed[MANIFEST_FILE] = hashlib.sha256(manifest_bytes).hexdigest()
    atomic_write_text(staging / CHECKSUMS_FILE, format_checksums(listed))
    # dataset.json goes last: its presence (with matching checksums) marks a complete dataset.
    atomic_write_bytes(staging / MANIFEST_FILE, manifest_bytes)
    for directory in sorted({(staging / n).parent for n in names}, reverse=True):
        fsync_dir(directory)
    return filled
