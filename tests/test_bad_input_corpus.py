"""The bad-input corpus: every command, handed what a careless or hostile user hands it.

Each case asserts what the "What bad input gets" table of docs/errors.md promises: a non-zero exit (1 for
bad files and state, 2 for bad command-line usage), exactly one ``Error:`` line on stderr that
matches the case's message, no traceback, and nothing written or changed anywhere in the case's
workspace (the shared fixtures are hashed before and after every case). A case that hangs is
stopped by pytest-timeout.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from ackd_bench.benchmark.cli import main
from ackd_bench.curation.presets import PRESET_DIR

REPO = Path(__file__).resolve().parents[1]
REFERENCE_RUNS = sorted((REPO / "benchmarks" / "results" / "demo_v2").glob("*__kd__seed*.json"))[:3]
HUGE = str(2**64)


@dataclass
class Case:
    """One bad input: the command line, what ``setup`` writes into the case folder first, and the
    expected error (a regex searched in the one ``Error:`` line) and exit code."""

    id: str
    args: list[str]
    message: str
    code: int = 1
    setup: Callable[[Path, dict[str, Path]], None] | None = None


# ---- what the cases write -------------------------------------------------------------------

def _demo_preset() -> dict:
    return yaml.safe_load((PRESET_DIR / "demo.yaml").read_text())


def preset(*path_value, name="p.yaml", raw: str | bytes | None = None, drop: tuple = ()):
    """A setup writing the demo preset with ``path -> value`` changes (or ``raw`` content) to ``name``."""

    def setup(case: Path, fx: dict[str, Path]) -> None:
        if raw is not None:
            data = raw.encode() if isinstance(raw, str) else raw
            (case / name).write_bytes(data)
            return
        data = _demo_preset()
        for key in drop:
            del data[key]
        for path, value in path_value:
            target = data
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        text = json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data)
        (case / name).write_text(text)

    return setup


def grid(data: dict | None = None, *, raw: str | None = None, **changes):
    """A setup writing a small valid grid with ``changes`` (or ``raw`` text) to g.yaml."""

    def setup(case: Path, fx: dict[str, Path]) -> None:
        if raw is not None:
            (case / "g.yaml").write_text(raw)
            return
        base = {"name": "t", "pairs": [{"teacher": "resnet18", "student": "resnet18"}], "methods": ["kd"],
                "seeds": [0], "profile": "smoke", "datasets": [str(fx["ds"])]}
        base.update(data or {})
        base.update(changes)
        (case / "g.yaml").write_text(yaml.safe_dump(base))

    return setup


def results(edit: Callable[[dict], object] | None = None, *, raw: str | bytes | None = None, name="r.json"):
    """A setup copying the reference runs into case/runs and adding one bad result file."""

    def setup(case: Path, fx: dict[str, Path]) -> None:
        runs = case / "runs"
        shutil.copytree(fx["runs"], runs)
        if raw is not None:
            (runs / name).write_bytes(raw.encode() if isinstance(raw, str) else raw)
        elif edit is not None:
            source = sorted(runs.glob("*.json"))[0]
            data = json.loads(source.read_text())
            data = edit(data) or data
            source.write_text(json.dumps(data))

    return setup


def dataset_copy(change: Callable[[Path], None]):
    """A setup copying the small dataset into case/ds and changing it."""

    def setup(case: Path, fx: dict[str, Path]) -> None:
        shutil.copytree(fx["ds"], case / "ds")
        change(case / "ds")

    return setup


def _write(name: str, text: str | bytes):
    def change(root: Path) -> None:
        data = text.encode() if isinstance(text, str) else text
        (root / name).write_bytes(data)
    return change


def _manifest(edit: Callable[[dict], object]):
    def change(root: Path) -> None:
        data = json.loads((root / "dataset.json").read_text())
        data = edit(data) or data
        (root / "dataset.json").write_text(json.dumps(data))
    return change


def _symlink_outside(root: Path) -> None:
    outside = root.parent / "elsewhere.npy"
    shutil.move(root / "ms.npy", outside)
    (root / "ms.npy").symlink_to(outside)


def _flip_byte(root: Path) -> None:
    arr = np.load(root / "ms.npy", mmap_mode="r+")
    arr[0, 0, 0, 0] ^= 1
    arr.flush()


def _bomb_jpeg(case: Path, fx: dict[str, Path]) -> None:
    """A release in the authors' layout whose first RGB JPEG declares 65000 x 65000 pixels in 1 KB."""
    from test_import_paper import make_release

    make_release(case / "rel", "s2s-eu")
    path = min((case / "rel" / "RGB").rglob("*.jpg"))
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")  # SOF0: marker, length (2), precision (1), height (2), width (2)
    data[sof + 5:sof + 9] = (65000).to_bytes(2, "big") * 2
    path.write_bytes(bytes(data))


