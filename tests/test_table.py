"""The results table: aggregation over seeds, bootstrap CIs, best marks, ordering and every output format."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from ackd_bench.benchmark.results import (
    RESULT_SCHEMA_VERSION,
    ResultSchemaError,
    load_run_results,
    predictions_sha256,
    validate_run_result,
    write_run_result,
)
from ackd_bench.benchmark.protocol import classification_metrics
from ackd_bench.benchmark.stats import paired_mdd, two_sample_mdd
from ackd_bench.benchmark.table import aggregate, bootstrap_ci, plot_table, render_table

FP_A = "a" * 64
FP_B = "b" * 64
N_CLASSES = 4


# The factory's 100 test chips: 25 per class, in class order.
CHIPS = [f"c{j:03d}" for j in range(100)]
TRUTH = np.repeat(np.arange(N_CLASSES), 100 // N_CLASSES)


def metrics(oa: float) -> dict:
    """A metrics block for 4 classes whose OA is ``oa`` (a whole percent): the first ``100·oa`` of
    the 100 chips right, the others taken for the next class; every metric agrees with the confusion."""
    return classification_metrics(TRUTH, predictions_for(oa), N_CLASSES)


def predictions_for(oa: float) -> np.ndarray:
    right = round(oa * 100)
    assert right / 100 == oa, f"the factory makes whole-percent OAs only, not {oa}"
    return np.where(np.arange(100) < right, TRUTH, (TRUTH + 1) % N_CLASSES)


def pin(result: dict, predicted: np.ndarray) -> dict:
    """Give ``result`` these test predictions of the factory's chips, and test metrics that agree with them."""
    result["metrics"]["test"] = classification_metrics(TRUTH, predicted, N_CLASSES)
    result["predictions"] = {"split": "test", "sample_ids": CHIPS, "predicted": predicted.tolist(),
                             "sha256": predictions_sha256(CHIPS, predicted.tolist())}
    return result


def make_result(*, method: str = "kd", seed: int = 0, oa: float = 0.8, dataset: str = "demo",
                fingerprint: str = FP_A, teacher: str = "resnet34", student: str = "mobilenetv2_100",
                teacher_oa: float | None = None) -> dict:
    """A complete, valid RunResult."""
    teacher_metrics = {} if teacher_oa is None else {"val_oa": teacher_oa, "test_oa": teacher_oa}
    return {
        "schema_version": RESULT_SCHEMA_VERSION,
        "run_id": f"{dataset}-{fingerprint[:4]}-{teacher}-{student}-{method}-{seed}",
        "created": "2025-01-01T00:00:00Z",
        "method": {"name": method, "config": {}},
        "teacher": {"arch": teacher, "checkpoint_sha256": f"{teacher}{seed}".ljust(64, "0"),
                    "metrics": teacher_metrics},
        "student": {"arch": student},
        "dataset": {"name": dataset, "version": "1", "fingerprint": fingerprint,
                    "classes": ["crop", "forest", "water", "urban"]},
        "seed": seed,
        "protocol": {"profile": "smoke", "epochs": 1, "batch_size": 8, "lr": 1e-3, "optimizer": "adam",
                     "selection": "val_oa", "pairing": "random-same-class", "student_px": 64, "teacher_px": 64},
        "metrics": {"val": metrics(oa), "test": metrics(oa), "selected_epoch": 0},
        "diagnostics": {},
        "timing": {"total_s": 1.0, "step_s": 0.01},
        "environment": {"python": "3.11", "torch": "2", "timm": "1", "ackd_bench": "0.1.0", "device": "cpu"},
    }


