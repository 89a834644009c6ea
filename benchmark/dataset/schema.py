"""Format rules (v1, v2): the manifest, sample-table and array contracts, per-class counts, fingerprint."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import geopandas as gpd
import numpy as np
import pandas as pd

#: What datasets are written as. v2 added the optional latent-truth columns and manifest block;
#: everything else is v1, so v1 datasets load and verify unchanged.
SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)
#: The version inside the fingerprint's payload. It stays 1: the fingerprint names the data, not the
#: file format, so a dataset without latent truth keeps its v1 fingerprint when written as v2.
FINGERPRINT_VERSION = 1
MODALITIES = ("ms", "rgb")
SPLITS = ("train", "val", "test")
LABEL_TYPES = ("single", "multi")
MANIFEST_FILE = "dataset.json"
SAMPLES_FILE = "samples.parquet"
CHECKSUMS_FILE = "checksums.sha256"

# Column -> kind, in the order the columns are written.
SAMPLE_COLUMNS: dict[str, str] = {
    "sample_id": "str",
    "modality": "str",
    "split": "str",
    "label": "int",
    "label_name": "str",
    "geometry": "geometry",
    "crs": "str",
    "datetime": "str",
    "item_id": "str",
    "collection": "str",
    "hrefs": "str",
    "cloud_fraction": "float",
    "nodata_fraction": "float",
    "purity": "float",
    "block": "str",
    "array_index": "int",
}
# Optional columns: present in some datasets only. ``pair_id``: for an RGB chip of a ``paired`` or
# ``partial:F`` dataset, the sample_id of its co-located MS chip ("" when it has none; always ""
# on MS rows). Asymmetric datasets omit the column, so their fingerprints do not change.
# ``labels``: required when a modality is multi-label: a JSON list of the chip's class ids
# (sorted, unique, containing ``label``, its primary class); "" on rows of single-label modalities.
# ``latent_*`` (v2, all three or none; present iff the manifest has a ``latent`` block): the world's
# true state of each chip, for pairing controls and partner-quality diagnostics.
#   ``latent_composition``: list of floats, one per taxonomy class in id order, each in [0, 1],
#       summing to 1 (± LATENT_SUM_TOLERANCE): the chip's true class composition.
#   ``latent_subtype``: the true sub-type of the chip's majority class (one of the manifest's
#       ``latent.subtypes``, e.g. "cropland/centre_pivot"); "" where unknown.
#   ``latent_factors``: list of finite floats, the appearance factors behind both sensors, in the
#       order of ``latent.factors``; [] where unknown.
# Stored as parquet list<double> (factors, composition) and string (subtype).
OPTIONAL_SAMPLE_COLUMNS: dict[str, str] = {"pair_id": "str", "labels": "str", "latent_composition": "floats",
                                           "latent_subtype": "str", "latent_factors": "floats"}
LATENT_COLUMNS = ("latent_composition", "latent_subtype", "latent_factors")
LATENT_KEYS = ("factors", "subtypes", "source")
LATENT_SUM_TOLERANCE = 1e-6
FRACTION_COLUMNS = ("cloud_fraction", "nodata_fraction", "purity")
MANIFEST_KEYS = ("name", "version", "taxonomy", "modalities", "consistency", "provenance", "splits")
MODALITY_KEYS = ("collection", "bands", "gsd", "dtype", "scale", "offset", "chip_px", "label_type")
# Query parameters of signed (expiring) asset URLs, e.g. Planetary Computer SAS tokens.
SIGNATURE_PARAMS = ("sig", "X-Amz-Signature", "Signature")


class FormatViolation(Exception):
    """A dataset-format rule is broken; ``file`` is the dataset file the rule belongs to."""

    def __init__(self, file: str, reason: str) -> None:
        self.file = file
        self.reason = reason
        super().__init__(f"{file}: {reason}")


def check_manifest(manifest: dict[str, Any]) -> None:
    """Check the caller-supplied manifest blocks (everything except counts/files/fingerprint)."""
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise FormatViolation(MANIFEST_FILE, f"missing keys {missing}")
    for key in ("name", "version"):
        if not isinstance(manifest[key], str) or not manifest[key]:
            raise FormatViolation(MANIFEST_FILE, f"'{key}' must be a non-empty string")
    for key in ("consistency", "provenance", "splits"):
        if not isinstance(manifest[key], dict):
            raise FormatViolation(MANIFEST_FILE, f"'{key}' must be an object")
    if not {"mode", "overlap"} <= set(manifest["consistency"]):
        raise FormatViolation(MANIFEST_FILE, "'consistency' needs 'mode' and 'overlap'")
    taxonomy = manifest["taxonomy"]
    if not isinstance(taxonomy, list) or not taxonomy:
        raise FormatViolation(MANIFEST_FILE, "'taxonomy' must be a non-empty list")
    for position, entry in enumerate(taxonomy):
        if not isinstance(entry, dict) or not {"id", "name", "source_codes"} <= set(entry):
            raise FormatViolation(MANIFEST_FILE, f"taxonomy[{position}] needs id, name, source_codes")
        # Class ids index the logits of every model, so they must be 0..K-1 in order.
        if type(entry["id"]) is not int or entry["id"] != position:
            raise FormatViolation(MANIFEST_FILE, f"taxonomy[{position}].id must be {position}")
        if not isinstance(entry["name"], str) or not entry["name"]:
            raise FormatViolation(MANIFEST_FILE, f"taxonomy[{position}].name must be a string")
        if not isinstance(entry["source_codes"], list):
            raise FormatViolation(MANIFEST_FILE, f"taxonomy[{position}].source_codes must be a list")
    names = [entry["name"] for entry in taxonomy]
    if len(set(names)) != len(names):
        raise FormatViolation(MANIFEST_FILE, "taxonomy class names must be unique")
    modalities = manifest["modalities"]
    if not isinstance(modalities, dict) or set(modalities) != set(MODALITIES):
        raise FormatViolation(MANIFEST_FILE, f"'modalities' must have exactly {list(MODALITIES)}")
    for modality in MODALITIES:
        _check_modality(modality, modalities[modality])
    if "latent" in manifest:
        _check_latent_block(manifest["latent"])
    try:
        json.dumps(manifest, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise FormatViolation(MANIFEST_FILE, f"not JSON-serialisable ({exc})") from exc


def _check_modality(modality: str, spec: Any) -> None:
    where = f"modalities.{modality}"
    if not isinstance(spec, dict) or not set(MODALITY_KEYS) <= set(spec):
        raise FormatViolation(MANIFEST_FILE, f"{where} needs {list(MODALITY_KEYS)}")
    bands = spec["bands"]
    if not isinstance(bands, list) or not bands or not all(isinstance(b, str) for b in bands):
        raise FormatViolation(MANIFEST_FILE, f"{where}.bands must be a non-empty list of names")
    if type(spec["chip_px"]) is not int or spec["chip_px"] <= 0:
        raise FormatViolation(MANIFEST_FILE, f"{where}.chip_px must be a positive int")
    try:
        dtype = np.dtype(spec["dtype"])
    except TypeError as exc:
        raise FormatViolation(MANIFEST_FILE, f"{where}.dtype {spec['dtype']!r} unknown") from exc
    if dtype.kind not in "uif":
        raise FormatViolation(MANIFEST_FILE, f"{where}.dtype must be numeric")
    if spec["label_type"] not in LABEL_TYPES:
        raise FormatViolation(MANIFEST_FILE, f"{where}.label_type must be one of {LABEL_TYPES}")


def _check_latent_block(latent: Any) -> None:
    """``latent: {"factors": [names], "subtypes": [names], "source": text}`` (format v2)."""
    if not isinstance(latent, dict) or set(latent) != set(LATENT_KEYS):
        raise FormatViolation(MANIFEST_FILE, f"'latent' must be an object with exactly {list(LATENT_KEYS)}")
    for key in ("factors", "subtypes"):
        names = latent[key]
        if (not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)
                or len(set(names)) != len(names)):
            raise FormatViolation(MANIFEST_FILE, f"latent.{key} must be a list of unique non-empty names")
    if not isinstance(latent["source"], str) or not latent["source"]:
        raise FormatViolation(MANIFEST_FILE, "latent.source must be a non-empty string (where the truth comes from)")


def check_arrays(manifest: dict[str, Any], arrays: dict[str, np.ndarray], rows: dict[str, int]) -> None:
    """Check array keys, dtypes and shapes against the manifest and the per-modality sample rows."""
    if set(arrays) != set(MODALITIES):
        raise FormatViolation("arrays", f"need exactly {list(MODALITIES)}, got {sorted(arrays)}")
    for modality in MODALITIES:
        spec, array, file = manifest["modalities"][modality], arrays[modality], f"{modality}.npy"
        if array.dtype != np.dtype(spec["dtype"]):
            raise FormatViolation(file, f"dtype {array.dtype} but manifest says {spec['dtype']}")
        px = spec["chip_px"]
        expected = (rows.get(modality, 0), len(spec["bands"]), px, px)
        if array.shape != expected:
            raise FormatViolation(
                file, f"shape {array.shape} but samples and manifest imply {expected} (N, C, H, W)"
            )


def check_samples(samples: gpd.GeoDataFrame, manifest: dict[str, Any], *, strict_dtypes: bool) -> None:
    """Check the sample table against the dataset format and the manifest's taxonomy.

    Args:
        samples: One row per chip.
        manifest: Its ``taxonomy`` gives the valid labels and their names.
        strict_dtypes: Require the exact stored dtypes (int64/float64), as in a written file;
            otherwise any integer/real dtype is accepted (the writer casts).
    """
    file = SAMPLES_FILE
    if not isinstance(samples, gpd.GeoDataFrame):
        raise FormatViolation(file, "samples must be a geopandas GeoDataFrame")
    columns = list(samples.columns)
    optional = [c for c in OPTIONAL_SAMPLE_COLUMNS if c in columns]
    if sorted(columns) != sorted([*SAMPLE_COLUMNS, *optional]) or len(set(columns)) != len(columns):
        missing = sorted(set(SAMPLE_COLUMNS) - set(columns))
        extra = sorted(set(columns) - set(SAMPLE_COLUMNS) - set(OPTIONAL_SAMPLE_COLUMNS))
        raise FormatViolation(file, f"columns differ from v1: missing {missing}, unexpected {extra}")
    if samples.geometry.name != "geometry" or samples.crs is None or samples.crs.to_epsg() != 4326:
        raise FormatViolation(file, "footprints must be the 'geometry' column in EPSG:4326")
    for column, kind in {**SAMPLE_COLUMNS, **{c: OPTIONAL_SAMPLE_COLUMNS[c] for c in optional}}.items():
        _check_column(samples[column], column, kind, strict_dtypes)
    if "pair_id" in optional:
        _check_pairs(samples)
    _check_multilabels(samples, manifest, "labels" in optional)
    _check_latent(samples, manifest, [c for c in LATENT_COLUMNS if c in optional])
    if samples["sample_id"].duplicated().any():
        duplicate = samples.loc[samples["sample_id"].duplicated(), "sample_id"].iloc[0]
        raise FormatViolation(file, f"sample_id {duplicate!r} is not unique")
    for column, allowed in (("modality", MODALITIES), ("split", SPLITS)):
        bad = sorted(set(samples[column]) - set(allowed))
        if bad:
            raise FormatViolation(file, f"{column} values {bad} not in {list(allowed)}")
    names = {entry["id"]: entry["name"] for entry in manifest["taxonomy"]}
    mismatch = samples["label"].map(names) != samples["label_name"]
    if mismatch.any():
        row = samples[mismatch].iloc[0]
        raise FormatViolation(
            file, f"sample {row['sample_id']!r}: label {row['label']} / label_name "
            f"{row['label_name']!r} do not match the taxonomy"
        )
    _check_geometry(samples)
    for column in FRACTION_COLUMNS:
        values = samples[column].to_numpy(dtype=np.float64)
        if not np.all((values >= 0.0) & (values <= 1.0)):
            raise FormatViolation(file, f"{column} must lie in [0, 1]")
    for value in samples["datetime"].unique():
        _check_datetime(value)
    for value in samples["crs"].unique():
        _check_crs(value)
    for sample_id, hrefs in zip(samples["sample_id"], samples["hrefs"]):
        _check_hrefs(sample_id, hrefs)
    for modality in MODALITIES:
        index = np.sort(samples.loc[samples["modality"] == modality, "array_index"].to_numpy())
        if not np.array_equal(index, np.arange(len(index))):
            raise FormatViolation(file, f"array_index of {modality} rows must be 0..N-1, each once")


def _check_multilabels(samples: gpd.GeoDataFrame, manifest: dict[str, Any], present: bool) -> None:
    """Multi-label modalities carry ``labels`` (class-id lists holding ``label``); others carry ""."""
    multi = {m for m, spec in manifest["modalities"].items() if spec["label_type"] == "multi"}
    if not multi:
        return
    if not present:
        raise FormatViolation(SAMPLES_FILE, f"modalities {sorted(multi)} are multi-label but there is no 'labels' column")
    n_classes = len(manifest["taxonomy"])
    for row in samples.itertuples(index=False):
        if row.modality not in multi:
            if row.labels != "":
                raise FormatViolation(SAMPLES_FILE, f"sample {row.sample_id!r}: 'labels' must be empty (single-label)")
            continue
        try:
            ids = json.loads(row.labels)
        except json.JSONDecodeError:
            ids = None
        if (not isinstance(ids, list) or not ids or ids != sorted(set(ids))
                or not all(type(k) is int and 0 <= k < n_classes for k in ids) or row.label not in ids):
            raise FormatViolation(SAMPLES_FILE, f"sample {row.sample_id!r}: labels {row.labels!r} must be a sorted "
                                  f"JSON list of unique class ids in 0..{n_classes - 1} containing label {row.label}")


def _check_latent(samples: gpd.GeoDataFrame, manifest: dict[str, Any], present: list[str]) -> None:
    """Latent columns: all three or none, iff the manifest's ``latent`` block; values as documented above."""
    if present and len(present) != len(LATENT_COLUMNS):
        missing = [c for c in LATENT_COLUMNS if c not in present]
        raise FormatViolation(SAMPLES_FILE, f"latent columns come together: {present} without {missing}")
    if bool(present) != ("latent" in manifest):
        raise FormatViolation(SAMPLES_FILE if present else MANIFEST_FILE,
                              "the latent columns need the manifest's 'latent' block and vice versa"
                              f" (columns {'present' if present else 'absent'}, block "
                              f"{'present' if 'latent' in manifest else 'absent'})")
    if not present:
        return
    n_classes, latent = len(manifest["taxonomy"]), manifest["latent"]
    n_factors, subtypes = len(latent["factors"]), set(latent["subtypes"]) | {""}
    for row in samples[["sample_id", *LATENT_COLUMNS]].itertuples(index=False):
        where = f"sample {row.sample_id!r}"
        composition = np.asarray(row.latent_composition, dtype=np.float64)
        if composition.shape != (n_classes,) or not np.isfinite(composition).all():
            raise FormatViolation(SAMPLES_FILE, f"{where}: latent_composition must hold {n_classes} finite numbers "
                                  "(one per class)")
        if (composition < 0).any() or (composition > 1).any():
            raise FormatViolation(SAMPLES_FILE, f"{where}: latent_composition values must lie in [0, 1]")
        if abs(composition.sum() - 1.0) > LATENT_SUM_TOLERANCE:
            raise FormatViolation(SAMPLES_FILE, f"{where}: latent_composition sums to {composition.sum():.9g}, "
                                  f"not 1 (± {LATENT_SUM_TOLERANCE:g})")
        if row.latent_subtype not in subtypes:
            raise FormatViolation(SAMPLES_FILE, f"{where}: latent_subtype {row.latent_subtype!r} is not in the "
                                  "manifest's latent.subtypes (nor '' for unknown)")
        factors = np.asarray(row.latent_factors, dtype=np.float64)
        if factors.shape not in ((0,), (n_factors,)) or not np.isfinite(factors).all():
            raise FormatViolation(SAMPLES_FILE, f"{where}: latent_factors must hold {n_factors} finite numbers "
                                  "(latent.factors) or none (unknown)")


