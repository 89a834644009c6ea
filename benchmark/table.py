"""The standardized results table: RunResults aggregated over seeds, rendered as Markdown, CSV, LaTeX or JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ackd_bench.benchmark.results import ResultSchemaError, run_label, validate_run_result, verify_run_metrics
from ackd_bench.benchmark.stats import minimum_detectable_difference, pooled_std

FORMATS = ("csv", "json", "latex", "md")
SPLITS = ("val", "test")
# Scalar fractions of a RunResult's metrics block that a table can average; labels for headings.
METRIC_LABELS = {"oa": "OA", "macro_precision": "macro precision", "macro_recall": "macro recall",
                 "macro_f1": "macro F1"}
TEACHER_ROW = "teacher (MS)"
# Names a runner may give the student trained without a teacher; it heads every block.
STUDENT_ONLY_METHODS = frozenset({"student", "student_only", "student-only", "ce", "none"})
CI_LEVEL = 0.95
MISSING = "—"

Row = dict[str, Any]


def aggregate(results: list[dict], *, metric: str = "oa", split: str = "test", n_boot: int = 2000,
              seed: int = 0) -> list[Row]:
    """Mean, std and bootstrap CI over seeds for every (dataset, teacher, student, method).

    Rows are grouped by dataset name *and* fingerprint, so results on different builds of a
    dataset are never averaged together. Where results carry the teacher's own score
    (``teacher.metrics["{split}_{metric}"]``), one extra row per group, method ``"teacher (MS)"``
    and kind ``"teacher"``, holds it (one value per distinct teacher checkpoint and seed).
    Every row also carries its dataset block's minimum detectable difference, ``mdd`` (see
    :func:`grid_mdd`; paired by test chip only for the test OA of runs with predictions).
    Every result's stated metrics are first recomputed from its own evidence
    (:func:`~ackd_bench.benchmark.results.verify_run_metrics`); a run that disagrees is refused.

    Args:
        results: RunResult dicts (e.g. from :func:`~ackd_bench.benchmark.results.load_run_results`).
        metric: one of ``METRIC_LABELS`` (fractions in the JSON).
        split: ``"test"`` or ``"val"``.
        n_boot: bootstrap resamples for the CI.
        seed: seed of the bootstrap's ``numpy.random.Generator`` (fresh per row, so a row's CI
            does not depend on which other rows are present).

    Returns:
        Rows sorted by dataset, fingerprint, teacher→student pair and method order, each with
        ``dataset, dataset_version, fingerprint, teacher, student, pair, method, kind, metric,
        split, n, seeds, values, mean, std, ci_low, ci_high, ci_level, mdd``; all scores in percent.
        Method rows also have ``unpinned_seeds``: seeds whose run carries no test predictions
        (older runs; checked against their confusion matrices only), marked in the Markdown.

    Raises:
        ResultSchemaError: a result is not a valid RunResult, or two results are the same run
            (same dataset, fingerprint, pair, method and seed).
        ResultIntegrityError: a result's stated metrics disagree with its confusion matrix or predictions.
        ValueError: unknown metric or split, or ``n_boot < 1``.
    """
    if metric not in METRIC_LABELS:
        raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(METRIC_LABELS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    runs: dict[tuple, dict[int, float]] = defaultdict(dict)
    run_ids: dict[tuple, str] = {}
    teachers: dict[tuple, dict[tuple[int, str], float]] = defaultdict(dict)
    # (dataset, fingerprint) -> (teacher, student, seed) -> method -> {sample_id: predicted class}
    predictions: dict[tuple, dict[tuple, dict[str, dict[str, int]]]] = defaultdict(lambda: defaultdict(dict))
    versions: dict[tuple[str, str], str] = {}
    unpinned: dict[tuple, list[int]] = defaultdict(list)  # seeds of runs without test predictions
    for result in results:
        source = f"run {result.get('run_id', '?')!r}" if isinstance(result, dict) else "result"
        validate_run_result(result, source=source)
        verify_run_metrics(result, source=source)  # what the table shows is what the run's evidence says
        d = result["dataset"]
        column = (d["name"], d["fingerprint"], result["teacher"]["arch"], result["student"]["arch"])
        versions.setdefault(column[:2], d["version"])
        key = (*column, run_label(result))
        run_seed = result["seed"]
        if run_seed in runs[key]:
            raise ResultSchemaError(
                f"duplicate run for dataset {d['name']} (fingerprint {d['fingerprint'][:12]}), "
                f"{column[2]}→{column[3]}, method {key[4]}, seed {run_seed}: run ids "
                f"{run_ids[(*key, run_seed)]!r} and {result['run_id']!r}; remove one of them")
        runs[key][run_seed] = _fraction(result["metrics"][split][metric], f"{source}: metrics.{split}.{metric}")
        if "predictions" not in result:
            unpinned[key].append(run_seed)
        run_ids[(*key, run_seed)] = result["run_id"]
        _collect_teacher(result, f"{split}_{metric}", teachers[column], source)
        if metric == "oa" and split == "test" and "predictions" in result:
            predictions[column[:2]][(column[2], column[3], run_seed)][key[4]] = run_predictions(result, source)

    rows = []
    for key, by_seed in runs.items():
        seeds = sorted(by_seed)
        rows.append(_row(key, "method", seeds, [by_seed[s] for s in seeds], versions[key[:2]], metric, split,
                         n_boot, seed) | {"unpinned_seeds": sorted(unpinned.get(key, []))})
    for column, by_checkpoint in teachers.items():
        if by_checkpoint:
            # A seed appears twice only if its teacher was retrained; each checkpoint counts once.
            items = sorted(by_checkpoint.items())
            rows.append(_row((*column, TEACHER_ROW), "teacher", [s for (s, _), _ in items], [v for _, v in items],
                             versions[column[:2]], metric, split, n_boot, seed))
    rows.sort(key=lambda r: (r["dataset"], r["fingerprint"], r["teacher"], r["student"],
                             method_sort_key(r["method"], r["kind"])))
    blocks: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "method":
            blocks[(r["dataset"], r["fingerprint"])].append(r)
    mdd = {block: grid_mdd(method_rows, predictions.get(block, {})) for block, method_rows in blocks.items()}
    for r in rows:
        r["mdd"] = mdd.get((r["dataset"], r["fingerprint"]))
    return rows


def run_predictions(result: dict, source: str = "result") -> dict[str, int]:
    """``{sample_id: predicted class}`` from a RunResult's ``predictions`` (see ``runner.test_predictions``).

    Raises:
        ResultSchemaError: no predictions, or malformed ones (lengths differ, a chip listed twice).
    """
    pred = result.get("predictions")
    if not (isinstance(pred, dict) and isinstance(pred.get("sample_ids"), list)
            and isinstance(pred.get("predicted"), list)):
        raise ResultSchemaError(f"{source}: no test predictions (predictions.sample_ids and .predicted); "
                                "rerun it with this ackd-bench version")
    ids, predicted = pred["sample_ids"], pred["predicted"]
    if len(ids) != len(predicted) or len(set(ids)) != len(ids):
        raise ResultSchemaError(f"{source}: predictions must give one class per test chip, each chip once "
                                f"({len(ids)} sample ids, {len(set(ids))} distinct, {len(predicted)} classes)")
    return {str(s): int(p) for s, p in zip(ids, predicted)}


def grid_mdd(method_rows: list[Row], predictions: dict[tuple, dict[str, dict[str, int]]]) -> dict[str, Any]:
    """Minimum detectable difference (points; α = 0.05, power 0.8) of one dataset's grid of method rows.

    Two-sample over seeds: the rows' pooled seed std and n = the most common number of seeds
    per row (ties: the smaller). Paired by test chip (test OA only): ψ = the share of chips on
    which two methods predict different classes, averaged over every two methods of a column on
    a shared seed with the same chips. Two runs that predict the same class are both right or
    both wrong, so ψ bounds the discordance from above and the paired MDD is an upper bound
    (:func:`~ackd_bench.benchmark.stats.paired_mdd`, over seeds × chips pairs).

    Args:
        method_rows: rows of kind ``"method"`` of one (dataset, fingerprint).
        predictions: ``{(teacher, student, seed): {method: {sample_id: class}}}`` of the block.

    Returns:
        :func:`~ackd_bench.benchmark.stats.minimum_detectable_difference`'s dict, ``discordance``
        being the prediction-disagreement bound ψ.
    """
    counts = [r["n"] for r in method_rows]
    n_seeds = min(set(counts), key=lambda n: (-counts.count(n), n))
    rates, chips = [], []
    for by_method in predictions.values():
        runs = [by_method[m] for m in sorted(by_method)]
        for i, a in enumerate(runs):
            for b in runs[i + 1:]:
                if a.keys() == b.keys() and a:
                    rates.append(sum(a[s] != b[s] for s in a) / len(a))
                    chips.append(len(a))
    return minimum_detectable_difference(
        std=pooled_std([r["std"] for r in method_rows], counts), n_seeds=n_seeds,
        n_chips=min(chips) if chips else None, discordance=float(np.mean(rates)) if rates else None)


def _fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ResultSchemaError(f"{where} must be a fraction in [0, 1], got {value!r}")
    return float(value)


def _collect_teacher(result: dict, metric_key: str, into: dict[tuple[int, str], float], source: str) -> None:
    """Record the teacher's score of this run under (seed, checkpoint); conflicting reports are errors."""
    teacher = result["teacher"]
    if metric_key not in teacher["metrics"]:
        return
    value = _fraction(teacher["metrics"][metric_key], f"{source}: teacher.metrics.{metric_key}")
    checkpoint = (result["seed"], teacher["checkpoint_sha256"])
    if checkpoint in into and into[checkpoint] != value:
        raise ResultSchemaError(
            f"{source}: teacher checkpoint {checkpoint[1][:12]!r} (seed {checkpoint[0]}) reports "
            f"{metric_key} {value} here but {into[checkpoint]} in another run of the same column")
    into[checkpoint] = value


