"""`ackd-bench compare`: methods against a baseline, paired by seed and chip, on constructed RunResults."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from test_table import FP_A, FP_B, make_result  # the table tests' RunResult factory

from ackd_bench.benchmark.cli import main
from ackd_bench.benchmark.compare import CompareError, compare, render_comparison, true_test_labels
from ackd_bench.benchmark.dataset import write_dataset
from ackd_bench.benchmark.dataset.synthetic import make_synthetic_dataset_inputs
from ackd_bench.benchmark.protocol import classification_metrics
from ackd_bench.benchmark.results import ResultSchemaError, write_run_result
from ackd_bench.benchmark.runner import test_predictions as pin_predictions

CLASSES = ["crop", "forest", "water", "urban"]
N_CHIPS = 200
LABELS = {f"chip-{j:04d}": j % len(CLASSES) for j in range(N_CHIPS)}
CHIPS = sorted(LABELS)


def make_run(method: str, seed: int, correct: np.ndarray, *, labels: dict[str, int] = LABELS,
             classes: list[str] = CLASSES, fingerprint: str = FP_A, student: str = "mobilenetv2_100",
             shuffle: int | None = None) -> dict:
    """A RunResult whose prediction on chip ``sorted(labels)[j]`` is right iff ``correct[j]``.

    Wrong predictions are the next class; metrics are recomputed from the predictions, and the
    predictions are listed in a shuffled order when ``shuffle`` is a seed (pairing is by sample id).
    """
    chips = sorted(labels)
    truth = np.array([labels[s] for s in chips])
    predicted = np.where(correct, truth, (truth + 1) % len(classes))
    result = make_result(method=method, seed=seed, fingerprint=fingerprint, student=student)
    result["dataset"]["classes"] = list(classes)
    metrics = classification_metrics(truth, predicted, len(classes))
    result["metrics"]["test"] = metrics
    result["metrics"]["val"] = metrics
    order = np.arange(len(chips)) if shuffle is None else np.random.default_rng(shuffle).permutation(len(chips))
    result["predictions"] = pin_predictions([chips[i] for i in order], [int(predicted[i]) for i in order])
    return result


def pattern(seed: int, keep: range, n: int = N_CHIPS) -> np.ndarray:
    """Chips j with (j + 7·seed) mod 10 in ``keep``: a seed-dependent, evenly spread subset."""
    return np.isin((np.arange(n) + 7 * seed) % 10, list(keep))


def better_grid(test_seeds=(0, 1, 2)) -> list[dict]:
    """The baseline is right on 60 % of chips; kd on the same chips and 10 % more (no losses)."""
    runs = []
    for s in test_seeds:
        runs.append(make_run("student-only", s, pattern(s, range(6)), shuffle=s))
        runs.append(make_run("kd", s, pattern(s, range(7)), shuffle=100 + s))
    return runs


def find(rows, **match) -> dict:
    (row,) = [r for r in rows if all(r[k] == v for k, v in match.items())]
    return row


@pytest.mark.parametrize("test", ["sign-flip", "mcnemar"])
def test_a_truly_better_method_is_significant(test):
    (row,) = compare(better_grid(), "student-only", labels=LABELS, fingerprint=FP_A, test=test)
    assert (row["method"], row["baseline"], row["n_seeds"], row["seeds"], row["n_chips"]) == \
        ("kd", "student-only", 3, [0, 1, 2], N_CHIPS)
    assert row["delta"] == pytest.approx(10.0, abs=1e-9)
    assert (row["n_gain"], row["n_loss"]) == (60, 0)
    # Every replicate is ≥ 0, and 0 only if none of the 20 gain chips of a seed is drawn: < 0.9^200 each.
    assert 0 < row["ci_low"] <= 10.0 <= row["ci_high"]
    if test == "mcnemar":
        # 60 discordant pairs, all one way: χ² = (60 − 1)²/60 with continuity correction.
        assert row["p"] == pytest.approx(sps.chi2.sf(59 ** 2 / 60, 1), rel=1e-12)
    else:
        # |T*| = |T| = 60 needs every one of k ≥ 20 nonzero chips flipped alike: ≤ 2^-19 per draw, so
        # 9999 draws give p = 1/10000 unless ≥ 10 such draws occur (probability < 1e-20).
        assert row["p"] < 1e-3
    assert row["p_holm"] == row["p"] and row["significant"] is True
    assert row["mdd"] is not None and row["mdd"] < 10.0


def test_identical_methods_differ_by_nothing():
    runs = [make_run(m, s, pattern(s, range(6)), shuffle=10 * s + len(m))
            for s in range(3) for m in ("student-only", "kd")]
    (row,) = compare(runs, "student-only", labels=LABELS, fingerprint=FP_A)
    assert row["delta"] == 0.0 and (row["ci_low"], row["ci_high"]) == (0.0, 0.0)
    assert row["p"] == 1.0 and row["p_holm"] == 1.0 and row["significant"] is False
    assert (row["n_gain"], row["n_loss"]) == (0, 0) and row["mdd"] is None


@pytest.mark.parametrize("test", ["sign-flip", "mcnemar"])
def test_balanced_gains_and_losses_give_ci_around_zero_and_p_one(test):
    """Chips come in pairs (2i, 2i+1) where the method gains on one and loses on the other.

    Swapping every pair maps the per-chip differences d to −d in every seed, and the bootstrap
    does not see chip names, so Δ* and −Δ* have one distribution: each side of 0 holds ≥ half
    of it, and 2000 draws put < 50 on a side with probability below binom.cdf(50, 2000, ½) ≈ 0.
    """
    base, method = [], []
    for s in range(3):
        b = pattern(s, range(6))
        m = b.copy()
        for i in range(0, N_CHIPS, 2):
            if (i // 2 + s) % 5 == 0:  # a fifth of the pairs: one gain and one loss
                m[i], m[i + 1] = True, False
                b[i], b[i + 1] = False, True
        base.append(make_run("student-only", s, b))
        method.append(make_run("kd", s, m))
    (row,) = compare(base + method, "student-only", labels=LABELS, fingerprint=FP_A, test=test)
    assert row["delta"] == pytest.approx(0.0, abs=1e-12) and row["n_gain"] == row["n_loss"] == 60
    assert row["ci_low"] <= 0.0 <= row["ci_high"] and row["ci_low"] < row["ci_high"]
    assert row["p"] == 1.0 and not row["significant"]


def test_holm_over_every_method_and_pair():
    runs = better_grid()
    for s in range(3):
        runs.append(make_run("dkd", s, pattern(s, range(6)) | (np.arange(N_CHIPS) % 50 == 0)))  # +2 % at most
        runs.append(make_run("student-only", s, pattern(s, range(5)), student="resnet18"))
        runs.append(make_run("kd", s, pattern(s, range(6)), student="resnet18"))
    rows = compare(runs, "student-only", labels=LABELS, fingerprint=FP_A)
    assert [(r["student"], r["method"]) for r in rows] == [
        ("mobilenetv2_100", "dkd"), ("mobilenetv2_100", "kd"), ("resnet18", "kd")]
    want = multipletests([r["p"] for r in rows], method="holm")[1]
    assert [r["p_holm"] for r in rows] == pytest.approx(want.tolist(), rel=1e-12)
    assert [r["significant"] for r in rows] == [p < 0.05 for p in want]


def test_chips_pair_by_sample_id_and_extra_seeds_are_left_out():
    shuffled = compare(better_grid(), "student-only", labels=LABELS, fingerprint=FP_A)
    ordered = [make_run(r["method"]["name"], r["seed"], pattern(r["seed"], range(6 if r["method"]["name"]
                                                                              == "student-only" else 7)))
               for r in better_grid()]
    assert compare(ordered, "student-only", labels=LABELS, fingerprint=FP_A) == shuffled
    extra = better_grid() + [make_run("kd", 3, pattern(3, range(9)))]
    (row,) = compare(extra, "student-only", labels=LABELS, fingerprint=FP_A)
    assert row["seeds"] == [0, 1, 2] and row == shuffled[0]


def _one_chip_short() -> list[dict]:
    runs = better_grid()
    pred = runs[-1]["predictions"]
    runs[-1]["predictions"] = pin_predictions(pred["sample_ids"][:-1], pred["predicted"][:-1])
    return runs


def _without_predictions() -> list[dict]:
    runs = better_grid()
    del runs[0]["predictions"]
    return runs


def _duplicate() -> list[dict]:
    runs = better_grid()
    runs.append(dict(runs[1], run_id="again"))
    return runs


@pytest.mark.parametrize(("runs", "baseline", "error", "message"), [
    (better_grid, "nope", CompareError, r"no runs of the baseline 'nope'; the results hold: kd, student-only"),
    (lambda: better_grid() + [make_run("kd", 0, pattern(0, range(5)), student="resnet18")], "student-only",
     CompareError, r"no 'student-only' runs for resnet34→resnet18 .* kd cannot be paired"),
    (lambda: better_grid()[:-1], "student-only", CompareError, r"'kd' \(resnet34→mobilenetv2_100\) lacks .* \[2\]"),
    (_one_chip_short, "student-only", CompareError, r"different set of test chips .*\(1 missing, 0 unknown"),
    (lambda: better_grid() + [make_run("kd", 0, pattern(0, range(5)), fingerprint=FP_B)], "student-only",
     CompareError, r"fingerprint\(s\) bbbbbbbbbbbb, but --dataset has aaaaaaaaaaaa"),
    (lambda: better_grid(test_seeds=(0,))[:1], "student-only", CompareError, "only 'student-only' runs"),
    (_without_predictions, "student-only", ResultSchemaError, "no test predictions"),
    (_duplicate, "student-only", ResultSchemaError, "two runs of 'kd', seed 0"),
])
def test_refusals(runs, baseline, error, message):
    with pytest.raises(error, match=message):
        compare(runs(), baseline, labels=LABELS, fingerprint=FP_A)


def test_unknown_test_and_format():
    with pytest.raises(CompareError, match="sign-flip, mcnemar"):
        compare(better_grid(), "student-only", labels=LABELS, fingerprint=FP_A, test="t")
    with pytest.raises(ValueError, match="csv, json, md"):
        render_comparison([], "latex")


def test_renderings():
    rows = compare(better_grid(), "student-only", labels=LABELS, fingerprint=FP_A, test="mcnemar")
    md = render_comparison(rows, "md")
    assert "### demo (fingerprint `aaaaaaaaaaaa`) — resnet34→mobilenetv2_100, baseline student-only" in md
    assert "| kd | 3 | **+10.00** |" in md and "Holm-adjusted over all 1 comparisons" in md
    (record,) = csv.DictReader(io.StringIO(render_comparison(rows, "csv")))
    assert record["seeds"] == "0;1;2" and record["significant"] == "true" and float(record["delta"]) == 10.0
    (item,) = json.loads(render_comparison(rows, "json"))
    assert item["p"] == rows[0]["p"] > 0  # p-values keep every digit
    assert item["test"] == "mcnemar (chi2)" and item["n_gain"] == 60


# --- end to end through the command line, on a real (tiny) dataset ----------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    manifest, samples, arrays = make_synthetic_dataset_inputs(0, per_class_split=10)
    return write_dataset(tmp_path_factory.mktemp("tiny") / "ds", manifest=manifest, samples=samples, arrays=arrays)


def test_compare_and_table_from_the_command_line(tiny, tmp_path):
    """30 test chips, 3 seeds: kd gets the same 6 extra chips right every seed, so t_j = 3 on k = 6 chips.

    The exact sign-flip p is 2/2^6 (only all-plus and all-minus reach |T| = 18).
    """
    fingerprint, labels = true_test_labels(tiny)
    assert len(labels) == 30
    classes = json.loads((tiny / "dataset.json").read_text())["taxonomy"]
    names = [c["name"] for c in classes]
    base = np.arange(30) % 5 < 3  # 18 chips
    better = base | (np.arange(30) % 5 == 3)  # and 6 more
    for s in range(3):
        for method, correct in (("student-only", base), ("kd", better)):
            write_run_result(tmp_path / "runs", make_run(method, s, correct, labels=labels, classes=names,
                                                         fingerprint=fingerprint, shuffle=s))
    runner = CliRunner()
    res = runner.invoke(main, ["compare", str(tmp_path / "runs"), "--baseline", "student-only", "--dataset",
                               str(tiny), "--format", "json"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.output)
    assert row["delta"] == pytest.approx(20.0) and row["p"] == 2 / 2 ** 6 and row["test"] == "sign-flip (exact)"
    assert row["significant"] and row["ci_low"] > 0
    out = tmp_path / "cmp.md"
    res = runner.invoke(main, ["compare", str(tmp_path / "runs"), "--baseline", "student-only", "--dataset",
                               str(tiny), "--out", str(out)])
    assert res.exit_code == 0 and "| kd | 3 | **+20.00** |" in out.read_text()

    res = runner.invoke(main, ["compare", str(tmp_path / "runs"), "--baseline", "dkd", "--dataset", str(tiny)])
    assert res.exit_code == 1 and res.output.strip().count("\n") == 0
    assert "no runs of the baseline 'dkd'; the results hold: kd, student-only" in res.output
    manifest, samples, arrays = make_synthetic_dataset_inputs(1, per_class_split=10)
    other = write_dataset(tmp_path / "other", manifest=manifest, samples=samples, arrays=arrays)
    res = runner.invoke(main, ["compare", str(tmp_path / "runs"), "--baseline", "student-only", "--dataset",
                               str(other)])
    assert res.exit_code == 1 and "give the dataset the runs were made on" in res.output

    # The table reports its grid's MDD; kd and student-only predict differently on 6 of 30 chips per seed.
    res = runner.invoke(main, ["table", str(tmp_path / "runs"), "--format", "json"])
    assert res.exit_code == 0, res.output
    mdd = json.loads(res.output)[0]["mdd"]
    assert (mdd["n_seeds"], mdd["n_chips"], mdd["discordance"]) == (3, 30, 0.2)
    res = runner.invoke(main, ["table", str(tmp_path / "runs")])
    assert "Minimum detectable difference (α = 0.05, power 0.8)" in res.output and "30 chips" in res.output


def test_a_difference_of_these_runs_that_retraining_may_not_keep_is_marked():
    """2,000 chips, 4 seeds: kd gains 40 points in seed 0 and loses 10 in seeds 1–3 (ΔOA +2.5).

    Per chip the seed totals are +1 on 600 chips and −1 on 400, so the sign-flip test (seeds
    fixed) gives z ≈ 200/√1000 ≈ 6.3: significant. A bootstrap draw of 4 seeds misses seed 0 with
    probability (3/4)⁴ ≈ 0.32 and then has ΔOA ≈ −10, so the 95 % CI runs from about −10 to positive
    values: not seed-stable, marked †.
    """
    n = 2000
    labels = {f"chip-{j:04d}": j % len(CLASSES) for j in range(n)}
    runs = []
    for s in range(4):
        runs.append(make_run("student-only", s, pattern(s, range(5), n), labels=labels))
        kd = pattern(0, range(9), n) if s == 0 else pattern(s, range(4), n)
        runs.append(make_run("kd", s, kd, labels=labels))
    (row,) = compare(runs, "student-only", labels=labels, fingerprint=FP_A)
    assert row["delta"] == pytest.approx(2.5)
    assert row["significant"] and row["p"] < 1e-3
    # draws without seed 0 sit at −10 (± < 1 point from chip resampling): far below 0
    assert not row["seed_stable"] and row["ci_low"] < -5 and row["ci_high"] > 0
    md = render_comparison([row], "md")
    assert "| kd | 4 | **+2.50**† |" in md and "†: significant for these runs" in md
    # the same difference in every seed is seed-stable: bold without †
    (steady,) = compare(better_grid(), "student-only", labels=LABELS, fingerprint=FP_A)
    assert steady["significant"] and steady["seed_stable"]
    assert "†" not in render_comparison([steady], "md")


def test_runs_on_a_drifted_build_of_the_same_recipe_are_compared_with_the_rest():
    """A run whose content fingerprint differs but whose recipe is the dataset's (the same chips and labels,
    bytes changed by another GDAL) pairs with the others; without the recipe it is refused as before."""
    recipe = "c" * 64
    runs = better_grid()
    for run in runs:
        run["dataset"]["recipe_fingerprint"] = recipe
    drifted = runs[-1]  # kd, seed 2, re-stamped as made on another build
    drifted["dataset"]["fingerprint"] = FP_B
    rows = compare(runs, "student-only", labels=LABELS, fingerprint=FP_A, recipe=recipe)
    assert [(r["method"], r["n_seeds"], r["fingerprint"]) for r in rows] == [("kd", 3, FP_A)]
    assert rows == compare(better_grid(), "student-only", labels=LABELS, fingerprint=FP_A)  # the same numbers
    with pytest.raises(CompareError, match="fingerprint\\(s\\) bbbbbbbbbbbb"):
        compare(runs, "student-only", labels=LABELS, fingerprint=FP_A, recipe="d" * 64)
