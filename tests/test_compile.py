"""``torch.compile`` of the student's training forward (``--compile``): same training, same checkpoints.

Compiled with Inductor on the CPU (the C compiler is on every CI machine); CUDA graphs
(``reduce-overhead``) need a GPU and are measured by benchmarks/gpu_suite.py, so here only
their refusal off CUDA is tested.
"""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from ackd_bench.benchmark.cli import main
from ackd_bench.benchmark.method import DataInfo, MethodError, create_method
from ackd_bench.benchmark.models import create_classifier
from ackd_bench.benchmark.protocol import get_profile
from ackd_bench.benchmark.train import fit
from tests.test_gallery import ARCH, K, _modality, as_float64

INFO = DataInfo(n_classes=K, student_channels=3, teacher_channels=4, class_names=("a", "b", "c"), epochs=2)


def _kd(seed: int = 0, float64: bool = False):
    student, teacher = create_classifier(ARCH, 3, K, seed=seed), create_classifier(ARCH, 4, K, seed=1)
    if float64:
        student.double(), teacher.double()
    return create_method("kd", student=student, teacher=teacher, info=INFO)


@pytest.fixture(scope="module")
def data():
    # 26 training chips in batches of 10: two full batches and a short one (static shapes: a second compile)
    return _modality(26, 3, 16, seed=0), _modality(30, 4, 16, seed=1, dtype=torch.int16)


@pytest.mark.slow
def test_a_compiled_run_trains_like_an_eager_one_and_resumes_from_its_checkpoints(data, tmp_path):
    """Compiled and eager training compared in float64 (models and batches), against stated bounds.

    Inductor's kernels and eager's compute the same sums in other orders: in float64 a forward and
    backward pass differ by ~1e-15 relative. Adam turns a gradient difference δ into a step
    difference of at most lr·δ/eps (the derivative of g/(|g|+eps) is ≤ 1/eps; lr = 1e-3, eps = 1e-8:
    a factor 1e5), so after 6 steps the weights agree to ≲ 6·1e5·1e-15 < 1e-9 of how far they moved,
    and the loss terms to ~1e-9 relative. The history's epoch means are summed in float32 (the loss
    watch), which adds up to ~6 float32 ulps (7e-7): 2e-6 covers both. Predictions then agree unless
    a logit margin is below 1e-9. In float32 the same amplification turns kernel rounding (1e-7) into
    weights 0.8% apart after two epochs, with nothing but one CPU's output to set a tolerance by.
    """
    rgb, ms = as_float64(data[0]), as_float64(data[1])
    profile = get_profile("smoke", batch_size=10, epochs=2)
    kw = dict(seed=0, student_px=16, teacher_px=16, epochs=2, progress=False)
    eager_method = _kd(float64=True)
    eager = fit(eager_method, rgb, ms, profile, **kw)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    method = _kd(float64=True)
    compiled = fit(method, rgb, ms, profile, checkpoint=tmp_path / "run.pt", compile_mode="default", **kw)
    # the student's forward really went through Dynamo: one graph per batch shape (10 and 6)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2
    assert (eager.compile_mode, compiled.compile_mode, method.compile_mode) == ("off", "default", "default")
    for a, b in zip(eager.history, compiled.history, strict=True):
        assert b["ce"] == pytest.approx(a["ce"], rel=2e-6) and b["kd"] == pytest.approx(a["kd"], rel=2e-6)
        assert b["val_oa"] == a["val_oa"]
    assert compiled.test_predictions == eager.test_predictions
    # the compiled student is no submodule: the same parameters, state_dict keys and checkpoints
    assert list(method.state_dict()) == list(eager_method.state_dict())
    assert sum(p.numel() for p in method.parameters()) == sum(p.numel() for p in eager_method.parameters())

    # the same weights up to float64 rounding, amplified by Adam as above
    def vector(model):
        return torch.nn.utils.parameters_to_vector(model.parameters()).detach()

    assert vector(method.student).dtype == torch.float64
    start = vector(create_classifier(ARCH, 3, K, seed=0).double())
    moved = (vector(eager_method.student) - start).norm()
    assert float(moved) > 0.1  # training moved the weights, far above the bound below
    assert float((vector(method.student) - vector(eager_method.student)).norm() / moved) < 1e-6
    # an eager run takes up the compiled run's checkpoint (2 epochs done) and trains one more
    more = fit(_kd(float64=True), rgb, ms, get_profile("smoke", batch_size=10, epochs=3),
               checkpoint=tmp_path / "run.pt", resume=True, **{**kw, "epochs": 3})
    assert [h["epoch"] for h in more.history] == [0, 1, 2]
    assert more.history[:2] == compiled.history and len(more.epoch_times) == 1


def test_evaluation_stays_eager_and_off_undoes_compile():
    method = _kd()
    method.compile_student("default")
    compiled = method._student_step
    assert compiled is not None and compiled._orig_mod is method.student
    assert "_student_step" not in dict(method.named_modules())
    x = torch.randn(4, 3, 16, 16)
    torch._dynamo.utils.counters.clear()
    method.eval()
    with torch.no_grad():
        torch.testing.assert_close(method.predict(x), method.student(x).logits)
    assert not torch._dynamo.utils.counters["stats"]["unique_graphs"]  # nothing was compiled to evaluate
    method.compile_student("off")
    assert method._student_step is None and method.compile_mode == "off"


def test_unknown_modes_and_cuda_graphs_off_cuda_are_refused(data):
    method = _kd()
    with pytest.raises(MethodError, match="unknown compile mode 'fast'; use one of off, default, reduce-overhead"):
        method.compile_student("fast")
    with pytest.raises(MethodError, match="needs the student on a CUDA device"):
        method.compile_student("reduce-overhead")
    assert method.compile_mode == "off" and method._student_step is None
    rgb, ms = data
    with pytest.raises(MethodError, match="needs the student on a CUDA device"):
        fit(method, rgb, ms, get_profile("smoke", batch_size=10, epochs=1), seed=0, student_px=16, teacher_px=16,
            epochs=1, progress=False, compile_mode="reduce-overhead")


def test_the_cli_refuses_cuda_graphs_on_the_cpu_before_any_work(tmp_path):
    runner = CliRunner()
    args = ["run", "--method", "kd", "--arch", ARCH, "--dataset", str(tmp_path / "none"), "--out", str(tmp_path / "r")]
    done = runner.invoke(main, [*args, "--device", "cpu", "--compile", "reduce-overhead"])
    assert done.exit_code == 2, done.output
    assert "--compile reduce-overhead records CUDA graphs and needs a CUDA device, not cpu" in done.output
    done = runner.invoke(main, [*args, "--compile", "max"])
    assert done.exit_code == 2 and "'max' is not one of 'off', 'default', 'reduce-overhead'" in done.output
    done = runner.invoke(main, ["sweep", "--grid", "paper", "--dataset", str(tmp_path), "--device", "cpu",
                                "--compile", "reduce-overhead", "--out", str(tmp_path / "r")])
    assert done.exit_code == 2 and "--compile reduce-overhead records CUDA graphs" in done.output
    assert not (tmp_path / "r").exists()