def _row(key: tuple, kind: str, seeds: list[int], fractions: list[float], version: str, metric: str,
         split: str, n_boot: int, seed: int) -> Row:
    name, fingerprint, teacher, student, method = key
    values = np.array(fractions) * 100.0
    low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed)
    return {
        "dataset": name, "dataset_version": version, "fingerprint": fingerprint,
        "teacher": teacher, "student": student, "pair": f"{teacher}→{student}", "method": method,
        "kind": kind, "metric": metric, "split": split, "n": len(seeds), "seeds": seeds,
        "values": values.tolist(), "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "ci_low": low, "ci_high": high, "ci_level": CI_LEVEL,
    }


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI (``CI_LEVEL``) of the mean: resample the values with replacement.

    With a handful of seeds the percentile interval is narrow (it under-covers); it shows the
    spread over seeds, not a guarantee. One value, or identical values, give a point.

    Args:
        values: (n,) scores, one per seed.
        n_boot: number of resamples.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        (low, high) of the interval.
    """
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    tail = (1.0 - CI_LEVEL) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def method_sort_key(method: str, kind: str = "method") -> tuple:
    """Order of rows in a block: teacher, student-only, other methods A→Z, SemBridge variants last."""
    lower = method.lower()
    if kind == "teacher":
        rank = 0
    elif lower in STUDENT_ONLY_METHODS:
        rank = 1
    elif "sembridge" in lower:
        rank = 3
    else:
        rank = 2
    return rank, lower, method


def best_flags(rows: list[Row]) -> list[bool]:
    """For each row, whether its mean is the best method in its column (ties all marked; never the teacher)."""
    best: dict[tuple, float] = {}
    for r in rows:
        if r["kind"] != "teacher":
            column = _column(r)
            best[column] = max(best.get(column, -math.inf), r["mean"])
    # A tolerance, so that equal scores averaged in a different order still tie.
    return [r["kind"] != "teacher" and math.isclose(r["mean"], best[_column(r)], rel_tol=0, abs_tol=1e-9)
            for r in rows]


def _column(r: Row) -> tuple:
    return r["dataset"], r["fingerprint"], r["teacher"], r["student"]


def table_blocks(rows: list[Row]) -> list[dict[str, Any]]:
    """Rows arranged as the paper's grid: one block per (dataset, fingerprint).

    Returns:
        Blocks in dataset order, each ``{"dataset", "fingerprint", "version", "pairs": [(teacher,
        student)], "methods": [(method, kind)], "cells": {(method, kind, pair): (row, best)}}``.
    """
    blocks: dict[tuple[str, str], dict[str, Any]] = {}
    for r, best in zip(rows, best_flags(rows)):
        block = blocks.setdefault((r["dataset"], r["fingerprint"]), {
            "dataset": r["dataset"], "fingerprint": r["fingerprint"], "version": r["dataset_version"],
            "pairs": set(), "methods": set(), "cells": {}})
        pair = (r["teacher"], r["student"])
        block["pairs"].add(pair)
        block["methods"].add((r["method"], r["kind"]))
        block["cells"][(r["method"], r["kind"], pair)] = (r, best)
    for block in blocks.values():
        block["pairs"] = sorted(block["pairs"])
        block["methods"] = sorted(block["methods"], key=lambda m: method_sort_key(m[0], m[1]))
    return [blocks[k] for k in sorted(blocks)]


def render_table(rows: list[Row], fmt: str) -> str:
    """Render aggregated rows (from :func:`aggregate`) as text.

    Args:
        rows: rows from :func:`aggregate` (possibly filtered; best marks are recomputed).
        fmt: ``"md"`` (grid of mean ± std with the best in bold, a grid of 95 % CIs, then a
            line on the minimum detectable difference), ``"csv"`` (long format, one line per
            cell), ``"latex"`` (booktabs tabulars) or ``"json"`` (the rows with ``best`` and
            ``mdd`` fields).

    Raises:
        ValueError: unknown format (the message lists the formats).
    """
    renderers = {"csv": _render_csv, "json": _render_json, "latex": _render_latex, "md": _render_md}
    if fmt not in renderers:
        raise ValueError(f"unknown table format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return renderers[fmt](rows)


def plot_table(rows: list[Row], path: Path) -> Path:
    """Bar plot PNG of the rows: one panel per dataset, groups = teacher→student pairs, bars = methods.

    Error bars are the bootstrap 95 % CIs; the teacher, where known, is a dashed line over its group.
    Returns the written path.
    """
    # matplotlib takes a second to import; only plotting pays for it.
    from ackd_bench.benchmark.table_plot import draw_bar_plot

    return draw_bar_plot(rows, Path(path))


def metric_heading(rows: list[Row]) -> str:
    """E.g. ``test OA (%)`` for the rows' split and metric."""
    if not rows:
        return "test OA (%)"
    return f"{rows[0]['split']} {METRIC_LABELS[rows[0]['metric']]} (%)"


