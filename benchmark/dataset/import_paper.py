"""Convert the SemBridge authors' released folders (S2S-EU, S2S-CN, M2S-GL) into the dataset format."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ackd_bench.benchmark.errors import AckdBenchError

# Bump when the conversion changes what lands in the arrays or the table.
IMPORTER_VERSION = 1
FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
# PIL bilinear with its built-in antialiasing when shrinking, as torchvision's Resize on PIL images.
RGB_RESAMPLING = "PIL bilinear (antialiased when downsampling), after convert('RGB')"
# The release has no locations or dates: every chip gets this placeholder, recorded in provenance.
UNKNOWN_DATETIME = "1970-01-01T00:00:00Z"
UNKNOWN_FOOTPRINT = (0.0, 0.0, 1e-4, 1e-4)  # lon/lat box at (0, 0)
# Integer dtypes the loaders hand to torch as they are; any other .mat dtype becomes float32.
KEPT_INT_DTYPES = ("uint8", "int8", "int16", "uint16", "int32")
EUROSAT_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


class ImportPaperError(AckdBenchError):
    """The source folder does not follow the authors' released layout (names the file or folder)."""


@dataclass(frozen=True)
class PaperLayout:
    """One released subset, described as data (torchgeo-style class attributes).

    Attributes:
        name: CLI name (``s2s-eu``).
        classes: Class folder names in the authors' order (``main_config.py``); ids follow it.
        ms_suffixes: MS file extensions.
        ms_file_bands: Bands (or channels) each MS file must hold.
        ms_read: 1-based band indices kept, as the official code reads them.
        ms_bands: Names of the kept bands, in ``ms_read`` order.
        ms_gsd: Nominal MS ground sampling distance in metres, None if not recovered.
        ms_label_type: ``single`` (label = folder) or ``multi`` (the .mat ``label`` field).
        rgb_px: Side the RGB jpgs are resized to (the official code's Resize).
        description: The source layout, recorded in provenance.
    """

    name: str
    classes: tuple[str, ...]
    ms_suffixes: tuple[str, ...]
    ms_file_bands: int
    ms_read: tuple[int, ...]
    ms_bands: tuple[str, ...]
    ms_gsd: float | None
    ms_label_type: str
    rgb_px: int
    description: str


PAPER_LAYOUTS: dict[str, PaperLayout] = {
    layout.name: layout
    for layout in (
        PaperLayout(
            name="s2s-eu",
            classes=("SeaLake", "River", "Residential", "PermanentCrop", "Pasture", "Industrial", "Highway",
                     "HerbaceousVegetation", "Forest", "AnnualCrop"),
            ms_suffixes=(".tif", ".tiff"),
            ms_file_bands=13,
            # The official code reads rasterio bands 1-7, 10, 11, 12; in EuroSAT's band order
            # that is B01-B07, B09, B10, B11 (the naming is an assumption of the notes).
            ms_read=(1, 2, 3, 4, 5, 6, 7, 10, 11, 12),
            ms_bands=tuple(EUROSAT_BANDS[i - 1] for i in (1, 2, 3, 4, 5, 6, 7, 10, 11, 12)),
            ms_gsd=10.0,
            ms_label_type="single",
            rgb_px=64,
            description="SRC/MS/<class>/*.tif (13 bands, EuroSAT order), SRC/RGB/<class>/*.jpg",
        ),
        PaperLayout(
            name="s2s-cn",
            classes=("beach", "circularfarmland", "cloud", "desert", "forest", "mountain", "rectangularfarmland",
                     "residential", "river", "snowberg"),
            ms_suffixes=(".tif", ".tiff"),
            ms_file_bands=14,
            ms_read=tuple(range(1, 15)),
            ms_bands=tuple(f"TG2-{i:02d}" for i in range(1, 15)),
            ms_gsd=None,
            ms_label_type="single",
            rgb_px=128,
            description="SRC/MS/<class>/*.tif (14 bands, Tiangong-2 NaSC-TG2), SRC/RGB/<class>/*.jpg",
        ),
        PaperLayout(
            name="m2s-gl",
            classes=("forest", "agriculture", "shrub", "pasture", "water_body", "sea", "industry", "grassland",
                     "water_course", "crop", "sport", "transport", "beach", "airport", "port"),
            ms_suffixes=(".mat",),
            ms_file_bands=10,
            ms_read=tuple(range(1, 11)),
            ms_bands=tuple(f"msi-{i:02d}" for i in range(1, 11)),
            ms_gsd=10.0,
            ms_label_type="multi",
            rgb_px=128,
            description="SRC/MS/<class>/*.mat (msi: HxWx10, label: class names), SRC/RGB/<class>/*.jpg",
        ),
    )
}
RGB_SUFFIXES = (".jpg", ".jpeg")


