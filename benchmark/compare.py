"""`ackd-bench compare`: every method against a baseline, paired by seed and test chip (ΔOA, CI, p, Holm)."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ackd_bench.benchmark.errors import AckdBenchError
from ackd_bench.benchmark.results import ResultSchemaError, run_label, validate_run_result, verify_run_metrics
from ackd_bench.benchmark.stats import (
    ALPHA,
    CI_LEVEL,
    POWER,
    holm,
    mcnemar_test,
    paired_bootstrap_ci,
    paired_mdd,
    sign_flip_test,
)
from ackd_bench.benchmark.table import method_sort_key, run_predictions

FORMATS = ("csv", "json", "md")
TESTS = ("sign-flip", "mcnemar")

Row = dict[str, Any]


class CompareError(AckdBenchError):
    """Runs cannot be compared as asked; the message says which runs and what to do."""


def true_test_labels(dataset: Path) -> tuple[str, dict[str, int]]:
    """The true class of every test chip the students see: RGB rows of the test split.

    Returns:
        ``(fingerprint, {sample_id: class})`` of the dataset at ``dataset`` (verified on load).

    Raises:
        DatasetNotFoundError, DatasetCorruptError: as :func:`~ackd_bench.benchmark.dataset.load_dataset`.
    """
    fingerprint, _, labels = labels_and_identity(dataset)
    return fingerprint, labels


def labels_and_identity(dataset: Path) -> tuple[str, str, dict[str, int]]:
    """``(content fingerprint, recipe fingerprint, {sample_id: class})`` of the dataset's RGB test chips."""
    from ackd_bench.benchmark.dataset import load_dataset

    ds = load_dataset(Path(dataset))
    rows = ds.samples[(ds.samples["modality"] == "rgb") & (ds.samples["split"] == "test")]
    return ds.fingerprint, ds.recipe_fingerprint, {str(s): int(c) for s, c in zip(rows["sample_id"], rows["label"])}


def on_dataset(result: dict, fingerprint: str, recipe: str | None) -> bool:
    """Whether a run was made on the dataset: the same content, or the same recipe (another build whose
    bytes drifted, e.g. under another GDAL: the same chips, splits and labels)."""
    d = result["dataset"]
    return d["fingerprint"] == fingerprint or (recipe is not None and d.get("recipe_fingerprint") == recipe)


