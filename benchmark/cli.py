"""The `ackd-bench` command line (click). Heavy imports live inside commands so --help is instant."""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

import click

from ackd_bench.benchmark.errors import AckdBenchError


def _friendly_errors(fn):
    """Turn the project's errors into one actionable line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AckdBenchError as err:
            raise click.ClickException(str(err)) from err
        except KeyboardInterrupt:
            click.echo("interrupted; rerun the same command to resume", err=True)
            sys.exit(130)

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


@main.command("build-dataset")
@click.option("--preset", "preset_name", default=None, metavar="NAME|FILE.json",
              help="Built-in preset (see `ackd-bench presets`) or a JSON preset file. "
                   "Default: eu-s2__us-naip (Planetary Computer), or demo with --catalog demo.")
@click.option("--catalog", default=None, metavar="demo|URL",
              help="'demo' for the embedded world, or a STAC API / static catalog URL overriding the preset's.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Dataset directory to write.")
@click.option("--seed", type=int, default=None, help="Seed of chip sampling and split assignment. [default: 0]")
@click.option("--per-class", type=int, default=None, help="Chips per class per modality. [default: 150]")
@click.option("--purity", type=float, default=None, help="Minimum majority-class share of a chip. [default: 0.7]")
@click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True, help="Concurrent chip reads.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_friendly_errors
def build_dataset(preset_name, catalog, out, seed, per_class, purity, workers, quiet) -> None:
    """Build an ACKD benchmark: MS and RGB chips from STAC catalogues, labelled from land cover.

    Runs plan, search, sample, read, QA, split and write; an interrupted build resumes when the
    same command is run again. The dataset appears at --out only when complete.

    \b
    Example:
      ackd-bench build-dataset --catalog demo --out data/demo --seed 0
      ackd-bench build-dataset --preset eu-s2__us-naip --out data/eu-us --per-class 500
    """
    from ackd_bench.benchmark.dataset import load_dataset, summarize
    from ackd_bench.curation.build import build_dataset as run_build
    from ackd_bench.curation.presets import DEFAULT_PRESET, DEMO_CATALOG, PresetError, get_preset

    if per_class is not None and per_class <= 0:
        raise PresetError(f"--per-class must be a positive number of chips, got {per_class}")
    name = preset_name or ("demo" if catalog == DEMO_CATALOG else DEFAULT_PRESET)
    preset = get_preset(name)
    if catalog == DEMO_CATALOG and preset.catalog != DEMO_CATALOG:
        raise PresetError(f"--catalog demo needs the 'demo' preset (its AOIs are the demo world's), not {name!r}")
    preset = preset.with_overrides(catalog=catalog, seed=seed, per_class=per_class, purity=purity)
    started = time.perf_counter()
    report = run_build(preset, out, workers=workers, progress=not quiet)
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
    from ackd_bench.benchmark.dataset import load_dataset, summarize

    click.echo(summarize(load_dataset(path, verify=not no_verify)))
    if not no_verify:
        click.echo("verified: all checksums and the fingerprint match")


@main.command("presets")
def presets_cmd() -> None:
    """List the built-in presets.

    \b
    Example:
      ackd-bench presets
    """
    from ackd_bench.curation.presets import list_presets

    for name, description in list_presets().items():
        click.echo(f"{name:<18} {description}")


@main.command("demo-catalog")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Folder for the static STAC catalog.")
@click.option("--seed", type=int, default=0, show_default=True, help="World seed.")
@click.option("--scale", type=click.FloatRange(min=0.05, max=1.0), default=1.0, show_default=True,
              help="Shrink both regions (tests, quick looks).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_friendly_errors
def demo_catalog(out: Path, seed: int, scale: float, quiet: bool) -> None:
    """Write the embedded demo world as a static STAC catalog (COGs + catalog.json).

    Any STAC server or plain HTTP server can serve the folder; `build-dataset --preset demo --catalog
    OUT/catalog.json` reads it directly.

    \b
    Example:
      ackd-bench demo-catalog --out /tmp/demo-world
      python -m http.server -d /tmp/demo-world 8000   # then --preset demo --catalog http://127.0.0.1:8000/catalog.json
    """
    from ackd_bench.curation.demo_world import build_demo_catalog

    path = build_demo_catalog(out, seed=seed, scale=scale, progress=not quiet)
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
