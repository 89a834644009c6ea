"""What the STAC and Croissant exports share: chip names and paths, the card as a description, targets."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from ackd_bench.benchmark.dataset.store import Dataset, summarize
from ackd_bench.benchmark.errors import AckdBenchError

__all__ = ["ExportError", "card_description", "check_license", "chip_name", "chip_path", "export_fingerprint",
           "records_path"]

CARD_FILE = "card.md"
#: Longer cards are cut at a section boundary in the STAC description; the full card is an asset.
MAX_DESCRIPTION_CHARS = 50_000
#: Marks a folder as an ackd-bench STAC export, so ``force`` may replace it (and nothing else).
FINGERPRINT_FIELD = "ackd:fingerprint"

GEOTIFF, GEOJSON = "image/tiff; application=geotiff", "application/geo+json"


class ExportError(AckdBenchError):
    """An export target or option is unusable; nothing was written."""


def chip_name(sample_id: str) -> str:
    """The file-system name of a chip in an export: its ``sample_id`` when that is a safe file name
    (letters, digits, ``_ . -``), else a safe spelling of it plus a hash of the id, so names stay unique."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", sample_id).lstrip(".")
    if safe == sample_id:
        return safe
    return f"{safe or 'chip'}-{hashlib.sha256(sample_id.encode('utf-8')).hexdigest()[:12]}"


def chip_path(row: Any) -> str:
    """POSIX path of a sample's GeoTIFF inside a STAC export: ``<modality>/<split>/<name>/<name>.tif``
    (``name`` from :func:`chip_name`; the item JSON and label GeoJSON sit beside it)."""
    name = chip_name(row.sample_id)
    return f"{row.modality}/{row.split}/{name}/{name}.tif"


def records_path(croissant_file: Path) -> Path:
    """The records table of a Croissant file: ``<stem>.records.csv`` beside it."""
    return Path(croissant_file).with_name(f"{Path(croissant_file).stem}.records.csv")


def check_license(license: str) -> None:
    """Raise ExportError unless ``license`` looks like an SPDX identifier (word characters, ``-.+``)
    or ``other``: what STAC's licence field takes."""
    if not re.fullmatch(r"[\w\-.+]+", license):
        raise ExportError(f"--license takes an SPDX identifier such as CC-BY-4.0, or other (got {license!r})")


def export_fingerprint(folder: Path) -> str | None:
    """The dataset fingerprint an ackd-bench STAC export in ``folder`` records, else None."""
    try:
        value = json.loads((folder / "collection.json").read_text(encoding="utf-8")).get(FINGERPRINT_FIELD)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def card_description(ds: Dataset) -> str:
    """The dataset card (CommonMark), cut at a section boundary past ``MAX_DESCRIPTION_CHARS``;
    a dataset without a card gets its ``inspect`` summary."""
    card = ds.root / CARD_FILE
    if not card.is_file():  # the summary names the dataset by name, not by this machine's path
        summary = summarize(dataclasses.replace(ds, root=Path(ds.manifest["name"])))
        return f"ackd-bench dataset {ds.manifest['name']} {ds.manifest['version']}.\n\n```\n{summary}\n```\n"
    text = card.read_text(encoding="utf-8")
    if len(text) <= MAX_DESCRIPTION_CHARS:
        return text
    cut = text.rfind("\n## ", 0, MAX_DESCRIPTION_CHARS)
    return text[: cut if cut > 0 else MAX_DESCRIPTION_CHARS] + "\n\n(The full card is the `card` asset.)\n"
