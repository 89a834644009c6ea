"""Methods from other packages (issue 17, item 2): the ``ackd_bench.methods`` entry-point group.

The example package ``examples/ackd-bench-pkt`` (PKT as a plug-in) is installed by ``make
install-test`` (CI); a broken plug-in is made here as a distribution on a temporary path.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ackd_bench.benchmark.results import load_run_results

EXE = str(Path(sys.executable).with_name("ackd-bench"))
INSTALLED = any(ep.name == "pkt" for ep in importlib.metadata.entry_points(group="ackd_bench.methods"))
needs_example = pytest.mark.skipif(not INSTALLED, reason="examples/ackd-bench-pkt is not installed "
                                   "(`make install-test` installs it; CI always does)")


def _numpy_pkt(fs: np.ndarray, ft: np.ndarray, eps: float = 1e-7) -> float:
    """PKT written out in float64 from the paper: cosine kernel K = (cos + 1)/2, P = K / row sums,
    loss = sum P_t log((P_t + eps)/(P_s + eps))."""
    def conditional(f):
        unit = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), eps)
        k = (unit @ unit.T + 1.0) / 2.0
        return k / k.sum(axis=1, keepdims=True)

    ps, pt = conditional(fs), conditional(ft)
    return float((pt * np.log((pt + eps) / (ps + eps))).sum())


@needs_example
def test_pkt_loss_matches_the_papers_formula():
    from ackd_bench_pkt import pkt_loss

    # Worked by hand for two samples: student features orthogonal (cos 0 -> K = [[1, .5], [.5, 1]],
    # P_s rows [2/3, 1/3]); teacher features identical (cos 1 -> K all 1, P_t rows [1/2, 1/2]).
    fs = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    ft = torch.tensor([[2.0, 1.0, 0.0], [4.0, 2.0, 0.0]], dtype=torch.float64)
    by_hand = 2 * (0.5 * np.log(0.5 / (2 / 3)) + 0.5 * np.log(0.5 / (1 / 3)))
    assert float(pkt_loss(fs, ft)) == pytest.approx(by_hand, rel=1e-6)  # eps 1e-7 moves it by < 1e-6
    gen = np.random.default_rng(0)
    for batch, ds, dt in ((4, 8, 16), (16, 32, 5), (32, 512, 64)):
        fs, ft = gen.normal(size=(batch, ds)), gen.normal(size=(batch, dt))
        got = float(pkt_loss(torch.from_numpy(fs), torch.from_numpy(ft)))
        # float64 in, float64 through: agreement to rounding.
        assert got == pytest.approx(_numpy_pkt(fs, ft), rel=1e-9, abs=1e-12)
    same = torch.randn(8, 16)
    assert float(pkt_loss(same, same * 3.0)) == pytest.approx(0.0, abs=1e-5)  # scale-free, zero at a match


@needs_example
def test_the_installed_plugin_is_listed_with_sembridge_over_it():
    done = subprocess.run([EXE, "methods"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("pkt ") and "PKT" in line for line in lines)
    assert any(line.startswith("sembridge+pkt ") for line in lines)
    assert any(line.startswith("kd ") for line in lines)
    assert "failed to load" not in done.stderr


@needs_example
@pytest.mark.parametrize("method", ["pkt", "sembridge+pkt"])
def test_the_plugin_runs_like_a_builtin(tiny, tmp_path, method, monkeypatch):
    from click.testing import CliRunner

    from ackd_bench.benchmark.cli import main

    monkeypatch.setenv("ACKD_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "results"
    res = CliRunner().invoke(main, ["run", "--method", method, "--arch", "resnet18", "--dataset", str(tiny),
                                    "--profile", "smoke", "--epochs", "2", "--device", "cpu", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    (result,) = load_run_results([out])
    assert result["method"]["name"] == method
    assert "Passalis" in result["method"]["paper"] or method.startswith("sembridge+")
    history = result["diagnostics"]["history"]
    assert len(history) == 2
    if method == "pkt":  # the plug-in's own loss term is trained and recorded, finite and positive
        assert all(np.isfinite(row["pkt"]) and row["pkt"] > 0 for row in history)
    assert 0.0 <= result["metrics"]["test"]["oa"] <= 1.0


def _broken_distribution(root: Path) -> dict[str, str]:
    """Two plug-ins of a distribution 'broken-methods' on ``root``: one whose module does not import,
    one that names something that is not a method."""
    info = root / "broken_methods-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-methods\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[ackd_bench.methods]\nghost = ackd_bench_no_such_module:Ghost\nnotamethod = json:dumps\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_a_broken_plugin_is_named_and_does_not_break_the_cli(tmp_path):
    env = _broken_distribution(tmp_path / "site")
    done = subprocess.run([EXE, "methods"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert any(line.startswith("kd ") for line in done.stdout.splitlines())  # the rest still works
    warned = [line for line in done.stderr.splitlines() if "failed to load" in line]
    assert len(warned) == 2 and all("package broken-methods" in line for line in warned)
    assert any("'ghost'" in line and "ModuleNotFoundError" in line for line in warned)
    assert any("'notamethod'" in line and "neither a Method subclass nor a module" in line for line in warned)
    assert "Traceback" not in done.stderr
    run = subprocess.run([EXE, "run", "--method", "ghost", "--arch", "resnet18", "--dataset", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert "ghost" in run.stderr and "package broken-methods" in run.stderr
