"""The dataset commands: `inspect`, `import-paper` and `export`."""

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


@click.command("export")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--stac", "stac_dir", type=click.Path(path_type=Path),
              help="Write a self-contained STAC catalog (chips as labelled GeoTIFF items) into this new folder.")
@click.option("--croissant", "croissant_file", type=click.Path(path_type=Path),
              help="Write Croissant metadata to this .json file (its records table goes beside it).")
@click.option("--license", "license_id", default="other", show_default=True,
              help="SPDX id of the data licence written into both (e.g. CC-BY-4.0).")
@click.option("--force", is_flag=True, help="Replace an earlier export at the same place.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def export_cmd(dataset: Path, stac_dir: Path | None, croissant_file: Path | None, license_id: str,
               force: bool, quiet: bool) -> None:
    """Publish a built dataset as a STAC catalog and/or Croissant metadata.

    The dataset is verified first; each output appears complete or not at all. With both options,
    put the Croissant file in the STAC folder (or above it): its records then name each chip's
    GeoTIFF. Check the results with stac-validator and mlcroissant (docs/commands/export.md).

    \b
    Example:
      ackd-bench export data/demo --stac publish/demo --croissant publish/demo/croissant.json
      ackd-bench export data/demo --croissant publish/croissant.json --license CC-BY-4.0
    """
    from ackd_bench.benchmark.dataset import load_dataset
    from ackd_bench.benchmark.dataset.export import (
        ExportError,
        check_croissant_target,
        export_croissant,
        export_stac,
    )

    if stac_dir is None and croissant_file is None:
        raise ExportError("nothing to export: give --stac FOLDER, --croissant FILE or both")
    ds = load_dataset(dataset)
    if stac_dir is not None and croissant_file is not None:
        stac_dir, croissant_file = stac_dir.absolute(), croissant_file.absolute()
        if croissant_file.parent == stac_dir:  # one folder, written in one atomic step
            export_stac(ds, stac_dir, croissant=croissant_file.name, license=license_id, force=force,
                        progress=not quiet)
            click.echo(f"wrote {stac_dir / 'collection.json'} and {croissant_file}")
            return
        if not stac_dir.is_relative_to(croissant_file.parent):
            raise ExportError(f"put the Croissant file in {stac_dir} or above it, so that its records can name "
                              f"the chips by relative path (got {croissant_file})")
        check_croissant_target(croissant_file, ds.root, force)  # before the catalog is written
    if stac_dir is not None:
        export_stac(ds, stac_dir, license=license_id, force=force, progress=not quiet)
        click.echo(f"wrote {stac_dir.absolute() / 'collection.json'}")
    if croissant_file is not None:
        click.echo(f"wrote {export_croissant(ds, croissant_file, stac_dir=stac_dir, license=license_id, force=force)}")
