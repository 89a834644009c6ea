"""STAC export time per chip as the dataset grows, with and without pystac's hierarchy search.

`ackd-bench export --stac` links every chip to the scene it was cut from. Written as plain
``pystac.Link``s, each such absolute href makes pystac walk the whole catalog on save to decide
whether the target lies inside it (pystac issue 1207), so saving is quadratic in the chips: the
12,960-chip demo dataset had not finished after 17 minutes (46 s now). The export writes these
links as given instead. This script exports synthetic datasets of two sizes both ways in one run
and reports seconds per chip; the target is a large/small per-chip ratio of at most 1.5 for the
export (linear), where the plain links give about the size ratio (quadratic).

Usage:
    python benchmarks/export_scaling.py --out benchmarks/results/export_scaling_cpu.json
    python benchmarks/export_scaling.py --sizes 20 80    # chips = 18 x size
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path


def export_seconds(per_class_split: int, *, plain_links: bool, workdir: Path) -> tuple[int, float]:
    """``(chips, seconds)`` of one STAC export of a synthetic dataset (the dataset write not timed)."""
    from ackd_bench.benchmark.dataset import write_dataset
    from ackd_bench.benchmark.dataset.export import stac
    from ackd_bench.benchmark.dataset.synthetic import make_synthetic_dataset_inputs

    manifest, samples, arrays = make_synthetic_dataset_inputs(0, per_class_split=per_class_split)
    tag = f"{per_class_split}-{'plain' if plain_links else 'export'}"
    ds = write_dataset(workdir / f"ds-{tag}", manifest=manifest, samples=samples, arrays=arrays)
    original = stac._external_link
    if plain_links:
        import pystac

        stac._external_link = lambda rel, href, **kw: pystac.Link(rel, href, **kw)
    try:
        start = time.perf_counter()
        stac.export_stac(ds, workdir / f"stac-{tag}")
        return len(samples), time.perf_counter() - start
    finally:
        stac._external_link = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=(20, 80), metavar=("SMALL", "LARGE"),
                        help="chips per (class, split, modality); a dataset has 18 x this many chips")
    parser.add_argument("--out", type=Path, help="write the record here as JSON")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="export-scaling-") as tmp:
        for plain in (False, True):
            for size in args.sizes:
                chips, seconds = export_seconds(size, plain_links=plain, workdir=Path(tmp))
                rows.append({"links": "plain pystac.Link" if plain else "export", "chips": chips,
                             "seconds": round(seconds, 3), "ms_per_chip": round(1000 * seconds / chips, 3)})
                print(f"{rows[-1]['links']:>18}  {chips:6d} chips  {seconds:7.2f} s  "
                      f"{rows[-1]['ms_per_chip']:7.2f} ms/chip")
    per_chip = {(r["links"], r["chips"]): r["ms_per_chip"] for r in rows}
    small, large = sorted({r["chips"] for r in rows})
    ratios = {links: round(per_chip[(links, large)] / per_chip[(links, small)], 2)
              for links in ("export", "plain pystac.Link")}
    print(f"per-chip time, {large} vs {small} chips: export x{ratios['export']} (target <= 1.5), "
          f"plain links x{ratios['plain pystac.Link']} (size ratio {large / small:.1f})")
    if args.out:
        record = {"benchmark": "export_scaling", "machine": platform.machine(), "processor": platform.processor(),
                  "python": platform.python_version(), "rows": rows, "per_chip_ratio": ratios,
                  "size_ratio": round(large / small, 2), "target": "export per_chip_ratio <= 1.5"}
        args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
