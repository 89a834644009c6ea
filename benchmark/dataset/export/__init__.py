"""Publish a built dataset: a self-contained STAC catalog of labelled GeoTIFF chips, and Croissant metadata.

``export_stac`` writes STAC 1.1 (layout in ``docs/commands/export.md``): ``OUT/collection.json`` (the
dataset; its card is the description; the manifest, sample table and card are its assets), one child
collection per modality (``OUT/ms``, ``OUT/rgb``), one catalog per split below it, and one item per
chip (``OUT/<modality>/<split>/<id>/<id>.json``) with the chip as a georeferenced GeoTIFF and its
class and split as a one-feature GeoJSON (label extension), linked to the scene it was cut from.

``export_croissant`` writes Croissant 1.0 JSON-LD and, beside it, ``<stem>.records.csv`` (one row per
chip), which its ``samples`` record set reads through a relative ``contentUrl``: the two files move
together. A Croissant file in (or above) a STAC export also names each chip's GeoTIFF.
Every output is staged and renamed into place, so a failed export leaves nothing behind.

The modules: ``stac`` (the catalog), ``croissant`` (the metadata and records table) and ``common``
(chip names and paths, the card as a description, target checks).
"""

from __future__ import annotations

from ackd_bench.benchmark.dataset.export.common import ExportError, chip_name, chip_path, records_path
from ackd_bench.benchmark.dataset.export.croissant import check_croissant_target, export_croissant
from ackd_bench.benchmark.dataset.export.stac import export_stac

__all__ = ["ExportError", "check_croissant_target", "chip_name", "chip_path", "export_croissant", "export_stac",
           "records_path"]
