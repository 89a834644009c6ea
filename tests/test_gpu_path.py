"""The GPU path (training code and benchmarks/gpu_suite.py) runs without the geo stack, and the suite's
record is internally consistent. Run on the CPU at a tiny scale: no test needs a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The lent GPU machines have torch, timm, numpy, pandas, scipy and tqdm but none of these.
GEO_STACK = ("geopandas", "shapely", "pyproj", "rasterio", "pyogrio", "pystac", "pystac_client",
             "planetary_computer", "dask", "distributed", "click", "jsonschema")
BLOCKER = f"""
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {GEO_STACK!r}:
            raise ImportError("not on the GPU machine: " + name)
sys.meta_path.insert(0, Block())
"""


def _python(code: str, *args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + code, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_training_code_imports_without_the_geo_stack(tmp_path):
    code = ("import ackd_bench.benchmark.train, ackd_bench.sembridge.method\n"
            "from ackd_bench.benchmark.method import list_methods\n"
            "print(len(list_methods()))\n"
            "import geopandas\n")  # the blocker really blocks
    done = _python(code, cwd=tmp_path, env=dict(os.environ))
    assert done.returncode == 1 and "not on the GPU machine: geopandas" in done.stderr, done.stderr[-2000:]
    assert int(done.stdout.split()[0]) >= 19


@pytest.mark.slow  # torch.compile of every method: over a minute on 2 cores; `make test-all` and CI run it
def test_gpu_suite_runs_without_the_geo_stack_and_its_record_adds_up(tmp_path):
    out = tmp_path / "out"
    args = ["--device", "cpu", "--scale", "0.005", "--epochs", "3", "--teacher-epochs", "1", "--batch", "32",
            "--steps", "2", "--warmup", "1", "--precision", "fp32", "--matcher-epochs", "1", "--compile", "default",
            "--out", str(out)]
    code = ("sys.argv = ['gpu_suite.py'] + sys.argv[1:]\n"
            f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
            f"runpy.run_path({str(ROOT / 'benchmarks' / 'gpu_suite.py')!r}, run_name='__main__')\n")
    env = {**os.environ, "ACKD_BENCH_CACHE": str(tmp_path / "cache")}
    done = _python(code, *args, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "gpu_suite_cpu_fp32.json").read_text())
    assert record["data"] == {**record["data"], "rgb_train": 108, "ms_train": 135, "eval": 20, "classes": 10}
    step = record["step"]
    base = step["seconds"]["student-only"]
    for name, seconds in step["seconds"].items():
        assert step["over_student_only"][name] == pytest.approx(seconds / base)
    assert step["met"] == (step["over_student_only"]["sembridge (attention)"] <= 1.2)
    compiled = record["compile"]["default"]  # the same steps with the student's forward through torch.compile
    assert set(compiled["seconds"]) == {"student-only", "sembridge (attention)"}
    assert compiled["over_student_only"] == pytest.approx(
        compiled["seconds"]["sembridge (attention)"] / compiled["seconds"]["student-only"])
    for name, seconds in compiled["seconds"].items():
        assert compiled["speedup_over_eager"][name] == pytest.approx(step["seconds"][name] / seconds)
    excess = [compiled["first_step_s"][n] - compiled["seconds"][n] for n in compiled["seconds"]]
    assert compiled["compile_s"] == pytest.approx(max(excess)) and compiled["compile_s"] > 0  # the first step compiled
    run = record["run"]
    assert run["teacher_outputs"] == "cached" and run["epochs"] == 3
    assert 0 < run["prepare_s (matcher, gallery, matching)"] < run["total_s"]
    assert run["rematches"] >= 1 and 0 <= run["selected_epoch"] < 3
    epoch = record["epoch"]
    assert epoch["wall_over_pure_compute"] == pytest.approx(epoch["epoch_s"] / epoch["pure_compute_s"])
    assert epoch["epoch_s"] >= epoch["epoch_train_s"] > 0
    assert epoch["met"] == (epoch["wall_over_pure_compute"] <= 1.15)
    assert record["device"].startswith("cpu") and record["date"][:4].isdigit()


def test_gpu_suite_refuses_cuda_graphs_on_the_cpu(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--device", "cpu",
                           "--compile", "default,reduce-overhead", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "'reduce-overhead'" in done.stderr and "needs --device cuda" in done.stderr
    assert not list(tmp_path.iterdir())


def test_gpu_suite_channel_statistics_match_torchs_over_uneven_chunks():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from gpu_suite import channel_stats
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    import torch

    x = torch.randint(0, 10_000, (1000, 4, 8, 8), generator=torch.Generator().manual_seed(0)).to(torch.int16)
    x[:, 2] //= 7  # channels with different spreads
    mean, std = channel_stats(x, chunk=300)
    torch.testing.assert_close(mean, x.double().mean(dim=(0, 2, 3)).float())
    torch.testing.assert_close(std, x.double().std(dim=(0, 2, 3)).float())
