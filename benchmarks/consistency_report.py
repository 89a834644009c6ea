"""The consistency-spectrum report (issue 15): accuracy, gains and transport costs from paired to asymmetric.

Reads the RunResults of ``benchmark/grids/consistency.yaml`` run on builds of one preset at several
consistency levels (``benchmarks/consistency_spectrum.sh``) and writes ``OUT.md``, ``OUT.json`` and
``OUT.png``:

1. Test OA per method and build (mean ± std over seeds).
2. Each method's gain over student-only on each build, paired by seed and test chip
   (:func:`benchmark.compare.compare`: ΔOA, bootstrap CI, sign-flip p, Holm over the build's rows).
3. Which methods lose their gain from the paired to the asymmetric build: the difference of the
   per-seed gains between the two builds (their test chips differ, so the pairing is by seed
   only), a bootstrap CI over seeds and an exact permutation p over the seed-level gains. This is a
   test with few degrees of freedom (5 + 5 seeds): it can only find large changes.
4. The measured transport costs per build, from SemBridge's diagnostics at the end of training
   (:func:`sembridge.method.pairing_costs`, POT ``emd2``): W2² between the teacher partners'
   and the students' distributions, in the latent truth (a space no method optimises) and in
   the class-probability space at T = 3 (the space KD transfers in), for random same-class
   partners and, where the build has them, the true co-located ones. ``pair`` is the mean
   squared distance of the partners themselves (the cost of the coupling the pairing imposes).

Usage:
    python benchmarks/consistency_report.py benchmarks/results/consistency \\
        --dataset data/consistency-paired --dataset data/consistency-partial-05 \\
        --dataset data/consistency-asymmetric --out benchmarks/results/consistency.report
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ackd_bench.benchmark.compare import compare, labels_and_identity, on_dataset, p_text
from ackd_bench.benchmark.dataset import load_dataset
from ackd_bench.benchmark.results import load_run_results, run_label
from ackd_bench.benchmark.table import method_sort_key

BASELINE = "student-only"
SPACES = ("latent", "probability_T")
MEASURES = ("emd", "pair")


def build_info(path: Path) -> dict:
    ds = load_dataset(path)
    fp, recipe, labels = labels_and_identity(path)
    mode = ds.manifest.get("consistency", {})
    return {"path": str(path), "name": path.name, "fingerprint": fp, "recipe": recipe, "labels": labels,
            "consistency": mode.get("mode", "?"), "overlap": mode.get("overlap")}


def seed_gains(runs: list[dict], method: str) -> dict[int, float]:
    """{seed: OA(method) − OA(student-only)} in points, for the seeds both have."""
    oa = defaultdict(dict)
    for r in runs:
        oa[run_label(r)][r["seed"]] = 100 * r["metrics"]["test"]["oa"]
    return {s: oa[method][s] - oa[BASELINE][s] for s in oa.get(method, {}) if s in oa.get(BASELINE, {})}


def gain_change(a: dict[int, float], b: dict[int, float], *, n_boot: int = 5000, seed: int = 0) -> dict:
    """Mean gain on build a minus mean gain on build b: bootstrap CI over seeds (each build resampled on
    its own) and an exact two-sided permutation p over all splits of the pooled seed-level gains."""
    x, y = np.array(list(a.values())), np.array(list(b.values()))
    if len(x) < 2 or len(y) < 2:
        return {"delta": float(x.mean() - y.mean()) if len(x) and len(y) else None, "ci_low": None,
                "ci_high": None, "p": None, "n": [len(x), len(y)]}
    rng = np.random.default_rng(seed)
    boot = (rng.choice(x, (n_boot, len(x))).mean(1) - rng.choice(y, (n_boot, len(y))).mean(1))
    observed = x.mean() - y.mean()
    pooled = np.concatenate([x, y])
    splits = list(itertools.combinations(range(len(pooled)), len(x)))
    stats = np.array([pooled[list(c)].mean() - np.delete(pooled, list(c)).mean() for c in splits])
    p = float((np.abs(stats) >= abs(observed) - 1e-12).mean())
    return {"delta": float(observed), "ci_low": float(np.percentile(boot, 2.5)),
            "ci_high": float(np.percentile(boot, 97.5)), "p": p, "n": [len(x), len(y)]}


def transport(runs: list[dict]) -> dict:
    """{(space, pairing, measure): [values over seeds]} from SemBridge's transport_end, plus matcher hit@k."""
    out: dict = defaultdict(list)
    for r in runs:
        diag = r.get("diagnostics", {}).get("sembridge")
        if not diag or run_label(r) != "sembridge":
            continue
        for space in SPACES:
            for pairing, costs in diag.get("transport_end", {}).get(space, {}).items():
                for m in MEASURES:
                    out[(space, pairing, m)].append(costs[m])
        hits = diag["matching"].get("matcher", {}).get("true_pair_hits")
        if hits and hits.get("students_with_true_partner"):
            for k in ("hit@1", "chance@1", "hit@10", "chance@10"):
                out[("matcher", k)].append(hits[k])
        quality = diag.get("partner_quality", {})
        for pairing in ("random_same_class", "ssm", "dynm"):
            if quality.get(pairing):
                out[("subtype_agreement", pairing)].append(quality[pairing]["subtype_agreement"])
        true_q = diag.get("true_pairs_quality", {}).get("true")
        if true_q:
            out[("subtype_agreement", "true")].append(true_q["subtype_agreement"])
    return out


