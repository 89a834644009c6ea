"""The paper's claims, one by one, measured with paired statistics (issue 15).

Reads the RunResults of the consistency and claims grids on one build (``benchmarks/claims.sh``)
and writes ``OUT.md`` and ``OUT.json``: for every claim of arXiv 2511.08901 that the benchmark can
test, the two methods compared, the paper's value (reference/paper-notes.md §5), the measured
ΔOA with its 95% bootstrap CI and sign-flip p (``benchmark.compare.compare``: paired by seed
and test chip), Holm-adjusted over the table's rows, and a verdict:

* ``supported``: the difference has the paper's sign and is significant (Holm p < 0.05);
* ``contradicted``: significant with the opposite sign;
* ``not detected``: not significant (the row's minimum detectable difference says what could
  have been seen).

Partner quality (latent truth; SemBridge runs only): the share of students whose partner has
their sub-type, for the initial (SSM or random) partners and after DynM, beside random
same-class and oracle partners.

Usage:
    python benchmarks/claims_report.py benchmarks/results/consistency \\
        --dataset data/consistency-asymmetric --out benchmarks/results/claims
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ackd_bench.benchmark.compare import compare, labels_and_identity, on_dataset, p_text
from ackd_bench.benchmark.results import load_run_results, run_label
from ackd_bench.benchmark.stats import holm

R18 = "resnet18→resnet18"
R18_MV2 = "resnet18→mobilenetv2_100"
BASELINES = ("kd", "c2kd", "distilvpr", "dkd", "lskd", "ctkd", "rkd", "logits")

# (claim, method, against, pair, the paper's value, expected sign of method − against)
CLAIMS = [
    ("SemBridge beats the best baseline", "sembridge", "<best baseline>", R18,
     "+1.2 (EU, vs CTKD), +0.8 (CN), +1.2 (GL, vs LSKD)", +1),
    ("SemBridge beats the student alone", "sembridge", "student-only", R18, "+2.0 / +1.3 / +1.7", +1),
    ("SSM helps (SSM off costs accuracy)", "sembridge", "sembridge[ssm=false]", R18, "+1.2 / +0.9 / +1.0", +1),
    ("DynM helps", "sembridge", "sembridge[dynm=false]", R18, "positive (values not recovered)", +1),
    ("L_ot1 helps", "sembridge", "sembridge[ot1=false]", R18, "positive (values not recovered)", +1),
    ("L_ot2 helps", "sembridge", "sembridge[ot2=false]", R18, "positive (values not recovered)", +1),
    ("SemBridge as a plug-in improves DKD", "sembridge+dkd", "dkd", R18, "+14.9 (GL, the largest gain)", +1),
    ("SemBridge as a plug-in improves LSKD", "sembridge+lskd", "lskd", R18, "positive (values not recovered)", +1),
    ("The attention planner beats an explicit Sinkhorn plan", "sembridge", "sembridge[planner=sinkhorn]", R18,
     "not claimed (the paper argues its plan is an OT solution)", +1),
    ("L_ot2 on backbone embeddings (the authors') vs on plan-pooled tokens", "sembridge",
     "sembridge[ot2_space=planner]", R18, "not claimed (fidelity check)", +1),
    ("The paper's weighting vs the authors' code's effective weighting", "sembridge",
     "sembridge[weighting=official]", R18, "not claimed (fidelity check)", +1),
    ("Cross-architecture (R→M): SemBridge beats KD", "sembridge", "kd", R18_MV2, "SOTA on all six pairs", +1),
    ("Cross-architecture (R→M): SemBridge beats the student alone", "sembridge", "student-only", R18_MV2,
     "SOTA on all six pairs", +1),
]


def pair_of(run: dict) -> str:
    return f"{run['teacher']['arch']}→{run['student']['arch']}"


def mean_oa(runs: list[dict], label: str, pair: str) -> float | None:
    oa = [r["metrics"]["test"]["oa"] for r in runs if run_label(r) == label and pair_of(r) == pair]
    return 100 * float(np.mean(oa)) if oa else None


def compare_two(runs: list[dict], method: str, against: str, pair: str, labels: dict, fp: str, recipe: str) -> dict | None:
    """compare() of one method against one baseline on their common seeds, or None without both."""
    mine = [r for r in runs if pair_of(r) == pair and run_label(r) in (method, against)]
    seeds = ({r["seed"] for r in mine if run_label(r) == method} & {r["seed"] for r in mine if run_label(r) == against})
    mine = [r for r in mine if r["seed"] in seeds]
    if len(seeds) < 2:
        return None
    rows = compare(mine, against, labels=labels, fingerprint=fp, recipe=recipe)
    return next(r for r in rows if r["method"] == method)


def verdict(row: dict, sign: int) -> str:
    if not row["significant"]:
        return "not detected"
    return "supported" if np.sign(row["delta"]) == sign else "contradicted"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="output prefix (writes .md and .json)")
    args = ap.parse_args()

    fp, recipe, labels = labels_and_identity(args.dataset)
    runs = [r for r in load_run_results([args.results]) if on_dataset(r, fp, recipe)]
    present = {run_label(r) for r in runs if pair_of(r) == R18}
    best = max((b for b in BASELINES if b in present), key=lambda b: mean_oa(runs, b, R18), default=None)
    rows = []
    for claim, method, against, pair, paper, sign in CLAIMS:
        against = best if against == "<best baseline>" else against
        row = compare_two(runs, method, against, pair, labels, fp, recipe) if against else None
        rows.append({"claim": claim, "method": method, "against": against, "pair": pair, "paper": paper,
                     "sign": sign, "row": row})
    measured = [r for r in rows if r["row"] is not None]
    for r, adjusted in zip(measured, holm([r["row"]["p"] for r in measured])):
        r["row"]["p_holm_claims"] = adjusted
        r["row"]["significant"] = adjusted < 0.05

    lines = [f"# The paper's claims on `{args.dataset.name}` (fingerprint `{fp[:12]}`, {len(labels)} test chips)", "",
             "ΔOA = OA(method) − OA(against) in points, paired by seed and test chip; 95% bootstrap CI over "
             "seeds and chips; two-sided sign-flip p, Holm-adjusted over the rows of this table; MDD: the "
             "smallest ΔOA the row could detect (α 0.05, power 0.8). `fast` profile, 2-core CPU.", "",
             "| Claim | Method | Against | Pair | Paper (OA points) | Measured ΔOA [95% CI] | p (Holm) | MDD | seeds | Verdict |",
             "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        row = r["row"]
        if row is None:
            lines.append(f"| {r['claim']} | {r['method']} | {r['against']} | {r['pair']} | {r['paper']} | not run yet "
                         "| – | – | – | – |")
            continue
        r["verdict"] = verdict(row, r["sign"])
        mdd = "–" if row.get("mdd") is None else f"{row['mdd']:.1f}"
        lines.append(f"| {r['claim']} | {r['method']} | {r['against']} | {r['pair']} | {r['paper']} | "
                     f"{row['delta']:+.1f} [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}] | "
                     f"{p_text(row['p_holm_claims'])} | {mdd} | {row['n_seeds']} | {r['verdict']} |")

    lines += ["", "Mean test OA (%) per method (the numbers behind the rows):", "",
              "| Method | " + R18 + " | " + R18_MV2 + " |", "| --- | ---: | ---: |"]
    for label in sorted({run_label(r) for r in runs}):
        a, b = mean_oa(runs, label, R18), mean_oa(runs, label, R18_MV2)
        n = len([r for r in runs if run_label(r) == label and pair_of(r) == R18])
        lines.append(f"| {label} | {'–' if a is None else f'{a:.1f} (n={n})'} | {'–' if b is None else f'{b:.1f}'} |")

    quality = partner_quality(runs)
    if quality:
        lines += ["", "Partner quality in latent truth (SemBridge runs, resnet18→resnet18): share of students whose "
                      "partner has their sub-type, mean over seeds:", "",
                  "| Method | initial partners | after DynM | random same-class | oracle |", "| --- | ---: | ---: | ---: | ---: |"]
        for label, q in sorted(quality.items()):
            cells = [f"{np.mean(q[k]):.3f}" if q.get(k) else "–" for k in ("initial", "dynm", "random_same_class", "oracle")]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    Path(f"{args.out}.json").write_text(json.dumps(
        {"dataset": str(args.dataset), "fingerprint": fp, "best_baseline": best, "claims": rows,
         "partner_quality": quality}, indent=1, sort_keys=True, default=str) + "\n")
    print("\n".join(lines))


def partner_quality(runs: list[dict]) -> dict:
    out: dict = defaultdict(lambda: defaultdict(list))
    for r in runs:
        diag = r.get("diagnostics", {}).get("sembridge")
        if not diag or pair_of(r) != R18 or "partner_quality" not in diag:
            continue
        q = diag["partner_quality"]
        for key, name in (("ssm", "initial"), ("initial", "initial"), ("dynm", "dynm"),
                          ("random_same_class", "random_same_class"), ("oracle", "oracle")):
            if q.get(key) and q[key].get("subtype_agreement") is not None:
                out[run_label(r)][name].append(q[key]["subtype_agreement"])
    return {k: dict(v) for k, v in out.items()}


if __name__ == "__main__":
    main()