def _check_pairs(samples: gpd.GeoDataFrame) -> None:
    """RGB ``pair_id`` values name MS chips of the same split and class; MS rows carry none."""
    ms = samples[samples["modality"] == "ms"].set_index("sample_id")
    if (ms["pair_id"] != "").any():
        raise FormatViolation(SAMPLES_FILE, "pair_id must be empty on MS rows")
    rgb = samples[(samples["modality"] == "rgb") & (samples["pair_id"] != "")]
    unknown = ~rgb["pair_id"].isin(ms.index)
    if unknown.any():
        row = rgb[unknown].iloc[0]
        raise FormatViolation(SAMPLES_FILE, f"sample {row['sample_id']!r}: pair_id {row['pair_id']!r} is no MS sample")
    partner = ms.loc[rgb["pair_id"]]
    bad = (partner["split"].to_numpy() != rgb["split"].to_numpy()) | (partner["label"].to_numpy() != rgb["label"].to_numpy())
    if bad.any():
        row = rgb[bad].iloc[0]
        raise FormatViolation(SAMPLES_FILE, f"sample {row['sample_id']!r} and its pair differ in split or label")


def _check_column(values: pd.Series, column: str, kind: str, strict: bool) -> None:
    if kind != "geometry" and values.isna().any():
        raise FormatViolation(SAMPLES_FILE, f"column {column} has missing values")
    if kind == "str":
        ok = pd.api.types.infer_dtype(values, skipna=False) in ("string", "empty")
    elif kind == "int":
        ok = pd.api.types.is_integer_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values)
        ok = ok and (values.dtype == np.int64 or not strict)
    elif kind == "float":
        ok = pd.api.types.is_float_dtype(values.dtype) or (
            not strict and pd.api.types.is_integer_dtype(values.dtype)
        )
        ok = ok and (values.dtype == np.float64 or not strict)
    elif kind == "floats":
        if not all(_is_float_list(v, strict) for v in values):
            raise FormatViolation(SAMPLES_FILE, f"column {column} must hold lists of numbers (float64 in the file)")
        return
    else:
        return
    if not ok:
        raise FormatViolation(SAMPLES_FILE, f"column {column} has dtype {values.dtype}, needs {kind}")


