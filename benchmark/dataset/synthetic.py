"""Tiny, seeded dataset inputs (manifest, samples, arrays) for tests of anything that reads datasets."""

from __future__ import annotations

import json
from typing import Any

import geopandas as gpd
import numpy as np
from pyproj import Transformer
from shapely.geometry import Polygon

MS_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
# Surface reflectance per class in MS_BANDS order (rough vegetation / soil / urban curves).
CLASS_REFLECTANCE = {
    "tree_cover": [0.03, 0.05, 0.03, 0.08, 0.20, 0.28, 0.32, 0.34, 0.16, 0.07],
    "cropland": [0.05, 0.09, 0.06, 0.14, 0.30, 0.38, 0.42, 0.43, 0.24, 0.12],
    "built_up": [0.11, 0.12, 0.13, 0.15, 0.17, 0.18, 0.19, 0.20, 0.25, 0.22],
}
CLASS_RGB = {"tree_cover": (45, 75, 40), "cropland": (120, 140, 70), "built_up": (150, 140, 135)}
SOURCE_CODES = {"tree_cover": [10], "cropland": [40], "built_up": [50]}
# (UTM CRS, lon/lat of the region origin): MS over northern Italy, RGB over Iowa, far apart.
REGIONS = {"ms": ("EPSG:32632", 9.2, 45.4), "rgb": ("EPSG:32615", -93.6, 41.6)}
# Latent truth of the synthetic world (``latent=True``): two sub-types per class, two appearance factors.
LATENT_SUBTYPES = ("a", "b")
LATENT_FACTORS = ["brightness", "moisture"]


def _footprint(transformer: Transformer, x: float, y: float, size_m: float) -> Polygon:
    corners = [(x, y), (x + size_m, y), (x + size_m, y + size_m), (x, y + size_m)]
    return Polygon([transformer.transform(cx, cy) for cx, cy in corners])


