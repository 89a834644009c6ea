"""Training-step time in a sweep's dask worker vs in the calling process, measured in one run.

`ackd-bench sweep` trains each run in a worker process of a local dask cluster. dask's nannies
start workers with OMP_NUM_THREADS=1 and MALLOC_TRIM_THRESHOLD_=65536 unless told otherwise;
both slow CPU training (torch.set_num_threads in the task does not undo the first). This script
times the same resnet18 training step (64 px, batch 64, Adam, CPU) in this process, in a worker
started as `benchmark.sweep` starts them, and in a worker with dask's defaults; the target is a
ratio worker / local of at most 1.1.

Usage:
    python benchmarks/sweep_worker_speed.py --out benchmarks/results/sweep_worker_speed_cpu.json

Run it on an otherwise idle machine: the three measurements take turns, not the cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def step_seconds(threads: int, steps: int, px: int, batch: int) -> dict:
    """Mean seconds of a training step, with the environment the process started with."""
    import os

    import timm
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = timm.create_model("resnet18", num_classes=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, px, px)
    y = torch.arange(batch) % 8

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(2):  # warm-up: allocator and oneDNN primitive caches
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return {"step_s": (time.perf_counter() - start) / steps, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
            "torch_threads": torch.get_num_threads()}


def in_worker(client_factory, **kw) -> dict:
    """``step_seconds`` in the one worker of a fresh cluster; this process's environment restored
    afterwards (a nanny writes its pre-spawn settings into it, which the next worker would inherit)."""
    import os

    saved = dict(os.environ)
    client, cluster = client_factory()
    try:
        return client.submit(step_seconds, pure=False, **kw).result()
    finally:
        client.close()
        cluster.close()
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--px", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sweep_worker_speed_cpu.json"))
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from ackd_bench.benchmark.sweep import _cpu_count, _start_client

    threads = _cpu_count()
    kw = {"threads": threads, "steps": args.steps, "px": args.px, "batch": args.batch}

    def sweep_worker():
        return _start_client(workers=1, scheduler=None, gpus=0, threads=threads)

    def dask_default_worker():
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        return Client(cluster, set_as_default=False), cluster

    sweep = in_worker(sweep_worker, **kw)
    default = in_worker(dask_default_worker, **kw)
    local = step_seconds(**kw)
    record = {
        "benchmark": "sweep_worker_speed", "machine": platform.processor() or platform.machine(),
        "cores": threads, "settings": {k: v for k, v in kw.items()}, "local": local, "sweep_worker": sweep,
        "dask_default_worker": default,
        "ratio_sweep_worker_over_local": sweep["step_s"] / local["step_s"],
        "ratio_dask_default_over_local": default["step_s"] / local["step_s"],
        "target": "ratio_sweep_worker_over_local <= 1.1",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"step: local {local['step_s']:.3f} s, sweep worker {sweep['step_s']:.3f} s "
          f"({record['ratio_sweep_worker_over_local']:.2f}x), dask-default worker {default['step_s']:.3f} s "
          f"({record['ratio_dask_default_over_local']:.2f}x); wrote {args.out}")


if __name__ == "__main__":
    main()