def _is_float_list(value: Any, strict: bool) -> bool:
    """A list of real numbers: float64 arrays as read from parquet; any real sequence from a writer's caller."""
    if isinstance(value, np.ndarray):
        return value.ndim == 1 and (value.dtype == np.float64 or (not strict and value.dtype.kind in "fiu"))
    if strict or not isinstance(value, (list, tuple)):
        return False
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in value)


def _check_geometry(samples: gpd.GeoDataFrame) -> None:
    geometry = samples.geometry
    bad_type = ~geometry.geom_type.isin(["Polygon", "MultiPolygon"]) | geometry.is_empty
    if bad_type.any():
        sample_id = samples.loc[bad_type, "sample_id"].iloc[0]
        raise FormatViolation(SAMPLES_FILE, f"sample {sample_id!r}: footprint must be a polygon")
    minx, miny, maxx, maxy = geometry.total_bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise FormatViolation(SAMPLES_FILE, "footprints are not lon/lat degrees")


def _check_datetime(value: str) -> None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise FormatViolation(SAMPLES_FILE, f"datetime {value!r} is not ISO 8601") from exc
    if parsed.utcoffset() is None or parsed.utcoffset().total_seconds() != 0:
        raise FormatViolation(SAMPLES_FILE, f"datetime {value!r} must be UTC ('Z' or '+00:00')")


