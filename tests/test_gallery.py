"""The teacher gallery (outputs cached once per run) and the training loop's device-side bookkeeping."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from ackd_bench.benchmark.data import ModalityData, pair_same_class
from ackd_bench.benchmark.gallery import build_gallery, gallery_bytes
from ackd_bench.benchmark.method import Batch, DataInfo, Method, create_method, list_methods, get_method_class
from ackd_bench.benchmark.models import create_classifier
from ackd_bench.benchmark.protocol import get_profile
from ackd_bench.benchmark.train import TrainingError, fit, make_batch

K = 3
ARCH = "resnet18"
INFO = DataInfo(n_classes=K, student_channels=3, teacher_channels=4, class_names=("a", "b", "c"), epochs=4)


def _modality(n: int, channels: int, px: int, seed: int, dtype=torch.uint8) -> ModalityData:
    """Class-dependent random chips (class k brightens channel k), labels cycling through the classes."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    x = torch.randint(0, 120, (n, channels, px, px), generator=g)
    x[torch.arange(n), y] += 100
    x = x.to(dtype)
    splits = {"train": x, "val": x[: n // 2], "test": x[n // 2:]}
    labels = {"train": y, "val": y[: n // 2], "test": y[n // 2:]}
    return ModalityData(x=splits, y=labels, mean=torch.full((channels,), 100.0), std=torch.full((channels,), 50.0),
                        offset=0.0, modality="synthetic")


class _Float64Batches(ModalityData):
    """The same chips, served as float64 batches (normalised in float32 as ever, then widened)."""

    def batch(self, *args, **kwargs) -> torch.Tensor:
        return super().batch(*args, **kwargs).double()  # .double() keeps a channels-last layout


def as_float64(data: ModalityData) -> ModalityData:
    """``data`` whose batches are float64: with float64 models, two computation paths (a gallery and the
    live teacher, compiled and eager) can be compared at float64's precision, not at whichever float32
    convolution algorithm a CPU picks for a batch size."""
    return _Float64Batches(**{f.name: getattr(data, f.name) for f in dataclasses.fields(data)})


@pytest.fixture(scope="module")
def data():
    return _modality(24, 3, 16, seed=0), _modality(30, 4, 16, seed=1, dtype=torch.int16)


def _teacher_methods() -> list[str]:
    names = [n for n in list_methods() if "+" not in n and get_method_class(n).uses_teacher]
    return names + ["sembridge+dkd"]


@pytest.mark.parametrize("name", _teacher_methods())
def test_every_method_gets_the_same_losses_from_the_gallery_as_from_the_live_teacher(name, data):
    """The gallery's rows are what the live teacher computes, so every loss term is the same.

    Compared in float64 (the method's state is prepared in float32, as in a run; the networks and
    batches then move to float64): the gallery runs the teacher on batches of 7, the live teacher on
    the batch of 8, and the two differ only in the order of the convolutions' sums. In float64 that
    moves the outputs by at most n·u ≈ 4608 · 1.1e-16 ≈ 5e-13 relative per layer (n: the longest
    reduction, 3·3·512), ~1e-11 over the network; the loss terms are smooth in the outputs, so 1e-9
    relative (1e-12 absolute for terms near 0) leaves a margin of 100 for their condition. A gallery
    bug (wrong rows, augmented or train-mode teacher chips) moves them by O(1e-2) or more. In float32
    the two paths differ by a CPU's choice of convolution algorithm per batch size (~1e-5 of a term).
    """
    rgb, ms = data
    teacher = create_classifier(ARCH, 4, K, seed=1)
    method = create_method(name, student=create_classifier(ARCH, 3, K, seed=0), teacher=teacher, info=INFO,
                           **({"ssm": False, "diagnostic_samples": 0} if name.startswith("sembridge") else {}))
    method.prepare(rgb, ms, {"seed": 0, "epochs": 4, "student_px": 16, "teacher_px": 16, "progress": False})
    method.double()
    teacher.double()  # held outside the method's module tree
    rgb, ms = as_float64(rgb), as_float64(ms)
    idx = torch.arange(8)
    partners = pair_same_class(rgb.y["train"], ms.y["train"], torch.Generator().manual_seed(3))[idx]

    def losses(gallery):
        method.use_teacher_gallery(gallery)
        batch = make_batch(rgb, None if gallery is not None else ms, idx, partners, student_px=16, teacher_px=16,
                           epoch=1, progress=1.5)
        torch.manual_seed(5)  # methods that draw random numbers draw the same ones
        return {k: v.detach() for k, v in method.losses(batch).items()}

    live = losses(None)
    gallery = build_gallery(teacher, ms, 16, batch_size=7)  # batches that do not divide the gallery
    assert gallery.logits.dtype == torch.float64
    cached = losses(gallery)
    assert cached.keys() == live.keys()
    for k in live:
        assert live[k].dtype == cached[k].dtype == torch.float64, k
        assert float(cached[k]) == pytest.approx(float(live[k]), rel=1e-9, abs=1e-12), k


def test_gallery_rows_are_the_teachers_outputs_on_unaugmented_chips(data):
    """In float64 (see above): the gallery's one batch of 30 and the direct batch of 3 differ only in the
    order of float64 sums, < 1e-10 of each output's norm; a wrong row or an augmented chip is O(1)."""
    _, ms = data
    ms = as_float64(ms)
    teacher = create_classifier(ARCH, 4, K, seed=1).double().eval()
    gallery = build_gallery(teacher, ms, 16)
    rows = torch.tensor([0, 29, 7])
    with torch.no_grad():
        direct = teacher(ms.batch("train", rows, px=16))
    got = gallery.take(rows)
    assert got.feature_map.shape == direct.feature_map.shape
    for field in ("logits", "features", "feature_map"):
        a, b = getattr(got, field), getattr(direct, field)
        assert a.dtype == b.dtype == torch.float64, field
        assert float((a - b).norm()) <= 1e-10 * float(b.norm()), field
    assert gallery.nbytes == gallery_bytes(teacher, ms, 16)
    assert teacher.training is False


def test_gallery_over_budget_falls_back_to_the_live_teacher(data):
    rgb, ms = data
    teacher = create_classifier(ARCH, 4, K, seed=1)
    need = gallery_bytes(teacher, ms, 16)
    assert build_gallery(teacher, ms, 16, budget=need - 1) is None
    assert build_gallery(teacher, ms, 16, budget=need) is not None


def _fit(data, name, float64: bool = False, **kw):
    rgb, ms = data
    student, teacher = create_classifier(ARCH, 3, K, seed=0), create_classifier(ARCH, 4, K, seed=1)
    if float64:
        student.double(), teacher.double()
        rgb, ms = as_float64(rgb), as_float64(ms)
    method = create_method(name, student=student, teacher=teacher, info=INFO)
    profile = get_profile("smoke", batch_size=8, epochs=3)
    return fit(method, rgb, ms, profile, seed=0, student_px=16, teacher_px=16, epochs=3, progress=False, **kw)


def test_a_cached_run_trains_like_a_live_one(data):
    """Three epochs from the gallery and from the live teacher: the same training, in float64.

    The teacher's outputs agree to ~1e-15 relative in float64 (the order of sums differs, see
    above). Adam turns a gradient difference δ into a step difference of at most lr·δ/eps (the
    derivative of g/(|g|+eps) is ≤ 1/eps; lr = 1e-3, eps = 1e-8: a factor 1e5), so after 9 steps the
    weights and the loss terms agree to ≲ 9·1e5·1e-15 ≈ 1e-9 relative. The history's epoch means are
    summed in float32 (the loss watch), which adds up to ~6 float32 ulps (7e-7) between the runs:
    2e-6 covers both. In float32 the same amplification turns a CPU's choice of convolution
    algorithm (1e-7) into differences of 1e-3 after three epochs, and a prediction near a tie can
    flip val_oa.
    """
    cached = _fit(data, "kd", float64=True)
    live = _fit(data, "kd", float64=True, teacher_cache=False)
    assert (cached.teacher_outputs, live.teacher_outputs) == ("cached", "live")
    assert [h["val_oa"] for h in cached.history] == [h["val_oa"] for h in live.history]
    for a, b in zip(cached.history, live.history, strict=True):
        assert a["kd"] == pytest.approx(b["kd"], rel=2e-6) and a["ce"] == pytest.approx(b["ce"], rel=2e-6)
    assert len(cached.epoch_times) == 3
    assert all(t["epoch_s"] >= t["train_s"] > 0 for t in cached.epoch_times)


def test_teacher_chips_are_never_augmented(data):
    rgb, ms = data
    idx, partners = torch.arange(6), torch.tensor([0, 3, 6, 9, 12, 15])
    flips = torch.ones(3, 6, dtype=torch.bool)  # every student chip flipped both ways and transposed
    batch = make_batch(rgb, ms, idx, partners, student_px=16, teacher_px=16, flips=flips, epoch=0, progress=0.0)
    assert torch.equal(batch.teacher_x, ms.batch("train", partners, px=16))
    plain = rgb.batch("train", idx, px=16)
    assert torch.equal(batch.student_x, plain.flip(-1).flip(-2).transpose(-1, -2))


class _NanAtStep(Method):
    """CE, plus a term that is NaN at one (epoch, step) and absent at every other odd step."""

    description = "test"
    paper = "test"
    uses_teacher = False

    def __init__(self, *a, bad=(1, 2), **kw):
        super().__init__(*a, **kw)
        self.bad = bad
        self.step = {}

    def losses(self, batch: Batch):
        ce = F.cross_entropy(self.student(batch.student_x).logits, batch.labels)
        step = self.step[batch.epoch] = self.step.get(batch.epoch, -1) + 1
        if (batch.epoch, step) == self.bad:
            return {"ce": ce, "boom": ce * float("inf")}
        return {"ce": ce} if step % 2 else {"ce": ce, "boom": ce * 0}


def test_a_nan_is_reported_at_its_first_step_even_with_changing_terms(data):
    rgb, _ = data
    method = _NanAtStep(create_classifier(ARCH, 3, K, seed=0), None, INFO, None, bad=(1, 2))
    with pytest.raises(TrainingError, match=r"epoch 1, step 2: \{'boom': inf\}"):
        fit(method, rgb, None, get_profile("smoke", batch_size=4, epochs=3), seed=0, student_px=16, teacher_px=16,
            epochs=3, progress=False)


def test_a_checkpoint_that_cannot_be_written_fails_the_run(data, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the checkpoint folder should be")
    with pytest.raises(OSError):
        _fit(data, "kd", checkpoint=blocker / "run.pt")
    assert blocker.read_text() == "a file where the checkpoint folder should be"