def compare(results: list[dict], baseline: str, *, labels: dict[str, int], fingerprint: str,
            test: str = "sign-flip", n_boot: int = 2000, n_perm: int = 9999, seed: int = 0,
            alpha: float = ALPHA, recipe: str | None = None) -> list[Row]:
    """Test-OA difference of every method from ``baseline``, run by run on the same seeds and chips.

    Runs pair by (dataset fingerprint, teacher arch, student arch, seed); within a pair of runs,
    chips pair by sample id, and each (seed, chip) is right or wrong for each method. Per method:
    ΔOA = OA(method) − OA(baseline) over the paired seeds, a percentile CI from the two-way
    bootstrap over seeds and chips (:func:`~ackd_bench.benchmark.stats.paired_bootstrap_ci`),
    and a two-sided p (``test``: ``"sign-flip"`` on per-chip differences summed over seeds, or
    ``"mcnemar"`` pooled over seeds), Holm-adjusted over every row returned. The tests condition
    on the trained runs (is this method's set of runs better on these chips?); seed-to-seed
    variation enters the CI, which resamples seeds. Seeds of a method without a baseline run are
    left out. Each row also has ``mdd``: the paired minimum detectable ΔOA at the observed
    discordance (:func:`~ackd_bench.benchmark.stats.paired_mdd`).

    Args:
        results: RunResult dicts, all on the dataset of ``labels``, each with test predictions.
        baseline: the method label (as in ``ackd-bench table``) the others are compared with.
        labels: ``{sample_id: true class}`` of the test chips (:func:`true_test_labels`).
        fingerprint: the fingerprint of the dataset ``labels`` come from.
        recipe: its recipe fingerprint; runs on a build of the same recipe whose content differs
            are compared too (:func:`on_dataset`), under ``fingerprint``.
        test: ``"sign-flip"`` or ``"mcnemar"``.
        n_boot: bootstrap resamples of the CI.
        n_perm: random sign patterns of the sign-flip test (when it cannot enumerate them all).
        seed: seed of the bootstrap's and the sign flips' ``numpy.random.Generator``.
        alpha: level of the ``significant`` flag (Holm-adjusted p < alpha).

    The test and the CI answer different questions. The test holds the seeds fixed and treats
    the chips as the sample: do *these* trained runs differ on the test population? The CI also
    resamples seeds: would the difference keep its sign if the methods were trained again?
    ``seed_stable`` is True when the CI excludes 0; a significant row that is not seed-stable is
    marked † in the markdown.

    Returns:
        Rows sorted by dataset, pair and method, each with ``dataset, fingerprint, teacher,
        student, pair, baseline, method, n_seeds, seeds, n_chips, delta, ci_low, ci_high,
        ci_level, test, n_gain, n_loss, p, p_holm, significant, seed_stable, alpha, mdd``; ΔOA, CI
        and MDD in points; n_gain (n_loss): (seed, chip) pairs the method gets right (wrong) and the baseline wrong (right).

    Raises:
        CompareError: unknown baseline or test, nothing to compare, runs on another dataset, a
            pair without baseline runs, a method lacking a baseline seed, or different chips.
        ResultSchemaError: an invalid RunResult, runs without predictions, or two runs of one
            method and seed.
        ResultIntegrityError: a run's stated metrics disagree with its predictions and the labels.
    """
    if test not in TESTS:
        raise CompareError(f"unknown test {test!r}; choose one of: {', '.join(TESTS)}")
    groups = _group_runs(results, fingerprint, recipe)
    methods = sorted({m for by_method in groups.values() for m in by_method}, key=str.lower)
    if baseline not in methods:
        raise CompareError(f"no runs of the baseline {baseline!r}; the results hold: {', '.join(methods)}")
    if len(methods) == 1:
        raise CompareError(f"nothing to compare: the results hold only {baseline!r} runs")
    chips = sorted(labels)
    truth = np.array([labels[s] for s in chips])
    rows = []
    for (name, fp, teacher, student), by_method in sorted(groups.items()):
        pair = f"{teacher}→{student}"
        if baseline not in by_method:
            raise CompareError(f"no {baseline!r} runs for {pair} on {name} ({fp[:12]}), so "
                               f"{', '.join(sorted(by_method))} cannot be paired; add them, or leave {pair} out")
        base_runs = by_method[baseline]
        seeds = sorted(base_runs)
        for method in sorted(by_method, key=lambda m: method_sort_key(m)):
            if method == baseline:
                continue
            runs = by_method[method]
            missing = [s for s in seeds if s not in runs]
            if missing:
                raise CompareError(f"{method!r} ({pair}) lacks the baseline's seed(s) {missing}; run them "
                                   f"(--seeds {','.join(map(str, missing))}) or leave those baseline runs out")
            correct_m = np.stack([_correct(runs[s], chips, truth) for s in seeds])
            correct_b = np.stack([_correct(base_runs[s], chips, truth) for s in seeds])
            rows.append(_row(correct_m, correct_b, test=test, n_boot=n_boot, n_perm=n_perm, seed=seed) | {
                "dataset": name, "fingerprint": fp, "teacher": teacher, "student": student, "pair": pair,
                "baseline": baseline, "method": method, "n_seeds": len(seeds), "seeds": seeds,
                "n_chips": len(chips), "alpha": alpha})
    for r, adjusted in zip(rows, holm([r["p"] for r in rows])):
        r["p_holm"] = adjusted
        r["significant"] = adjusted < alpha
    return rows