def _check_crs(value: str) -> None:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        CRS.from_user_input(value)
    except CRSError as exc:
        raise FormatViolation(SAMPLES_FILE, f"crs {value!r} is not a valid CRS") from exc


def _check_hrefs(sample_id: str, hrefs: str) -> None:
    try:
        mapping = json.loads(hrefs)
    except json.JSONDecodeError as exc:
        raise FormatViolation(SAMPLES_FILE, f"sample {sample_id!r}: hrefs is not JSON") from exc
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise FormatViolation(SAMPLES_FILE, f"sample {sample_id!r}: hrefs must map band -> href")
    for band, href in mapping.items():
        # Signed URLs expire within the hour; a dataset must keep the stable, unsigned href.
        if any(p in parse_qs(urlsplit(href).query) for p in SIGNATURE_PARAMS):
            raise FormatViolation(SAMPLES_FILE, f"sample {sample_id!r}: href of {band} is signed")


def count_samples(samples: pd.DataFrame, manifest: dict[str, Any]) -> dict[str, dict[str, dict[str, int]]]:
    """Return ``{modality: {split: {class_name: n}}}`` with every class listed, zeros included."""
    names = [entry["name"] for entry in manifest["taxonomy"]]
    grouped = samples.groupby(["modality", "split", "label_name"]).size()
    return {
        m: {s: {c: int(grouped.get((m, s, c), 0)) for c in names} for s in SPLITS}
        for m in MODALITIES
    }


