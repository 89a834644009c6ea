"""Shared fixtures: a small demo world and a dataset built from it through the real pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from ackd_bench.curation.build import build_dataset
from ackd_bench.curation.demo.world import build_demo_catalog
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


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    """A private teacher/matcher cache folder (``ACKD_BENCH_CACHE``) for one test."""
    monkeypatch.setenv("ACKD_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def stac_api(request):
    """A real STAC API on 127.0.0.1 (stac-fastapi-pgstac on PostgreSQL + pgstac) serving the small world.

    Skips when the stack is not installed (the reason says how to install it); with
    ACKD_BENCH_REQUIRE_STAC_SERVER=1, as in CI, a missing stack fails instead.
    """
    from stac_api_server import REQUIRE_ENV, StacApiServer, StackMissing, find_toolchain, stack_required

    try:
        tools = find_toolchain()
    except StackMissing as err:
        if stack_required():
            pytest.fail(f"{err} ({REQUIRE_ENV}=1)")
        pytest.skip(str(err))
    world = request.getfixturevalue("small_world")  # rendered only once the stack is known to be there
    with StacApiServer(world, tools) as server:
        yield server