def get_layout(name: str) -> PaperLayout:
    """Return the released layout called ``name``; an unknown name lists the known ones."""
    if name not in PAPER_LAYOUTS:
        raise ImportPaperError(f"unknown paper dataset {name!r}; choose one of {', '.join(PAPER_LAYOUTS)}")
    return PAPER_LAYOUTS[name]


def list_class_files(src: Path, layout: PaperLayout) -> dict[str, dict[str, list[Path]]]:
    """Return ``{"ms"|"rgb": {class: sorted files}}`` after checking the folder layout.

    A class with folders on neither side is left out (a partial download); one side only is an error.
    """
    if not src.is_dir():
        raise ImportPaperError(f"{src} is not a directory; pass the folder holding MS/ and RGB/")
    found: dict[str, dict[str, list[Path]]] = {}
    for modality, folder, suffixes in (("ms", "MS", layout.ms_suffixes), ("rgb", "RGB", RGB_SUFFIXES)):
        root = src / folder
        if not root.is_dir():
            raise ImportPaperError(f"{root} is missing; the {layout.name} release has {layout.description}")
        dirs = {d.name: d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
        unknown = sorted(set(dirs) - set(layout.classes))
        if unknown:
            raise ImportPaperError(f"{root}: unknown class folder(s) {', '.join(unknown)}; "
                                   f"{layout.name} classes are {', '.join(layout.classes)}")
        found[modality] = {}
        for name, d in dirs.items():
            files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in suffixes)
            if not files:
                raise ImportPaperError(f"{d} holds no {'/'.join(suffixes)} files")
            if len(files) < len(FRACTIONS):
                raise ImportPaperError(f"{d} holds {len(files)} file(s); a train/val/test split needs at least 3")
            found[modality][name] = files
    for cls in layout.classes:
        sides = [m for m in ("ms", "rgb") if cls in found[m]]
        if len(sides) == 1:
            raise ImportPaperError(f"{src}: class folder {cls!r} is only in {sides[0].upper()}; each class needs "
                                   "a folder in both MS and RGB")
    if not found["ms"]:
        raise ImportPaperError(f"{src / 'MS'} holds no class folders; {layout.name} classes are "
                               f"{', '.join(layout.classes)}")
    return found


def read_tif(path: Path, layout: PaperLayout) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Return the kept bands ``(C, H, W)`` as stored and the footprint if the file is georeferenced."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError
    from rasterio.warp import transform_bounds

    try:
        with warnings.catch_warnings():
            # Released chips may carry no georeference; that is expected, the footprint is a placeholder then.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                if src.count != layout.ms_file_bands:
                    raise ImportPaperError(f"{path}: {src.count} bands, {layout.name} MS tifs have "
                                           f"{layout.ms_file_bands}")
                chip = src.read(list(layout.ms_read))
                where = None
                if src.crs is not None and not src.transform.is_identity:
                    bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
                    where = {"crs": src.crs.to_string(), "bounds": bounds}
    except RasterioError as exc:
        raise ImportPaperError(f"cannot read {path}: {exc}; re-download or remove the file") from None
    return chip, where


