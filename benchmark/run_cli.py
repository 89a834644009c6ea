"""The training commands: `methods`, `run` and `sweep`."""

from __future__ import annotations

from pathlib import Path

import click

from ackd_bench.benchmark.clikit import friendly_errors, parse_options, parse_seeds


@click.command("methods")
@click.argument("pattern", required=False, default="*")
@click.option("--options", "show_options", is_flag=True,
              help="Also list each method's options (for `run -o KEY=VALUE`) with their defaults.")
def methods_cmd(pattern, show_options) -> None:
    """List the registered KD methods (matching a glob PATTERN) with a one-line description and the paper.

    SemBridge is a plug-in: ``sembridge+<method>`` exists for every base method. Methods of other
    installed packages (entry-point group ``ackd_bench.methods``) are listed too.

    \b
    Example:
      ackd-bench methods
      ackd-bench methods 'sembridge*'
      ackd-bench methods sembridge --options
    """
    import warnings

    from ackd_bench.benchmark.method import BROKEN_PLUGINS, get_method_class, list_methods

    with warnings.catch_warnings():  # broken plug-ins are listed below, once
        warnings.simplefilter("ignore", RuntimeWarning)
        names = list_methods(pattern)
    for name, why in sorted(BROKEN_PLUGINS.items()):
        click.echo(f"warning: method plug-in {name!r} failed to load and is left out ({why})", err=True)
    if not names:
        raise click.UsageError(f"no method matches {pattern!r}; `ackd-bench methods` lists them all")
    width = max(14, *(len(n) + 1 for n in names))
    for name in names:
        cls = get_method_class(name)
        click.echo(f"{name:<{width}} {cls.description}\n{'':<{width}} {cls.paper}")
        if show_options:
            for line in option_lines(cls.Config):
                click.echo(f"{'':<{width}}   {line}")


def option_lines(config: type) -> list[str]:
    """``name = default  (type)`` per option of a method's Config dataclass, followed by its entry
    in the docstring's ``Attributes:`` section (Google style) where there is one, wrapped."""
    import dataclasses
    import inspect
    import re
    import textwrap

    doc = inspect.getdoc(config) or ""
    attributes = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    described: dict[str, str] = {}
    for match in re.finditer(r"^ {4}([\w, ]+):(.*(?:\n {8}.*)*)", attributes, flags=re.M):
        text = " ".join(match.group(2).split())
        for name in match.group(1).split(","):
            described.setdefault(name.strip(), text)
    lines = []
    for f in dataclasses.fields(config):
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        lines.append(f"{f.name} = {json_default(f.default)}  ({kind})")
        if described.get(f.name):
            lines += textwrap.wrap(described[f.name], 88, initial_indent="    ", subsequent_indent="    ")
    return lines or ["(no options)"]


def json_default(value) -> str:
    """A default as `-o` would spell it: JSON where it has a JSON form (false, 0.5, null)."""
    import json

    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


PAIRING_CHOICES = ["permuted", "oracle", "class-mean"]  # benchmark.data.PAIRINGS (kept here: --help imports no torch)
PAIRING_HELP = ("Teacher partners of methods that use the harness's pairing: permuted (fresh random same-class "
                "partners every epoch), oracle (the same-class teacher chip nearest in latent truth, fixed; needs a "
                "dataset with latent truth) or class-mean (the teacher's class-mean outputs). Other than permuted, "
                "it joins the run's label, e.g. kd[pairing=oracle].")


@click.command("run")
@click.option("--method", required=True, help="A registered method (see `ackd-bench methods`).")
@click.option("--arch", required=True, help="Student backbone: any timm name, or shufflenet_v2_x0_5.")
@click.option("--teacher-arch", default=None, help="Teacher backbone. [default: same as --arch]")
@click.option("--dataset", "dataset", type=click.Path(path_type=Path), default=Path("data/demo"), show_default=True,
              help="Dataset directory; the demo dataset is built there if missing.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds, e.g. 0,1,2.")
@click.option("--profile", "profile_name", default="fast", show_default=True,
              type=click.Choice(["paper", "fast", "smoke"]), help="Training profile.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the profile's student epochs.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default=None,
              help="bf16 autocast for forward passes and losses. [default: the profile's, fp32]")
@click.option("--compile", "compile_mode", type=click.Choice(["off", "default", "reduce-overhead"]), default="off",
              show_default=True, help="torch.compile the training forward passes (reduce-overhead: also CUDA "
              "graphs, CUDA only). Costs tens of seconds up front; benchmarks/gpu_suite.py measures whether it pays.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Folder for RunResult JSON files.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last epoch checkpoint.")