def bundle(edit: Callable[[dict], object] | None = None, *, raw: str | bytes | None = None):
    """A setup writing the shared valid submission (``edit``ed) or ``raw`` bytes to case/s.json."""

    def setup(case: Path, fx: dict[str, Path]) -> None:
        if raw is not None:
            (case / "s.json").write_bytes(raw.encode() if isinstance(raw, str) else raw)
            return
        data = json.loads(fx["bundle"].read_text())
        if edit is not None:
            data = edit(data) or data
        (case / "s.json").write_text(json.dumps(data, ensure_ascii=False))

    return setup


def _who(**changes):
    return lambda d: d["submitter"].update(changes)


def board_copy(change: Callable[[Path], None]):
    """A setup copying the shared board into case/board and changing it."""

    def setup(case: Path, fx: dict[str, Path]) -> None:
        shutil.copytree(fx["board"], case / "board")
        bundle()(case, fx)
        change(case / "board")

    return setup


BOMB = "\n".join(['a0: &a0 "lol"'] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]) + \
    "\ndescription: *a8\n"

BUILD = ["build-dataset", "--out", "{case}/out", "--quiet", "--preset"]
P = "{case}/p.yaml"
SWEEP = ["sweep", "--grid", "{case}/g.yaml", "--out", "{case}/res", "--dry-run"]
RUN = ["run", "--dataset", "{ds}", "--out", "{case}/res", "--quiet"]

