"""The CLI in-process (click's CliRunner) and once as a real subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ackd_bench.benchmark.cli import main


def _run(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def test_inspect_prints_counts_and_verifies(small_dataset):
    res = _run("inspect", small_dataset)
    assert res.exit_code == 0, res.output
    assert "verified" in res.output
    manifest = json.loads((small_dataset / "dataset.json").read_text())
    assert manifest["fingerprint"] in res.output
    for entry in manifest["taxonomy"]:
        assert entry["name"] in res.output


def test_inspect_damaged_array_fails_naming_the_file(small_dataset, tmp_path):
    copy = tmp_path / "damaged"
    shutil.copytree(small_dataset, copy)
    arr = np.load(copy / "ms.npy", mmap_mode="r+")
    arr[0, 0, 0, 0] ^= 1
    arr.flush()
    del arr
    res = _run("inspect", copy)
    assert res.exit_code != 0
    assert "ms.npy" in res.output
    assert "Traceback" not in res.output


def test_inspect_missing_dataset_says_how_to_build(tmp_path):
    res = _run("inspect", tmp_path / "nothing")
    assert res.exit_code != 0
    assert "build-dataset" in res.output


def test_build_bad_inputs(tmp_path):
    res = _run("build-dataset", "--preset", "nonexistent", "--out", tmp_path / "a")
    assert res.exit_code != 0 and "known presets" in res.output
    res = _run("build-dataset", "--catalog", "demo", "--per-class", "-3", "--out", tmp_path / "b")
    assert res.exit_code != 0 and "--per-class" in res.output
    a_file = tmp_path / "f"
    a_file.write_text("x")
    res = _run("build-dataset", "--preset", "demo", "--catalog", str(tmp_path / "missing.json"), "--out", a_file)
    assert res.exit_code != 0 and "is a file" in res.output
    assert a_file.read_text() == "x"
    res = _run("build-dataset", "--preset", "demo", "--catalog", "http://127.0.0.1:9/", "--out", tmp_path / "c")
    assert res.exit_code != 0 and "127.0.0.1:9" in res.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_build_with_small_world_via_cli(small_preset, small_dataset, tmp_path):
    preset_file = tmp_path / "small.json"
    preset_file.write_text(json.dumps(small_preset.to_dict()))
    out = tmp_path / "cli"
    res = _run("build-dataset", "--preset", preset_file, "--out", out, "--quiet", "--workers", "2")
    assert res.exit_code == 0, res.output
    fingerprint = json.loads((small_dataset / "dataset.json").read_text())["fingerprint"]
    assert f"fingerprint {fingerprint}" in res.output
    assert "train" in res.output and "test" in res.output


def test_presets_lists_builtins():
    res = _run("presets")
    assert res.exit_code == 0
    assert "demo" in res.output and "eu-s2__us-naip" in res.output


def test_console_script_help_has_examples():
    exe = Path(sys.executable).with_name("ackd-bench")
    for args in ([], ["build-dataset"], ["inspect"], ["demo-catalog"], ["presets"]):
        out = subprocess.run([str(exe), *args, "--help"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "Example" in out.stdout or "Quick start" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--method", "no-such-method", "--arch", "resnet18"], "unknown method 'no-such-method'; known methods:"),
    (["--method", "kd", "--arch", "resnet1"], "unknown architecture 'resnet1'"),
    (["--method", "kd", "--arch", "resnet18", "--teacher-arch", "resnett34"], "unknown architecture 'resnett34'"),
    (["--method", "kd", "--arch", "resnet18", "--option", "tempreature=2"], "has no option(s) tempreature"),
    (["--method", "kd", "--arch", "resnet18", "--profile", "quick"], "'quick' is not one of"),
])
def test_run_checks_its_arguments_before_building_the_default_demo_dataset(args, message, tmp_path, monkeypatch):
    """With the default --dataset data/demo missing, a bad argument used to surface after a minutes-long build."""
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["run", *args, "--quiet"])
    assert res.exit_code != 0 and message in res.output, res.output
    assert "building the demo dataset" not in res.output and "Traceback" not in res.output
    assert not (tmp_path / "data").exists()


def test_the_command_line_is_assembled_from_light_group_modules():
    """`main` only assembles: every command comes from a group module, and neither --help nor
    any group import loads torch (the commands import what they drive when they run)."""
    code = (
        "import sys\n"
        "from ackd_bench.benchmark.cli import main\n"
        "assert 'torch' not in sys.modules, 'importing the CLI loaded torch'\n"
        "import json\n"
        "print(json.dumps({name: cmd.callback.__module__ for name, cmd in main.commands.items()}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    owners = json.loads(done.stdout)
    assert owners["build-dataset"] == owners["presets"] == owners["demo-catalog"] == "ackd_bench.curation.cli"
    assert owners["inspect"] == owners["import-paper"] == "ackd_bench.benchmark.dataset.cli"
    assert owners["run"] == owners["methods"] == owners["sweep"] == "ackd_bench.benchmark.run_cli"
    assert owners["table"] == owners["compare"] == "ackd_bench.benchmark.report_cli"
    assert owners["leaderboard"] == "ackd_bench.leaderboard.cli"
    assert "ackd_bench.benchmark.cli" not in owners.values()
    for name in owners:
        assert CliRunner().invoke(main, [name, "--help"]).exit_code == 0, name
