"""Catalogue profiles: where a STAC catalogue keeps each benchmark band, and how to read its numbers.

A profile (``curation/builtin/catalogs/NAME.yaml``) maps the benchmark's collections and band names
(``B02`` ... ``B12``, ``R G B``) to one catalogue's collection ids, asset keys and band indices,
names its QA asset and the rule that removes Sentinel-2's processing-baseline offset, and says
whether hrefs need signing. A collection the catalogue lacks can be taken ``via`` another profile.
Presets name a profile (one field), so switching catalogue changes no band list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ackd_bench.benchmark.errors import AckdBenchError

PROFILE_DIR = Path(__file__).with_name("builtin") / "catalogs"
DEFAULT_PROFILE = "planetary-computer"
# Sentinel-2 L2A from processing baseline 04.00 (2022-01-25): DN = reflectance x 10^4 + 1000
# (ESA's BOA_ADD_OFFSET of -1000 undoes it).
BOA_ADD_OFFSET_DN = 1000
OFFSET_BASELINE = 4.0


class ProfileError(AckdBenchError):
    """A catalogue profile is unknown or malformed."""


def _baseline(properties: Mapping[str, Any]) -> float:
    """The item's ``s2:processing_baseline`` as a number; 0 when absent (older products)."""
    try:
        return float(properties.get("s2:processing_baseline", 0.0))
    except (TypeError, ValueError):
        raise ProfileError(
            f"s2:processing_baseline {properties.get('s2:processing_baseline')!r} is not a baseline such as '04.00'"
        ) from None


def no_offset(properties: Mapping[str, Any]) -> int:
    """Digital numbers need no offset (aerial imagery, land cover)."""
    return 0


def processing_baseline_offset(properties: Mapping[str, Any]) -> int:
    """ESA's numbers as produced: the offset is in every scene of baseline 04.00 or later."""
    return BOA_ADD_OFFSET_DN if _baseline(properties) >= OFFSET_BASELINE else 0


def earth_search_offset(properties: Mapping[str, Any]) -> int:
    """Earth Search: as ESA's, except scenes flagged ``earthsearch:boa_offset_applied`` (already removed).

    The flag's earlier name, ``sentinel:boa_offset_applied``, counts too.
    """
    applied = properties.get("earthsearch:boa_offset_applied", properties.get("sentinel:boa_offset_applied"))
    return 0 if applied is True else processing_baseline_offset(properties)


# Rules by name: data (profiles, presets) names them; code never branches on a catalogue's name.
OFFSET_RULES: dict[str, Callable[[Mapping[str, Any]], int]] = {
    "none": no_offset,
    "processing-baseline": processing_baseline_offset,
    "earth-search": earth_search_offset,
}
# Item properties the rules read; the build keeps them with each item.
OFFSET_PROPERTIES = ("s2:processing_baseline", "earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")


def harmonization_offset(rule: str, properties: Mapping[str, Any]) -> int:
    """The DN offset to subtract from an item's bands so they read reflectance x 10^4.

    Raises:
        ProfileError: unknown rule.
    """
    if rule not in OFFSET_RULES:
        raise ProfileError(f"unknown offset rule {rule!r}; known: {', '.join(OFFSET_RULES)}")
    return OFFSET_RULES[rule](properties)


@dataclass(frozen=True)
class CollectionProfile:
    """One collection as a catalogue serves it.

    Attributes:
        id: the catalogue's collection id.
        bands: benchmark band name -> (asset key, 1-based band index in that asset).
        qa_asset: asset with a Sen2Cor scene classification (SCL); None: no pixel QA.
        offset_rule: name of the rule (`OFFSET_RULES`) giving the DN offset to remove.
        asset: the one data asset of a single-asset collection (the land-cover map).
    """

    id: str
    bands: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    qa_asset: str | None = None
    offset_rule: str = "none"
    asset: str | None = None


@dataclass(frozen=True)
class CatalogProfile:
    """A STAC catalogue: its URL, whether hrefs are signed, and its collections.

    Attributes:
        name: profile id (the file name).
        description: one line.
        url: STAC API root.
        sign: sign asset hrefs (Planetary Computer SAS tokens) right before each read.
        collections: benchmark collection name -> how this catalogue serves it.
        via: benchmark collection name -> the profile serving it instead of this one.
    """

    name: str
    description: str
    url: str
    sign: bool
    collections: Mapping[str, CollectionProfile]
    via: Mapping[str, str] = field(default_factory=dict)

    def source(self, collection: str) -> tuple[CatalogProfile, CollectionProfile]:
        """The profile that serves ``collection`` (this one or its ``via``) and its entry there.

        Raises:
            ProfileError: no profile on the way serves it.
        """
        if collection in self.via:
            return get_profile(self.via[collection]).source(collection)
        if collection not in self.collections:
            known = ", ".join(sorted([*self.collections, *self.via]))
            raise ProfileError(f"catalogue profile {self.name!r} has no collection {collection!r} (it has: {known})")
        return self, self.collections[collection]


def list_profiles() -> dict[str, str]:
    """Shipped profile names and their one-line descriptions."""
    return {p.stem: get_profile(p.stem).description for p in sorted(PROFILE_DIR.glob("*.yaml"))}


@cache
def get_profile(name: str) -> CatalogProfile:
    """A shipped catalogue profile by name.

    Raises:
        ProfileError: unknown name or malformed file.
    """
    path = PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))
        raise ProfileError(f"unknown catalogue profile {name!r}; known profiles: {known}")
    try:
        return profile_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ProfileError as err:
        raise ProfileError(f"{path}: {err}") from err


def profile_from_dict(data: Any) -> CatalogProfile:
    """Validate a parsed profile; unknown keys are errors."""
    data = _mapping(data, "profile", {"name", "description", "url", "sign", "collections"})
    collections, via = {}, {}
    for key, entry in _mapping(data.get("collections"), "collections").items():
        entry = _mapping(entry, f"collection {key!r}", {"id", "bands", "qa_asset", "offset_rule", "asset", "via"})
        if "via" in entry:
            if set(entry) != {"via"}:
                raise ProfileError(f"collection {key!r}: 'via' stands alone (the other profile says the rest)")
            via[key] = str(entry["via"])
            continue
        bands = {}
        for band, where in _mapping(entry.get("bands", {}), f"bands of {key!r}").items():
            asset, index = (where, 1) if isinstance(where, str) else tuple(where)
            if not isinstance(asset, str) or not isinstance(index, int) or index < 1:
                raise ProfileError(f"band {band!r} of {key!r}: give an asset key or [asset, 1-based index]")
            bands[str(band)] = (asset, index)
        rule = entry.get("offset_rule", "none")
        if rule not in OFFSET_RULES:
            raise ProfileError(f"collection {key!r}: unknown offset_rule {rule!r}; known: {', '.join(OFFSET_RULES)}")
        collections[key] = CollectionProfile(id=str(entry.get("id", key)), bands=bands, qa_asset=entry.get("qa_asset"),
                                             offset_rule=rule, asset=entry.get("asset"))
    missing = {"name", "url", "sign"} - set(data)
    if missing:
        raise ProfileError(f"profile lacks {', '.join(sorted(missing))}")
    return CatalogProfile(name=str(data["name"]), description=str(data.get("description", "")), url=str(data["url"]),
                          sign=bool(data["sign"]), collections=collections, via=via)


def _mapping(value: Any, what: str, allowed: set[str] | None = None) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ProfileError(f"{what} must be a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed) if allowed is not None else []
    if unknown:
        raise ProfileError(f"{what}: unknown key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(sorted(allowed))}")
    return dict(value)