def grid_results() -> list[dict]:
    """Three methods × two pairs × three seeds, with the teacher's score; kd wins on R→M, dkd on R→R."""
    scores = {("resnet34", "mobilenetv2_100"): {"student": [0.70, 0.72, 0.71], "kd": [0.80, 0.82, 0.84],
                                                "sembridge": [0.78, 0.79, 0.80], "dkd": [0.75, 0.76, 0.74]},
              ("resnet34", "resnet34"): {"student": [0.73, 0.74, 0.75], "kd": [0.80, 0.81, 0.79],
                                         "sembridge": [0.81, 0.80, 0.79], "dkd": [0.90, 0.91, 0.92]}}
    return [make_result(method=m, seed=s, oa=v, teacher=t, student=st, teacher_oa=0.95 - 0.01 * s)
            for (t, st), by_method in scores.items() for m, vals in by_method.items() for s, v in enumerate(vals)]


def find(rows: list[dict], **match) -> dict:
    (row,) = [r for r in rows if all(r[k] == v for k, v in match.items())]
    return row


def test_factory_makes_valid_results():
    validate_run_result(make_result())


def test_mean_std_and_values_in_percent():
    rows = aggregate(grid_results())
    kd = find(rows, method="kd", student="mobilenetv2_100")
    expected = np.array([80.0, 82.0, 84.0])
    assert kd["n"] == 3 and kd["seeds"] == [0, 1, 2]
    assert kd["values"] == pytest.approx(expected.tolist())
    assert kd["mean"] == pytest.approx(82.0)
    assert kd["std"] == pytest.approx(2.0)  # sample std (ddof=1) of 80, 82, 84
    assert kd["pair"] == "resnet34→mobilenetv2_100" and kd["kind"] == "method"


def test_single_seed_has_zero_std_and_point_ci():
    (row,) = aggregate([make_result(oa=0.9)])
    assert row["n"] == 1 and row["std"] == 0.0
    assert row["ci_low"] == row["ci_high"] == pytest.approx(90.0)


def test_bootstrap_ci_contains_mean_and_is_deterministic():
    values = np.random.default_rng(5).uniform(70, 90, size=8)
    low, high = bootstrap_ci(values, n_boot=2000, seed=0)
    assert low < values.mean() < high
    assert values.min() <= low and high <= values.max()
    assert bootstrap_ci(values, n_boot=2000, seed=0) == (low, high)
    assert bootstrap_ci(values, n_boot=2000, seed=1) != (low, high)
    # An independent restatement: the same resampling indices give the same percentiles.
    idx = np.random.default_rng(0).integers(0, 8, size=(2000, 8))
    assert (low, high) == pytest.approx(tuple(np.percentile(values[idx].mean(axis=1), [2.5, 97.5])))
    same = bootstrap_ci(np.full(5, 81.3), seed=3)
    assert same[0] == same[1] == pytest.approx(81.3)


def test_aggregate_ci_deterministic_for_a_seed():
    a, b = aggregate(grid_results(), seed=7), aggregate(grid_results(), seed=7)
    assert a == b
    kd = find(a, method="kd", student="mobilenetv2_100")
    assert kd["ci_low"] <= kd["mean"] <= kd["ci_high"] and kd["ci_low"] < kd["ci_high"]


def test_teacher_row_from_teacher_metrics():
    rows = aggregate(grid_results())
    teacher = find(rows, method="teacher (MS)", student="resnet34")
    assert teacher["kind"] == "teacher" and teacher["seeds"] == [0, 1, 2]
    assert teacher["mean"] == pytest.approx(94.0)
    # One teacher checkpoint reporting two different scores is an inconsistency, not an average.
    conflicting = [make_result(method="kd", teacher_oa=0.9), make_result(method="at", teacher_oa=0.8)]
    with pytest.raises(ResultSchemaError, match="teacher checkpoint"):
        aggregate(conflicting)
    # No teacher metrics in the results: no teacher row.
    assert all(r["kind"] == "method" for r in aggregate([make_result(seed=s) for s in range(2)]))


def test_method_order_student_first_sembridge_last():
    results = [make_result(method=m, oa=0.5) for m in ("sembridge+dkd", "kd", "Dkd", "student-only", "at", "sembridge")]
    results.append(make_result(method="kd", oa=0.5, teacher_oa=0.9, seed=1))
    methods = [r["method"] for r in aggregate(results)]
    assert methods == ["teacher (MS)", "student-only", "at", "Dkd", "kd", "sembridge", "sembridge+dkd"]
    md = render_table(aggregate(results), "md")
    lines = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")]
    assert lines[2:9] == methods