def make_synthetic_dataset_inputs(
    seed: int = 0, *, per_class_split: int = 2, ms_px: int = 8, rgb_px: int = 16, latent: bool = False
) -> tuple[dict[str, Any], gpd.GeoDataFrame, dict[str, np.ndarray]]:
    """Return ``(manifest, samples, arrays)`` ready for ``write_dataset``.

    Three classes, ``per_class_split`` chips per class, split and modality; MS chips are
    uint16 Sentinel-2-like (offset 1000, scale 1e-4) in UTM 32N, RGB chips uint8 NAIP-like in
    UTM 15N. Splits occupy separate rows of spatial blocks, as the real split stage does.

    Args:
        seed: Seed of the RNG behind pixel noise and timestamps.
        per_class_split: Chips per (class, split, modality).
        ms_px: MS chip size in pixels (10 m GSD).
        rgb_px: RGB chip size in pixels (0.6 m GSD).
        latent: Also emit latent truth (format v2): per chip a class composition (its label's
            share in [0.6, 1], the rest spread over the other classes), a sub-type
            ``<class>/a`` or ``<class>/b`` and two factors (standard normal), drawn from their
            own RNG, so every other column and the arrays are those of ``latent=False``.
    """
    rng = np.random.default_rng(seed)
    names = list(CLASS_REFLECTANCE)
    taxonomy = [{"id": i, "name": n, "source_codes": SOURCE_CODES[n]} for i, n in enumerate(names)]
    modalities = {
        "ms": {"collection": "sentinel-2-l2a", "bands": MS_BANDS, "gsd": 10.0, "dtype": "uint16",
               "scale": 0.0001, "offset": -0.1, "chip_px": ms_px, "label_type": "single"},
        "rgb": {"collection": "naip", "bands": ["R", "G", "B"], "gsd": 0.6, "dtype": "uint8",
                "scale": 1.0, "offset": 0.0, "chip_px": rgb_px, "label_type": "single"},
    }
    rows: list[dict[str, Any]] = []
    arrays: dict[str, list[np.ndarray]] = {"ms": [], "rgb": []}
    for modality, (crs, lon, lat) in REGIONS.items():
        to_utm = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        x0, y0 = to_utm.transform(lon, lat)
        spec = modalities[modality]
        size_m = spec["chip_px"] * spec["gsd"]
        for s, split in enumerate(("train", "val", "test")):
            for label, name in enumerate(names):
                for k in range(per_class_split):
                    column = label * per_class_split + k
                    x, y = x0 + column * 4 * size_m, y0 + s * 20 * size_m
                    item = f"{spec['collection']}-item-{s}{label}"
                    rows.append({
                        "sample_id": f"{modality}-{split}-{name}-{k}",
                        "modality": modality,
                        "split": split,
                        "label": label,
                        "label_name": name,
                        "geometry": _footprint(to_lonlat, x, y, size_m),
                        "crs": crs,
                        "datetime": f"2023-06-{10 + int(rng.integers(0, 10)):02d}T10:30:00Z",
                        "item_id": item,
                        "collection": spec["collection"],
                        "hrefs": json.dumps(
                            {b: f"https://example.test/{item}/{b}.tif" for b in spec["bands"]},
                            sort_keys=True,
                        ),
                        "cloud_fraction": round(float(rng.uniform(0, 0.05)), 6),
                        "nodata_fraction": 0.0,
                        "purity": round(float(rng.uniform(0.8, 1.0)), 6),
                        "block": f"{modality}-r{s}",
                        "array_index": len(arrays[modality]),
                    })
                    arrays[modality].append(_chip(rng, modality, name, spec["chip_px"]))
    manifest = {
        "name": "synthetic-tiny",
        "version": "0.0.1",
        "taxonomy": taxonomy,
        "modalities": modalities,
        "consistency": {"mode": "asymmetric", "overlap": 0.0},
        "provenance": {"catalog": "synthetic", "queries": [{"collections": ["sentinel-2-l2a"]}],
                       "seed": seed},
        "splits": {"policy": "spatial-blocks", "fractions": {"train": 1 / 3, "val": 1 / 3, "test": 1 / 3}},
    }
    samples = gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")
    if latent:
        manifest["latent"] = {"factors": list(LATENT_FACTORS),
                              "subtypes": [f"{n}/{t}" for n in names for t in LATENT_SUBTYPES],
                              "source": "synthetic-tiny (random latent truth)"}
        samples = samples.assign(**_latent_columns(np.random.default_rng([seed, 17]), samples, len(names)))
    return manifest, samples, {m: np.stack(chips) for m, chips in arrays.items()}


def _latent_columns(rng: np.random.Generator, samples: gpd.GeoDataFrame, n_classes: int) -> dict[str, list]:
    composition, subtype, factors = [], [], []
    for label, name in zip(samples["label"], samples["label_name"]):
        share = rng.uniform(0.6, 1.0)
        rest = rng.dirichlet(np.ones(n_classes - 1)) * (1.0 - share)
        composition.append(np.insert(rest, int(label), share).tolist())
        subtype.append(f"{name}/{LATENT_SUBTYPES[int(rng.integers(len(LATENT_SUBTYPES)))]}")
        factors.append(rng.normal(size=len(LATENT_FACTORS)).tolist())
    return {"latent_composition": composition, "latent_subtype": subtype, "latent_factors": factors}


def _chip(rng: np.random.Generator, modality: str, name: str, px: int) -> np.ndarray:
    if modality == "ms":
        reflectance = np.asarray(CLASS_REFLECTANCE[name])[:, None, None]
        noise = rng.normal(1.0, 0.08, size=(len(MS_BANDS), px, px))
        return np.clip(reflectance * noise * 10000 + 1000, 0, 65535).astype(np.uint16)
    colour = np.asarray(CLASS_RGB[name], dtype=np.float64)[:, None, None]
    return np.clip(colour + rng.normal(0, 12, size=(3, px, px)), 0, 255).astype(np.uint8)