CASES = [
    # ---- build-dataset: preset files -----------------------------------------------------------
    Case("preset-alias-bomb", BUILD + [P], r"p\.yaml: not accepted as YAML: line 1: YAML anchors and aliases",
         setup=preset(raw=BOMB)),
    Case("preset-deep-yaml", BUILD + [P], r"nested more than 32 levels deep",
         setup=preset(raw="description: " + "[" * 3000 + "]" * 3000)),
    Case("preset-deep-json", BUILD + ["{case}/p.json"], r"nested 20001 levels deep",
         setup=preset(raw='{"description": ' + "[" * 20000 + "]" * 20000 + "}", name="p.json")),
    Case("preset-python-tag", BUILD + [P], r"could not determine a constructor for the tag",
         setup=preset(raw="name: !!python/object/apply:os.system ['true']\n")),
    Case("preset-duplicate-key-yaml", BUILD + [P], r"key 'name' appears twice",
         setup=preset(raw="name: a\nname: b\n")),
    Case("preset-duplicate-key-json", BUILD + ["{case}/p.json"], r"key 'name' appears twice",
         setup=preset(raw='{"name": "a", "name": "b"}', name="p.json")),
    Case("preset-nan-json", BUILD + ["{case}/p.json"], r"NaN is not a JSON number",
         setup=preset(raw='{"purity": NaN}', name="p.json")),
    Case("preset-truncated-json", BUILD + ["{case}/p.json"], r"not valid JSON at line 1",
         setup=preset(raw='{"name": "x", ', name="p.json")),
    Case("preset-not-utf8", BUILD + [P], r"not UTF-8 text", setup=preset(raw=b"name: \xff\xfe\n")),
    Case("preset-empty", BUILD + [P], r"preset must be a mapping, got NoneType", setup=preset(raw="")),
    Case("preset-a-list", BUILD + [P], r"preset must be a mapping, got list", setup=preset(raw="- a\n- b\n")),
    Case("preset-too-large", BUILD + [P], r"more than the 1 MiB a preset file may have",
         setup=preset(raw="# " + "x" * (1024 * 1024 + 10) + "\n")),
    Case("preset-is-a-folder", BUILD + ["{case}/dir.yaml"], r"is not a regular file",
         setup=lambda case, fx: (case / "dir.yaml").mkdir()),
    Case("preset-missing", BUILD + ["{case}/absent.yaml"], r"absent\.yaml does not exist"),
    Case("preset-unknown-name", BUILD + ["nope"], r"unknown preset 'nope'"),
    Case("preset-unknown-key", BUILD + [P], r"unknown key\(s\) colour", setup=preset((("colour",), "red"))),
    Case("preset-missing-ms", BUILD + [P], r"missing key 'ms'", setup=preset(drop=("ms",))),
    Case("preset-prefer-int", BUILD + [P], r"ms: prefer must be text, got 5", setup=preset((("ms", "prefer"), 5))),
    Case("preset-catalog-int", BUILD + [P], r"catalog must be text, got 5", setup=preset((("catalog",), 5))),
    Case("preset-cloud-text", BUILD + [P], r"max_item_cloud must be a number or null, got 'abc'",
         setup=preset((("ms", "max_item_cloud"), "abc"))),
    Case("preset-dtype-complex", BUILD + [P], r"dtype 'complex64' is not an integer or float array dtype",
         setup=preset((("ms", "dtype"), "complex64"))),
    Case("preset-dtype-nonsense", BUILD + [P], r"dtype 'pixels'", setup=preset((("rgb", "dtype"), "pixels"))),
    Case("preset-sign-yes", BUILD + [P], r"sign must be true or false, got 'yes'", setup=preset((("sign",), "yes"))),
    Case("preset-seed-bool", BUILD + [P], r"seed must be an integer, got True", setup=preset((("seed",), True))),
    Case("preset-seed-huge", BUILD + [P], r"seed must be an integer in 0\.\.4294967295",
         setup=preset((("seed",), 2**64))),
    Case("preset-per-class-text", BUILD + [P], r"per_class must be an integer, got 'ten'",
         setup=preset((("per_class",), "ten"))),
    Case("preset-per-class-negative", BUILD + [P], r"per_class must be a positive", setup=preset((("per_class",), -3))),
    Case("preset-purity", BUILD + [P], r"purity must be in \(0, 1\]", setup=preset((("purity",), 1.5))),
    Case("preset-split", BUILD + [P], r"split must be three", setup=preset((("split",), [0.5, 0.5, 0.5]))),
    Case("preset-consistency", BUILD + [P], r"consistency must be asymmetric, paired or partial:F",
         setup=preset((("consistency",), "half"))),
    Case("preset-profile", BUILD + [P], r"unknown catalogue profile 'gee'", setup=preset((("profile",), "gee"))),
    Case("preset-band", BUILD + [P], r"has no band 'B99'", setup=preset((("ms", "bands"), ["B02", "B99"]))),
    Case("preset-region", BUILD + [P], r"unknown demo region 'mars'", setup=preset((("ms", "aois"), "demo:mars"))),
    Case("preset-aoi-metres", BUILD + [P], r"lon/lat", setup=preset((("ms", "aois"), [[5e5, 5.5e6, 5.1e5, 5.51e6]]))),
    Case("preset-crosswalk", BUILD + [P], r"crosswalk maps code 10 to unknown class 'forest'",
         setup=preset((("labels", "crosswalk"), {10: "forest"}))),
    Case("preset-offset-rule", BUILD + [P], r"unknown offset_rule 'guess'", setup=preset((("ms", "offset_rule"), "guess"))),
    Case("preset-chip-px", BUILD + [P], r"chip_px must be a positive", setup=preset((("ms", "chip_px"), 0))),
    Case("preset-datetime", BUILD + [P], r"datetime must be an interval", setup=preset((("ms", "datetime"), "2021"))),
    # ---- build-dataset: command line and output folder ----------------------------------------
    Case("build-per-class-0", ["build-dataset", "--catalog", "demo", "--out", "{case}/o", "--per-class", "0"],
         r"--per-class.*0 is not in the range x>=1", code=2),
    Case("build-seed-negative", ["build-dataset", "--catalog", "demo", "--out", "{case}/o", "--seed", "-1"],
         r"--seed.*-1 is not in the range", code=2),
    Case("build-seed-huge", ["build-dataset", "--catalog", "demo", "--out", "{case}/o", "--seed", HUGE],
         r"--seed.* is not in the range", code=2),
    Case("build-workers-0", ["build-dataset", "--catalog", "demo", "--out", "{case}/o", "--workers", "0"],
         r"--workers.*0 is not in the range", code=2),
    Case("build-consistency", ["build-dataset", "--catalog", "demo", "--out", "{case}/o", "--consistency", "partial:2"],
         r"consistency must be"),
    Case("build-demo-catalog-other-preset", ["build-dataset", "--catalog", "demo", "--preset", "eu-s2__us-naip",
                                             "--out", "{case}/o"], r"--catalog demo needs the 'demo' preset"),
    Case("build-out-under-a-file", ["build-dataset", "--catalog", "demo", "--out", "{case}/f/o", "--quiet"],
         r"f is a file, so the folder cannot be created", setup=lambda case, fx: (case / "f").write_text("x")),
    Case("build-out-is-a-file", ["build-dataset", "--catalog", "demo", "--out", "{case}/f", "--quiet"],
         r"is a file", setup=lambda case, fx: (case / "f").write_text("x")),
    Case("build-out-foreign-folder", ["build-dataset", "--catalog", "demo", "--out", "{case}/mine", "--quiet"],
         r"mine", setup=lambda case, fx: ((case / "mine").mkdir(), (case / "mine" / "thesis.tex").write_text("x"))),
    Case("build-catalog-missing", ["build-dataset", "--preset", "demo", "--catalog", "{case}/nowhere/catalog.json",
                                   "--out", "{case}/o", "--quiet"], r"nowhere"),
    # ---- inspect --------------------------------------------------------------------------------
    Case("inspect-missing", ["inspect", "{case}/nothing"], r"no ackd-bench dataset at .*nothing.*build-dataset"),
    Case("inspect-a-file", ["inspect", "{case}/f"], r"it is a file", setup=lambda case, fx: (case / "f").write_text("x")),
    Case("inspect-extra-file", ["inspect", "{case}/ds"], r"1 file\(s\) that are not part of the dataset \(notes\.txt\)",
         setup=dataset_copy(_write("notes.txt", "hello"))),
    Case("inspect-symlink-outside", ["inspect", "{case}/ds"], r"ms\.npy: a link to .*elsewhere\.npy, outside the dataset",
         setup=dataset_copy(_symlink_outside)),
    Case("inspect-flipped-byte", ["inspect", "{case}/ds"], r"ms\.npy: checksum mismatch", setup=dataset_copy(_flip_byte)),
    Case("inspect-manifest-truncated", ["inspect", "{case}/ds"], r"dataset\.json: not readable .*not valid JSON",
         setup=dataset_copy(_write("dataset.json", '{"name": '))),
    Case("inspect-manifest-deep", ["inspect", "{case}/ds"], r"dataset\.json: not readable .*nested 10001 levels",
         setup=dataset_copy(_write("dataset.json", "[" * 10001 + "]" * 10001))),
    Case("inspect-manifest-list", ["inspect", "{case}/ds"], r"dataset\.json: not a JSON object",
         setup=dataset_copy(_write("dataset.json", "[1, 2]"))),
    Case("inspect-manifest-schema", ["inspect", "{case}/ds"], r"unsupported schema_version 99",
         setup=dataset_copy(_manifest(lambda m: m.update(schema_version=99)))),
    Case("inspect-checksums-escape", ["inspect", "{case}/ds"], r"names a path outside the dataset",
         setup=dataset_copy(_write("checksums.sha256", "0" * 64 + "  ../../etc/passwd\n"))),
    Case("inspect-samples-garbage", ["inspect", "{case}/ds"], r"samples\.parquet", setup=dataset_copy(
        _write("samples.parquet", b"PAR1 not really"))),
    # ---- import-paper ---------------------------------------------------------------------------
    Case("import-missing-src", ["import-paper", "s2s-eu", "{case}/nothing", "--out", "{case}/o"], r"nothing"),
    Case("import-empty-src", ["import-paper", "s2s-eu", "{case}/empty", "--out", "{case}/o"], r"empty",
         setup=lambda case, fx: (case / "empty").mkdir()),
    Case("import-layout", ["import-paper", "s2s-xx", "{case}", "--out", "{case}/o"], r"'s2s-xx' is not one of", code=2),
    Case("import-jpeg-bomb", ["import-paper", "s2s-eu", "{case}/rel", "--out", "{case}/o"],
         r"refused .*\.jpg: Image size \(4225000000 pixels\) exceeds limit",
         setup=_bomb_jpeg),
    # ---- run: everything is checked before any data is built or loaded --------------------------
    Case("run-method", RUN + ["--method", "nope", "--arch", "resnet18"], r"unknown method 'nope'"),
    Case("run-option-type", RUN + ["--method", "kd", "--arch", "resnet18", "--option", "temperature=abc"],
         r"temperature must be a number, got 'abc'"),
    Case("run-option-bool", RUN + ["--method", "kd", "--arch", "resnet18", "--option", "temperature=true"],
         r"temperature must be a number, got True"),
    Case("run-option-name", RUN + ["--method", "kd", "--arch", "resnet18", "--option", "colour=1"],
         r"has no option\(s\) colour"),
    Case("run-option-syntax", RUN + ["--method", "kd", "--arch", "resnet18", "--option", "temperature"],
         r"--option takes KEY=VALUE", code=2),
    Case("run-arch", RUN + ["--method", "kd", "--arch", "resnet9000"], r"resnet9000"),
    Case("run-teacher-arch", RUN + ["--method", "kd", "--arch", "resnet18", "--teacher-arch", "vgg1"], r"vgg1"),
    Case("run-profile", RUN + ["--method", "kd", "--arch", "resnet18", "--profile", "slow"], r"slow", code=2),
    Case("run-seeds-text", RUN + ["--method", "kd", "--arch", "resnet18", "--seeds", "a,b"],
         r"seeds are comma-separated integers", code=2),
    Case("run-seeds-huge", RUN + ["--method", "kd", "--arch", "resnet18", "--seeds", HUGE],
         r"seed in 0\.\.4294967295", code=2),
    Case("run-seeds-empty", RUN + ["--method", "kd", "--arch", "resnet18", "--seeds", ","],
         r"give at least one seed", code=2),
    Case("run-pairing-choice", RUN + ["--method", "kd", "--arch", "resnet18", "--pairing", "best"], r"best", code=2),
    Case("run-pairing-no-teacher", RUN + ["--method", "student-only", "--arch", "resnet18", "--pairing", "oracle"],
         r"student-only"),
    Case("run-sembridge-option-on-kd", RUN + ["--method", "kd", "--arch", "resnet18", "-o", "ssm=false"],
         r"method 'kd' has no option\(s\) ssm; its options: temperature"),
    Case("run-epochs-0", RUN + ["--method", "kd", "--arch", "resnet18", "--epochs", "0"], r"--epochs", code=2),
    Case("run-out-is-a-file", ["run", "--method", "kd", "--arch", "resnet18", "--dataset", "{ds}",
                               "--out", "{case}/f", "--quiet"], r"--out .*f is a file; give a folder path",
         setup=lambda case, fx: (case / "f").write_text("x")),
    Case("run-out-under-a-file", ["run", "--method", "kd", "--arch", "resnet18", "--dataset", "{ds}",
                                  "--out", "{case}/f/res", "--quiet"], r"f is a file, so the folder cannot be created",
         setup=lambda case, fx: (case / "f").write_text("x")),
    Case("sweep-out-is-a-file", ["sweep", "--grid", "{case}/g.yaml", "--out", "{case}/f", "--dry-run"],
         r"--out .*f is a file", setup=lambda case, fx: (grid()(case, fx), (case / "f").write_text("x"))),
    Case("run-dataset-missing", ["run", "--method", "kd", "--arch", "resnet18", "--dataset", "{case}/none",
                                 "--out", "{case}/res", "--quiet"], r"no ackd-bench dataset at .*none"),
    Case("run-dataset-a-file", ["run", "--method", "kd", "--arch", "resnet18", "--dataset", "{case}/f",
                                "--out", "{case}/res", "--quiet"], r"it is a file",
         setup=lambda case, fx: (case / "f").write_text("x")),
    # ---- table and compare: result files ---------------------------------------------------------
    Case("table-missing", ["table", "{case}/none"], r"none"),
    Case("table-folder-named-json", ["table", "{case}/x.json"], r"x\.json",
         setup=lambda case, fx: (case / "x.json").mkdir()),
    Case("table-empty-folder", ["table", "{case}/empty"], r"empty", setup=lambda case, fx: (case / "empty").mkdir()),
    Case("table-truncated", ["table", "{case}/runs"], r"r\.json", setup=results(raw='{"method": ')),
    Case("table-deep", ["table", "{case}/runs"], r"r\.json: nested 50000 levels deep", setup=results(raw="[" * 50000 + "]" * 50000)),
    Case("table-a-list", ["table", "{case}/runs"], r"r\.json", setup=results(raw="[1, 2, 3]")),
    Case("table-not-utf8", ["table", "{case}/runs"], r"r\.json", setup=results(raw=b'{"method": "\xff"}')),
    Case("table-edited-oa", ["table", "{case}/runs"], r"stated metrics\.test\.oa 0\.99 disagrees with its confusion",
         setup=results(lambda d: d["metrics"]["test"].update(oa=0.99))),
    Case("table-edited-n", ["table", "{case}/runs"], r"metrics\.test\.n",
         setup=results(lambda d: d["metrics"]["test"].update(n=d["metrics"]["test"]["n"] + 1))),
    Case("table-nan", ["table", "{case}/runs"], r"r\.json: NaN is not a JSON number", setup=results(raw='{"oa": NaN}')),
    Case("table-other-dataset", ["table", "{case}/runs", "--dataset", "{ds}"], r"no run was made on .*ds",
         setup=results()),
    Case("table-metric", ["table", "{case}/runs", "--metric", "speed"], r"speed", setup=results()),
    Case("compare-other-dataset", ["compare", "{case}/runs", "--baseline", "kd", "--dataset", "{ds}"],
         r"runs on dataset fingerprint\(s\) 3846c2ef0574, but --dataset has", setup=results()),
    Case("compare-truncated", ["compare", "{case}/runs", "--baseline", "kd", "--dataset", "{ds}"], r"r\.json",
         setup=results(raw="{")),
    # ---- sweep: grid files -----------------------------------------------------------------------
    Case("grid-missing", ["sweep", "--grid", "{case}/none.yaml", "--dry-run"], r"no grid"),
    Case("grid-alias-bomb", SWEEP, r"YAML anchors and aliases", setup=grid(raw=BOMB)),
    Case("grid-deep", SWEEP, r"nested more than 32", setup=grid(raw="name: " + "[" * 500 + "]" * 500)),
    Case("grid-duplicate-key", SWEEP, r"key 'name' appears twice", setup=grid(raw="name: a\nname: b\n")),
    Case("grid-not-mapping", SWEEP, r"a grid is a mapping", setup=grid(raw="- kd\n")),
    Case("grid-unknown-key", SWEEP, r"unknown key\(s\) 'colour'", setup=grid(colour=1)),
    Case("grid-seed-bool", SWEEP, r"'seeds' must be a non-empty list of integers", setup=grid(seeds=[True])),
    Case("grid-seed-huge", SWEEP, r"'seeds' must be a non-empty list of integers in 0\.\.4294967295",
         setup=grid(seeds=[2**64])),
    Case("grid-method", SWEEP, r"unknown method 'nope'", setup=grid(methods=["nope"])),
    Case("grid-option-type", SWEEP, r"temperature must be a number, got 'abc'",
         setup=grid(methods=[{"method": "kd", "options": {"temperature": "abc"}}])),
    Case("grid-epochs-text", SWEEP, r"epochs must be an integer, got 'x'",
         setup=grid(profile_overrides={"epochs": "x"})),
    Case("grid-lr-negative", SWEEP, r"lr must be a positive number", setup=grid(profile_overrides={"lr": -1.0})),
    Case("grid-profile-key", SWEEP, r"'profile_overrides' may set only", setup=grid(profile_overrides={"speed": 1})),
    Case("grid-arch", SWEEP, r"resnet9000", setup=grid(pairs=[{"teacher": "resnet9000", "student": "resnet18"}])),
    Case("grid-name-int", SWEEP, r"'name' must be text, got 5", setup=grid(name=5)),
    Case("grid-profile", SWEEP, r"unknown profile 'slow'", setup=grid(profile="slow")),
    Case("grid-no-datasets", ["sweep", "--grid", "{case}/g.yaml", "--dry-run"], r"no datasets",
         setup=grid(datasets=[])),
    Case("sweep-seeds-huge", SWEEP + ["--seeds", HUGE], r"seed", code=2, setup=grid()),
    # ---- demo-catalog ----------------------------------------------------------------------------
    Case("demo-catalog-scale", ["demo-catalog", "--out", "{case}/w", "--scale", "0"], r"scale", code=2),
    Case("demo-catalog-seed", ["demo-catalog", "--out", "{case}/w", "--seed", HUGE], r"--seed", code=2),
    # ---- leaderboard ---------------------------------------------------------------------------------
    Case("lb-validate-missing", ["leaderboard", "validate", "{case}/none.json"], r"none\.json"),
    Case("lb-validate-truncated", ["leaderboard", "validate", "{case}/s.json"], r"s\.json: not valid JSON",
         setup=bundle(raw='{"id": ')),
    Case("lb-validate-deep", ["leaderboard", "validate", "{case}/s.json"], r"s\.json: nested 30000 levels deep",
         setup=bundle(raw="[" * 30000 + "]" * 30000)),
    Case("lb-validate-list", ["leaderboard", "validate", "{case}/s.json"], r"must be a JSON object",
         setup=bundle(raw="[]")),
    Case("lb-validate-nan", ["leaderboard", "validate", "{case}/s.json"], r"NaN is not a JSON number",
         setup=bundle(raw='{"id": NaN}')),
    Case("lb-validate-repeated-key", ["leaderboard", "validate", "{case}/s.json"], r"key 'id' appears twice",
         setup=bundle(raw='{"id": "a", "id": "b"}')),
    Case("lb-validate-not-utf8", ["leaderboard", "validate", "{case}/s.json"], r"not UTF-8",
         setup=bundle(raw=b'{"id": "\xff"}')),
    Case("lb-validate-markup-name", ["leaderboard", "validate", "{case}/s.json"], r"submitter\.name",
         setup=bundle(_who(name="<b>A. Tester</b>"))),
    Case("lb-validate-zero-width", ["leaderboard", "validate", "{case}/s.json"], r"submitter\.name.*(U\+200B|200b)",
         setup=bundle(_who(name="A. Te\u200bster"))),
    Case("lb-validate-bidi", ["leaderboard", "validate", "{case}/s.json"], r"submitter\.affiliation",
         setup=bundle(_who(affiliation="Lab \u202eevil"))),
    Case("lb-validate-script-url", ["leaderboard", "validate", "{case}/s.json"], r"code_url",
         setup=bundle(_who(code_url="javascript:alert(1)"))),
    Case("lb-validate-not-nfc", ["leaderboard", "validate", "{case}/s.json"], r"submitter\.name",
         setup=bundle(_who(name="Jose\u0301"))),
    Case("lb-validate-edited-summary", ["leaderboard", "validate", "{case}/s.json"], r"oa_mean",
         setup=bundle(lambda d: d["summary"].update(oa_mean=0.99))),
    Case("lb-validate-edited-run", ["leaderboard", "validate", "{case}/s.json"], r"oa",
         setup=bundle(lambda d: d["runs"][0]["metrics"]["test"].update(oa=0.99))),
    Case("lb-validate-unknown-field", ["leaderboard", "validate", "{case}/s.json"], r"colour",
         setup=bundle(lambda d: d.update(colour="red"))),
    Case("lb-validate-board-missing", ["leaderboard", "validate", "{case}/s.json", "--board", "{case}/nowhere"],
         r"nowhere.*leaderboard init", setup=bundle()),
    Case("lb-submit-not-a-board", ["leaderboard", "submit", "{case}/s.json", "--board", "{case}/nowhere"],
         r"nowhere.*leaderboard init", setup=bundle()),
    Case("lb-submit-unknown-dataset", ["leaderboard", "submit", "{case}/s.json", "--board", "{board}"],
         r"is not one of this board's datasets", setup=bundle()),
    Case("lb-submit-corrupt-datasets", ["leaderboard", "submit", "{case}/s.json", "--board", "{case}/board"],
         r"datasets\.json", setup=board_copy(lambda b: (b / "datasets.json").write_text("{"))),
    Case("lb-submit-deep-datasets", ["leaderboard", "submit", "{case}/s.json", "--board", "{case}/board"],
         r"datasets\.json: nested", setup=board_copy(lambda b: (b / "datasets.json").write_text("[" * 99 + "]" * 99))),
    Case("lb-render-stray-file", ["leaderboard", "render", "{case}/board"],
         r"notes\.txt is not a submission", setup=board_copy(lambda b: (b / "submissions" / "notes.txt").write_text("x"))),
    Case("lb-render-not-a-board", ["leaderboard", "render", "{case}/nowhere"], r"nowhere.*leaderboard init"),
    Case("lb-render-corrupt-submission", ["leaderboard", "render", "{case}/board"], r"bad\.json",
         setup=board_copy(lambda b: (b / "submissions" / "bad.json").write_text("{"))),
    Case("lb-render-wrong-id", ["leaderboard", "render", "{case}/board"], r"other\.json holds id",
         setup=board_copy(lambda b: (b / "submissions" / "other.json").write_text('{"id": "x"}'))),
    Case("lb-init-no-dataset", ["leaderboard", "init", "--board", "{case}/b"], r"--dataset", code=2),
    Case("lb-init-existing", ["leaderboard", "init", "--board", "{board}", "--dataset", "{ds}"], r"already a board"),
    Case("lb-init-missing-dataset", ["leaderboard", "init", "--board", "{case}/b", "--dataset", "{case}/none"],
         r"no ackd-bench dataset at .*none"),
    Case("lb-pack-empty", ["leaderboard", "pack", "{case}/empty", "--out", "{case}/s.json", "--name", "A",
                           "--code-url", "https://x.org", "--licence", "CC-BY-4.0"], r"empty",
         setup=lambda case, fx: (case / "empty").mkdir()),
    Case("lb-pack-markup", ["leaderboard", "pack", "{runs}", "--out", "{case}/s.json", "--name", "<i>A</i>",
                            "--code-url", "https://x.org", "--licence", "CC-BY-4.0"], r"name"),
    Case("lb-pack-http-url", ["leaderboard", "pack", "{runs}", "--out", "{case}/s.json", "--name", "A",
                              "--code-url", "ftp://x.org", "--licence", "CC-BY-4.0"], r"code_url|code-url"),
    # ---- methods ---------------------------------------------------------------------------------
    Case("methods-no-match", ["methods", "zzz*"], r"no method matches 'zzz\*'", code=2),
]


