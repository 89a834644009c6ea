"""A self-contained STAC 1.1 catalog of labelled, georeferenced GeoTIFF chips (written with pystac)."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from ackd_bench.benchmark.dataset.export.common import (
    CARD_FILE,
    FINGERPRINT_FIELD,
    GEOJSON,
    GEOTIFF,
    ExportError,
    card_description,
    check_license,
    chip_name,
    chip_path,
    export_fingerprint,
)
from ackd_bench.benchmark.dataset.export.croissant import check_croissant_target, write_croissant
from ackd_bench.benchmark.dataset.files import parse_checksums
from ackd_bench.benchmark.dataset.schema import CHECKSUMS_FILE, MANIFEST_FILE, MODALITIES, SAMPLES_FILE, SPLITS
from ackd_bench.benchmark.dataset.store import Dataset, load_dataset
from ackd_bench.benchmark.dataset.write import clean_stale_staging, swap_into_place

__all__ = ["export_stac"]

PARQUET = "application/vnd.apache.parquet"
#: eo:common_name and centre wavelength (µm) of the band names the presets use.
BAND_INFO: dict[str, tuple[str, float | None]] = {
    "B01": ("coastal", 0.443), "B02": ("blue", 0.49), "B03": ("green", 0.56), "B04": ("red", 0.665),
    "B05": ("rededge", 0.705), "B06": ("rededge", 0.74), "B07": ("rededge", 0.783), "B08": ("nir", 0.842),
    "B8A": ("nir08", 0.865), "B09": ("nir09", 0.945), "B11": ("swir16", 1.61), "B12": ("swir22", 2.19),
    "R": ("red", None), "G": ("green", None), "B": ("blue", None), "N": ("nir", None),
}


def export_stac(dataset: Path | Dataset, out: Path, *, croissant: str | None = None, license: str = "other",
                force: bool = False, progress: bool = False) -> Path:
    """Write the dataset as a self-contained STAC 1.1 catalog into ``out``, atomically.

    Args:
        dataset: A dataset directory (verified first: checksums, fingerprint) or a loaded dataset.
        out: The export folder: new, empty, or (with ``force``) an earlier ackd-bench STAC export,
            replaced only once the new one is complete.
        croissant: Also write Croissant metadata under this file name inside ``out``, whose records
            name their chips, in the same atomic step.
        license: SPDX identifier of the data licence, or ``other``.
        force: Replace an earlier export at ``out``.
        progress: Show a progress bar on stderr.

    Returns:
        ``out``.

    Raises:
        ExportError: ``out`` is unusable (a file, a link, a foreign non-empty folder, inside the
            dataset, an earlier export without ``force``) or mlcroissant is missing.
        DatasetNotFoundError, DatasetCorruptError: ``dataset`` is missing or damaged.
    """
    out = Path(out).absolute()
    check_license(license)
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    _check_stac_target(out, ds.root, force)
    if croissant is not None:
        if Path(croissant).name != croissant or croissant in ("collection.json", MANIFEST_FILE):
            raise ExportError(f"the Croissant file inside {out} needs a name of its own, such as croissant.json "
                              f"(got {croissant!r})")
        check_croissant_target(out / croissant, ds.root, force=True)  # the whole folder is new
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(out.parent, out.name)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    staging.mkdir()
    try:
        _build_catalog(ds, staging, license=license, progress=progress)
        if croissant is not None:
            write_croissant(ds, staging / croissant, chips="", license=license)
        _check_stac_target(out, ds.root, force)
        swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _check_stac_target(out: Path, dataset_root: Path, force: bool) -> None:
    if out.resolve().is_relative_to(dataset_root.resolve()):
        raise ExportError(f"{out} is inside the dataset {dataset_root}; export it somewhere else")
    if out.is_symlink():
        raise ExportError(f"{out} is a symbolic link; pass a real folder as --stac")
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder; choose another --stac folder")
    if export_fingerprint(out) is None:
        raise ExportError(f"{out} is a non-empty folder that is not an ackd-bench STAC export (nothing was "
                          "touched); choose a new or empty --stac folder")
    if not force:
        raise ExportError(f"{out} already holds a STAC export; pass --force to replace it")


def _api_url(provenance: dict[str, Any]) -> str | None:
    """The STAC API the dataset was built from, if it was built from one over http(s)."""
    catalog = str(provenance.get("catalog", ""))
    ok = provenance.get("catalog_mode") == "api" and urlsplit(catalog).scheme in ("http", "https")
    return catalog.rstrip("/") if ok else None


def _source_links(row: Any, provenance: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(rel, href, media type)`` of the links from a chip to the scene it was cut from.

    From a STAC API: the scene item's URL, as ``derived_from`` and as the label extension's
    ``source``. Otherwise (static catalogs give no item URL) each distinct asset href the chip was
    read from, as ``via``: URLs as they are, local paths as ``file://`` URIs; relative paths are
    skipped (they mean nothing outside the build). ``ackd:source_item`` names the item in any case.
    """
    api = _api_url(provenance)
    if api:
        url = f"{api}/collections/{quote(row.collection, safe='')}/items/{quote(row.item_id, safe='')}"
        return [("derived_from", url, GEOJSON), ("source", url, GEOJSON)]
    links = []
    for href in dict.fromkeys(json.loads(row.hrefs).values()):
        if len(urlsplit(href).scheme) > 1:
            links.append(("via", href, GEOTIFF))
        elif Path(href).is_absolute():
            links.append(("via", Path(href).as_uri(), GEOTIFF))
    return links


