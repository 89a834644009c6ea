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
def stac_toolchain():
    """Where the STAC API stack is installed (`stac_api_server.find_toolchain`).

    Skips when the stack is not installed (the reason says how to install it); with
    ACKD_BENCH_REQUIRE_STAC_SERVER=1, as in CI, a missing stack fails instead.
    """
    from stac_api_server import REQUIRE_ENV, StackMissing, find_toolchain, stack_required

    try:
        return find_toolchain()
    except StackMissing as err:
        if stack_required():
            pytest.fail(f"{err} ({REQUIRE_ENV}=1)")
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def stac_api(request, stac_toolchain):
    """A real STAC API on 127.0.0.1 (stac-fastapi-pgstac on PostgreSQL + pgstac) serving the small world."""
    from stac_api_server import StacApiServer

    world = request.getfixturevalue("small_world")  # rendered only once the stack is known to be there
    with StacApiServer(world, stac_toolchain) as server:
        yield server


@pytest.fixture
def token_endpoint(tmp_path, monkeypatch):
    """A Planetary Computer token endpoint on loopback, planetary_computer pointed at it, an empty token cache."""
    from fault_server import TOKEN_PATH, FaultServer
    from planetary_computer import sas
    from planetary_computer.settings import Settings

    with FaultServer(tmp_path) as server:
        monkeypatch.setattr(Settings.get(), "sas_url", server.url + TOKEN_PATH)
        monkeypatch.setenv("PC_SDK_SAS_URL", server.url + TOKEN_PATH)
        monkeypatch.setattr(sas, "TOKEN_CACHE", {})
        yield server


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """A tiny synthetic dataset (1 seed, 4 chips per class and split; MS 16 px, RGB 32 px) for CLI runs."""
    from ackd_bench.benchmark.dataset import write_dataset
    from ackd_bench.benchmark.dataset.synthetic import make_synthetic_dataset_inputs

    manifest, samples, arrays = make_synthetic_dataset_inputs(1, per_class_split=4, ms_px=16, rgb_px=32)
    return write_dataset(tmp_path_factory.mktemp("tiny") / "ds", manifest=manifest, samples=samples, arrays=arrays)
