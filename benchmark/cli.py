"""The `ackd-bench` command line (click). Heavy imports live inside commands so --help is instant."""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

import click

from ackd_bench.benchmark.errors import AckdBenchError

MAX_SEED = 2**32 - 1  # benchmark.boundary.MAX_SEED (kept here: --help imports nothing heavy)
DEBUG_ENV = "ACKD_BENCH_DEBUG"  # set to 1 to see the traceback behind a one-line error


def _one_line(err: BaseException) -> str | None:
    """The one-line message of an error caused by bad input or bad state; None: an internal bug."""
    if isinstance(err, AckdBenchError):
        return str(err)
    if isinstance(err, OSError):
        import errno

        where = f" {err.filename}" if err.filename else ""
        fixes = {errno.EACCES: "check its permissions", errno.EPERM: "check its permissions",
                 errno.ENOSPC: "free disk space and rerun (finished stages are kept)",
                 errno.EROFS: "write somewhere writable", errno.ENOENT: "check the path"}
        fix = fixes.get(err.errno, "check the path and rerun")
        return f"{err.strerror or err}:{where}; {fix}"
    if isinstance(err, RecursionError):
        return "an input is nested too deeply to process; check the files you passed"
    if isinstance(err, MemoryError):
        return "out of memory; use a smaller dataset, batch or fewer workers"
    if type(err).__name__ == "DecompressionBombError":  # PIL, without importing it here
        return f"image refused as a decompression bomb ({err}); use a smaller image"
    if isinstance(err, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8"
    return None


def _friendly_errors(fn):
    """Turn errors from bad input or bad state into one line on stderr and exit status 1.

    The project's own errors (`AckdBenchError`) and the system's (unreadable, unwritable or full
    disks, images too large, input nested too deeply, out of memory) never show a traceback;
    other exceptions are bugs and do. ``ACKD_BENCH_DEBUG=1`` shows the traceback of every error.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import os

        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            click.echo("interrupted; rerun the same command to resume", err=True)
            sys.exit(130)
        except click.exceptions.ClickException:
            raise
        except Exception as err:
            message = _one_line(err)
            if message is None or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise
            raise click.ClickException(message) from err

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="ackd-bench")
def main() -> None:
    """ackd-bench: benchmarks for Asymmetric Cross-modal Knowledge Distillation.

    \b
    Quick start (offline, on the embedded demo world):
      ackd-bench build-dataset --catalog demo --out data/demo
      ackd-bench inspect data/demo
    """


def _catalog_options(values: tuple[str, ...]) -> dict[str, str]:
    """``--catalog`` values as {source: URL}, "" for every source; SOURCE=URL only for a known source name
    (a URL may itself hold '=')."""
    from ackd_bench.curation.presets import SOURCES

    out: dict[str, str] = {}
    for value in values:
        source, eq, url = value.partition("=")
        key, target = (source, url) if eq and source in SOURCES else ("", value)
        if not target:
            raise click.BadParameter(f"{value!r} names no catalogue", param_hint="--catalog")
        if key in out:
            raise click.BadParameter(f"{'source ' + key if key else 'the catalogue of every source'} is given twice",
                                     param_hint="--catalog")
        out[key] = target
    return out


@main.command("build-dataset")
@click.option("--preset", "preset_name", default=None, metavar="NAME|FILE",
              help="Built-in preset (see `ackd-bench presets`) or a preset file (.yaml, .yml or .json). "
                   "Default: eu-s2__us-naip (Planetary Computer), or demo with --catalog demo.")
@click.option("--catalog", "catalogs", multiple=True, metavar="demo|URL|SOURCE=URL",
              help="'demo' for the embedded world, or a STAC API / static catalog URL for every source (MS, "
                   "RGB, labels), replacing the preset's; SOURCE=URL (ms, rgb, labels, latent) redirects one "
                   "source (repeat the option).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Dataset directory to write.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=None,
              help="Seed of chip sampling and split assignment. [default: 0]")
@click.option("--per-class", type=click.IntRange(min=1), default=None, help="Chips per class per modality. [default: 150]")
@click.option("--purity", type=float, default=None, help="Minimum majority-class share of a chip. [default: 0.7]")
@click.option("--consistency", default=None, metavar="asymmetric|paired|partial:F",
              help="MS and RGB chips from disjoint regions, every RGB chip co-located with an MS chip of "
                   "its class, or a share F of them; the measured overlap goes to dataset.json. "
                   "[default: the preset's]")
@click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True,
              help="Dask workers of the local cluster that reads the chips, 8 reads at a time each.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT|threads|sync",
              help="Read on a running dask cluster (its scheduler's address) instead of a local one; "
                   "'threads' or 'sync' read in this process without dask.distributed.")
@click.option("--force", is_flag=True, help="Rebuild even if --out already holds this exact build.")
@click.option("--allow-shortfall", is_flag=True,
              help="Accept classes with fewer chips than asked (at least one each; recorded in dataset.json). "
                   "Without it a shortfall is an error and nothing is written.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_friendly_errors
def build_dataset(preset_name, catalogs, out, seed, per_class, purity, consistency, workers, scheduler, force,
                  allow_shortfall, quiet) -> None:
    """Build an ACKD benchmark: MS and RGB chips from STAC catalogues, labelled from land cover.

    Runs plan, search, sample, read, QA, split and write; an interrupted build resumes when the
    same command is run again. The dataset appears at --out only when complete; if --out already
    holds this exact build (same preset and catalogue), it is verified and kept (--force rebuilds).

    \b
    Example:
      ackd-bench build-dataset --catalog demo --out data/demo --seed 0
      ackd-bench build-dataset --preset eu-s2__us-naip --out data/eu-us --per-class 500
      ackd-bench build-dataset --catalog demo --consistency partial:0.5 --per-class 10 --out data/demo-half
      ackd-bench build-dataset --preset my-preset.yaml --out data/mine
      ackd-bench build-dataset --out data/eu-us --scheduler tcp://10.0.0.5:8786   # reads on a dask cluster
      ackd-bench build-dataset --catalog http://127.0.0.1:8082 --out data/mirror    # every source from a mirror
      ackd-bench build-dataset --catalog labels=http://127.0.0.1:8082 --out data/eu-us  # only the labels
    """
    from ackd_bench.benchmark.dataset import load_dataset, summarize
    from ackd_bench.curation.build import build_dataset as run_build
    from ackd_bench.curation.presets import DEFAULT_PRESET, DEMO_CATALOG, PresetError, get_preset

    redirect = _catalog_options(catalogs)
    catalog = redirect.get("")
    name = preset_name or ("demo" if catalog == DEMO_CATALOG else DEFAULT_PRESET)
    preset = get_preset(name)
    if DEMO_CATALOG in redirect.values() and (catalog != DEMO_CATALOG or preset.catalog != DEMO_CATALOG):
        raise PresetError(f"--catalog demo needs the 'demo' preset (its AOIs are the demo world's) and stands for "
                          f"every source, not {name!r} / {', '.join(catalogs)}")
    preset = preset.with_catalogs(redirect).with_overrides(seed=seed, per_class=per_class, purity=purity,
                                                           consistency=consistency)
    started = time.perf_counter()
    report = run_build(preset, out, workers=workers, scheduler=scheduler, progress=not quiet, force=force,
                       allow_shortfall=allow_shortfall)
    click.echo(summarize(load_dataset(out)))
    for modality, reasons in report.rejected.items():
        if reasons:
            click.echo(f"rejected {modality} chips: " + ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())))
    click.echo(f"built {out} in {time.perf_counter() - started:.1f} s; fingerprint {report.fingerprint}")


@main.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--no-verify", is_flag=True, help="Skip checksum and fingerprint verification.")
@_friendly_errors
def inspect_cmd(path: Path, no_verify: bool) -> None:
    """Validate a dataset (schema, checksums, counts, fingerprint) and print its summary.

    Exits non-zero and names the damaged file when anything does not match.

    \b
    Example:
      ackd-bench inspect data/demo
    """
    from ackd_bench.benchmark.dataset import Dataset, summarize
    from ackd_bench.benchmark.dataset_read import read_dataset_parts

    manifest, samples, arrays, report = read_dataset_parts(path, verify=not no_verify)  # read and checked once
    click.echo(summarize(Dataset(Path(path), manifest, samples, arrays["ms"], arrays["rgb"])))
    if not no_verify:
        unlisted = report["unlisted_files"]
        if unlisted:
            shown = ", ".join(unlisted[:5]) + (f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else "")
            raise click.ClickException(
                f"{path} holds {len(unlisted)} file(s) that are not part of the dataset ({shown}); the listed "
                f"files verify, but move the others out so that the folder is exactly the dataset")
        click.echo("verified: all checksums and both fingerprints match")


@main.command("import-paper")
@click.argument("layout", type=click.Choice(["s2s-eu", "s2s-cn", "m2s-gl"]))
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Dataset directory to write.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed of the stratified 70/15/15 split.")
@_friendly_errors
def import_paper_cmd(layout, src, out, seed) -> None:
    """Convert the SemBridge authors' released data (SRC/MS/<class>, SRC/RGB/<class>) into the dataset format.

    MS values are kept as stored; RGB jpgs are resized (64 px for s2s-eu, 128 px otherwise).

    \b
    Example:
      ackd-bench import-paper s2s-eu downloads/S2S_EU --out data/s2s-eu
      ackd-bench import-paper m2s-gl downloads/M2S_GL --out data/m2s-gl --seed 1
    """
    from ackd_bench.benchmark.dataset import load_dataset, summarize
    from ackd_bench.benchmark.import_paper import import_paper

    click.echo(summarize(load_dataset(import_paper(layout, src, out, seed=seed))))


@main.command("presets")
@_friendly_errors
def presets_cmd() -> None:
    """List the built-in presets and catalogue profiles, one line each.

    A preset file (YAML or JSON) of the same form builds with `build-dataset --preset FILE`; its
    `profile` picks the catalogue (asset keys, radiometry, signing).

    \b
    Example:
      ackd-bench presets
    """
    from ackd_bench.curation.catalog_profiles import list_profiles
    from ackd_bench.curation.presets import DEFAULT_PRESET, list_presets

    presets = {f"{n} (default)" if n == DEFAULT_PRESET else n: d for n, d in list_presets().items()}
    profiles = list_profiles()
    width = max(map(len, [*presets, *profiles])) + 2
    for name, description in presets.items():
        click.echo(f"{name:<{width}}{description}")
    click.echo("\ncatalogue profiles (a preset's `profile`):")
    for name, description in profiles.items():
        click.echo(f"{name:<{width}}{description}")


@main.command("methods")
@click.argument("pattern", required=False, default="*")
def methods_cmd(pattern) -> None:
    """List the registered KD methods (matching a glob PATTERN) with a one-line description and the paper.

    SemBridge is a plug-in: ``sembridge+<method>`` exists for every base method. Methods of other
    installed packages (entry-point group ``ackd_bench.methods``) are listed too.

    \b
    Example:
      ackd-bench methods
      ackd-bench methods 'sembridge*'
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


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"seeds are comma-separated integers, e.g. 0,1,2 (got {text!r})") from None
    if not seeds or any(s < 0 or s > MAX_SEED for s in seeds):
        raise click.BadParameter(f"give at least one seed in 0..{MAX_SEED}, e.g. 0,1,2")
    return seeds


