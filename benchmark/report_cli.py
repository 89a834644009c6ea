"""The reporting commands: `table` and `compare`."""

from __future__ import annotations

from pathlib import Path

import click

from ackd_bench.benchmark.clikit import echo_or_write, friendly_errors


@click.command("table")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex", "json"]), default="md", show_default=True)
@click.option("--metric", default="oa", show_default=True, help="Metric: oa, macro_f1, macro_precision, macro_recall.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None, help="Write the table to a file.")
@click.option("--plot", type=click.Path(path_type=Path), default=None, help="Write a bar plot with 95 % CIs (PNG).")
@click.option("--dataset", "datasets", multiple=True, type=click.Path(path_type=Path),
              help="Also check the runs made on this dataset against its true test labels (repeatable).")
@friendly_errors
def table_cmd(paths, fmt, metric, out, plot, datasets) -> None:
    """The paper-style grid from RunResult JSON files: methods x teacher->student pairs, per dataset.

    Cells are mean ± std over seeds of the test metric (%), with a bootstrap 95 % CI; the best
    per column is marked. Each dataset's grid ends with its minimum detectable difference
    (α 0.05, power 0.8): between two rows over seeds, and paired by test chip where the runs carry
    predictions (the `mdd` field in --format json). `ackd-bench compare` tests the differences.
    Every metric shown is recomputed from the run's own confusion matrix and predictions first; with
    --dataset, the predictions are also checked against the dataset's true test labels.

    \b
    Example:
      ackd-bench table results/ --format md --plot results/table.png
      ackd-bench table results/ --dataset data/demo
    """
    from ackd_bench.benchmark.compare import labels_and_identity, on_dataset
    from ackd_bench.benchmark.results import load_run_results, verify_run_metrics
    from ackd_bench.benchmark.table import aggregate, plot_table, render_table

    results = load_run_results(list(paths))
    if not results:
        raise click.ClickException(f"no RunResult JSON files in {', '.join(map(str, paths))}; run `ackd-bench run` first")
    for dataset in datasets:
        fingerprint, recipe, labels = labels_and_identity(dataset)
        checked = [r for r in results if on_dataset(r, fingerprint, recipe)]
        if not checked:
            raise click.ClickException(f"no run was made on {dataset} (fingerprint {fingerprint[:12]}); "
                                       f"give the dataset the runs were made on")
        for run in checked:
            verify_run_metrics(run, source=run["run_id"], labels=labels)
    try:
        rows = aggregate(results, metric=metric)
    except ValueError as err:  # an unknown metric
        raise click.ClickException(str(err)) from err
    text = render_table(rows, fmt)
    echo_or_write(text, out)
    if plot:
        click.echo(f"wrote {plot_table(rows, plot)}")


@click.command("compare")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--baseline", required=True, metavar="METHOD",
              help="Method label (as in `ackd-bench table`) every other method is compared with.")
@click.option("--dataset", "dataset", required=True, type=click.Path(path_type=Path),
              help="The dataset the runs were made on: RunResults hold each chip's prediction, the dataset "
                   "its true class. Its fingerprint must be the runs'.")
@click.option("--test", "test_name", type=click.Choice(["sign-flip", "mcnemar"]), default="sign-flip",
              show_default=True, help="sign-flip: permutation test on per-chip differences summed over seeds; "
              "mcnemar: McNemar's test pooled over seeds (exact below 25 discordant pairs).")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "json"]), default="md", show_default=True)
@click.option("--out", "out", type=click.Path(path_type=Path), default=None, help="Write the comparison to a file.")
@click.option("--n-boot", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Bootstrap resamples (over seeds and chips) of the CI.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the bootstrap and the sign flips.")
@friendly_errors
def compare_cmd(paths, baseline, dataset, test_name, fmt, out, n_boot, seed) -> None:
    """Each method against a baseline, paired by seed and test chip: ΔOA, bootstrap CI, p (Holm).

    Runs pair by dataset, teacher->student pair and seed; chips by sample id. Every method needs
    every baseline seed. p-values are Holm-adjusted over all rows; a bold ΔOA is significant at
    0.05. The tests condition on the trained runs; the CI also resamples seeds.

    \b
    Example:
      ackd-bench run --method student-only --arch resnet18 --seeds 0,1,2 --out results/
      ackd-bench run --method kd --arch resnet18 --seeds 0,1,2 --out results/
      ackd-bench compare results/ --baseline student-only --dataset data/demo
      ackd-bench compare results/ --baseline kd --dataset data/demo --test mcnemar --format csv --out cmp.csv

    \b
    The first compare prints a table per dataset and pair, a row per method (numbers illustrative):
      | Method | seeds | ΔOA (points) | 95% CI         | p       | p (Holm) | MDD  |
      | kd     | 3     | **+2.40**    | [+1.10, +3.70] | 1.0e-04 | 1.0e-04  | 1.35 |

    kd scores 2.4 points above student-only on the same seeds and chips; the CI excludes 0 and the
    Holm-adjusted p is below 0.05 (bold). MDD: the smallest ΔOA these runs could detect (power 0.8).
    """
    from ackd_bench.benchmark.compare import compare, labels_and_identity, render_comparison
    from ackd_bench.benchmark.results import load_run_results

    results = load_run_results(list(paths))
    if not results:
        raise click.ClickException(f"no RunResult JSON files in {', '.join(map(str, paths))}; run `ackd-bench run` first")
    fingerprint, recipe, labels = labels_and_identity(dataset)
    rows = compare(results, baseline, labels=labels, fingerprint=fingerprint, recipe=recipe, test=test_name,
                   n_boot=n_boot, seed=seed)
    text = render_comparison(rows, fmt)
    echo_or_write(text, out)