@functools.cache
def _external_link_class() -> type:
    import pystac

    class ExternalLink(pystac.Link):
        """A link out of the catalog (a source scene, a source API), written with its href as given.

        For an absolute href in a self-contained catalog, pystac checks whether the target lies in
        the catalog by walking the whole tree, once per link on every save: quadratic in the number
        of items (pystac issue 1207: the 12,960-chip demo had not finished after 17 minutes; it takes
        46 s without the walk). These targets never lie in the catalog.
        """

        def get_href(self, transform_href: bool = True) -> str | None:
            return super().get_href(transform_href=False)

    return ExternalLink


def _external_link(rel: str, href: str, **kwargs: Any) -> Any:
    return _external_link_class()(rel, href, **kwargs)


def _file_fields(data: bytes | None = None, *, sha256: str = "", size: int = 0) -> dict[str, Any]:
    """File-extension fields: ``file:checksum`` is a sha2-256 multihash (code 0x12, 32 bytes) in hex."""
    if data is not None:
        sha256, size = hashlib.sha256(data).hexdigest(), len(data)
    return {"checksum": "1220" + sha256, "size": size}


def _label_extension() -> Any:
    """pystac's label extension module. pystac warns on import that the label extension is a
    "pilot" extension without a maintainer; it is still STAC's way to describe classification
    labels (what STAC Browser and ML loaders read), so that warning alone is silenced."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The PySTAC Label Extension is deprecated", DeprecationWarning)
        from pystac.extensions import label
    return label


def _build_catalog(ds: Dataset, root_dir: Path, *, license: str, progress: bool) -> None:
    """Write the whole catalog (JSON, GeoTIFFs, label GeoJSON, metadata copies) into ``root_dir``."""
    import pystac
    from pystac.extensions.eo import EOExtension
    from pystac.layout import CustomLayoutStrategy
    from tqdm import tqdm

    m, samples = ds.manifest, ds.samples
    # Items go to <split dir>/<name>/<name>.json, beside their assets (chip_path), not pystac's <id>/<id>.json.
    layout = CustomLayoutStrategy(item_func=lambda item, parent: "{0}/{1}/{1}.json".format(parent, chip_name(item.id)))
    extra = {FINGERPRINT_FIELD: ds.fingerprint, "ackd:version": m["version"], "ackd:consistency": m["consistency"],
             **({"ackd:recipe_fingerprint": m["recipe_fingerprint"]} if "recipe_fingerprint" in m else {})}
    root = _collection(ds, m["name"], f"{m['name']} {m['version']}", card_description(ds), samples, license, extra)
    root.set_self_href(str(root_dir / "collection.json"))
    _add_metadata_assets(ds, root, root_dir)
    api = _api_url(m["provenance"])
    for source in dict.fromkeys(spec["collection"] for spec in m["modalities"].values()) if api else ():
        root.add_link(_external_link("derived_from", f"{api}/collections/{quote(source, safe='')}",
                                     media_type="application/json", title=f"source collection {source}"))
    with tqdm(total=len(samples), disable=not progress, unit="chip", desc="STAC items") as bar:
        for modality in MODALITIES:
            rows = samples[samples["modality"] == modality]
            if rows.empty:
                continue
            spec = m["modalities"][modality]
            text = (f"{len(rows)} {modality} chips of {m['name']} {m['version']} from `{spec['collection']}`: "
                    f"{len(spec['bands'])} bands, {spec['chip_px']} px at {spec['gsd']} m, {spec['dtype']} "
                    f"(scale {spec['scale']}, offset {spec['offset']}).")
            child = _collection(ds, f"{m['name']}-{modality}", f"{m['name']} {modality} chips", text, rows, license)
            root.add_child(child)
            child.set_self_href(str(root_dir / modality / "collection.json"))
            EOExtension.summaries(child, add_if_missing=True).bands = _eo_bands(spec)
            child.summaries.add("gsd", [spec["gsd"]])
            for split in SPLITS:
                part = rows[rows["split"] == split].sort_values("array_index")
                if part.empty:
                    continue
                catalog = pystac.Catalog(id=f"{m['name']}-{modality}-{split}", title=f"{modality} {split}",
                                         description=f"The {len(part)} {modality} chips of the {split} split.")
                child.add_child(catalog)
                catalog.set_self_href(str(root_dir / modality / split / "catalog.json"))
                for row in part.itertuples(index=False):
                    item = _chip_item(ds, row, (root_dir / chip_path(row)).parent)
                    catalog.add_item(item, strategy=layout)
                    item.set_collection(child)
                    bar.update()
    root.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)


def _collection(ds: Dataset, id_: str, title: str, text: str, rows: Any, license: str,
                extra: dict[str, Any] | None = None) -> Any:
    """A collection over ``rows``: extent (union bbox, then one per modality), providers, classes."""
    import pystac

    m = ds.manifest
    boxes = [[float(v) for v in part.total_bounds]
             for part in (rows, *(rows[rows["modality"] == mo] for mo in MODALITIES)) if not part.empty]
    times = sorted(dt.datetime.fromisoformat(t) for t in rows["datetime"].unique())
    extent = pystac.Extent(pystac.SpatialExtent([boxes[0], *(b for b in boxes[1:] if b != boxes[0])]),
                           pystac.TemporalExtent([[times[0], times[-1]]]))
    sources = {m["modalities"][mo]["collection"]: f"source scenes of the {mo} chips"
               for mo in MODALITIES if (rows["modality"] == mo).any()}
    label_source = m["provenance"].get("label_source")
    if isinstance(label_source, dict) and label_source.get("collection"):
        sources.setdefault(label_source["collection"], "source of the labels")
    api = _api_url(m["provenance"])
    providers = [pystac.Provider(name=n, description=d, roles=[pystac.ProviderRole.PRODUCER], url=api)
                 for n, d in sources.items()]
    providers.append(pystac.Provider(name="ackd-bench", description=f"curated by {m.get('created_by', 'ackd-bench')}",
                                     roles=[pystac.ProviderRole.PROCESSOR]))
    collection = pystac.Collection(id=id_, title=title, description=text, extent=extent, license=license,
                                   providers=providers, extra_fields=extra,
                                   keywords=["remote sensing", "cross-modal knowledge distillation", *sources])
    label = _label_extension()
    multi = any(spec["label_type"] == "multi" for spec in m["modalities"].values())
    summaries = label.LabelExtension.summaries(collection, add_if_missing=True)
    summaries.label_classes = _label_classes(ds, multi)
    summaries.label_type = [label.LabelType.VECTOR]
    summaries.label_tasks = [label.LabelTask.CLASSIFICATION]
    collection.summaries.add("ackd:modality", sorted(set(rows["modality"]), key=MODALITIES.index))
    collection.summaries.add("ackd:split", [s for s in SPLITS if (rows["split"] == s).any()])
    return collection


def _label_classes(ds: Dataset, multi: bool) -> list[Any]:
    classes = _label_extension().LabelClasses.create
    return [classes(classes=ds.classes, name="class"), classes(classes=list(SPLITS), name="split"),
            *([classes(classes=ds.classes, name="classes")] if multi else [])]


def _eo_bands(spec: dict[str, Any]) -> list[Any]:
    from pystac.extensions.eo import Band

    return [Band.create(name=b, common_name=BAND_INFO.get(b, (None, None))[0],
                        center_wavelength=BAND_INFO.get(b, (None, None))[1]) for b in spec["bands"]]


def _add_metadata_assets(ds: Dataset, collection: Any, root_dir: Path) -> None:
    """Copy the manifest, sample table and card (with its figures) into the export as assets."""
    import pystac
    from pystac.extensions.file import FileExtension

    kinds = {MANIFEST_FILE: ("manifest", "application/json", "ackd-bench dataset manifest"),
             SAMPLES_FILE: ("samples", PARQUET, "Sample table (GeoParquet, one row per chip)"),
             CARD_FILE: ("card", "text/markdown", "Dataset card")}
    listed = parse_checksums((ds.root / CHECKSUMS_FILE).read_text(encoding="utf-8"))
    names = [MANIFEST_FILE, SAMPLES_FILE, *sorted(n for n in listed if n == CARD_FILE or n.startswith("card/"))]
    for name in (n for n in names if n in listed):
        key, media, title = kinds.get(name, (f"card-{Path(name).stem}", "image/png", f"Card figure {name}"))
        target = root_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ds.root / name, target)
        asset = pystac.Asset(href=f"./{name}", title=title, media_type=media,
                             roles=["metadata" if name in kinds else "overview"])
        collection.add_asset(key, asset)
        FileExtension.ext(asset, add_if_missing=True).apply(**_file_fields(sha256=listed[name],
                                                                           size=target.stat().st_size))


_TRANSFORMERS: dict[str, Any] = {}


def _native_grid(row: Any, px: int) -> tuple[Any, list[float], Any]:
    """``(affine transform, bbox, pyproj CRS)`` of a chip's pixel grid in its native CRS.

    Footprints are the chips' native-grid boxes reprojected to EPSG:4326, so projecting one back
    and taking its bounds recovers the grid; float noise is rounded off (µm, or 1e-10 degrees).
    """
    import shapely
    from pyproj import CRS, Transformer
    from rasterio.transform import Affine

    if row.crs not in _TRANSFORMERS:
        crs = CRS.from_user_input(row.crs)
        _TRANSFORMERS[row.crs] = (crs, Transformer.from_crs("EPSG:4326", crs, always_xy=True))
    crs, to_native = _TRANSFORMERS[row.crs]
    native = shapely.transform(row.geometry, lambda xy: np.column_stack(to_native.transform(xy[:, 0], xy[:, 1])))
    west, south, east, north = (round(float(v), 6 if crs.is_projected else 10) for v in native.bounds)
    return Affine((east - west) / px, 0.0, west, 0.0, -(north - south) / px, north), [west, south, east, north], crs


def _geotiff(chip: np.ndarray, spec: dict[str, Any], crs: Any, transform: Any) -> bytes:
    """The chip as a deflate-compressed GeoTIFF carrying band names, scale, offset and nodata."""
    from rasterio.crs import CRS as RioCRS
    from rasterio.io import MemoryFile

    count, height, width = chip.shape
    with MemoryFile() as memory:
        with memory.open(driver="GTiff", width=width, height=height, count=count, dtype=chip.dtype.name,
                         crs=RioCRS.from_wkt(crs.to_wkt()), transform=transform, nodata=spec.get("nodata"),
                         compress="deflate") as dst:
            dst.write(chip)
            dst.descriptions = tuple(spec["bands"])
            dst.scales, dst.offsets = (float(spec["scale"]),) * count, (float(spec["offset"]),) * count
        return memory.read()


def _chip_item(ds: Dataset, row: Any, item_dir: Path) -> Any:
    """One chip as a STAC item; its GeoTIFF and label GeoJSON are written into ``item_dir``."""
    import pystac
    import shapely.geometry
    from pystac.extensions.eo import EOExtension
    from pystac.extensions.file import FileExtension
    from pystac.extensions.projection import ProjectionExtension

    m, label = ds.manifest, _label_extension()
    spec = m["modalities"][row.modality]
    multi = spec["label_type"] == "multi"
    names = [ds.classes[k] for k in json.loads(row.labels)] if multi else []
    geometry = json.loads(json.dumps(shapely.geometry.mapping(row.geometry)))
    properties = {
        "ackd:modality": row.modality, "ackd:split": row.split, "ackd:class": row.label_name,
        "ackd:class_id": int(row.label), **({"ackd:classes": names} if multi else {}),
        "ackd:source_item": row.item_id, "ackd:source_collection": row.collection,
        "ackd:purity": float(row.purity), "ackd:cloud_fraction": float(row.cloud_fraction),
        "ackd:nodata_fraction": float(row.nodata_fraction), "ackd:block": row.block,
        **({"ackd:pair_id": row.pair_id} if getattr(row, "pair_id", "") else {})}
    item = pystac.Item(id=row.sample_id, geometry=geometry, bbox=list(row.geometry.bounds),
                       datetime=dt.datetime.fromisoformat(row.datetime), properties=properties)
    item.common_metadata.gsd = spec["gsd"]
    item_dir.mkdir(parents=True)
    transform, native_bbox, crs = _native_grid(row, spec["chip_px"])
    tif = _geotiff(np.asarray(getattr(ds, row.modality)[row.array_index]), spec, crs, transform)
    name = chip_name(row.sample_id)
    (item_dir / f"{name}.tif").write_bytes(tif)
    image = pystac.Asset(href=f"./{name}.tif", media_type=GEOTIFF, roles=["data"],
                         title=f"{row.modality} chip ({len(spec['bands'])} bands, {spec['dtype']})",
                         extra_fields={"data_type": spec["dtype"],
                                       **({"nodata": spec["nodata"]} if "nodata" in spec else {})})
    item.add_asset("image", image)
    authority = crs.to_authority()
    ProjectionExtension.ext(image, add_if_missing=True).apply(
        code=":".join(authority) if authority else None, wkt2=None if authority else crs.to_wkt(),
        shape=[spec["chip_px"], spec["chip_px"]], transform=list(transform)[:6], bbox=native_bbox)
    EOExtension.ext(image, add_if_missing=True).bands = _eo_bands(spec)
    FileExtension.ext(image, add_if_missing=True).apply(**_file_fields(tif))
    feature = {"type": "Feature", "id": row.sample_id, "geometry": geometry,
               "properties": {"class": row.label_name, "class_id": int(row.label), "split": row.split,
                              **({"classes": names} if multi else {})}}
    labels_json = (json.dumps({"type": "FeatureCollection", "features": [feature]}) + "\n").encode("utf-8")
    (item_dir / f"{name}.geojson").write_bytes(labels_json)
    labels = pystac.Asset(href=f"./{name}.geojson", media_type=GEOJSON, roles=["labels"],
                          title="Class and split of the chip")
    item.add_asset("labels", labels)
    FileExtension.ext(labels, add_if_missing=True).apply(**_file_fields(labels_json))
    source = m["provenance"].get("label_source")
    source = source.get("collection") if isinstance(source, dict) else None
    label.LabelExtension.ext(item, add_if_missing=True).apply(
        label_description=f"{'Primary class' if multi else 'Class'} of the whole chip"
                          f"{f', from {source}' if source else ''}, and the chip's spatial-block split",
        label_type=label.LabelType.VECTOR, label_properties=["class", "split", *(["classes"] if multi else [])],
        label_classes=_label_classes(ds, multi), label_tasks=[label.LabelTask.CLASSIFICATION],
        label_methods=[label.LabelMethod.AUTOMATED] if source else None)
    for rel, href, media in _source_links(row, m["provenance"]):
        item.add_link(_external_link(rel, href, media_type=media, title=f"{row.collection} item {row.item_id}"))
    return item