def _parse_options(pairs: tuple[str, ...]) -> dict:
    import json

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"--option takes KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


PAIRING_CHOICES = ["permuted", "oracle", "class-mean"]  # benchmark.data.PAIRINGS (kept here: --help imports no torch)
PAIRING_HELP = ("Teacher partners of methods that use the harness's pairing: permuted (fresh random same-class "
                "partners every epoch), oracle (the same-class teacher chip nearest in latent truth, fixed; needs a "
                "dataset with latent truth) or class-mean (the teacher's class-mean outputs). Other than permuted, "
                "it joins the run's label, e.g. kd[pairing=oracle].")


@main.command("run")
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
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Override a method option.")
@click.option("--pairing", type=click.Choice(PAIRING_CHOICES), default="permuted", show_default=True, help=PAIRING_HELP)
@click.option("--no-ssm", is_flag=True, help="SemBridge ablation: random same-class initial partners, no matcher.")
@click.option("--no-dynm", is_flag=True, help="SemBridge ablation: never re-match during training.")
@click.option("--no-ot1", is_flag=True, help="SemBridge ablation: drop L_ot1 (CORAL of plan-refined tokens).")
@click.option("--no-ot2", is_flag=True, help="SemBridge ablation: drop L_ot2 (CORAL of pooled embeddings).")
@click.option("--planner", type=click.Choice(["attention", "sinkhorn"]), default=None,
              help="SemBridge planner: learned attention plans (paper) or POT Sinkhorn. [default: attention]")
