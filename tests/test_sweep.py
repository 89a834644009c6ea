"""`ackd-bench sweep`: a small grid on a local dask cluster, resumed, with a failing run and bad grids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from ackd_bench.benchmark.cli import main
from ackd_bench.benchmark.dataset import write_dataset
from ackd_bench.benchmark.dataset.synthetic import make_synthetic_dataset_inputs
from ackd_bench.benchmark.results import load_run_results
from ackd_bench.benchmark.sweep import GridError, expand_grid, list_grids, load_grid, parse_grid

SMALL = {
    "name": "small",
    "pairs": [{"teacher": "resnet18", "student": "resnet18"}],
    "methods": ["student-only", "kd", {"method": "sembridge", "options": {"matcher_epochs": 1}}],
    "seeds": [0, 1],
    "profile": "smoke",
    "profile_overrides": {"epochs": 1, "teacher_epochs": 1, "student_px": 16, "teacher_px": 16},
}


def _dataset(root: Path, seed: int) -> Path:
    manifest, samples, arrays = make_synthetic_dataset_inputs(seed, per_class_split=4, ms_px=16, rgb_px=32)
    return write_dataset(root / f"ds{seed}", manifest=manifest, samples=samples, arrays=arrays)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return _dataset(tmp_path_factory.mktemp("tiny"), 1)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ACKD_BENCH_CACHE", str(tmp_path / "cache"))  # inherited by the local workers


def _grid_file(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({**SMALL, **changes}))
    return path


def _sweep(*args):
    return CliRunner().invoke(main, ["sweep", *map(str, args)])


def test_sweep_fills_the_grid_then_resumes(tiny, tmp_path):
    grid, out = _grid_file(tmp_path), tmp_path / "results"
    dry = _sweep("--grid", grid, "--dataset", tiny, "--out", out, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "6 run(s) to execute, 0 of 6 already done" in dry.output
    assert "resnet18→resnet18 sembridge[matcher_epochs=1] seed 1" in dry.output

    res = _sweep("--grid", grid, "--dataset", tiny, "--out", out, "--workers", 2, "--device", "cpu",
                 "--format", "json", "--quiet")
    assert res.exit_code == 0, res.output
    results = load_run_results([out])
    cells = {(r["method"]["label"], r["seed"]) for r in results}
    assert cells == {(m, s) for m in ("student-only", "kd", "sembridge[matcher_epochs=1]") for s in (0, 1)}
    assert len({r["teacher"]["checkpoint_sha256"] for r in results if r["seed"] == 0}) == 1  # one shared teacher
    rows = json.loads(res.output[res.output.index("["):res.output.rindex("]") + 1])
    methods = {r["method"]: r for r in rows if r["kind"] != "teacher"}
    assert set(methods) == {"student-only", "kd", "sembridge[matcher_epochs=1]"}
    assert all(r["n"] == 2 and r["mean"] is not None for r in methods.values())
    assert "6 run(s) done, 0 already done, 0 failed" in res.output

    again = _sweep("--grid", grid, "--dataset", tiny, "--out", out, "--quiet", "--table-out", tmp_path / "t.md")
    assert again.exit_code == 0, again.output
    assert "0 run(s) done, 6 already done, 0 failed" in again.output
    assert "sembridge" in (tmp_path / "t.md").read_text()
    assert "0 run(s) to execute, 6 of 6 already done" in _sweep("--grid", grid, "--dataset", tiny, "--out", out,
                                                                  "--dry-run").output


@pytest.mark.slow  # two workers compiling with torch.compile: ~45 s on 2 cores; `make test-all` and CI run it
def test_failed_run_is_reported_while_others_complete_compiled(tiny, tmp_path):
    broken = _dataset(tmp_path, 2)
    rgb = np.load(broken / "rgb.npy", mmap_mode="r+")
    rgb[0] = 255 - rgb[0]  # a damaged file: the run's checksum verification fails
    rgb.flush()
    del rgb
    grid = _grid_file(tmp_path, methods=["kd"], seeds=[3], datasets=[str(tiny), str(broken)])
    out = tmp_path / "results"
    res = _sweep("--grid", grid, "--out", out, "--workers", 2, "--device", "cpu", "--retries", 0, "--quiet",
                 "--compile", "default")
    assert res.exit_code == 1
    assert "1 run(s) done, 0 already done, 1 failed" in res.output
    assert "FAILED ds2: resnet18→resnet18 kd seed 3" in res.output and "rgb.npy" in res.output
    [result] = load_run_results([out])
    assert result["dataset"]["name"] and result["seed"] == 3
    assert result["timing"]["compile"] == "default"  # --compile reached the run on its worker


def test_paper_grid_is_the_papers():
    assert "paper" in list_grids()
    grid = load_grid("paper", datasets=[Path("data/x")])
    assert len(grid.pairs) == 6 and ("resnet34", "shufflenet_v2_x0_5") in grid.pairs
    labels = [m.label for m in grid.methods]
    assert len(labels) == 18 and "student-only" in labels and "sembridge+distilvpr" in labels
    assert grid.seeds == (0, 1, 2) and grid.profile == "paper"
    with pytest.raises(GridError, match="--dataset"):
        load_grid("paper")


@pytest.mark.parametrize(("change", "message"), [
    ({"methods": ["kd", "nope"]}, "unknown method 'nope'; known methods: .*dkd"),
    ({"methods": [{"method": "dkd", "options": {"nonsense": 1}}]}, "nonsense"),
    ({"pairs": [{"teacher": "resnet35", "student": "resnet18"}]}, "unknown architecture 'resnet35'"),
    ({"pairs": [{"teacher": "resnet18"}]}, "exactly 'teacher' and 'student'"),
    ({"colour": "red"}, "unknown key.*'colour'"),
    ({"profile": "huge"}, "unknown profile 'huge'"),
    ({"profile_overrides": {"epoch": 1}}, "profile_overrides"),
    ({"seeds": [-1]}, "seeds"),
    ({"methods": ["kd", "kd"]}, "twice"),
])
def test_grid_validation(change, message):
    with pytest.raises(GridError, match=message):
        parse_grid({**SMALL, **change}, datasets=[Path("x")])


def test_grid_errors_on_the_command_line(tiny, tmp_path):
    res = _sweep("--grid", _grid_file(tmp_path, methods=["kdd"]), "--dataset", tiny, "--dry-run")
    assert res.exit_code != 0 and "unknown method 'kdd'" in res.output
    res = _sweep("--grid", tmp_path / "missing.yaml", "--dataset", tiny, "--dry-run")
    assert res.exit_code != 0 and "no grid" in res.output and "paper" in res.output
    res = _sweep("--grid", _grid_file(tmp_path), "--dataset", tmp_path / "nowhere", "--dry-run")
    assert res.exit_code != 0 and "build-dataset" in res.output


def test_expand_predicts_result_files(tiny):
    runs = expand_grid(parse_grid(SMALL, datasets=[tiny]))
    assert len(runs) == 6 and len({r.filename for r in runs}) == 6
    assert all(r.filename.endswith(f"__resnet18__resnet18__{r.method.label}__seed{r.seed}.json") for r in runs)


def _worker_threads() -> tuple:
    import os

    return os.environ.get("OMP_NUM_THREADS"), os.environ.get("MALLOC_TRIM_THRESHOLD_")


@pytest.mark.parametrize("threads", [2, 3])
def test_local_workers_start_with_the_runs_thread_count(threads, monkeypatch):
    """dask's nannies default to OMP_NUM_THREADS=1 and MALLOC_TRIM_THRESHOLD_=65536, which together
    made training about 1.7x slower on 2 cores (even after torch.set_num_threads(2)); the sweep's
    workers must start with the count their runs use and glibc's default trimming."""
    from ackd_bench.benchmark.sweep import _start_client

    # A variable set in the environment wins over dask's config (the user's choice), and a nanny
    # copies its settings into this process's environment: start clean, restore afterwards.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)

    client, cluster = _start_client(workers=1, scheduler=None, gpus=0, threads=threads)
    try:
        [(omp, trim)] = client.run(_worker_threads).values()
    finally:
        client.close()
        cluster.close()
    assert omp == str(threads) and trim is None