def mdd_text(mdd: dict[str, Any]) -> str:
    """One line on a grid's minimum detectable differences (from :func:`grid_mdd`)."""
    parts = []
    if mdd["two_sample"] is None:
        parts.append("between two rows, not computable with fewer than 2 seeds per row")
    else:
        parts.append(f"{mdd['two_sample']:.1f} points between two rows over {mdd['n_seeds']} seeds "
                     f"(two-sample t-test, pooled seed std {mdd['std']:.1f})")
    if mdd["paired"] is not None:
        parts.append(f"at most {mdd['paired']:.1f} points paired by test chip ({mdd['n_seeds']} seeds × "
                     f"{mdd['n_chips']} chips, predictions differ on {mdd['discordance']:.1%} of chips; "
                     "`ackd-bench compare` tests such differences)")
    return (f"Minimum detectable difference (α = {mdd['alpha']:g}, power {mdd['power']:g}): "
            + "; ".join(parts) + ".")


def cell_text(r: Row) -> str:
    """``93.7 ± 0.4``: mean ± std in percent, one decimal."""
    return f"{r['mean']:.1f} ± {r['std']:.1f}"


_CSV_FIELDS = ("dataset", "dataset_version", "fingerprint", "teacher", "student", "pair", "method", "kind",
               "metric", "split", "n", "seeds", "values", "mean", "std", "ci_low", "ci_high", "ci_level", "best")