@click.option("--weighting", type=click.Choice(["paper", "official"]), default=None,
              help="SemBridge loss weights: paper (λ1, 1−λ1) or the authors' code's 0.3/0.4/0.003. [default: paper]")
@click.option("--log-dir", type=click.Path(path_type=Path), default=None,
              help="Also write TensorBoard event files here (a folder per run): per-epoch losses by term, val OA, "
                   "timing. Needs tensorboard (pip install 'ackd-bench[tensorboard]').")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_friendly_errors
def run_cmd(method, arch, teacher_arch, dataset, seeds, profile_name, epochs, device, precision, compile_mode, out,
            resume, teacher_checkpoint, options, pairing, no_ssm, no_dynm, no_ot1, no_ot2, planner, weighting,
            log_dir, quiet) -> None:
    """Train the MS teacher (cached) and an RGB student with one method; write RunResult JSON per seed.

    Options given with --option or the SemBridge switches, and a --pairing other than permuted,
    become part of the run's label (e.g. ``sembridge[ssm=false]``, ``kd[pairing=oracle]``), so
    ablations and pairing controls are separate rows of the table.

    \b
    Example:
      ackd-bench run --method dkd --arch resnet18 --seeds 0,1,2 --profile fast
      ackd-bench run --method kd --arch resnet18 --seeds 0,1,2 --pairing oracle
      ackd-bench run --method sembridge --arch resnet18 --seeds 0,1,2 --profile fast
      ackd-bench run --method sembridge+dkd --arch resnet18 --no-dynm --planner sinkhorn
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

    seed_list = _parse_seeds(seeds)
    option_map = _parse_options(options)
    switches = {"ssm": False if no_ssm else None, "dynm": False if no_dynm else None,
                "ot1": False if no_ot1 else None, "ot2": False if no_ot2 else None,
                "planner": planner, "weighting": weighting}
    switches = {k: v for k, v in switches.items() if v is not None}
    if switches and not (method == "sembridge" or method.startswith("sembridge+")):
        flags = ", ".join(f"--{k.replace('_', '-')}" if k in ("planner", "weighting") else f"--no-{k}" for k in switches)
        raise click.UsageError(f"{flags} apply to SemBridge methods only (sembridge, sembridge+<method>), "
                               f"not to {method!r}")
    option_map.update(switches)
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


@main.command("table")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex", "json"]), default="md", show_default=True)
@click.option("--metric", default="oa", show_default=True, help="Metric: oa, macro_f1, macro_precision, macro_recall.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None, help="Write the table to a file.")
@click.option("--plot", type=click.Path(path_type=Path), default=None, help="Write a bar plot with 95 % CIs (PNG).")
@click.option("--dataset", "datasets", multiple=True, type=click.Path(path_type=Path),
              help="Also check the runs made on this dataset against its true test labels (repeatable).")
@_friendly_errors
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
    if out:
        from ackd_bench.benchmark.dataset import atomic_write_text

        atomic_write_text(out, text)
        click.echo(f"wrote {out}")
    else:
        click.echo(text)
    if plot:
        click.echo(f"wrote {plot_table(rows, plot)}")


@main.command("compare")
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
@_friendly_errors
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
    if out:
        from ackd_bench.benchmark.dataset import atomic_write_text

        atomic_write_text(out, text)
        click.echo(f"wrote {out}")
    else:
        click.echo(text)


@main.command("sweep")
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
@_friendly_errors
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
    grid = load_grid(grid_name, datasets=list(datasets) or None, seeds=_parse_seeds(seeds) if seeds else None,
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
            from ackd_bench.benchmark.dataset import atomic_write_text

            atomic_write_text(table_out, table)
            click.echo(f"wrote {table_out}")
    click.echo(f"{len(report.done)} run(s) done, {len(report.skipped)} already done, {len(report.failed)} failed")
    for run, reason in report.failed:
        click.echo(f"FAILED {run.describe()}: {reason}", err=True)
    if report.failed:
        raise click.ClickException(f"{len(report.failed)} run(s) failed (above); fix them and rerun the same "
                                   "command: finished runs are kept")


@main.command("demo-catalog")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Folder for the static STAC catalog.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="World seed.")
@click.option("--scale", type=click.FloatRange(min=0.05, max=1.0), default=1.0, show_default=True,
              help="Shrink both regions (tests, quick looks).")
@click.option("--pair-site", is_flag=True,
              help="Also render the pair site (S2 and NAIP over the same place) for paired/partial builds.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_friendly_errors
def demo_catalog(out: Path, seed: int, scale: float, pair_site: bool, quiet: bool) -> None:
    """Write the embedded demo world as a static STAC catalog (COGs + catalog.json).

    Any STAC server or plain HTTP server can serve the folder; `build-dataset --preset demo --catalog
    OUT/catalog.json` reads it directly.

    \b
    Example:
      ackd-bench demo-catalog --out /tmp/demo-world
      python -m http.server -d /tmp/demo-world 8000   # then --preset demo --catalog http://127.0.0.1:8000/catalog.json
    """
    from ackd_bench.curation.demo.world import build_demo_catalog

    path = build_demo_catalog(out, seed=seed, scale=scale, progress=not quiet, pair_site=pair_site)
    click.echo(f"wrote {path}")


@main.group("leaderboard")
def leaderboard_group() -> None:
    """Share results: pack runs into a submission, check it, and add it to a board (a git repo).

    \b
    Example:
      ackd-bench leaderboard pack results/dkd --out dkd.json --name "A. Author" --affiliation Lab \\
          --code-url https://github.com/me/dkd --licence CC-BY-4.0
      ackd-bench leaderboard init --board board/ --dataset data/demo
      ackd-bench leaderboard validate dkd.json --board board/
      ackd-bench leaderboard submit dkd.json --board board/
    """


@leaderboard_group.command("pack")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Submission file to write.")
@click.option("--name", required=True, help="Submitter's name.")
@click.option("--affiliation", default="", help="Submitter's affiliation.")
@click.option("--code-url", required=True, help="https:// URL of the code that produced the runs.")
@click.option("--paper-url", default="", help="https:// URL of the paper, if any.")
@click.option("--licence", required=True, help="Licence of the submitted results, e.g. CC-BY-4.0.")
@click.option("--id", "submission_id", default=None,
              help="Submission id (a-z, 0-9, -). [default: from method, pair and dataset]")
@_friendly_errors
def leaderboard_pack(results_dir, out, name, affiliation, code_url, paper_url, licence, submission_id) -> None:
    """Bundle every seed (at least 3) of one method in RESULTS_DIR into a submission JSON.

    \b
    Example:
      ackd-bench run --method dkd --arch resnet18 --seeds 0,1,2 --out results/dkd
      ackd-bench leaderboard pack results/dkd --out dkd.json --name "A. Author" --affiliation Lab \\
          --code-url https://github.com/me/dkd --licence CC-BY-4.0
    """
    from ackd_bench.leaderboard.submission import pack

    path = pack(results_dir, out=out, name=name, affiliation=affiliation, code_url=code_url, paper_url=paper_url,
                licence=licence, submission_id=submission_id)
    click.echo(f"wrote {path}")


@leaderboard_group.command("init")
@click.option("--board", required=True, type=click.Path(path_type=Path), help="Board folder to create.")
@click.option("--dataset", "datasets", required=True, multiple=True, type=click.Path(path_type=Path),
              help="A dataset the board accepts (repeat for several).")
@_friendly_errors
def leaderboard_init(board, datasets) -> None:
    """Create a board: submissions/ and datasets.json (with each dataset's true test labels).

    \b
    Example:
      ackd-bench leaderboard init --board board/ --dataset data/demo && git -C board init
    """
    from ackd_bench.leaderboard.board import init

    click.echo(f"created board {init(board, list(datasets))}")


@leaderboard_group.command("validate")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--board", type=click.Path(path_type=Path), default=None,
              help="Also check against this board: true labels, protocol, duplicates.")
@_friendly_errors
def leaderboard_validate(file, board) -> None:
    """Check a submission: schema, hashes, every metric recomputed from the predictions.

    \b
    Example:
      ackd-bench leaderboard validate dkd.json --board board/
    """
    from ackd_bench.leaderboard.submission import validate

    bundle = validate(file, board)
    against = f" against {board}" if board else " (metrics checked against the true labels only with --board)"
    click.echo(f"{file}: valid submission {bundle['id']!r}{against}")


@leaderboard_group.command("submit")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--board", required=True, type=click.Path(path_type=Path), help="The board to add it to.")
@_friendly_errors
def leaderboard_submit(file, board) -> None:
    """Validate a submission against the board and add it, rendered, as one transaction under the board's lock.

    Killed at any point, the board has the submission rendered or not at all; the next command
    completes it, and a retry of the same file is accepted or recognised as already on the board.

    \b
    Example:
      ackd-bench leaderboard submit dkd.json --board board/ && git -C board add -A
    """
    from ackd_bench.leaderboard.board import add_submission

    path, added = add_submission(file, board)
    click.echo(f"added {path}" if added else f"{path} is already on the board with this content; nothing changed")


@leaderboard_group.command("render")
@click.argument("board_dir", required=False, type=click.Path(path_type=Path))
@click.option("--board", default=None, type=click.Path(path_type=Path), help="The board to render.")
@_friendly_errors
def leaderboard_render(board_dir, board) -> None:
    """Render the board's submissions as LEADERBOARD.md and site/index.html.

    \b
    Example:
      ackd-bench leaderboard render --board board/
      ackd-bench leaderboard render board/
    """
    if (board_dir is None) == (board is None):
        raise click.UsageError("give the board once: `render BOARD` or `render --board BOARD`")
    board = board or board_dir
    from ackd_bench.leaderboard.render import render_board

    render_board(board)
    click.echo(f"rendered {board}")


if __name__ == "__main__":
    main()
