"""Chip-read throughput over HTTP with latency: sequential vs threads vs a dask cluster, as ratios in one run.

The target (issue: curation on dask): reading chips concurrently (threads or dask workers) is
at least 10x faster than reading them one after another, at 50 ms per HTTP request.

The case: one Sentinel-2-like scene written as COGs (B02, B03, B04, B08 uint16 and SCL, 10 m,
256 px blocks, deflate) and served by a loopback HTTP server with Range support
(`rangehttpserver`) in its own process, which waits --latency-ms before answering each request.
Each chip is read by the build's reader (`curation.reading.read_chip`: SCL QA, then the four
bands) through `curation.parallel.ReadPool`, the build's executor. Every chip lies in its own
block, so each costs one range request per asset; every mode reads the files under a fresh URL
prefix, so no mode profits from GDAL's cache of another. Cluster start-up is timed apart from
the reads; the best of --repeats runs counts.

Modes: `sequential` (one chip after another), `threads-N` (a thread pool of this process),
`dask-threads-WxT` (the build's default: a local dask cluster of W workers with T threads each,
all in this process) and `dask-processes-WxT` (the same with worker processes).

Usage:
    python benchmarks/read_throughput.py                        # 50 ms, dask with 1, 2, 4 workers
    python benchmarks/read_throughput.py --latency-ms 0 --chips 64

Writes a JSON record (machine, settings, chips/s, ratios to sequential) to --out.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing
import os
import platform
import tempfile
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import dask
import numpy as np
import rasterio
from RangeHTTPServer import RangeRequestHandler

from ackd_bench.benchmark.dataset.files import atomic_write_text
from ackd_bench.curation.parallel import READS_PER_WORKER, ReadPool
from ackd_bench.curation.presets import BandSource, ModalitySpec
from ackd_bench.curation.reading import ItemRef, read_chip
from ackd_bench.curation.remote import Remote

BANDS = ("B02", "B03", "B04", "B08")
BLOCK = 256
CHIP_PX = 64
GSD = 10.0
EPSG = 32632
WEST, NORTH = 500_000.0, 5_600_000.0


class _SlowRangeHandler(RangeRequestHandler):
    """Range requests after a fixed delay; the first path segment (a run's prefix) is ignored."""

    protocol_version = "HTTP/1.1"  # keep-alive, as object stores do
    latency = 0.05
    requests = None  # a shared counter

    def do_GET(self):  # noqa: N802 - http.server's naming
        time.sleep(self.latency)
        with self.requests.get_lock():
            self.requests.value += 1
        super().do_GET()

    def do_HEAD(self):  # noqa: N802
        time.sleep(self.latency)
        super().do_HEAD()

    def translate_path(self, path: str) -> str:
        return super().translate_path("/" + path.lstrip("/").split("/", 1)[-1])

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


def _serve(folder: str, latency: float, requests, port_pipe) -> None:
    """The HTTP server, in its own process so that its Python work does not compete for our GIL."""
    handler = type("Handler", (_SlowRangeHandler,), {"latency": latency, "requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=folder))
    server.daemon_threads = True
    port_pipe.send(server.server_address[1])
    server.serve_forever()


def write_scene(folder: Path, n_chips: int, seed: int) -> int:
    """COGs of one scene with at least ``n_chips`` blocks; returns the side in pixels."""
    side = math.ceil(math.sqrt(n_chips)) * BLOCK
    rng = np.random.default_rng(seed)
    transform = rasterio.Affine(GSD, 0.0, WEST, 0.0, -GSD, NORTH)
    profile = {"driver": "COG", "width": side, "height": side, "count": 1, "crs": f"EPSG:{EPSG}",
               "transform": transform, "nodata": 0, "compress": "DEFLATE", "predictor": "2", "blocksize": BLOCK}
    smooth = np.add.outer(np.linspace(0, 2000, side), np.linspace(0, 1500, side))
    for i, band in enumerate(BANDS):
        data = (800 + 300 * i + smooth + rng.normal(0, 40, (side, side))).clip(1, 10_000).astype(np.uint16)
        with rasterio.open(folder / f"{band}.tif", "w", dtype="uint16", **profile) as dst:
            dst.write(data, 1)
    scl = np.full((side, side), 4, dtype=np.uint8)  # vegetation: every chip passes QA on its first item
    with rasterio.open(folder / "SCL.tif", "w", dtype="uint8", **profile) as dst:
        dst.write(scl, 1)
    return side


def chips(side: int, n: int, seed: int) -> list[dict]:
    """``n`` chips, each at a random 64 px-aligned place inside a block of its own."""
    rng = np.random.default_rng(seed)
    per_row = side // BLOCK
    blocks = rng.permutation(per_row * per_row)[:n]
    out = []
    for b in blocks:
        r = (b // per_row) * BLOCK + rng.integers(0, BLOCK // CHIP_PX) * CHIP_PX
        c = (b % per_row) * BLOCK + rng.integers(0, BLOCK // CHIP_PX) * CHIP_PX
        minx, maxy = WEST + c * GSD, NORTH - r * GSD
        out.append({"candidate_id": f"chip-{b}", "minx": minx, "miny": maxy - CHIP_PX * GSD,
                    "maxx": minx + CHIP_PX * GSD, "maxy": maxy, "crs": f"EPSG:{EPSG}"})
    return out


def item(base_url: str, prefix: str) -> ItemRef:
    assets = {name: f"{base_url}/{prefix}/{name}.tif" for name in (*BANDS, "SCL")}
    return ItemRef(id="scene", collection="bench", datetime="2024-06-01T10:00:00Z", epsg=EPSG, assets=assets,
                   properties={"s2:processing_baseline": "05.00"})


SPEC = ModalitySpec(collection="bench", bands=tuple(BandSource(b, b) for b in BANDS), aois=((0, 0, 1, 1),),
                    datetime="2024-01-01/2024-12-31", gsd=GSD, chip_px=CHIP_PX, dtype="uint16", qa_asset="SCL")


def read_all(pool: ReadPool, todo: list[dict], it: ItemRef) -> float:
    """Seconds to read ``todo`` (all chips must pass)."""
    t0 = time.perf_counter()
    got = pool.map(read_chip, todo, [[it]] * len(todo), spec=SPEC, max_cloud=0.1, max_nodata=0.1,
                   remote=Remote())
    seconds = time.perf_counter() - t0
    bad = [g.reject for g in got if g.reject]
    if bad:
        raise RuntimeError(f"{len(bad)} chips rejected, e.g. {bad[0]}")
    if [g.candidate_id for g in got] != [c["candidate_id"] for c in todo]:
        raise RuntimeError("results out of input order")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-ms", type=float, default=50.0, help="delay before each HTTP answer")
    ap.add_argument("--chips", type=int, default=128, help="chips per concurrent run")
    ap.add_argument("--sequential-chips", type=int, default=32, help="chips per sequential run")
    ap.add_argument("--threads", type=int, default=16, help="threads of the in-process thread pool")
    ap.add_argument("--workers", default="1,2,4", help="dask worker counts")
    ap.add_argument("--threads-per-worker", type=int, default=READS_PER_WORKER)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--note", default="", help="what else ran on the machine meanwhile (kept in the record)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    tpw = args.threads_per_worker
    modes = [("sequential", {"scheduler": "sync"}, args.sequential_chips),
             (f"threads-{args.threads}", {"scheduler": "threads", "workers": 1, "threads_per_worker": args.threads},
              args.chips)]
    for w in worker_counts:
        modes.append((f"dask-processes-{w}x{tpw}", {"workers": w, "threads_per_worker": tpw, "processes": True},
                      args.chips))
    for w in worker_counts:
        modes.append((f"dask-threads-{w}x{tpw}", {"workers": w, "threads_per_worker": tpw, "processes": False},
                      args.chips))

    load_before = os.getloadavg()
    ctx = multiprocessing.get_context("spawn")
    requests = ctx.Value("l", 0)
    with tempfile.TemporaryDirectory(prefix="read-throughput-") as tmp:
        side = write_scene(Path(tmp), max(args.chips, args.sequential_chips) + 1, seed=0)
        port_recv, port_send = ctx.Pipe(duplex=False)
        server = ctx.Process(target=_serve, args=(tmp, args.latency_ms / 1000, requests, port_send), daemon=True)
        server.start()
        try:
            base = f"http://127.0.0.1:{port_recv.recv()}"
            rows = chips(side, max(args.chips, args.sequential_chips) + 1, seed=1)
            warm_chip, rows = rows[:1], rows[1:]
            results, run = {}, 0
            for name, options, n in modes:
                t0 = time.perf_counter()
                with ReadPool(**options) as pool:
                    pool.map(len, [()])  # starts the cluster: the cost a build pays once
                    startup = time.perf_counter() - t0
                    # Import the reader on every worker thread, outside the timing (another URL prefix).
                    warm = options.get("workers", 1) * options.get("threads_per_worker", 1)
                    read_all(pool, warm_chip * warm, item(base, f"warm{run}"))
                    best, per_chip = math.inf, []
                    for _ in range(args.repeats):
                        run += 1
                        before = requests.value
                        best = min(best, read_all(pool, rows[:n], item(base, f"run{run}")))
                        per_chip.append((requests.value - before) / n)
                results[name] = {"chips": n, "seconds": best, "chips_per_s": n / best,
                                 "requests_per_chip": max(per_chip), "startup_s": startup}
                print(f"{name:28s} {n / best:8.1f} chips/s  ({n} chips in {best:.2f} s, "
                      f"{max(per_chip):.2f} requests/chip, start-up {startup:.2f} s)", flush=True)
        finally:
            server.terminate()
            server.join()

    seq = results["sequential"]["chips_per_s"]
    ratios = {name: r["chips_per_s"] / seq for name, r in results.items() if name != "sequential"}
    record = {
        "benchmark": "read_throughput",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "load_avg_1_5_15_before": load_before,
                    "load_avg_1_5_15_after": os.getloadavg(), "python": platform.python_version(),
                    "gdal": rasterio.__gdal_version__, "rasterio": rasterio.__version__, "dask": dask.__version__},
        "settings": {"latency_ms": args.latency_ms, "chips": args.chips, "sequential_chips": args.sequential_chips,
                     "chip_px": CHIP_PX, "assets_per_chip": len(BANDS) + 1, "cog_block_px": BLOCK,
                     "scene_px": side, "threads": args.threads, "workers": worker_counts,
                     "threads_per_worker": tpw, "repeats": args.repeats},
        "results": results,
        "chips_per_s": {name: r["chips_per_s"] for name, r in results.items()},
        "speedup_over_sequential": ratios,
        "target": "max(speedup_over_sequential) >= 10 at 50 ms latency",
        "target_met": max(ratios.values()) >= 10,
        "note": args.note,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "read_throughput_cpu.json"
    atomic_write_text(path, json.dumps(record, indent=1))
    print(json.dumps({"speedup_over_sequential": ratios, "target_met": record["target_met"]}, indent=1))


if __name__ == "__main__":
    main()