def _format_coordinate(value: float) -> str:
    text = f"{value:.7f}"
    # "-0.0000000" and "0.0000000" are the same place; keep one spelling.
    return "0.0000000" if text == "-0.0000000" else text


def _wkt_body(coords: Any) -> str:
    if isinstance(coords[0], (int, float)):
        return " ".join(_format_coordinate(float(c)) for c in coords)
    return "(" + ", ".join(_wkt_body(part) for part in coords) + ")"


def canonical_wkt(geometry: Any) -> str:
    """Return the WKT of a (multi)polygon with every coordinate printed at 1e-7 degrees.

    Written out by hand rather than with ``shapely.to_wkt`` because GEOS versions differ in
    how they trim and space numbers, and the fingerprint must not depend on the GEOS version.
    """
    from shapely.geometry import mapping

    geo = mapping(geometry)
    return f"{geo['type'].upper()} {_wkt_body(geo['coordinates'])}"


def fingerprint_records(samples: pd.DataFrame) -> list[dict[str, Any]]:
    """Return the fingerprinted fields of every sample, sorted by sample_id."""
    ordered = samples.sort_values("sample_id", kind="stable")
    records = []
    for row in ordered.itertuples(index=False):
        records.append(
            {
                "sample_id": str(row.sample_id),
                "modality": str(row.modality),
                "split": str(row.split),
                "label": int(row.label),
                "geometry": canonical_wkt(row.geometry),
                "crs": str(row.crs),
                "datetime": str(row.datetime),
                "item_id": str(row.item_id),
                "collection": str(row.collection),
                "cloud_fraction": round(float(row.cloud_fraction), 6),
                "nodata_fraction": round(float(row.nodata_fraction), 6),
                "purity": round(float(row.purity), 6),
                "block": str(row.block),
                "array_index": int(row.array_index),
                # Only datasets with pairs carry the field, so others keep their fingerprints.
                **({"pair_id": str(row.pair_id)} if hasattr(row, "pair_id") else {}),
                **({"labels": str(row.labels)} if hasattr(row, "labels") else {}),
                # Latent truth likewise, at 1e-9 (below any meaningful change, above float noise).
                **({"latent_composition": _rounded(row.latent_composition), "latent_subtype": str(row.latent_subtype),
                    "latent_factors": _rounded(row.latent_factors)} if hasattr(row, "latent_composition") else {}),
            }
        )
    return records