# ---- the harness --------------------------------------------------------------------------------

def _snapshot(root: Path) -> dict[str, str]:
    """Every file and link under ``root`` with a hash of its content (links: their target)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = "link:" + str(path.readlink())
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


@pytest.fixture(scope="module")
def fixtures(small_dataset, tmp_path_factory) -> dict[str, Path]:
    """Shared, read-only inputs: the small dataset, three reference RunResults (kd, seeds 0-2), a
    valid submission packed from them and a board accepting the small dataset."""
    from ackd_bench.leaderboard.board import init
    from ackd_bench.leaderboard.submission import pack

    root = tmp_path_factory.mktemp("corpus-shared")
    runs = root / "runs"
    runs.mkdir()
    for path in REFERENCE_RUNS:
        shutil.copy(path, runs / path.name)
    board = init(root / "board", [small_dataset])
    made = pack(runs, out=root / "bundle.json", name="A. Tester", affiliation="Lab", code_url="https://example.org/c",
                licence="CC-BY-4.0")
    return {"root": root, "ds": small_dataset, "runs": runs, "board": Path(board), "bundle": Path(made)}


def test_the_corpus_is_large_and_its_ids_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 100, len(ids)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_gets_one_line_and_changes_nothing(case, fixtures, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative default (results/, data/demo) lands in the case folder
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    if case.setup is not None:
        case.setup(case_dir, fixtures)
    before_case, before_shared, before_ds = _snapshot(tmp_path), _snapshot(fixtures["root"]), _snapshot(fixtures["ds"])
    args = [a.format(case=case_dir, ds=fixtures["ds"], board=fixtures["board"], runs=fixtures["runs"])
            for a in case.args]

    result = CliRunner().invoke(main, args)

    stderr = result.stderr
    assert result.exit_code == case.code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an escaped exception
    assert "Traceback" not in result.output
    errors = [line for line in stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, stderr
    if case.code == 1:  # a bad file or state: the error line is all there is
        assert stderr.strip() == errors[0], stderr
    assert re.search(case.message, errors[0]), (case.message, errors[0])
    assert _snapshot(tmp_path) == before_case, "the case folder changed"
    assert _snapshot(fixtures["root"]) == before_shared and _snapshot(fixtures["ds"]) == before_ds
