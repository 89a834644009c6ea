"""The GPU's numerics on the CPU: bf16 autocast (``--precision bf16``) and channels-last memory.

bf16: every method trains under it, and its loss terms are float32.

The networks run in bf16 under autocast; the distillation losses (softmax/KL, logit distances)
are computed in float32 on every device, so they keep their digits: KL between near-equal
distributions is a small difference of large numbers. Checked on the CPU's bf16 autocast (which,
unlike CUDA's, leaves softmax and KL in bf16 unless the loss casts).

Channels-last: ``fit`` converts the models and batches to it on CUDA; every method's losses are
the same as in the default layout (a ``.view`` on a channels-last map would raise there first).
"""

from __future__ import annotations

import pytest
import torch

from ackd_bench.benchmark.data import pair_same_class
from ackd_bench.benchmark.gallery import build_gallery
from ackd_bench.benchmark.method import create_method, list_methods
from ackd_bench.benchmark.models import create_classifier
from ackd_bench.benchmark.precision import autocast
from ackd_bench.benchmark.train import make_batch
from tests.test_gallery import ARCH, INFO, K, _modality

# 32 px: at 16 px resnet18's layer4 sees 1x1 maps, and PyTorch 2.14's CPU bf16 convolution backward
# then gives non-finite weight gradients in about 1 of 10 fresh models (plain CE, no distillation)
PX = 32
CONTEXT = {"seed": 0, "epochs": 4, "student_px": PX, "teacher_px": PX, "progress": False, "fingerprint": "bf16-test",
           "teacher_bands": ["B02", "B03", "B04", "B08"]}


@pytest.fixture(scope="module")
def data():
    return _modality(24, 3, PX, seed=0), _modality(30, 4, PX, seed=1, dtype=torch.int16)


def _losses(name: str, data, precision: str) -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    """The method's loss terms on one batch at epoch 2, set up as ``fit`` sets it up."""
    rgb, ms = data
    teacher = create_classifier(ARCH, 4, K, seed=1)
    method = create_method(name, student=create_classifier(ARCH, 3, K, seed=0), teacher=teacher, info=INFO,
                           **({"matcher_epochs": 1} if name.startswith("sembridge") else {}))
    if method.uses_teacher:
        method.use_teacher_gallery(build_gallery(teacher, ms, PX, precision))
    method.prepare(rgb, ms, CONTEXT)
    method.on_epoch_start(2, {"epochs": 4})  # past DKD's warm-up start, so every term is live
    partners = method.epoch_partners(2) if method.uses_teacher else None
    if method.uses_teacher and partners is None:
        partners = pair_same_class(rgb.y["train"], ms.y["train"], torch.Generator().manual_seed(0))
    idx = torch.arange(12)
    batch = make_batch(rgb, None, idx, partners[idx] if partners is not None else idx, student_px=PX, teacher_px=PX,
                       epoch=2, progress=2.5)
    method.train()
    with autocast("cpu", precision):
        terms = method.losses(batch)
    return terms, method


@pytest.mark.parametrize("name", [n for n in list_methods() if "+" not in n or n == "sembridge+dkd"])
def test_under_bf16_autocast_every_loss_term_is_float32_close_to_fp32_and_trains(name, data, tmp_path, monkeypatch):
    monkeypatch.setenv("ACKD_BENCH_CACHE", str(tmp_path))  # one matcher, trained once, for both precisions
    full, _ = _losses(name, data, "fp32")
    half, method = _losses(name, data, "bf16")
    assert set(half) == set(full)
    for term, value in half.items():
        assert value.dtype == torch.float32, f"{name}: {term} is {value.dtype}"
        # the networks ran in bf16 (about 3 significant digits), the losses in float32
        assert float(value.detach()) == pytest.approx(float(full[term].detach()), rel=0.05, abs=0.01), term
    sum(half.values()).backward()
    grads = {n: p.grad for n, p in method.named_parameters() if p.requires_grad}
    bad = [n for n, g in grads.items() if g is None or g.dtype != torch.float32 or not torch.isfinite(g).all()]
    assert not bad
    assert any(float(g.abs().max()) > 0 for g in grads.values())