def read_mat(path: Path, layout: PaperLayout) -> tuple[np.ndarray, list[str]]:
    """Return ``msi`` as ``(C, H, W)`` in its stored dtype and the ``label`` class names."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        content = loadmat(path)
    except (MatReadError, ValueError, OSError, NotImplementedError, TypeError) as exc:
        raise ImportPaperError(f"cannot read {path}: {exc}; re-download or remove the file") from None
    missing = [key for key in ("msi", "label") if key not in content]
    if missing:
        raise ImportPaperError(f"{path} has no {' or '.join(repr(k) for k in missing)} variable")
    msi = np.asarray(content["msi"])
    if msi.ndim != 3 or msi.shape[2] != layout.ms_file_bands or msi.dtype.kind not in "uif":
        raise ImportPaperError(f"{path}: msi has shape {msi.shape} ({msi.dtype}), {layout.name} needs "
                               f"H x W x {layout.ms_file_bands} numbers")
    return np.moveaxis(msi, 2, 0), _label_names(content["label"])


def _label_names(value: Any) -> list[str]:
    """Flatten a .mat ``label`` (char matrix, cell array or string) into stripped class names."""
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    array = np.asarray(value)
    if array.dtype.kind in "US":
        return [str(v).strip() for v in array.ravel() if str(v).strip()]
    return [name for item in array.ravel() for name in _label_names(item)]


def read_rgb(path: Path, px: int) -> np.ndarray:
    """Return the jpg as uint8 ``(3, px, px)``, resized as :data:`RGB_RESAMPLING` says."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            resized = image.convert("RGB").resize((px, px), Image.Resampling.BILINEAR)
    except Image.DecompressionBombError as exc:  # PIL's own guard: a header declaring too many pixels
        raise ImportPaperError(f"refused {path}: {exc} The released images are small; re-download or remove "
                               f"the file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImportPaperError(f"cannot read {path}: {exc}; re-download or remove the file") from None
    return np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)


def split_per_class(n: int, rng: np.random.Generator) -> list[str]:
    """Return a split name per file: 15 % val, 15 % test (at least one each), the rest train."""
    n_val = max(1, round(FRACTIONS["val"] * n))
    n_test = max(1, round(FRACTIONS["test"] * n))
    names = ["val"] * n_val + ["test"] * n_test + ["train"] * (n - n_val - n_test)
    return [names[i] for i in np.argsort(rng.permutation(n))]


def _row(modality: str, rel: str, split: str, label: int, name: str, collection: str,
         where: dict[str, Any] | None, index: int) -> dict[str, Any]:
    from shapely.geometry import box

    return {
        "sample_id": f"{modality}:{rel}", "modality": modality, "split": split, "label": label,
        "label_name": name, "geometry": box(*(where["bounds"] if where else UNKNOWN_FOOTPRINT)),
        "crs": where["crs"] if where else "EPSG:4326", "datetime": UNKNOWN_DATETIME, "item_id": rel,
        "collection": collection, "hrefs": json.dumps({"file": rel}), "cloud_fraction": 0.0,
        "nodata_fraction": 0.0, "purity": 1.0, "block": "located" if where else "unlocated",
        "array_index": index,
    }


class _ChipStack:
    """Chips of one modality written straight into one preallocated array (no list, no second copy).

    The first chip fixes the shape (every other must match; the message names the file); a
    chip of a wider dtype widens the array, as ``np.stack`` would.
    """

    def __init__(self, n: int, what: str) -> None:
        self.n, self.what = n, what
        self.array: np.ndarray | None = None
        self.first: Path | None = None
        self.count = 0

    def add(self, chip: np.ndarray, path: Path) -> None:
        if self.array is None:
            if chip.ndim != 3 or chip.shape[1] != chip.shape[2]:
                raise ImportPaperError(f"{path}: {self.what} chips are {'x'.join(map(str, chip.shape[1:]))}; "
                                       "the format needs square (bands, px, px) chips")
            self.array, self.first = np.empty((self.n, *chip.shape), dtype=chip.dtype), path
        elif chip.shape != self.array.shape[1:]:
            raise ImportPaperError(f"{path}: {self.what} shape {chip.shape} differs from {self.first}'s "
                                   f"{self.array.shape[1:]}")
        wide = np.result_type(self.array.dtype, chip.dtype)
        if wide != self.array.dtype:
            self.array = self.array.astype(wide)
        self.array[self.count] = chip
        self.count += 1


