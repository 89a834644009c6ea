"""SemBridge's diagnostics across runs: transport costs of random vs SSM vs DynM partners, re-matching.

Reads the RunResult JSON files of SemBridge runs (``ackd-bench run --method sembridge ...``) and
writes a Markdown summary and a plot of the exact transport cost (W2², POT ``emd2``) between the
teacher's and the student's embedding distributions of matched pairs, per pairing, at the start
and the end of training, in both diagnostic spaces (class probabilities at T = 3; the SSM
matcher's embedding space), mean ± std over seeds.

Usage:
    python benchmarks/sembridge_report.py results/demo-fast --out benchmarks/results/sembridge_demo_fast
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ackd_bench.benchmark.results import load_run_results, run_label

PAIRINGS = ("random", "ssm", "initial", "dynm")


def collect(results: list[dict]) -> dict:
    """label -> {(moment, space, pairing, measure): [values over seeds]} and re-matching stats."""
    table: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    for r in results:
        diag = r.get("diagnostics", {}).get("sembridge")
        if not diag:
            continue
        cells = table[run_label(r)]
        cells[("test_oa",)].append(r["metrics"]["test"]["oa"])
        cells[("val_oa",)].append(r["metrics"]["val"]["oa"])
        m = diag["matching"]
        cells[("distinct", "initial")].append(m["initial_distinct_partners"] / m["students"])
        cells[("distinct", "final")].append(m["final_distinct_partners"] / m["students"])
        changed = [h["rematch_changed"] for h in r["diagnostics"]["history"] if "rematch_changed" in h]
        if changed:
            cells[("rematch_changed",)].append(float(np.mean(changed)))
        for moment in ("transport_start", "transport_end"):
            for space, pairs in diag.get(moment, {}).items():
                if not isinstance(pairs, dict):
                    continue
                for pairing, measures in pairs.items():
                    for measure, value in measures.items():
                        cells[(moment, space, pairing, measure)].append(value)
    return table


def _fmt(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    if not values:
        return "–"
    v = np.asarray(values) * scale
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.{digits}f}"


def markdown(table: dict) -> str:
    lines = ["# SemBridge diagnostics", ""]
    for label, cells in sorted(table.items()):
        n = len(cells[("test_oa",)])
        lines += [f"## {label} ({n} seeds)", "",
                  f"- test OA {_fmt(cells[('test_oa',)], 100, 1)} %, val OA {_fmt(cells[('val_oa',)], 100, 1)} %",
                  f"- distinct MS partners per RGB student: initial {_fmt(cells[('distinct', 'initial')])}, "
                  f"final {_fmt(cells[('distinct', 'final')])}",
                  f"- mean share of partners changed per re-matching: {_fmt(cells.get(('rematch_changed',), []))}",
                  "", "| moment | space | pairing | W2² (emd) | Sinkhorn | pair cost |", "|---|---|---|---|---|---|"]
        for moment in ("transport_start", "transport_end"):
            for space in ("probability_T", "matcher"):
                for pairing in PAIRINGS:
                    key = (moment, space, pairing)
                    if (*key, "emd") not in cells:
                        continue
                    lines.append(f"| {moment.split('_')[1]} | {space} | {pairing} | {_fmt(cells[(*key, 'emd')])} | "
                                 f"{_fmt(cells[(*key, 'sinkhorn')])} | {_fmt(cells[(*key, 'pair')])} |")
        lines.append("")
    return "\n".join(lines)


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted(table)
    panels = [("transport_start", "probability_T"), ("transport_end", "probability_T"),
              ("transport_start", "matcher"), ("transport_end", "matcher")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    colors = {"random": "#999999", "ssm": "#1f77b4", "initial": "#8c564b", "dynm": "#d62728"}
    width = 0.8 / len(PAIRINGS)
    for ax, (moment, space) in zip(axes[0], panels):
        for j, pairing in enumerate(PAIRINGS):
            means, stds, xs = [], [], []
            for i, label in enumerate(labels):
                vals = table[label].get((moment, space, pairing, "emd"), [])
                if vals:
                    xs.append(i + (j - 1.5) * width)
                    means.append(np.mean(vals))
                    stds.append(np.std(vals, ddof=1) if len(vals) > 1 else 0.0)
            if xs:
                ax.bar(xs, means, width, yerr=stds, color=colors[pairing], label=pairing, capsize=2)
        ax.set_title(f"{space}, {moment.split('_')[1]} of training", fontsize=9)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("W2² of matched pairs (emd)", fontsize=8)
    legend = {}
    for ax in axes[0]:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(name, handle)
    fig.legend(list(legend.values()), list(legend), fontsize=7, loc="upper right")
    fig.tight_layout(rect=(0, 0, 0.95, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", type=Path, help="RunResult files or folders")
    ap.add_argument("--out", type=Path, required=True, help="Output stem: writes STEM.md, STEM.json and STEM.png")
    args = ap.parse_args()
    table = collect(load_run_results(args.paths))
    if not table:
        raise SystemExit("no SemBridge RunResults with diagnostics found in " + ", ".join(map(str, args.paths)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(markdown(table))
    args.out.with_suffix(".json").write_text(json.dumps(
        {label: {"|".join(k): v for k, v in cells.items()} for label, cells in table.items()}, indent=1))
    plot(table, args.out.with_suffix(".png"))
    print(markdown(table))


if __name__ == "__main__":
    main()
