"""A built ackd-bench dataset: the on-disk format, and the ways to read it.

The public surface, all importable from ``ackd_bench.benchmark.dataset``:

- :func:`load_dataset`, :func:`verify_dataset`, :class:`Dataset` and :func:`summarize` read and
  check a dataset directory; :func:`write_dataset` writes one atomically (the curation stage and
  :func:`import_paper` call it); :func:`is_complete_dataset` tells a finished build from a partial one.
- :func:`load` gives PyTorch datasets, normalisation statistics, a same-class partner collate and
  an ``xarray.Dataset`` view for your own training loop (imports torch on first use).
- :func:`export_stac` and :func:`export_croissant` publish a dataset as a STAC catalog and as
  Croissant metadata.

The submodules hold the parts: ``schema`` (the format's rules and fingerprints), ``read`` and
``write`` (checked reading, atomic staging), ``files`` (atomic file writes, checksums),
``store`` (the functions above), ``torchdata``, ``import_paper``, ``export`` and ``synthetic``
(small made-up datasets for tests and benchmarks).
"""

from __future__ import annotations

__all__ = [
    "MODALITIES",
    "SCHEMA_VERSION",
    "SPLITS",
    "Benchmark",
    "Dataset",
    "export_croissant",
    "export_stac",
    "import_paper",
    "is_complete_dataset",
    "label_sets",
    "latent_arrays",
    "load",
    "load_dataset",
    "summarize",
    "verify_dataset",
    "write_dataset",
]

# Everything is imported on first use: the reading and writing side brings geopandas, ``load``
# brings torch, the exporters their own dependencies; the CLI imports this package for every command,
# and the training code (which runs on GPU machines without the geo stack) only its ``files`` module.
_LAZY = {
    "MODALITIES": "schema",
    "SCHEMA_VERSION": "schema",
    "SPLITS": "schema",
    "Dataset": "store",
    "is_complete_dataset": "store",
    "label_sets": "store",
    "latent_arrays": "store",
    "load_dataset": "store",
    "summarize": "store",
    "verify_dataset": "store",
    "write_dataset": "store",
    "load": "torchdata",
    "Benchmark": "torchdata",
    "ChipDataset": "torchdata",
    "SameClassPartners": "torchdata",
    "import_paper": "import_paper",
    "export_stac": "export",
    "export_croissant": "export",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
