"""Shared fixtures: a small demo world and a dataset built from it through the real pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from ackd_bench.curation.build import build_dataset
from ackd_bench.curation.demo_world import build_demo_catalog
from ackd_bench.curation.presets import demo_preset

SMALL_SCALE = 0.4
SMALL_PER_CLASS = 10


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> Path:
    """The demo world at a quarter of its side length, as a static STAC catalog (catalog.json)."""
    return build_demo_catalog(tmp_path_factory.mktemp("world") / "catalog", seed=0, scale=SMALL_SCALE, progress=False)


@pytest.fixture(scope="session")
def small_preset(small_world):
    """The demo preset pointed at the small world, with few chips per class."""
    return demo_preset(SMALL_SCALE).with_overrides(catalog=str(small_world), per_class=SMALL_PER_CLASS)


@pytest.fixture(scope="session")
def small_dataset(small_preset, tmp_path_factory) -> Path:
    """A dataset built from the small world (seed 0)."""
    out = tmp_path_factory.mktemp("ds") / "small"
    build_dataset(small_preset, out, workers=2, progress=False)
    return out