@click.option("--teacher-checkpoint", type=click.Path(path_type=Path), default=None,
              help="Use this teacher (.safetensors with its .json) instead of the cached one.")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE",
              help="Set a method option (repeatable); `ackd-bench methods NAME --options` lists a method's options "
                   "and defaults. VALUE is read as JSON where it parses (false, 0.5, \"text\"), else as text.")
@click.option("--pairing", type=click.Choice(PAIRING_CHOICES), default="permuted", show_default=True, help=PAIRING_HELP)
@click.option("--log-dir", type=click.Path(path_type=Path), default=None,
              help="Also write TensorBoard event files here (a folder per run): per-epoch losses by term, val OA, "
                   "timing. Needs tensorboard (pip install 'ackd-bench[tensorboard]').")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@friendly_errors
def run_cmd(method, arch, teacher_arch, dataset, seeds, profile_name, epochs, device, precision, compile_mode, out,
            resume, teacher_checkpoint, options, pairing, log_dir, quiet) -> None:
    """Train the MS teacher (cached) and an RGB student with one method; write RunResult JSON per seed.

    Options given with --option (-o), and a --pairing other than permuted, become part of the run's
    label (e.g. ``sembridge[ssm=false]``, ``kd[pairing=oracle]``), so ablations and pairing
    controls are separate rows of the table. SemBridge's ablations are options like any other:
    ``-o ssm=false``, ``-o dynm=false``, ``-o ot1=false``, ``-o ot2=false``, ``-o planner=sinkhorn``,
    ``-o weighting=official``.

    \b
    Example:
      ackd-bench run --method dkd --arch resnet18 --seeds 0,1,2 --profile fast
      ackd-bench run --method kd --arch resnet18 --seeds 0,1,2 --pairing oracle
      ackd-bench run --method sembridge --arch resnet18 --seeds 0,1,2 --profile fast
      ackd-bench run --method sembridge+dkd --arch resnet18 -o dynm=false -o planner=sinkhorn
      ackd-bench run --method kd --arch mobilenetv2_100 --teacher-arch resnet34 --device cuda --profile paper
      ackd-bench run --method sembridge --arch resnet18 --device cuda --precision bf16 --compile reduce-overhead
      ackd-bench run --method kd --arch resnet18 --log-dir runs/  # then: tensorboard --logdir runs/
    """
    from ackd_bench.benchmark.boundary import check_output_dir
    from ackd_bench.benchmark.method import method_config
    from ackd_bench.benchmark.models import check_arch
    from ackd_bench.benchmark.protocol import get_profile
    from ackd_bench.benchmark.runner import (DeviceError, check_compile_mode, check_pairing, resolve_device,
                                             run_experiment)

    seed_list = parse_seeds(seeds)
    option_map = parse_options(options)
    # Everything the command line names is checked before any data is built or loaded.
    method_config(method, option_map)  # the method and its option names
    check_pairing(method, pairing)
    for name in dict.fromkeys([arch, teacher_arch or arch]):  # student first
        check_arch(name)
    profile = get_profile(profile_name, epochs=epochs, precision=precision)
    check_output_dir(out)
    if log_dir is not None:
        from ackd_bench.benchmark.tblog import LogDirError, check_log_dir

        try:
            check_log_dir(log_dir)
        except LogDirError as err:
            raise click.UsageError(str(err)) from err
    try:  # a mode the device cannot run is a usage error
        check_compile_mode(compile_mode, resolve_device(device))
    except DeviceError as err:
        raise click.UsageError(str(err)) from err
    if not (dataset / "dataset.json").exists() and dataset == Path("data/demo"):
        from ackd_bench.curation.build import build_dataset as run_build
        from ackd_bench.curation.presets import get_preset

        click.echo(f"building the demo dataset into {dataset} first", err=True)
        run_build(get_preset("demo"), dataset, progress=not quiet)
    results = run_experiment(dataset, method=method, arch=arch, teacher_arch=teacher_arch, seeds=seed_list,
                             profile=profile, device=device, out=out, resume=resume, progress=not quiet,
                             teacher_checkpoint=teacher_checkpoint, method_options=option_map,
                             compile_mode=compile_mode, pairing=pairing, log_dir=log_dir)
    click.echo(f"{'seed':>4}  {'teacher test OA':>15}  {'student val OA':>14}  {'student test OA':>15}  {'epoch':>5}  {'img/s':>7}")
    for r in results:
        click.echo(f"{r['seed']:>4}  {100 * r['teacher']['metrics']['test_oa']:>14.1f}%  "
                   f"{100 * r['metrics']['val']['oa']:>13.1f}%  {100 * r['metrics']['test']['oa']:>14.1f}%  "
                   f"{r['metrics']['selected_epoch']:>5}  {r['timing']['images_per_s']:>7.0f}")
    click.echo(f"wrote {len(results)} result(s) to {out}")


