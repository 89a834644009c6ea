"""The dataset commands: `inspect` and `import-paper`."""

from __future__ import annotations

from pathlib import Path

import click

from ackd_bench.benchmark.clikit import MAX_SEED, friendly_errors


@click.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--no-verify", is_flag=True, help="Skip checksum and fingerprint verification.")
@friendly_errors
def inspect_cmd(path: Path, no_verify: bool) -> None:
    """Validate a dataset (schema, checksums, counts, fingerprint) and print its summary.

    Exits non-zero and names the damaged file when anything does not match.

    \b
    Example:
      ackd-bench inspect data/demo
    """
    from ackd_bench.benchmark.dataset import Dataset, summarize
    from ackd_bench.benchmark.dataset.read import read_dataset_parts

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


@click.command("import-paper")
@click.argument("layout", type=click.Choice(["s2s-eu", "s2s-cn", "m2s-gl"]))
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Dataset directory to write.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed of the stratified 70/15/15 split.")
@friendly_errors
def import_paper_cmd(layout, src, out, seed) -> None:
    """Convert the SemBridge authors' released data (SRC/MS/<class>, SRC/RGB/<class>) into the dataset format.

    MS values are kept as stored; RGB jpgs are resized (64 px for s2s-eu, 128 px otherwise).

    \b
    Example:
      ackd-bench import-paper s2s-eu downloads/S2S_EU --out data/s2s-eu
      ackd-bench import-paper m2s-gl downloads/M2S_GL --out data/m2s-gl --seed 1
    """
    from ackd_bench.benchmark.dataset import load_dataset, summarize
    from ackd_bench.benchmark.dataset.import_paper import import_paper

    click.echo(summarize(load_dataset(import_paper(layout, src, out, seed=seed))))
