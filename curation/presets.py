"""Build presets: everything one `build-dataset` run needs, as validated, frozen data."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ackd_bench.benchmark.errors import AckdBenchError

PLANETARY_COMPUTER_URL = "https://planetarycomputer.microsoft.com/api/stac/v1"
DEMO_CATALOG = "demo"

# ESA WorldCover v200 class codes (https://esa-worldcover.org/en/data-access, product user manual).
WORLDCOVER_CLASSES = {
    10: "tree cover",
    20: "shrubland",
    30: "grassland",
    40: "cropland",
    50: "built-up",
    60: "bare / sparse vegetation",
    70: "snow and ice",
    80: "permanent water bodies",
    90: "herbaceous wetland",
    95: "mangroves",
    100: "moss and lichen",
}


class PresetError(AckdBenchError):
    """A preset is unknown or malformed."""


@dataclass(frozen=True)
class BandSource:
    """Where one benchmark band lives in a catalogue's items.

    Attributes:
        name: the benchmark's band name (``B02``, ``R``, ...).
        asset: the STAC asset key holding it.
        index: 1-based band index inside that asset (multi-band assets such as NAIP ``image``).
    """

    name: str
    asset: str
    index: int = 1


@dataclass(frozen=True)
class ModalitySpec:
    """One modality of the benchmark: where its chips come from and what they look like.

    Attributes:
        collection: STAC collection id.
        bands: band sources, in the order they are stacked in the chip array.
        aois: areas of interest as lon/lat bboxes (west, south, east, north).
        datetime: STAC datetime interval searched.
        gsd: target ground sampling distance of the chip grid, metres.
        chip_px: chip side in pixels at ``gsd``.
        dtype: array dtype of stored chips (the collection's native dtype).
        max_item_cloud: ``eo:cloud_cover`` upper bound (percent) in the search; None: no filter.
        qa_asset: asset with a Sen2Cor scene classification (SCL); None: nodata QA only.
        harmonize_offset: subtract the L2A processing-baseline >= 04.00 offset (1000 DN).
        prefer: item choice among equally clear items: ``"nearest:YYYY-MM-DD"`` or ``"latest"``.
        block_chips: side of a spatial split block, in chips.
    """

    collection: str
    bands: tuple[BandSource, ...]
    aois: tuple[tuple[float, float, float, float], ...]
    datetime: str
    gsd: float
    chip_px: int
    dtype: str
    max_item_cloud: float | None = None
    qa_asset: str | None = None
    harmonize_offset: bool = False
    prefer: str = "latest"
    block_chips: int = 6

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    @property
    def chip_m(self) -> float:
        return self.gsd * self.chip_px


@dataclass(frozen=True)
class LabelSpec:
    """The land-cover product chips are labelled from, and its crosswalk to the taxonomy.

    Attributes:
        collection: STAC collection id of the land-cover product.
        asset: asset key of the class-code raster.
        classes: benchmark class names in id order.
        crosswalk: land-cover code -> benchmark class name; unmapped codes are never a label.
    """

    collection: str = "esa-worldcover"
    asset: str = "map"
    classes: tuple[str, ...] = ()
    crosswalk: tuple[tuple[int, str], ...] = ()

    def source_codes(self, name: str) -> list[int]:
        return [code for code, cls in self.crosswalk if cls == name]


@dataclass(frozen=True)
class Preset:
    """Everything a build needs. See the README's "Presets" section for each field.

    Attributes:
        name: preset id; also the dataset name.
        description: one line for ``ackd-bench presets``.
        catalog: STAC API or static catalog URL/path, or ``"demo"`` for the embedded world.
        sign: sign asset hrefs with Planetary Computer's SAS tokens at read time.
        ms, rgb: the two modalities.
        labels: the land-cover product and crosswalk.
        per_class: chips per class per modality.
        purity: minimum fraction of a chip covered by its majority class.
        max_cloud: maximum cloud/shadow/cirrus fraction of a chip (from SCL).
        max_nodata: maximum nodata fraction of a chip.
        split: train/val/test fractions, assigned by spatial blocks.
        purity_samples: label samples per chip side used to measure purity.
        version: dataset version written into the manifest.
    """

    name: str
    description: str
    catalog: str
    ms: ModalitySpec
    rgb: ModalitySpec
    labels: LabelSpec
    sign: bool = False
    per_class: int = 150
    purity: float = 0.7
    max_cloud: float = 0.01
    max_nodata: float = 0.0
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    purity_samples: int = 32
    version: str = "1.0.0"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.per_class <= 0:
            raise PresetError(f"per_class must be a positive number of chips, got {self.per_class}")
        if not 0.0 < self.purity <= 1.0:
            raise PresetError(f"purity must be in (0, 1], got {self.purity}")
        if len(self.split) != 3 or any(f < 0 for f in self.split) or abs(sum(self.split) - 1) > 1e-6:
            raise PresetError(f"split must be three non-negative fractions summing to 1, got {self.split}")
        if not self.labels.classes:
            raise PresetError(f"preset {self.name!r} defines no classes")
        for code, cls in self.labels.crosswalk:
            if cls not in self.labels.classes:
                raise PresetError(f"crosswalk maps code {code} to unknown class {cls!r}")
        for mod in (self.ms, self.rgb):
            for west, south, east, north in mod.aois:
                if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
                    raise PresetError(
                        f"AOI {(west, south, east, north)} is not a lon/lat bbox (west, south, east, north)"
                    )

    def with_overrides(self, **changes: Any) -> Preset:
        """A copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


# The taxonomy shared by the built-in presets: WorldCover classes that occur in both Europe and
# the US in quantity. Snow, mangroves and moss/lichen are left out (absent from one region).
BENCHMARK_CLASSES = (
    "tree_cover", "shrubland", "grassland", "cropland",
    "built_up", "bare_sparse", "water", "herbaceous_wetland",
)
WORLDCOVER_CROSSWALK = (
    (10, "tree_cover"), (20, "shrubland"), (30, "grassland"), (40, "cropland"),
    (50, "built_up"), (60, "bare_sparse"), (80, "water"), (90, "herbaceous_wetland"),
)
S2_BANDS = tuple(
    BandSource(b, b) for b in ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
)
NAIP_BANDS = (BandSource("R", "image", 1), BandSource("G", "image", 2), BandSource("B", "image", 3))


def _s2(aois: tuple, datetime: str, prefer: str) -> ModalitySpec:
    return ModalitySpec(
        collection="sentinel-2-l2a", bands=S2_BANDS, aois=aois, datetime=datetime, gsd=10.0,
        chip_px=64, dtype="uint16", max_item_cloud=60.0, qa_asset="SCL", harmonize_offset=True,
        prefer=prefer, block_chips=6,
    )


def _naip(aois: tuple, datetime: str) -> ModalitySpec:
    return ModalitySpec(
        collection="naip", bands=NAIP_BANDS, aois=aois, datetime=datetime, gsd=1.0, chip_px=128,
        dtype="uint8", prefer="latest", block_chips=8,
    )


_LABELS = LabelSpec(classes=BENCHMARK_CLASSES, crosswalk=WORLDCOVER_CROSSWALK)


def demo_preset(scale: float = 1.0) -> Preset:
    """The preset of the embedded demo world; ``scale`` < 1 matches a shrunken world (tests)."""
    from ackd_bench.curation.demo_world import DEMO_DATE_RANGE, demo_regions

    regions = demo_regions(scale)
    window = f"{DEMO_DATE_RANGE[0]}/{DEMO_DATE_RANGE[1]}"
    return Preset(
        name="demo",
        description="The embedded demo world: S2 L2A over a synthetic German region, NAIP over a synthetic Iowa region.",
        catalog=DEMO_CATALOG,
        ms=_s2((regions["eu"].bbox_lonlat(),), window, "nearest:2022-07-01"),
        rgb=_naip((regions["us"].bbox_lonlat(),), window),
        labels=_LABELS,
    )


def _pc_preset() -> Preset:
    return Preset(
        name="eu-s2__us-naip",
        description="Planetary Computer: Sentinel-2 L2A over European AOIs, NAIP over US AOIs, ESA WorldCover labels.",
        catalog=PLANETARY_COMPUTER_URL,
        sign=True,
        ms=_s2(
            (
                (8.6, 49.8, 9.2, 50.2),     # Hesse / Main valley, DE
                (4.6, 52.0, 5.2, 52.4),     # South Holland, NL
                (1.2, 47.2, 1.8, 47.6),     # Loire valley, FR
            ),
            "2021-04-01/2023-09-30",
            "nearest:2022-07-01",
        ),
        rgb=_naip(
            (
                (-93.9, 41.9, -93.5, 42.2),  # central Iowa
                (-89.6, 43.0, -89.2, 43.3),  # Madison, Wisconsin
                (-81.3, 28.3, -80.9, 28.6),  # central Florida wetlands
            ),
            "2020-01-01/2023-12-31",
        ),
        labels=_LABELS,
    )


_BUILTIN = {"demo": demo_preset, "eu-s2__us-naip": _pc_preset}
DEFAULT_PRESET = "eu-s2__us-naip"


def list_presets() -> dict[str, str]:
    """Built-in preset names and their one-line descriptions."""
    return {name: factory().description for name, factory in _BUILTIN.items()}


def get_preset(name_or_path: str) -> Preset:
    """A built-in preset by name, or a preset from a JSON file.

    Raises:
        PresetError: unknown name, unreadable file or invalid content.
    """
    if name_or_path in _BUILTIN:
        return _BUILTIN[name_or_path]()
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        return preset_from_dict(json.loads(path.read_text()))
    known = ", ".join(sorted(_BUILTIN))
    raise PresetError(f"unknown preset {name_or_path!r}; known presets: {known} (or a path to a .json preset)")


def preset_from_dict(data: dict[str, Any]) -> Preset:
    """Validate a plain dict (e.g. parsed JSON) into a Preset; unknown keys are errors."""
    data = dict(data)
    try:
        mods = {}
        for key in ("ms", "rgb"):
            mod = dict(data.pop(key))
            mod["bands"] = tuple(BandSource(**_strict(BandSource, b)) for b in mod["bands"])
            mod["aois"] = tuple(tuple(a) for a in mod["aois"])
            mods[key] = ModalitySpec(**_strict(ModalitySpec, mod))
        lab = dict(data.pop("labels"))
        lab["classes"] = tuple(lab["classes"])
        lab["crosswalk"] = tuple((int(c), n) for c, n in lab["crosswalk"])
        labels = LabelSpec(**_strict(LabelSpec, lab))
        if "split" in data:
            data["split"] = tuple(data["split"])
        return Preset(**_strict(Preset, data), labels=labels, **mods)
    except (KeyError, TypeError, ValueError) as err:
        raise PresetError(f"invalid preset: {err}") from err


def _strict(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise PresetError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return data