@click.command("sweep")
@click.option("--grid", "grid_name", default="paper", show_default=True, metavar="NAME|FILE",
              help="Built-in grid (paper) or a grid YAML file: datasets, pairs, methods, seeds, profile.")
@click.option("--dataset", "datasets", multiple=True, type=click.Path(path_type=Path),
              help="A dataset to sweep (repeat for several); replaces the grid's datasets.")
@click.option("--seeds", default=None, help="Comma-separated seeds, replacing the grid's, e.g. 0,1,2.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Folder for RunResult JSON files; runs whose result is already there are skipped.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Workers of the local dask cluster (one run each at a time).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT", help="Run on this running dask cluster instead.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N] (on the workers).")
@click.option("--compile", "compile_mode", type=click.Choice(["off", "default", "reduce-overhead"]), default="off",
              show_default=True, help="torch.compile the training forward passes (reduce-overhead: also CUDA "
              "graphs, CUDA only). Costs tens of seconds up front; benchmarks/gpu_suite.py measures whether it pays.")
@click.option("--gpus-per-run", type=click.IntRange(min=0), default=0, show_default=True,
              help="Ask dask for this many 'GPU' resources per run (workers need --resources GPU=N).")
@click.option("--retries", type=click.IntRange(min=0), default=1, show_default=True, help="Retries of a failing run.")
@click.option("--pairing", type=click.Choice(PAIRING_CHOICES), default=None,
              help="Replace the grid's pairing (its `pairing` key; default permuted) for every method it applies to "
                   "(methods that use a teacher and the harness's partners; SemBridge and student-only run as always).")
@click.option("--dry-run", is_flag=True, help="List the runs that would execute, and how many are already done.")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex", "json"]), default="md", show_default=True,
              help="Format of the table printed at the end.")
@click.option("--table-out", type=click.Path(path_type=Path), default=None, help="Also write the table to this file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def sweep_cmd(grid_name, datasets, seeds, out, workers, scheduler, device, compile_mode, gpus_per_run, retries,
              pairing, dry_run, fmt, table_out, quiet) -> None:
    """Run a grid (datasets x teacher->student pairs x methods x seeds) on dask; then print its table.

    Resumable: runs whose RunResult is already in --out are skipped. Teachers and SemBridge
    matchers are shared through $ACKD_BENCH_CACHE (the workers' own). A failed run is retried,
    then reported; the others go on, and the exit status is 1. On a cluster started by hand,
    start each GPU worker with `dask worker ADDRESS --nthreads 1 --resources GPU=1`.

    \b
    Example:
      ackd-bench sweep --grid paper --dataset data/eu-us --dry-run
      ackd-bench sweep --grid paper --dataset data/eu-us --workers 2 --out results/paper
      ackd-bench sweep --grid paper --dataset data/demo --pairing oracle --out results/oracle
      ackd-bench sweep --grid my-grid.yaml --scheduler tcp://10.0.0.5:8786 --gpus-per-run 1 --out results/mine
    """
    from ackd_bench.benchmark.boundary import check_output_dir
    from ackd_bench.benchmark.sweep import expand_grid, load_grid, run_sweep, sweep_table

    if compile_mode == "reduce-overhead" and not (device.startswith("cuda") or gpus_per_run):
        raise click.UsageError("--compile reduce-overhead records CUDA graphs: give --device cuda or --gpus-per-run")
    grid = load_grid(grid_name, datasets=list(datasets) or None, seeds=parse_seeds(seeds) if seeds else None,
                     pairing=pairing)
    check_output_dir(out)
    runs = expand_grid(grid)
    todo = [r for r in runs if not (out / r.filename).exists()]
    if dry_run:
        for run in todo:
            click.echo(run.describe())
        click.echo(f"{len(todo)} run(s) to execute, {len(runs) - len(todo)} of {len(runs)} already done in {out}")
        return
    report = run_sweep(grid, out, workers=workers, scheduler=scheduler, device=device, gpus_per_run=gpus_per_run,
                       retries=retries, progress=not quiet, compile_mode=compile_mode)
    table = sweep_table(runs, out, fmt)
    if table is not None:
        click.echo(table)
        if table_out:
            from ackd_bench.benchmark.dataset.files import atomic_write_text

            atomic_write_text(table_out, table)
            click.echo(f"wrote {table_out}")
    click.echo(f"{len(report.done)} run(s) done, {len(report.skipped)} already done, {len(report.failed)} failed")
    for run, reason in report.failed:
        click.echo(f"FAILED {run.describe()}: {reason}", err=True)
    if report.failed:
        raise click.ClickException(f"{len(report.failed)} run(s) failed (above); fix them and rerun the same "
                                   "command: finished runs are kept")
