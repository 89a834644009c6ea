"""Build presets: everything one `build-dataset` run needs, as validated, frozen data.

Built-in presets are YAML files in ``curation/builtin/presets``; user presets are YAML or JSON files
of the same form (``--preset FILE``). Both are read with safe loaders and validated strictly into
`Preset`: unknown keys and bad values are errors that name the key. A preset names a catalogue
profile (`catalog_profiles`), which supplies asset keys, QA asset, radiometry and signing, so
band lists stay in the benchmark's own names.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ackd_bench.benchmark.boundary import MAX_SEED, InputError, check_fields
from ackd_bench.benchmark.errors import AckdBenchError
from ackd_bench.curation.catalog_profiles import (
    DEFAULT_PROFILE, OFFSET_RULES, CatalogProfile, ProfileError, get_profile,
)

PRESET_DIR = Path(__file__).with_name("builtin") / "presets"
DEFAULT_PRESET = "eu-s2__us-naip"
DEMO_CATALOG = "demo"

BBox = tuple[float, float, float, float]


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


#: The sources a build reads, each from its own catalogue if it names one (`Preset.source_catalog`).
SOURCES = ("ms", "rgb", "labels", "latent")


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
        offset_rule: the catalogue's rule for the L2A processing-baseline offset
            (`catalog_profiles.OFFSET_RULES`); ``"none"`` for imagery without one.
        prefer: item choice among equally clear items: ``"nearest:YYYY-MM-DD"`` or ``"latest"``.
        block_chips: side of a spatial split block, in chips.
        catalog, sign: a catalogue of its own (URL, signing) when the preset's does not serve
            the collection (a profile's ``via``); None: the preset's.
        per_class: chips per class of this modality; None: the preset's ``per_class``.
        split: train/val/test fractions of this modality; None: the preset's ``split``.
    """

    collection: str
    bands: tuple[BandSource, ...]
    aois: tuple[BBox, ...]
    datetime: str
    gsd: float
    chip_px: int
    dtype: str
    max_item_cloud: float | None = None
    qa_asset: str | None = None
    offset_rule: str = "none"
    prefer: str = "latest"
    block_chips: int = 6
    catalog: str | None = None
    sign: bool | None = None
    per_class: int | None = None
    split: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.per_class is not None:
            _check_per_class(self.per_class, f"{self.collection}: per_class")
        if self.split is not None:
            _check_split(self.split, f"{self.collection}: split")
        if not self.bands:
            raise PresetError(f"{self.collection}: a modality needs at least one band")
        if not self.aois:
            raise PresetError(f"{self.collection}: a modality needs at least one AOI")
        _check_aois(self.aois)
        for name, value in (("gsd", self.gsd), ("chip_px", self.chip_px), ("block_chips", self.block_chips)):
            if not _number(value) or value <= 0 or (name != "gsd" and not isinstance(value, int)):
                raise PresetError(f"{self.collection}: {name} must be a positive number{'' if name == 'gsd' else ' (integer)'}, got {value!r}")
        try:
            kind = np.dtype(self.dtype).kind
        except TypeError:
            kind = None
        if kind not in ("u", "i", "f"):
            raise PresetError(f"{self.collection}: dtype {self.dtype!r} is not an integer or float array dtype "
                              f"such as uint16 or float32")
        if self.offset_rule not in OFFSET_RULES:
            raise PresetError(f"{self.collection}: unknown offset_rule {self.offset_rule!r}; known: {', '.join(OFFSET_RULES)}")
        if "/" not in self.datetime:
            raise PresetError(f"{self.collection}: datetime must be an interval START/END, got {self.datetime!r}")
        if self.prefer != "latest":
            kind, _, when = self.prefer.partition(":")
            try:
                date.fromisoformat(when)
            except ValueError:
                kind = "bad"
            if kind != "nearest":
                raise PresetError(f"{self.collection}: prefer must be 'latest' or 'nearest:YYYY-MM-DD', got {self.prefer!r}")

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
        catalog, sign: a catalogue of its own, as for `ModalitySpec`.
        datetime: STAC datetime interval of the product searched (e.g. the 2021 map: WorldCover
            v200; Planetary Computer also holds the 2020 v100 map of every tile); None: any.
            Where several maps cover a place, the newest is read first and older ones only fill
            its gaps (`sampling.read_label_grid`).
    """

    collection: str = "esa-worldcover"
    asset: str = "map"
    classes: tuple[str, ...] = ()
    crosswalk: tuple[tuple[int, str], ...] = ()
    catalog: str | None = None
    sign: bool | None = None
    datetime: str | None = None

    def __post_init__(self) -> None:
        if self.datetime is not None and (not isinstance(self.datetime, str) or "/" not in self.datetime):
            raise PresetError(f"labels: datetime must be an interval START/END, got {self.datetime!r}")

    def source_codes(self, name: str) -> list[int]:
        return [code for code, cls in self.crosswalk if cls == name]


@dataclass(frozen=True)
class LatentSpec:
    """An optional collection of truth rasters under the imagery (the demo world's), read per chip.

    Its items carry ``ackd:subtypes`` (names of the sub-type ids; id k is entry k - 1, 0 unknown),
    ``ackd:factors`` (names of the factor bands) and ``ackd:truth_source``. Without it, a build's
    latent composition comes from the land-cover map and sub-types and factors are unknown.

    Attributes:
        collection: STAC collection id of the truth items.
        class_asset: asset of true land-cover codes (the labels' code list and crosswalk).
        subtype_asset: asset of sub-type ids.
        factors_asset: asset with one band per appearance factor (with ``raster:bands`` scale).
        catalog, sign: a catalogue of its own, as for `ModalitySpec`.
    """

    collection: str
    class_asset: str = "class"
    subtype_asset: str = "subtype"
    factors_asset: str = "factors"
    catalog: str | None = None
    sign: bool | None = None


@dataclass(frozen=True)
class Preset:
    """Everything a build needs. See the README's "Presets" section for each field.

    Attributes:
        name: preset id; also the dataset name.
        description: one line for ``ackd-bench presets``.
        catalog: STAC API or static catalog URL/path, or ``"demo"`` for the embedded world.
        ms, rgb: the two modalities.
        labels: the land-cover product and crosswalk.
        sign: sign asset hrefs with Planetary Computer's SAS tokens at read time.
        profile: the catalogue profile the preset was resolved with (asset keys, radiometry).
        consistency: ``asymmetric`` (MS and RGB from disjoint AOIs), ``paired`` (every RGB chip
            co-located with an MS chip) or ``partial:F`` (a share F of them).
        paired_aois: lon/lat bboxes where co-located chips are sampled; empty: the RGB AOIs
            (aerial imagery is regional, Sentinel-2 global).
        paired_block_chips: side of the spatial split blocks of co-located chips, in MS chips;
            None: ``ms.block_chips``. Smaller blocks spread each class of a small site over all
            three splits.
        per_class: chips per class per modality (a modality's own ``per_class`` overrides it).
        purity: minimum fraction of a chip covered by its majority class.
        max_cloud: maximum cloud/shadow/cirrus fraction of a chip (from SCL).
        max_nodata: maximum nodata fraction of a chip.
        split: train/val/test fractions, assigned by spatial blocks (a modality's own ``split``
            overrides it).
        purity_samples: label samples per chip side used to measure purity.
        version: dataset version written into the manifest.
        seed: seed of chip sampling and split assignment.
        latent: the collection of truth rasters the latent columns are read from; None: the
            land-cover map gives the composition only.
    """

    name: str
    description: str
    catalog: str
    ms: ModalitySpec
    rgb: ModalitySpec
    labels: LabelSpec
    sign: bool = False
    profile: str = DEFAULT_PROFILE
    consistency: str = "asymmetric"
    paired_aois: tuple[BBox, ...] = ()
    paired_block_chips: int | None = None
    per_class: int = 150
    purity: float = 0.7
    max_cloud: float = 0.01
    max_nodata: float = 0.0
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    purity_samples: int = 32
    version: str = "1.0.0"
    seed: int = 0
    latent: LatentSpec | None = None

    def __post_init__(self) -> None:
        _check_per_class(self.per_class, "per_class")
        if not _number(self.purity) or not 0.0 < self.purity <= 1.0:
            raise PresetError(f"purity must be in (0, 1], got {self.purity}")
        for name in ("max_cloud", "max_nodata"):
            if not _number(getattr(self, name)) or not 0.0 <= getattr(self, name) <= 1.0:
                raise PresetError(f"{name} must be a fraction in [0, 1], got {getattr(self, name)!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise PresetError(f"seed must be an integer in 0..{MAX_SEED}, got {self.seed!r}")
        if not isinstance(self.purity_samples, int) or self.purity_samples <= 0:
            raise PresetError(f"purity_samples must be a positive integer, got {self.purity_samples!r}")
        _check_split(self.split, "split")
        if not self.labels.classes:
            raise PresetError(f"preset {self.name!r} defines no classes")
        for code, cls in self.labels.crosswalk:
            if cls not in self.labels.classes:
                raise PresetError(f"crosswalk maps code {code} to unknown class {cls!r}")
        get_profile(self.profile)  # a known profile (ProfileError names the known ones)
        _check_aois(self.paired_aois)
        if self.paired_block_chips is not None and (not isinstance(self.paired_block_chips, int)
                                                    or self.paired_block_chips <= 0):
            raise PresetError(f"paired_block_chips must be a positive integer, got {self.paired_block_chips!r}")
        object.__setattr__(self, "consistency", _normalized_consistency(self.consistency))

    @property
    def paired_fraction(self) -> float:
        """Share of RGB chips with a co-located MS chip that the consistency mode asks for."""
        return consistency_fraction(self.consistency)

    def shared_aois(self) -> tuple[BBox, ...]:
        """Where co-located chips come from: ``paired_aois``, else the RGB AOIs."""
        return self.paired_aois or self.rgb.aois

    def source_catalog(self, source: str) -> tuple[str, bool]:
        """(URL, sign) of the catalogue serving ``source`` ("ms", "rgb" or "labels")."""
        spec = getattr(self, source)
        if spec.catalog is None:
            return self.catalog, self.sign
        return spec.catalog, bool(spec.sign)

    def modality_per_class(self, modality: str) -> int:
        """Chips per class of ``modality`` ("ms" or "rgb"): its own budget, else the preset's."""
        own = getattr(self, modality).per_class
        return self.per_class if own is None else own

    def modality_split(self, modality: str) -> tuple[float, float, float]:
        """Train/val/test fractions of ``modality``: its own, else the preset's."""
        own = getattr(self, modality).split
        return self.split if own is None else own

    def with_overrides(self, **changes: Any) -> Preset:
        """A copy with some fields replaced (validated again).

        A new ``per_class`` (``--per-class``) applies to both modalities: it replaces their own
        budgets too.
        """
        changes = {k: v for k, v in changes.items() if v is not None}
        if "per_class" in changes:
            for modality in ("ms", "rgb"):
                spec = changes.get(modality, getattr(self, modality))
                changes[modality] = dataclasses.replace(spec, per_class=None)
        return dataclasses.replace(self, **changes)

    def with_catalogs(self, catalogs: Mapping[str, str]) -> Preset:
        """A copy reading its sources from other catalogues (``--catalog``).

        Keys: ``""`` (or ``all``) for every source, or a source name (``ms``, ``rgb``, ``labels``,
        ``latent``) for that one. A catalogue given for every source also replaces the sources'
        own catalogues (a profile's ``via``, e.g. Earth Search's NAIP and WorldCover from Planetary
        Computer), so a mirror or a private pgstac holding all collections serves the whole build.
        A redirected source keeps its signing rule (only Planetary Computer blob hrefs are ever
        signed, so a catalogue of other hrefs is read as it is).

        Raises:
            PresetError: an unknown source, or ``latent`` for a preset without it.
        """
        preset = self
        everything = {k: v for k, v in catalogs.items() if k in ("", "all")}
        if everything:
            url = next(iter(everything.values()))
            preset = dataclasses.replace(preset, catalog=url, **{
                source: dataclasses.replace(getattr(preset, source), catalog=None, sign=None)
                for source in SOURCES if getattr(preset, source) is not None})
        for source, url in catalogs.items():
            if source in ("", "all"):
                continue
            if source not in SOURCES:
                raise PresetError(f"--catalog {source}=URL: unknown source {source!r}; sources: {', '.join(SOURCES)}")
            spec = getattr(preset, source)
            if spec is None:
                raise PresetError(f"--catalog {source}=URL: the preset has no {source} source")
            _, sign = preset.source_catalog(source)
            preset = dataclasses.replace(preset, **{source: dataclasses.replace(spec, catalog=url, sign=sign)})
        return preset

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _check_per_class(value: Any, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise PresetError(f"{name} must be a positive number of chips, got {value}")


def _check_split(split: Any, name: str) -> None:
    if len(split) != 3 or any(not _number(f) or f < 0 for f in split) or abs(sum(split) - 1) > 1e-6:
        raise PresetError(f"{name} must be three non-negative fractions summing to 1, got {split}")


def consistency_fraction(mode: str) -> float:
    """0 for ``asymmetric``, 1 for ``paired``, F for ``partial:F`` (0 < F < 1).

    Raises:
        PresetError: any other mode.
    """
    if mode == "asymmetric":
        return 0.0
    if mode == "paired":
        return 1.0
    kind, _, value = str(mode).partition(":")
    try:
        fraction = float(value)
    except ValueError:
        fraction = math.nan
    if kind == "partial" and 0.0 < fraction < 1.0:
        return fraction
    raise PresetError(f"consistency must be asymmetric, paired or partial:F with 0 < F < 1 (e.g. partial:0.5), "
                      f"got {mode!r}")


def _normalized_consistency(mode: str) -> str:
    fraction = consistency_fraction(mode)
    return mode if fraction in (0.0, 1.0) else f"partial:{fraction:g}"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_aois(aois: tuple) -> None:
    for aoi in aois:
        if len(aoi) != 4 or not all(_number(v) for v in aoi):
            raise PresetError(f"AOI {aoi!r} is not a lon/lat bbox (west, south, east, north)")
        west, south, east, north = aoi
        if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
            raise PresetError(f"AOI {tuple(aoi)} is not a lon/lat bbox (west, south, east, north)")


# --- preset files -------------------------------------------------------------------------------


def list_presets() -> dict[str, str]:
    """Built-in preset names and their one-line descriptions, the default first."""
    found = {}
    for path in sorted(PRESET_DIR.glob("*.yaml")):
        found[path.stem] = str((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("description", ""))
    return {DEFAULT_PRESET: found.pop(DEFAULT_PRESET), **found}


def get_preset(name_or_path: str) -> Preset:
    """A built-in preset by name, or a preset from a YAML/JSON file.

    Raises:
        PresetError: unknown name, unreadable file or invalid content.
    """
    builtin = PRESET_DIR / f"{name_or_path}.yaml"
    if "/" not in str(name_or_path) and builtin.is_file():
        return load_preset_file(builtin)
    path = Path(name_or_path)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        return load_preset_file(path)  # a missing file or a folder is named there
    known = ", ".join(list_presets())
    raise PresetError(f"unknown preset {name_or_path!r}; known presets: {known} (or a path to a .yaml/.json preset file)")


def demo_preset(scale: float = 1.0) -> Preset:
    """The preset of the embedded demo world; ``scale`` < 1 matches a shrunken world (tests)."""
    return load_preset_file(PRESET_DIR / "demo.yaml", demo_scale=scale)


def load_preset_file(path: Path, *, demo_scale: float = 1.0) -> Preset:
    """Read a preset file (YAML, or JSON by its ``.json`` suffix) with a safe loader and validate it."""
    from ackd_bench.benchmark.boundary import load_file

    path = Path(path)
    try:
        data = load_file(path, what="preset", unique_keys=True)
    except InputError as err:
        raise PresetError(str(err)) from err
    try:
        return preset_from_dict(data, demo_scale=demo_scale)
    except PresetError as err:
        raise PresetError(f"preset file {path}: {err}") from err


def preset_from_dict(data: Any, *, demo_scale: float = 1.0) -> Preset:
    """Validate a plain mapping (parsed YAML/JSON) into a Preset; unknown keys are errors.

    Values a preset leaves out are taken from its catalogue ``profile`` (default
    planetary-computer): ``catalog`` and ``sign``; per modality, band assets (bands may be
    given by name), ``qa_asset``, ``offset_rule`` and a ``via`` catalogue; the label ``asset``.
    AOIs may name a demo-world region (``demo:eu``, ``demo:us``, ``demo:pair``).
    """
    data = _strict(Preset, data, "preset")
    try:
        profile = get_profile(data.get("profile", DEFAULT_PROFILE))
        data.setdefault("catalog", profile.url)
        data.setdefault("sign", profile.sign)
        for key in ("ms", "rgb"):
            data[key] = _modality(data[key], profile, key, demo_scale)
        data["labels"] = _labels(data.get("labels", {}), profile)
        if data.get("latent") is not None:
            data["latent"] = LatentSpec(**_strict(LatentSpec, data["latent"], "latent"))
        if "split" in data:
            data["split"] = tuple(data["split"])
        if "paired_aois" in data:
            data["paired_aois"] = _aois(data["paired_aois"], demo_scale)
        _require(Preset, data, "preset")
        return Preset(**data)
    except ProfileError as err:
        raise PresetError(str(err)) from err
    except KeyError as err:
        raise PresetError(f"missing key {err}") from err
    except (TypeError, ValueError) as err:
        raise PresetError(f"invalid value: {err}") from err


def _source(profile: CatalogProfile, data: dict[str, Any], fields: dict[str, str | None]) -> None:
    """Fill the keys ``data`` leaves out from its collection's entry in the profile (or its ``via``).

    ``fields`` maps each key to the entry attribute it defaults to (None: ``catalog`` and
    ``sign``, set only when another profile serves the collection). A collection the profile does
    not know keeps the dataclass defaults.
    """
    missing = [key for key in fields if key not in data]
    collection = data["collection"]
    if not missing or (collection not in profile.collections and collection not in profile.via):
        return
    served_by, entry = profile.source(collection)
    via = served_by is not profile
    values = {"catalog": served_by.url if via else None, "sign": served_by.sign if via else None,
              **{key: getattr(entry, attr) for key, attr in fields.items() if attr}}
    for key in missing:
        data[key] = values[key]
    data["collection"] = entry.id


def _modality(value: Any, profile: CatalogProfile, where: str, demo_scale: float) -> ModalitySpec:
    data = _strict(ModalitySpec, value, where)
    collection = data["collection"]
    bands = []
    for band in data["bands"]:
        if isinstance(band, str):
            served_by, entry = profile.source(collection)
            if band not in entry.bands:
                raise PresetError(f"{where}: profile {served_by.name!r} has no band {band!r} in {collection!r} "
                                  f"(it has: {', '.join(entry.bands)})")
            asset, index = entry.bands[band]
            bands.append(BandSource(band, asset, index))
        else:
            bands.append(BandSource(**_strict(BandSource, band, f"{where} band")))
    data["bands"] = tuple(bands)
    _source(profile, data, {"qa_asset": "qa_asset", "offset_rule": "offset_rule", "catalog": None, "sign": None})
    data["aois"] = _aois(data["aois"], demo_scale)
    if data.get("split") is not None:
        data["split"] = tuple(data["split"])
    if _number(data.get("gsd")):
        data["gsd"] = float(data["gsd"])  # 10 and 10.0 must write the same manifest (fingerprint)
    return ModalitySpec(**data)


def _labels(value: Any, profile: CatalogProfile) -> LabelSpec:
    data = _strict(LabelSpec, value, "labels")
    data.setdefault("collection", LabelSpec.collection)
    _source(profile, data, {"asset": "asset", "catalog": None, "sign": None})
    data["classes"] = tuple(data.get("classes", ()))
    crosswalk = data.get("crosswalk", ())
    pairs = crosswalk.items() if isinstance(crosswalk, Mapping) else crosswalk
    data["crosswalk"] = tuple((int(code), str(name)) for code, name in pairs)
    return LabelSpec(**data)


def _aois(value: Any, demo_scale: float) -> tuple[BBox, ...]:
    """A list of lon/lat bboxes, or ``demo:REGION`` (the demo world's region at ``demo_scale``)."""
    if isinstance(value, str):
        kind, _, name = value.partition(":")
        if kind != "demo":
            raise PresetError(f"AOIs must be a list of [west, south, east, north] or demo:REGION, got {value!r}")
        from ackd_bench.curation.demo.world import demo_pair_site, demo_regions

        regions = {**demo_regions(demo_scale), "pair": demo_pair_site(demo_scale)}
        if name not in regions:
            raise PresetError(f"unknown demo region {name!r}; the demo world has {', '.join(regions)}")
        return (regions[name].bbox_lonlat(),)
    return tuple(tuple(float(v) for v in aoi) for aoi in value)


def _require(cls: type, data: Mapping[str, Any], where: str) -> None:
    """Name the keys without a default that ``data`` lacks (rather than a constructor's TypeError)."""
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise PresetError(f"{where}: missing required key(s) {', '.join(missing)}")


def _strict(cls: type, data: Any, where: str) -> dict[str, Any]:
    """A copy of ``data`` after checking it is a mapping with only ``cls``'s field names as keys."""
    if not isinstance(data, Mapping):
        raise PresetError(f"{where} must be a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)
    if unknown:
        raise PresetError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; "
                          f"allowed: {', '.join(sorted(names))}")
    try:
        check_fields(data, cls, where)
    except InputError as err:
        raise PresetError(str(err)) from None
    return dict(data)