def test_fingerprints_never_merged():
    results = [make_result(seed=0, oa=0.6, fingerprint=FP_A), make_result(seed=0, oa=0.9, fingerprint=FP_B)]
    rows = aggregate(results)
    assert sorted((r["fingerprint"], r["mean"]) for r in rows) == [(FP_A, pytest.approx(60.0)),
                                                                    (FP_B, pytest.approx(90.0))]
    md = render_table(rows, "md")
    assert md.count("### demo") == 2 and FP_A[:12] in md and FP_B[:12] in md


def test_duplicate_seed_is_an_error():
    results = [make_result(seed=1), make_result(seed=1, oa=0.5)]
    results[1]["run_id"] = "second"
    with pytest.raises(ResultSchemaError, match=r"duplicate run for .*kd.*seed 1.*second"):
        aggregate(results)


def test_invalid_inputs_are_errors():
    bad = make_result()
    del bad["metrics"]["test"]["oa"]
    with pytest.raises(ResultSchemaError, match="metrics.test.oa"):
        aggregate([bad])
    with pytest.raises(ValueError, match="macro_f1"):
        aggregate([make_result()], metric="accuracy")
    with pytest.raises(ValueError, match="csv, json, latex, md"):
        render_table(aggregate([make_result()]), "html")


def test_best_marks_highest_mean_and_ties():
    rows = aggregate(grid_results())
    records = json.loads(render_table(rows, "json"))
    best = {(r["pair"], r["method"]) for r in records if r["best"]}
    assert best == {("resnet34→mobilenetv2_100", "kd"), ("resnet34→resnet34", "dkd")}
    # The teacher scores higher than every student but is never marked.
    assert not any(r["best"] for r in records if r["kind"] == "teacher")
    tied = aggregate([make_result(method="a", oa=0.8), make_result(method="b", oa=0.8),
                      make_result(method="c", oa=0.7)])
    assert [r["best"] for r in json.loads(render_table(tied, "json"))] == [True, True, False]
    # Best marks follow the rows handed in: without kd, sembridge wins on R→M.
    kept = [r for r in rows if r["method"] != "kd"]
    best = {(r["pair"], r["method"]) for r in json.loads(render_table(kept, "json")) if r["best"]}
    assert best == {("resnet34→mobilenetv2_100", "sembridge"), ("resnet34→resnet34", "dkd")}


def test_markdown_grid():
    md = render_table(aggregate(grid_results()), "md")
    assert "| Method | resnet34→mobilenetv2_100 | resnet34→resnet34 |" in md
    assert "| kd | **82.0 ± 2.0** | 80.0 ± 1.0 |" in md
    assert "| dkd | 75.0 ± 1.0 | **91.0 ± 1.0** |" in md
    assert "| teacher (MS) | 94.0 ± 1.0 | 94.0 ± 1.0 |" in md
    assert "bootstrap CI" in md and "n=3" in md
    assert sum(line.count("**") for line in md.splitlines() if line.startswith("| ")) == 4
    partial = render_table(aggregate([make_result(method="kd"), make_result(method="at", student="resnet34")]), "md")
    assert "| at | — | **80.0 ± 0.0** |" in partial


def test_csv_long_format():
    rows = aggregate(grid_results())
    records = list(csv.DictReader(io.StringIO(render_table(rows, "csv"))))
    assert len(records) == len(rows) == 10
    kd = next(r for r in records if r["method"] == "kd" and r["student"] == "mobilenetv2_100")
    assert float(kd["mean"]) == pytest.approx(82.0) and float(kd["std"]) == pytest.approx(2.0)
    assert kd["best"] == "true" and kd["seeds"] == "0;1;2" and kd["fingerprint"] == FP_A
    assert float(kd["ci_low"]) < 82.0 < float(kd["ci_high"])