def import_paper(layout_name: str, src: Path, out: Path, *, seed: int = 0) -> Path:
    """Convert a released subset at ``src`` into a dataset at ``out``.

    MS values are kept as stored (no per-tile max scaling); RGB jpgs become uint8 at the
    layout's size. Each class and modality is split 70/15/15 with its own seeded permutation
    (the paper's split is not public). Nothing is written when any file is wrong.

    Args:
        layout_name: ``s2s-eu``, ``s2s-cn`` or ``m2s-gl``.
        src: The folder holding ``MS/`` and ``RGB/``.
        out: Dataset directory to write (replaced only if it already holds a dataset).
        seed: Seed of the split.

    Returns:
        ``out``.

    Raises:
        ImportPaperError: The layout or a file is wrong (the message names it).
    """
    import geopandas as gpd

    from ackd_bench.benchmark.dataset import write_dataset
    from ackd_bench.benchmark.version import package_version

    layout = get_layout(layout_name)
    src = Path(src).absolute()
    files = list_class_files(src, layout)
    # Classes absent on both sides are left out, so every class in the taxonomy has chips.
    classes = [c for c in layout.classes if c in files["ms"]]
    ids = {name: k for k, name in enumerate(classes)}
    dropped_names = 0
    rows: list[dict[str, Any]] = []
    chips = {m: _ChipStack(sum(len(files[m][c]) for c in classes), m.upper()) for m in ("ms", "rgb")}
    paths: dict[str, list[Path]] = {"ms": [], "rgb": []}
    located = 0
    for m, modality in enumerate(("ms", "rgb")):
        collection = f"paper-{layout.name}-{modality}"
        for cls in classes:
            class_files = files[modality][cls]
            splits = split_per_class(len(class_files), np.random.default_rng([seed, m, ids[cls]]))
            for path, split in zip(class_files, splits):
                rel = path.relative_to(src).as_posix()
                where, labels = None, ""
                if modality == "rgb":
                    chip = read_rgb(path, layout.rgb_px)
                elif layout.ms_suffixes == (".mat",):
                    chip, names = read_mat(path, layout)
                    unknown = sorted(set(names) - set(layout.classes))
                    if unknown:
                        raise ImportPaperError(f"{path}: label names {unknown} are not {layout.name} classes")
                    dropped_names += len(set(names) - set(ids))  # classes with no folder here
                    # The folder is the primary class; it always belongs to the set.
                    labels = json.dumps(sorted({ids[n] for n in names if n in ids} | {ids[cls]}))
                else:
                    chip, where = read_tif(path, layout)
                    located += where is not None
                row = _row(modality, rel, split, ids[cls], cls, collection, where, chips[modality].count)
                if layout.ms_label_type == "multi":
                    row["labels"] = labels
                rows.append(row)
                chips[modality].add(chip, path)
                paths[modality].append(path)
    arrays = {m: chips[m].array for m in ("ms", "rgb")}
    if layout.ms_suffixes == (".mat",) and arrays["ms"].dtype.name not in KEPT_INT_DTYPES:
        arrays["ms"] = arrays["ms"].astype(np.float32)  # float64 or ints torch cannot take as they are
    modalities = {
        "ms": {"collection": f"paper-{layout.name}-ms", "bands": list(layout.ms_bands), "gsd": layout.ms_gsd,
               "dtype": arrays["ms"].dtype.name, "scale": 1.0, "offset": 0.0, "chip_px": int(arrays["ms"].shape[-1]),
               "label_type": layout.ms_label_type},
        "rgb": {"collection": f"paper-{layout.name}-rgb", "bands": ["R", "G", "B"], "gsd": None, "dtype": "uint8",
                "scale": 1.0, "offset": 0.0, "chip_px": layout.rgb_px, "label_type": "single"},
    }
    manifest = {
        "name": f"paper-{layout.name}",
        "version": f"import-{IMPORTER_VERSION}",
        "taxonomy": [{"id": k, "name": n, "source_codes": []} for k, n in enumerate(classes)],
        "modalities": modalities,
        "consistency": {"mode": "asymmetric", "overlap": 0.0},
        "provenance": {
            "source": "SemBridge authors' released data", "layout": layout.name,
            "source_layout": layout.description, "src": str(src),
            "importer": f"ackd-bench import-paper {package_version()}", "importer_version": IMPORTER_VERSION,
            "ms_bands_read": list(layout.ms_read), "ms_values": "as stored (no per-tile max scaling)",
            "rgb_resampling": RGB_RESAMPLING, "rgb_px": layout.rgb_px,
            "files": {m: len(paths[m]) for m in paths}, "georeferenced_ms_files": located,
            "classes_without_folders": [c for c in layout.classes if c not in ids],
            "dropped_label_names": dropped_names,
            "placeholders": {"datetime": UNKNOWN_DATETIME, "footprint": list(UNKNOWN_FOOTPRINT),
                             "block": "unlocated"},
        },
        "splits": {"policy": "stratified-random", "fractions": FRACTIONS, "seed": seed,
                   "stratify": "class folder, per modality"},
    }
    samples = gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")
    return write_dataset(out, manifest=manifest, samples=samples, arrays=arrays)