def _losses_float64(name: str, data, channels_last: bool) -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    """The method's loss terms on one batch at epoch 2, in float64, from the live teacher.

    ``prepare`` and the epoch's partners are computed in float32 as in a run (SemBridge's matcher
    and re-matching read float32 chips); the models and the batch then move to float64.
    """
    rgb, ms = data
    teacher = create_classifier(ARCH, 4, K, seed=1)
    method = create_method(name, student=create_classifier(ARCH, 3, K, seed=0), teacher=teacher, info=INFO,
                           **({"matcher_epochs": 1} if name.startswith("sembridge") else {}))
    method.prepare(rgb, ms, CONTEXT)
    method.on_epoch_start(2, {"epochs": 4})
    partners = method.epoch_partners(2) if method.uses_teacher else None
    if method.uses_teacher and partners is None:
        partners = pair_same_class(rgb.y["train"], ms.y["train"], torch.Generator().manual_seed(0))
    method.double()
    teacher.double()
    if channels_last:  # as fit() does on CUDA
        method.to(memory_format=torch.channels_last)
        teacher.to(memory_format=torch.channels_last)
    method.use_teacher_gallery(None)
    idx = torch.arange(12)
    batch = make_batch(rgb, ms if method.uses_teacher else None, idx, partners[idx] if partners is not None else idx,
                       student_px=PX, teacher_px=PX, epoch=2, progress=2.5, channels_last=channels_last)
    batch.student_x = batch.student_x.double()  # .double() keeps the memory format
    if method.uses_teacher:
        batch.teacher_x = batch.teacher_x.double()
    if channels_last:
        assert batch.student_x.is_contiguous(memory_format=torch.channels_last)
    method.train()
    return method.losses(batch), method


@pytest.mark.parametrize("name", [n for n in list_methods() if "+" not in n or n == "sembridge+dkd"])
def test_every_method_gives_the_same_losses_and_gradients_in_channels_last(name, data, tmp_path, monkeypatch):
    """The memory layout changes nothing but the order of floating-point sums.

    Compared in float64, so the bound is float64's, not a CPU's float32 convolution algorithm's
    (those differ by layout and CPU): a sum of n terms reordered moves by at most n·u·Σ|terms|,
    u = 1.1e-16; with n ≤ 12·32²·512 ≈ 6e6 terms per gradient entry that is < 1e-9 of the
    gradient's scale. Each parameter's gradient must agree to 1e-8 of its own norm, plus 1e-10 of
    the model's largest gradient norm for parameters whose gradient nearly cancels (CTKD's
    temperature). A layout bug (a channels-last map read as if contiguous) moves them by O(1).
    """
    monkeypatch.setenv("ACKD_BENCH_CACHE", str(tmp_path))
    plain, plain_method = _losses_float64(name, data, channels_last=False)
    nhwc, method = _losses_float64(name, data, channels_last=True)
    assert method.student.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert set(nhwc) == set(plain)
    for term, value in nhwc.items():
        assert value.dtype == torch.float64
        assert float(value.detach()) == pytest.approx(float(plain[term].detach()), rel=1e-10, abs=1e-12), term
    sum(nhwc.values()).backward()
    sum(plain.values()).backward()
    grads = {n: p.grad for n, p in plain_method.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values())
    scale = max(float(g.norm()) for g in grads.values())
    assert scale > 0
    for n, p in method.named_parameters():
        if p.requires_grad:
            error = float((p.grad - grads[n]).norm())
            assert error <= 1e-8 * float(grads[n].norm()) + 1e-10 * scale, n


def _loss_functions():
    from ackd_bench.baselines.c2kd import non_target_kl
    from ackd_bench.baselines.distilvpr import cross_agent_loss, geodesic_relation_loss
    from ackd_bench.baselines.dkd import dkd_parts
    from ackd_bench.baselines.kd import kd_loss
    from ackd_bench.baselines.logit_regression import logit_regression_loss
    from ackd_bench.baselines.lskd import lskd_loss
    from ackd_bench.baselines.rkd import rkd_angle_loss, rkd_distance_loss
    from ackd_bench.sembridge.planner import coral_loss

    target = torch.tensor([0, 1, 2, 0, 1, 2])
    return {
        "kd": lambda s, t: kd_loss(s, t, temperature=4.0),
        "dkd": lambda s, t: sum(dkd_parts(s, t, target, temperature=4.0)),
        "c2kd non-target KL": lambda s, t: non_target_kl(s, t, target).mean(),
        "logit regression": logit_regression_loss,
        "lskd": lambda s, t: lskd_loss(s, t, temperature=2.0),
        "rkd distance": rkd_distance_loss,
        "rkd angle": rkd_angle_loss,
        "distilvpr geodesic": lambda s, t: geodesic_relation_loss(s, t, c=0.1),
        "distilvpr cross cosine": lambda s, t: cross_agent_loss(s, t, "cosine", c=0.1, w_st2ss=1.0, w_tt2st=1.0),
        "coral": coral_loss,
    }