def _group_runs(results: list[dict], fingerprint: str,
                recipe: str | None = None) -> dict[tuple, dict[str, dict[int, dict]]]:
    """``{(dataset, fingerprint, teacher, student): {method: {seed: run}}}``; refuses other datasets and repeats."""
    groups: dict[tuple, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    others = set()
    for result in results:
        source = f"run {result.get('run_id', '?')!r}" if isinstance(result, dict) else "result"
        validate_run_result(result, source=source)
        run_predictions(result, source)  # present and well formed
        d = result["dataset"]
        if not on_dataset(result, fingerprint, recipe):
            others.add(d["fingerprint"][:12])
            continue
        by_seed = groups[(d["name"], fingerprint, result["teacher"]["arch"], result["student"]["arch"])][
            run_label(result)]
        if result["seed"] in by_seed:
            raise ResultSchemaError(f"two runs of {run_label(result)!r}, seed {result['seed']}: "
                                    f"{by_seed[result['seed']]['run_id']!r} and {result['run_id']!r}; remove one")
        by_seed[result["seed"]] = result
    if others:
        raise CompareError(f"runs on dataset fingerprint(s) {', '.join(sorted(others))}, but --dataset has "
                           f"{fingerprint[:12]}; give the dataset the runs were made on, or leave those runs out")
    if not groups:
        raise CompareError("no runs to compare")
    return groups


def _correct(run: dict, chips: list[str], truth: np.ndarray) -> np.ndarray:
    """(N,) booleans: is the run's prediction right, chip by chip in ``chips`` order.

    The run's stated metrics must agree with its predictions and the true labels
    (:func:`~ackd_bench.benchmark.results.verify_run_metrics`), so an edited file is refused.
    """
    predicted = run_predictions(run, f"run {run['run_id']!r}")
    if predicted.keys() != set(chips):
        missing, extra = sorted(set(chips) - predicted.keys()), sorted(predicted.keys() - set(chips))
        example = f"e.g. {missing[0]!r} missing" if missing else f"e.g. {extra[0]!r} not a test chip"
        raise CompareError(f"run {run['run_id']!r} predicts a different set of test chips than the dataset's "
                           f"{len(chips)} ({len(missing)} missing, {len(extra)} unknown; {example}); "
                           "was it made on another build of the dataset?")
    verify_run_metrics(run, source=f"run {run['run_id']!r}", labels=dict(zip(chips, truth.tolist())))
    return np.array([predicted[s] for s in chips]) == truth


def _row(correct_m: np.ndarray, correct_b: np.ndarray, *, test: str, n_boot: int, n_perm: int, seed: int) -> Row:
    low, high = paired_bootstrap_ci(correct_m, correct_b, n_boot=n_boot, seed=seed)
    if test == "mcnemar":
        result = mcnemar_test(correct_m, correct_b)
    else:
        result = sign_flip_test(correct_m, correct_b, n_perm=n_perm, seed=seed)
    n_pairs = correct_m.size
    mdd = paired_mdd((result["n_gain"] + result["n_loss"]) / n_pairs, n_pairs, alpha=ALPHA, power=POWER)
    return {"delta": 100.0 * float(correct_m.mean() - correct_b.mean()), "ci_low": 100.0 * low,
            "ci_high": 100.0 * high, "ci_level": CI_LEVEL, "seed_stable": bool(low > 0 or high < 0),
            "test": f"{test} ({result['method']})",
            "n_gain": result["n_gain"], "n_loss": result["n_loss"], "p": result["p"],
            "mdd": None if mdd is None else 100.0 * mdd}


def render_comparison(rows: list[Row], fmt: str) -> str:
    """Render :func:`compare`'s rows as ``"md"`` (a table per dataset and pair), ``"csv"`` or ``"json"``.

    Raises:
        ValueError: unknown format (the message lists the formats).
    """
    renderers = {"csv": _render_csv, "json": _render_json, "md": _render_md}
    if fmt not in renderers:
        raise ValueError(f"unknown compare format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return renderers[fmt](rows)


_CSV_FIELDS = ("dataset", "fingerprint", "teacher", "student", "pair", "baseline", "method", "n_seeds", "seeds",
               "n_chips", "delta", "ci_low", "ci_high", "ci_level", "test", "n_gain", "n_loss", "p", "p_holm",
               "significant", "seed_stable", "alpha", "mdd")
_POINTS = ("delta", "ci_low", "ci_high", "mdd")


def _rounded(r: Row) -> Row:
    # Points to four decimals (far below any chip's weight); p-values keep every digit, however small.
    return {k: round(v, 4) if k in _POINTS and v is not None else v for k, v in r.items()}


def _render_json(rows: list[Row]) -> str:
    return json.dumps([_rounded(r) for r in rows], indent=1, ensure_ascii=False) + "\n"


def _render_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(_CSV_FIELDS)
    for r in map(_rounded, rows):
        r["seeds"] = ";".join(map(str, r["seeds"]))
        r["significant"] = str(r["significant"]).lower()
        r["seed_stable"] = str(r["seed_stable"]).lower()
        r["mdd"] = "" if r["mdd"] is None else r["mdd"]
        writer.writerow([r[f] for f in _CSV_FIELDS])
    return buf.getvalue()


def p_text(p: float) -> str:
    """``0.012``, or ``3.4e-07`` below 0.001."""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _md_escape(text: str) -> str:
    return text.replace("|", r"\|")


def _render_md(rows: list[Row]) -> str:
    if not rows:
        return "_No comparisons._\n"
    out: list[str] = []
    blocks: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        blocks[(r["dataset"], r["fingerprint"], r["pair"], r["baseline"])].append(r)
    for (name, fp, pair, baseline), block in blocks.items():
        out += [f"### {_md_escape(name)} (fingerprint `{fp[:12]}`) — {_md_escape(pair)}, "
                f"baseline {_md_escape(baseline)}", "",
                "| Method | seeds | ΔOA (points) | 95% CI | p | p (Holm) | MDD |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in block:
            delta = f"{r['delta']:+.2f}"
            if r["significant"]:
                delta = f"**{delta}**" if r["seed_stable"] else f"**{delta}**†"
            cells = [_md_escape(r["method"]), str(r["n_seeds"]), delta,
                     f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]", p_text(r["p"]), p_text(r["p_holm"]),
                     "—" if r["mdd"] is None else f"{r['mdd']:.2f}"]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    first = rows[0]
    out.append(f"ΔOA: method − baseline test OA, paired by seed and test chip ({first['n_chips']} chips); "
               f"{first['ci_level']:.0%} CI: percentile bootstrap over seeds and chips; p: two-sided "
               f"{first['test'].split(' ')[0]} test, Holm-adjusted over all {len(rows)} comparisons; **bold**: "
               f"significant at α = {first['alpha']:g}; MDD: ΔOA detectable with power {POWER:g} at the "
               "observed discordance (Connor 1987).")
    if any(r["significant"] and not r["seed_stable"] for r in rows):
        out += ["", "†: significant for these runs (the test holds seeds fixed: chips are the sample), but "
                "the CI, which also resamples seeds, covers 0: the sign may not survive retraining; run more seeds."]
    out.append("")
    return "\n".join(out)