def _rounded(values: Any) -> list[float]:
    # + 0.0 turns -0.0 into 0.0, so both spellings of zero fingerprint alike.
    return [round(float(v), 9) + 0.0 for v in values]


#: Sample fields of the recipe fingerprint: what was asked for and chosen, not the pixels read.
RECIPE_FIELDS = ("sample_id", "modality", "split", "label", "geometry", "crs", "datetime", "item_id", "collection",
                 "block", "array_index", "pair_id", "labels")


def compute_recipe_fingerprint(manifest: dict[str, Any], samples: pd.DataFrame) -> str:
    """Return the recipe fingerprint: sha256 of what a build chose, independent of the bytes it read.

    Covers, per sample, the fields in :data:`RECIPE_FIELDS` (identity, split, label(s), chip window
    and CRS, source item and collection, block, pairing) and the manifest's ``taxonomy`` and
    ``modalities`` (bands, chip size, dtype). It leaves out the arrays and every pixel-derived
    value (QA fractions, purity, latent truth), which a newer GDAL or resampling kernel may change
    in the last digit: two builds of one preset from one catalogue share it even where their
    content fingerprints differ. Results and the leaderboard key datasets on it; ``inspect``
    verifies both.
    """
    records = []
    for record in fingerprint_records(samples):
        records.append({key: record[key] for key in RECIPE_FIELDS if key in record})
    payload = {"recipe_version": 1, "samples": records, "taxonomy": manifest["taxonomy"],
               "modalities": manifest["modalities"]}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def compute_fingerprint(
    manifest: dict[str, Any], samples: gpd.GeoDataFrame, array_sha256: dict[str, str]
) -> str:
    """Return the dataset fingerprint: sha256 of a canonical JSON of what defines the data.

    Covers the sorted sample records (fields listed in :func:`fingerprint_records`), the sha256
    of each modality's array, and the manifest's ``taxonomy`` and ``modalities`` blocks (and its
    ``latent`` block, where there is one). The payload's version is :data:`FINGERPRINT_VERSION`,
    not the format's, so data without latent truth has the same fingerprint in v1 and v2. It
    leaves out hrefs, provenance, build times and the card, so the same world served from a
    directory or an HTTP STAC server yields the same fingerprint.

    Args:
        manifest: Needs ``taxonomy`` and ``modalities``.
        samples: The sample table (any row order).
        array_sha256: ``{"ms": hex, "rgb": hex}`` of the ``.npy`` files.
    """
    payload = {
        "schema_version": FINGERPRINT_VERSION,
        "samples": fingerprint_records(samples),
        "arrays": {m: array_sha256[m] for m in MODALITIES},
        "taxonomy": manifest["taxonomy"],
        "modalities": manifest["modalities"],
        **({"latent": manifest["latent"]} if "latent" in manifest else {}),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