@pytest.mark.parametrize("name", list(_loss_functions()))
def test_loss_functions_compute_in_float32_under_bf16_autocast(name):
    fn = _loss_functions()[name]
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 3, generator=g) * 2, torch.randn(6, 3, generator=g) * 2
    t = s + 0.01 * t  # near-equal inputs: bf16 arithmetic would lose most of the difference
    exact = fn(s.double(), t.double())
    assert exact.dtype == torch.float64  # float64 stays float64 (the loss tests' reference precision)
    plain = fn(s, t)  # float32, no autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        same = fn(s, t)  # float32 inputs: autocast must not cast the loss's products down to bf16
        leaf = s.to(torch.bfloat16).requires_grad_()
        low = fn(leaf, t.to(torch.bfloat16))
    assert same.dtype == low.dtype == torch.float32
    # Autocast off inside the loss: the very float32 kernels run, so the value is bit for bit the
    # float32 one (against float64 that would need a float32 bound per loss: KD's 8e-5 here is a
    # difference of log-probabilities ~1, off by ~5e-7 in float32, too close to any fixed tolerance).
    # A matrix product left to autocast rounds its inputs to bf16, 3 significant digits: a 0.01 shift
    # on values ~2 is then mostly lost.
    assert float(same) == float(plain)
    low.backward()
    assert leaf.grad is not None and leaf.grad.dtype == torch.bfloat16 and torch.isfinite(leaf.grad).all()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_run_is_validated_and_tested_in_the_precision_it_trained_in(precision, data):
    from ackd_bench.benchmark.protocol import get_profile
    from ackd_bench.benchmark.train import fit

    rgb, ms = data
    method = create_method("student-only", student=create_classifier(ARCH, 3, K, seed=0), teacher=None, info=INFO)
    seen = []
    predict = method.predict

    def spy(x):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return predict(x)

    method.predict = spy
    profile = get_profile("smoke", batch_size=12, epochs=1, precision=precision)
    result = fit(method, rgb, ms, profile, seed=0, student_px=PX, teacher_px=PX, epochs=1, progress=False)
    assert len(seen) == 3 and set(seen) == {precision == "bf16"}  # val after the epoch, val and test at the end
    assert 0 <= result.test["oa"] <= 1


def test_sembridge_matches_and_rematches_in_the_runs_precision(data, tmp_path, monkeypatch):
    """fit tells prepare how the run computes; SemBridge's matcher and its bulk forward passes follow."""
    import ackd_bench.sembridge.method as sembridge
    from ackd_bench.benchmark.protocol import get_profile
    from ackd_bench.benchmark.train import fit

    monkeypatch.setenv("ACKD_BENCH_CACHE", str(tmp_path))
    calls = []
    for name in ("all_logits", "get_matcher", "matcher_embeddings"):
        original = getattr(sembridge, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            calls.append((_name, kwargs.get("precision"), kwargs.get("channels_last")))
            return _original(*args, **kwargs)

        monkeypatch.setattr(sembridge, name, spy)
    rgb, ms = data
    teacher = create_classifier(ARCH, 4, K, seed=1)
    method = create_method("sembridge", student=create_classifier(ARCH, 3, K, seed=0), teacher=teacher, info=INFO,
                           matcher_epochs=1, diagnostic_samples=8)
    profile = get_profile("smoke", batch_size=12, epochs=4, precision="bf16")
    fit(method, rgb, ms, profile, seed=0, student_px=PX, teacher_px=PX, epochs=4, progress=False,
        context={k: CONTEXT[k] for k in ("fingerprint", "teacher_bands")})
    names = [c[0] for c in calls]
    assert {"get_matcher", "matcher_embeddings", "all_logits"} <= set(names)
    assert method.rematch_at and names.count("all_logits") == 1 + len(method.rematch_at)  # diagnostic, re-matches
    assert set(c[1:] for c in calls) == {("bf16", False)}  # the CPU: bf16 as asked, no channels-last