def test_json_has_every_number():
    records = json.loads(render_table(aggregate(grid_results()), "json"))
    kd = next(r for r in records if r["method"] == "kd" and r["student"] == "mobilenetv2_100")
    assert kd["values"] == [80.0, 82.0, 84.0] and kd["n"] == 3
    assert {"mean", "std", "ci_low", "ci_high", "ci_level", "best", "pair", "fingerprint"} <= set(kd)


def test_latex_booktabs_and_escaping():
    results = grid_results() + [make_result(method="kd_50%&#", seed=0)]
    tex = render_table(aggregate(results), "latex")
    for token in (r"\begin{tabular}", r"\toprule", r"\midrule", r"\bottomrule", r"\end{tabular}"):
        assert token in tex
    assert r"resnet34$\rightarrow$mobilenetv2\_100" in tex
    assert r"kd\_50\%\&\#" in tex
    assert r"\textbf{82.0 $\pm$ 2.0}" in tex
    assert "mobilenetv2_100" not in tex and "±" not in tex


def test_plot_is_a_png(tmp_path):
    rows = aggregate(grid_results() + [make_result(fingerprint=FP_B, method="kd", oa=0.6)])
    path = plot_table(rows, tmp_path / "plots" / "table.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    assert plot_table(rows, tmp_path / "again.png").read_bytes() == data  # deterministic
    with pytest.raises(ValueError, match="no results"):
        plot_table([], tmp_path / "empty.png")


def test_round_trip_through_result_files(tmp_path):
    results = grid_results()
    for result in results:
        write_run_result(tmp_path / "runs", result)
    loaded = load_run_results([tmp_path / "runs"])
    assert len(loaded) == len(results)
    assert aggregate(loaded) == aggregate(results)


def test_grid_reports_its_minimum_detectable_difference():
    """Two-sample MDD from the method rows' pooled seed std; paired bound from where predictions differ."""
    results = grid_results()
    method_values = [np.array([r["metrics"]["test"]["oa"] * 100 for r in results
                               if (r["method"]["name"], r["student"]["arch"]) == key])
                     for key in {(r["method"]["name"], r["student"]["arch"]) for r in results}]
    pooled = np.sqrt(sum(((v - v.mean()) ** 2).sum() for v in method_values) / sum(len(v) - 1 for v in method_values))
    expected = two_sample_mdd(float(pooled), 3)
    md = render_table(aggregate(results), "md")
    assert f"Minimum detectable difference (α = 0.05, power 0.8): {expected:.1f} points between two rows over 3 " \
           "seeds" in md and "paired by test chip" not in md
    records = json.loads(render_table(aggregate(results), "json"))
    assert all(r["mdd"]["two_sample"] == pytest.approx(expected, abs=1e-4) for r in records)  # 4 decimals kept
    assert all(r["mdd"]["paired"] is None for r in records)

    # On R→M, student and kd predict different classes on 10 of 100 chips in every seed: ψ ≤ 0.1.
    for r in results:
        if r["student"]["arch"] == "mobilenetv2_100" and r["method"]["name"] in ("student", "kd"):
            flipped = 10 if r["method"]["name"] == "kd" else 0
            pin(r, np.where(np.arange(100) < flipped, (TRUTH + 1) % N_CLASSES, TRUTH))
    mdd = json.loads(render_table(aggregate(results), "json"))[0]["mdd"]
    assert (mdd["n_chips"], mdd["discordance"]) == (100, 0.1)
    assert mdd["paired"] == pytest.approx(100 * paired_mdd(0.1, 3 * 100), abs=1e-4)
    assert "at most" in render_table(aggregate(results), "md") and "3 seeds × 100 chips" in \
        render_table(aggregate(results), "md")
    # The paired bound speaks of OA only.
    assert aggregate(results, metric="macro_f1")[0]["mdd"]["paired"] is None
    results[0]["predictions"] = {"sample_ids": CHIPS, "predicted": [0]}
    with pytest.raises(ResultSchemaError, match="one class per test chip"):
        aggregate(results)
