"""The read stage on dask.distributed: same dataset on any executor, input order, progress, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import dask
import distributed  # noqa: F401  registers its config defaults (see below)
import pytest

from ackd_bench.benchmark.dataset import load_dataset
from ackd_bench.curation import build as build_module
from ackd_bench.curation.build import build_dataset
from ackd_bench.curation.parallel import ReadPool, SchedulerError

CONNECT_TIMEOUT = "2s"  # the unreachable-scheduler tests wait this long, not dask's default 30 s
# distributed adds its config defaults when first imported. A `dask.config.set({"distributed...": ...})`
# entered before that import and left after it restores the config as it was, without the "distributed"
# section, and every later LocalCluster or Client of the session fails with KeyError (seed 215171027,
# when an unreachable-scheduler test ran first). Importing distributed with this module prevents it.


@pytest.fixture(scope="module")
def cluster_address():
    """A 2-worker dask cluster of processes on 127.0.0.1, as a `--scheduler` address.

    Process workers get every task pickled, exactly as on a remote cluster.
    """
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1", dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("executor", ["cluster", "threads"])
def test_build_gives_the_same_dataset_on_any_executor(executor, cluster_address, small_preset, small_dataset,
                                                      tmp_path, monkeypatch):
    # small_dataset was built on the default executor, a local cluster of 2 thread workers.
    totals, updates = [], []

    class CountingBar:  # stands in for the build's tqdm bar
        def __init__(self, total, progress, desc):
            totals.append(total)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            updates.append(n)

    monkeypatch.setattr(build_module, "_progress", CountingBar)
    out = tmp_path / executor
    scheduler = cluster_address if executor == "cluster" else "threads"
    build_dataset(small_preset, out, workers=2, scheduler=scheduler, progress=False)
    assert load_dataset(out).fingerprint == json.loads((small_dataset / "dataset.json").read_text())["fingerprint"]
    # The progress bar moves once per chip read, no more, no less.
    assert sum(totals) > 0
    assert updates == [1] * sum(totals)


def _late_for_early(i: int, n: int) -> int:
    """Returns ``i`` after a delay that makes later inputs finish first."""
    time.sleep(0.01 * (n - i))
    return i * i


@pytest.mark.parametrize("executor", ["cluster", "local", "threads", "sync"])
def test_results_keep_input_order_and_progress_fires_once_each(executor, cluster_address):
    scheduler = {"cluster": cluster_address, "local": None}.get(executor, executor)
    n, done = 12, []
    with ReadPool(workers=2, scheduler=scheduler, threads_per_worker=4) as pool:
        got = pool.map(_late_for_early, range(n), on_done=done.append, n=n)
        assert pool.map(_late_for_early, [], n=n) == []
    assert got == [i * i for i in range(n)]
    assert done == [1] * n


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:{port}", "127.0.0.1"])
def test_unreachable_scheduler_is_a_clear_error(address, closed_port):
    address = address.format(port=closed_port)
    with dask.config.set({"distributed.comm.timeouts.connect": CONNECT_TIMEOUT}):
        with pytest.raises(SchedulerError, match=f"cannot reach the dask scheduler at {address} .*--scheduler"):
            ReadPool(scheduler=address)


def test_scheduler_without_workers_is_a_clear_error():
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster:
        with pytest.raises(SchedulerError, match="has no workers"):
            ReadPool(scheduler=cluster.scheduler_address, timeout=1)


def test_cli_unreachable_scheduler_exits_non_zero_and_keeps_the_dataset(small_preset, small_dataset, closed_port,
                                                                        tmp_path):
    out = tmp_path / "kept"
    shutil.copytree(small_dataset, out)
    preset_file = tmp_path / "small.json"
    preset_file.write_text(json.dumps(small_preset.to_dict()))
    exe = Path(sys.executable).with_name("ackd-bench")
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": CONNECT_TIMEOUT}
    res = subprocess.run(
        [str(exe), "build-dataset", "--preset", str(preset_file), "--out", str(out), "--force", "--quiet",
         "--scheduler", f"tcp://127.0.0.1:{closed_port}"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert f"cannot reach the dask scheduler at tcp://127.0.0.1:{closed_port}" in res.stderr.strip().splitlines()[-1]
    # --force replaces a dataset only with a complete new one: the old one is untouched.
    assert load_dataset(out).fingerprint == load_dataset(small_dataset).fingerprint


def _slow(i: int) -> int:
    time.sleep(0.3)
    return i


def test_lost_scheduler_is_a_clear_error():
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None,
                           scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    done = []

    def progress(n: int) -> None:
        done.append(n)
        if len(done) == 2:
            cluster.close()  # the scheduler goes away while reads are under way

    with ReadPool(scheduler=cluster.scheduler_address, timeout=2) as pool:
        with pytest.raises(SchedulerError, match="lost the dask scheduler .* rerun the same command"):
            pool.map(_slow, range(40), on_done=progress)
    assert 2 <= len(done) < 40
