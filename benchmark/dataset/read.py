"""Reader side of the dataset format (v1, v2): load and check manifest, checksums, samples and arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

from ackd_bench.benchmark.boundary import InputError, load_file
from ackd_bench.benchmark.dataset.files import list_files, parse_checksums, sha256_file
from ackd_bench.benchmark.dataset.schema import (
    CHECKSUMS_FILE,
    MANIFEST_FILE,
    MODALITIES,
    READABLE_SCHEMA_VERSIONS,
    SAMPLES_FILE,
    FormatViolation,
    check_arrays,
    check_manifest,
    check_samples,
    compute_fingerprint,
    compute_recipe_fingerprint,
    count_samples,
)
from ackd_bench.benchmark.errors import DatasetCorruptError, DatasetNotFoundError


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_FILE
    if not path.is_file():
        present = [p for p in (CHECKSUMS_FILE, SAMPLES_FILE, "ms.npy", "rgb.npy") if (root / p).exists()]
        if present:
            raise DatasetCorruptError(path, f"missing, though {', '.join(present)} exist")
        raise DatasetNotFoundError(root)
    try:
        manifest = load_file(path, what="manifest", unique_keys=True)
    except InputError as exc:
        raise DatasetCorruptError(path, f"not readable ({exc})") from None
    if not isinstance(manifest, dict):
        raise DatasetCorruptError(path, "not a JSON object")
    version = manifest.get("schema_version")
    if type(version) is not int or version not in READABLE_SCHEMA_VERSIONS:
        readable = ", ".join(map(str, READABLE_SCHEMA_VERSIONS))
        raise DatasetCorruptError(
            path, f"unsupported schema_version {version!r} (this ackd-bench reads {readable})"
        )
    if version < 2 and "latent" in manifest:
        raise DatasetCorruptError(path, "a 'latent' block needs schema_version 2 (v1 has no latent truth)")
    try:
        check_manifest(manifest)
    except FormatViolation as exc:
        raise DatasetCorruptError(path, exc.reason) from None
    for key in ("counts", "files", "fingerprint"):
        if key not in manifest:
            raise DatasetCorruptError(path, f"missing key '{key}'")
    return manifest


def _verify_checksums(root: Path, manifest: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Check that every listed file exists and matches; return the hashes and unlisted files."""
    path = root / CHECKSUMS_FILE
    try:
        listed = parse_checksums(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetCorruptError(path, "missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetCorruptError(path, f"unreadable ({exc})") from None
    required = [MANIFEST_FILE, SAMPLES_FILE, *(f"{m}.npy" for m in MODALITIES), *manifest["files"]]
    for name in dict.fromkeys(required):
        if name not in listed:
            raise DatasetCorruptError(path, f"does not list {name}")
    inside = root.resolve()
    for name in listed:
        if not (root / name).is_file():
            raise DatasetCorruptError(root / name, "missing")
        target = (root / name).resolve()
        if not target.is_relative_to(inside):
            raise DatasetCorruptError(root / name, f"a link to {target}, outside the dataset; a dataset holds its "
                                                   f"own files (copy the file in place of the link)")
    for name, expected in listed.items():
        actual = sha256_file(root / name)
        if actual != expected:
            raise DatasetCorruptError(
                root / name, f"checksum mismatch (sha256 {actual}, expected {expected})"
            )
        if name in manifest["files"] and manifest["files"][name] != expected:
            raise DatasetCorruptError(
                root / MANIFEST_FILE, f"files[{name!r}] disagrees with {CHECKSUMS_FILE}"
            )
    unlisted = [n for n in list_files(root) if n not in listed and n != CHECKSUMS_FILE]
    return listed, unlisted


def _read_samples(root: Path, manifest: dict[str, Any]) -> gpd.GeoDataFrame:
    import pyarrow

    path = root / SAMPLES_FILE
    if not path.is_file():
        raise DatasetCorruptError(path, "missing")
    try:
        samples = gpd.read_parquet(path)
    except (OSError, ValueError, TypeError, pyarrow.ArrowException) as exc:
        raise DatasetCorruptError(path, f"not readable GeoParquet ({exc})") from None
    try:
        check_samples(samples, manifest, strict_dtypes=True)
    except FormatViolation as exc:
        raise DatasetCorruptError(path, exc.reason) from None
    return samples


def _read_arrays(root: Path, manifest: dict[str, Any], samples: gpd.GeoDataFrame) -> dict[str, np.ndarray]:
    arrays = {}
    for modality in MODALITIES:
        path = root / f"{modality}.npy"
        if not path.is_file():
            raise DatasetCorruptError(path, "missing")
        try:
            arrays[modality] = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DatasetCorruptError(path, f"not a readable .npy ({exc})") from None
    try:
        check_arrays(manifest, arrays, samples["modality"].value_counts().to_dict())
    except FormatViolation as exc:
        raise DatasetCorruptError(root / exc.file, exc.reason) from None
    return arrays


def _first_difference(stated: Any, actual: dict[str, dict[str, dict[str, int]]]) -> str:
    for modality, per_split in actual.items():
        for split, per_class in per_split.items():
            for name, n in per_class.items():
                try:
                    claimed = stated[modality][split][name]
                except (KeyError, TypeError):
                    claimed = None
                if claimed != n:
                    return f"{modality}/{split}/{name}: manifest {claimed}, samples {n}"
    return "the manifest lists extra entries"


def read_dataset_parts(
    path: Path, *, verify: bool
) -> tuple[dict[str, Any], gpd.GeoDataFrame, dict[str, np.ndarray], dict[str, Any]]:
    """Read and check a dataset; return manifest, samples, arrays and a report.

    Raises:
        DatasetNotFoundError: Nothing dataset-like at ``path``.
        DatasetCorruptError: The first problem found (file + reason).
    """
    root = Path(path)
    if not root.exists():
        raise DatasetNotFoundError(root, "the path does not exist")
    if not root.is_dir():
        raise DatasetNotFoundError(root, "it is a file, not a dataset directory")
    manifest = _read_manifest(root)
    listed, unlisted = _verify_checksums(root, manifest) if verify else ({}, [])
    samples = _read_samples(root, manifest)
    arrays = _read_arrays(root, manifest, samples)
    counts = count_samples(samples, manifest)
    if counts != manifest["counts"]:
        raise DatasetCorruptError(
            root / MANIFEST_FILE,
            f"counts disagree with {SAMPLES_FILE} ({_first_difference(manifest['counts'], counts)})",
        )
    if verify:
        shas = {m: listed[f"{m}.npy"] for m in MODALITIES}
        recomputed = compute_fingerprint(manifest, samples, shas)
        if recomputed != manifest["fingerprint"]:
            raise DatasetCorruptError(
                root / MANIFEST_FILE,
                f"fingerprint {manifest['fingerprint']} does not match recomputed {recomputed}",
            )
    if verify or "recipe_fingerprint" not in manifest:  # like the content fingerprint, trusted unverified
        recipe = compute_recipe_fingerprint(manifest, samples)
        if manifest.setdefault("recipe_fingerprint", recipe) != recipe:  # older datasets get it here
            raise DatasetCorruptError(
                root / MANIFEST_FILE,
                f"recipe_fingerprint {manifest['recipe_fingerprint']} does not match recomputed {recipe}",
            )
    report = {
        "path": str(root),
        "name": manifest["name"],
        "version": manifest["version"],
        "schema_version": manifest["schema_version"],
        "fingerprint": manifest["fingerprint"],
        "recipe_fingerprint": manifest["recipe_fingerprint"],
        "files_checked": len(listed),
        "samples": {m: int(arrays[m].shape[0]) for m in MODALITIES},
        "unlisted_files": unlisted,
    }
    return manifest, samples, arrays, report