def _rounded(r: Row, best: bool) -> Row:
    # Four decimals of a percent is far below any seed-to-seed difference; it keeps files readable.
    out = {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
    out["values"] = [round(v, 4) for v in r["values"]]
    if isinstance(r.get("mdd"), dict):
        out["mdd"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in r["mdd"].items()}
    out["best"] = best
    return out


def _render_json(rows: list[Row]) -> str:
    return json.dumps([_rounded(r, b) for r, b in zip(rows, best_flags(rows))], indent=1, ensure_ascii=False) + "\n"


def _render_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(_CSV_FIELDS)
    for r, best in zip(rows, best_flags(rows)):
        r = _rounded(r, best)
        r["seeds"] = ";".join(map(str, r["seeds"]))
        r["values"] = ";".join(map(str, r["values"]))
        r["best"] = str(best).lower()
        writer.writerow([r[f] for f in _CSV_FIELDS])
    return buf.getvalue()


def _md_escape(text: str) -> str:
    return text.replace("|", r"\|")


def _render_md(rows: list[Row]) -> str:
    if not rows:
        return "_No results._\n"
    out: list[str] = []
    for block in table_blocks(rows):
        header = ["Method", *(f"{t}→{s}" for t, s in block["pairs"])]
        rule = ["---", *("---:" for _ in block["pairs"])]

        def grid(text_of) -> None:
            out.append("| " + " | ".join(map(_md_escape, header)) + " |")
            out.append("| " + " | ".join(rule) + " |")
            for method, kind in block["methods"]:
                cells = [text_of(*block["cells"][(method, kind, p)]) if (method, kind, p) in block["cells"]
                         else MISSING for p in block["pairs"]]
                out.append("| " + " | ".join([_md_escape(method), *cells]) + " |")

        out.append(f"### {_md_escape(block['dataset'])} (version {_md_escape(block['version'])}, "
                   f"fingerprint `{block['fingerprint'][:12]}`) — {metric_heading(rows)}")
        out.append("")
        out.append("Mean ± std over seeds; best student per column in **bold**.")
        out.append("")
        grid(lambda r, best: f"**{cell_text(r)}**" if best else cell_text(r))
        out.append("")
        out.append(f"{CI_LEVEL:.0%} bootstrap CI of the mean over seeds (n = number of seeds):")
        out.append("")
        grid(lambda r, best: f"[{r['ci_low']:.1f}, {r['ci_high']:.1f}] n={r['n']}")
        out.append("")
        mdd = next((r["mdd"] for r, _ in block["cells"].values() if r.get("mdd")), None)
        if mdd:
            out.append(mdd_text(mdd))
            out.append("")
        unpinned = sorted({r["method"]: None for r, _ in block["cells"].values() if r.get("unpinned_seeds")},
                          key=method_sort_key)
        if unpinned:
            n_runs = sum(len(r.get("unpinned_seeds", [])) for r, _ in block["cells"].values())
            out.append(f"Unpinned: {n_runs} run(s) of {', '.join(map(_md_escape, unpinned))} carry no per-chip test "
                       "predictions (an older ackd-bench wrote them), so their scores were checked against their "
                       "own confusion matrices only; rerun them to pin them.")
            out.append("")
    return "\n".join(out)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "$": r"\$",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters so that any name typesets literally."""
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def _render_latex(rows: list[Row]) -> str:
    out: list[str] = []
    heading = latex_escape(metric_heading(rows))
    for block in table_blocks(rows):
        n_cols = 1 + len(block["pairs"])
        title = (f"{latex_escape(block['dataset'])} (fingerprint {latex_escape(block['fingerprint'][:12])}): "
                 f"{heading}, mean $\\pm$ std over seeds")
        out += [r"\begin{tabular}{l" + "c" * len(block["pairs"]) + "}", r"\toprule",
                rf"\multicolumn{{{n_cols}}}{{c}}{{{title}}} \\", r"\midrule",
                " & ".join(["Method", *(rf"{latex_escape(t)}$\rightarrow${latex_escape(s)}"
                                        for t, s in block["pairs"])]) + r" \\",
                r"\midrule"]
        for i, (method, kind) in enumerate(block["methods"]):
            cells = []
            for p in block["pairs"]:
                if (method, kind, p) not in block["cells"]:
                    cells.append("--")
                    continue
                r, best = block["cells"][(method, kind, p)]
                text = f"{r['mean']:.1f} $\\pm$ {r['std']:.1f}"
                cells.append(rf"\textbf{{{text}}}" if best else text)
            out.append(" & ".join([latex_escape(method), *cells]) + r" \\")
            if kind == "teacher" and i + 1 < len(block["methods"]):
                out.append(r"\midrule")  # the teacher sees another modality: set it apart
        out += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(out)