def fmt(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    if not values:
        return "–"
    v = np.array(values) * scale
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else f"{v[0]:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--dataset", type=Path, action="append", required=True,
                    help="a build, from most to least consistent (repeat)")
    ap.add_argument("--out", type=Path, required=True, help="output prefix (writes .md, .json, .png)")
    ap.add_argument("--pair", default="resnet18→resnet18", help="teacher→student pair reported (default %(default)s)")
    args = ap.parse_args()

    results = [r for r in load_run_results([args.results])
               if f"{r['teacher']['arch']}→{r['student']['arch']}" == args.pair]
    builds = [build_info(p) for p in args.dataset]
    per_build = {b["name"]: [r for r in results if on_dataset(r, b["fingerprint"], b["recipe"])] for b in builds}
    methods = sorted({run_label(r) for runs in per_build.values() for r in runs}, key=method_sort_key)
    names = [b["name"] for b in builds]
    report: dict = {"builds": [{k: v for k, v in b.items() if k != "labels"} for b in builds], "accuracy": {},
                    "gains": {}, "gain_change": {}, "transport": {}}
    lines = [f"# Consistency spectrum: the same preset paired, partial and asymmetric ({args.pair}, `fast`)", "",
             "Builds: " + ", ".join(f"`{b['name']}` ({b['consistency']}, overlap {b['overlap']}, fingerprint "
                                    f"`{b['fingerprint'][:12]}`, {len(b['labels'])} test chips)" for b in builds), "",
             "## Test OA (%), mean ± std over seeds (n)", "",
             "| Method | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for m in methods:
        cells = []
        for n in names:
            oa = [100 * r["metrics"]["test"]["oa"] for r in per_build[n] if run_label(r) == m]
            report["accuracy"].setdefault(m, {})[n] = oa
            cells.append(f"{fmt(oa, digits=1)} ({len(oa)})" if oa else "–")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    teacher = {n: sorted({(r["seed"], r["teacher"]["metrics"]["test_oa"]) for r in per_build[n]}) for n in names}
    lines.append("| teacher (MS) | " + " | ".join(fmt([100 * t for _, t in teacher[n]], digits=1) for n in names) + " |")

    lines += ["", f"## Gain over {BASELINE} per build (ΔOA points, paired by seed and test chip; "
                  "95% bootstrap CI; sign-flip p, Holm-adjusted within the build)", "",
              "| Method | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    gains: dict = defaultdict(dict)
    for b in builds:
        runs = per_build[b["name"]]
        labels_present = {run_label(r) for r in runs}
        if BASELINE not in labels_present or len(labels_present) < 2:
            continue
        seeds = {s for s in (r["seed"] for r in runs if run_label(r) == BASELINE)}
        usable = [r for r in runs if r["seed"] in seeds]
        # only methods with every baseline seed (compare refuses otherwise); the others wait for their runs
        complete = {m for m in labels_present
                    if seeds <= {r["seed"] for r in usable if run_label(r) == m}}
        rows = compare([r for r in usable if run_label(r) in complete], BASELINE, labels=b["labels"],
                       fingerprint=b["fingerprint"], recipe=b["recipe"]) if len(complete) > 1 else []
        for row in rows:
            gains[row["method"]][b["name"]] = row
    for m in methods:
        if m == BASELINE:
            continue
        cells = []
        for n in names:
            row = gains[m].get(n)
            cells.append("–" if row is None else
                         f"{row['delta']:+.1f} [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}] p={p_text(row['p_holm'])}"
                         f" (n={row['n_seeds']})")
            report["gains"].setdefault(m, {})[n] = None if row is None else {
                k: row[k] for k in ("delta", "ci_low", "ci_high", "p", "p_holm", "n_seeds", "n_chips")}
        lines.append(f"| {m} | " + " | ".join(cells) + " |")

    first, last = names[0], names[-1]
    lines += ["", f"## Does the gain shrink from `{first}` to `{last}`?", "",
              f"Mean per-seed gain over {BASELINE} on `{first}` minus that on `{last}` (points); 95% bootstrap "
              "CI over seeds; exact permutation p over the seed-level gains (the builds' test chips differ, so "
              "this pairs nothing: a coarse test).", "",
              "| Method | gain paired | gain asymmetric | change | 95% CI | p |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for m in methods:
        if m == BASELINE:
            continue
        a, b = seed_gains(per_build[first], m), seed_gains(per_build[last], m)
        change = gain_change(a, b)
        report["gain_change"][m] = change | {"gains_first": a, "gains_last": b}
        if change["delta"] is None:
            continue
        ci = ("–" if change["ci_low"] is None else f"[{change['ci_low']:+.1f}, {change['ci_high']:+.1f}]")
        lines.append(f"| {m} | {np.mean(list(a.values())):+.1f} | {np.mean(list(b.values())):+.1f} | "
                     f"{change['delta']:+.1f} | {ci} | {'–' if change['p'] is None else p_text(change['p'])} |")

    lines += ["", "## Transport costs per build (SemBridge runs, end of training; mean ± std over seeds)", "",
              "W2² (`emd`) between the distribution of teacher partners and that of the students, and the "
              "mean squared partner distance (`pair`), for random same-class partners and the true "
              "co-located pairs. `latent`: the latent truth [composition, standardised factors]; "
              "`probability_T`: class probabilities at T = 3 (teacher gallery vs the trained student).", "",
              "| Space | Pairing | Measure | " + " | ".join(names) + " |", "| --- | --- | --- |" + " ---: |" * len(names)]
    costs = {n: transport(per_build[n]) for n in names}
    for space in SPACES:
        for pairing in ("random", "ssm", "dynm", "true"):
            for measure in MEASURES:
                vals = [costs[n].get((space, pairing, measure), []) for n in names]
                if not any(vals):
                    continue
                lines.append(f"| {space} | {pairing} | {measure} | " + " | ".join(fmt(v, digits=4) for v in vals) + " |")
    lines += ["", "Matcher (SSM) against the true pairs, and partner sub-type agreement with the student (latent truth):", "",
              "| Measure | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for key in (("matcher", "hit@1"), ("matcher", "chance@1"), ("matcher", "hit@10"), ("matcher", "chance@10"),
                ("subtype_agreement", "random_same_class"), ("subtype_agreement", "ssm"),
                ("subtype_agreement", "dynm"), ("subtype_agreement", "true")):
        vals = [costs[n].get(key, []) for n in names]
        if any(vals):
            lines.append(f"| {' '.join(key)} | " + " | ".join(fmt(v, digits=3) for v in vals) + " |")
    report["transport"] = {n: {" ".join(k): v for k, v in c.items()} for n, c in costs.items()}

    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    plot(report, names, Path(f"{args.out}.png"))
    print("\n".join(lines))


def plot(report: dict, names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(names))
    for m, by_build in report["accuracy"].items():
        means = [np.mean(by_build[n]) if by_build.get(n) else np.nan for n in names]
        stds = [np.std(by_build[n], ddof=1) if len(by_build.get(n, [])) > 1 else 0.0 for n in names]
        ax.errorbar(x, means, yerr=stds, marker="o", capsize=3, label=m)
    ax.set_xticks(x, names)
    ax.set_ylabel("test OA (%)")
    ax.set_title("Accuracy from paired to asymmetric")
    ax.legend(fontsize=8)
    for pairing in ("random", "true"):
        vals = [report["transport"][n].get(f"latent {pairing} emd", []) for n in names]
        means = [np.mean(v) if v else np.nan for v in vals]
        bx.plot(x, means, marker="o", label=f"latent truth, {pairing} partners")
        vals = [report["transport"][n].get(f"probability_T {pairing} emd", []) for n in names]
        means = [np.mean(v) if v else np.nan for v in vals]
        bx.plot(x, means, marker="s", linestyle="--", label=f"class probabilities, {pairing} partners")
    bx.set_xticks(x, names)
    bx.set_yscale("log")
    bx.set_ylabel("W2² (POT emd2)")
    bx.set_title("Transport cost teacher partners → students")
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
