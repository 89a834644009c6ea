"""The curation commands: `build-dataset`, `presets`, `demo-catalog`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ackd_bench.benchmark.clikit import MAX_SEED, friendly_errors


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


@click.command("build-dataset")
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
@friendly_errors
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


@click.command("presets")
@friendly_errors
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


@click.command("demo-catalog")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Folder for the static STAC catalog.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="World seed.")
@click.option("--scale", type=click.FloatRange(min=0.05, max=1.0), default=1.0, show_default=True,
              help="Shrink both regions (tests, quick looks).")
@click.option("--pair-site", is_flag=True,
              help="Also render the pair site (S2 and NAIP over the same place) for paired/partial builds.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@friendly_errors
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
