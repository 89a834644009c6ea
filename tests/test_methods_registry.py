"""Every registered method, built from the registry, runs one training step on tiny models (timm-style)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ackd_bench.baselines.kd import kd_loss
from ackd_bench.benchmark.method import (
    Batch,
    DataInfo,
    MethodError,
    create_method,
    get_method_class,
    list_methods,
    method_config,
)
from ackd_bench.benchmark.models import create_classifier

BASELINES = {"student-only", "kd", "logits", "rkd", "dkd", "ctkd", "lskd", "c2kd", "distilvpr"}
N_CLASSES = 4
# timm's tiny test networks; different pooled widths (96 vs 256) exercise the projection paths.
STUDENT_ARCH, TEACHER_ARCH = "test_resnet", "test_byobnet"
INFO = DataInfo(n_classes=N_CLASSES, student_channels=3, teacher_channels=10,
                class_names=("water", "forest", "crop", "urban"), epochs=12)


def _build(name: str):
    student = create_classifier(STUDENT_ARCH, 3, N_CLASSES, seed=0)
    teacher = create_classifier(TEACHER_ARCH, 10, N_CLASSES, seed=1)
    return student, teacher, create_method(name, student=student, teacher=teacher, info=INFO)


def _batch(epoch: int = 3) -> Batch:
    g = torch.Generator().manual_seed(0)
    return Batch(
        student_x=torch.randn(6, 3, 32, 32, generator=g),
        labels=torch.tensor([0, 1, 2, 3, 0, 1]),
        teacher_x=torch.randn(6, 10, 32, 32, generator=g),
        index=torch.arange(6),
        teacher_index=torch.arange(6),
        epoch=epoch,
        progress=epoch + 0.5,  # past DKD's scaled warm-up (1 epoch for 12) so every term is active
    )


def test_all_baselines_are_registered():
    assert BASELINES <= set(list_methods())
    assert list_methods("*kd") == sorted(n for n in list_methods() if n.endswith("kd"))


def test_unknown_method_lists_the_known_names():
    with pytest.raises(MethodError, match="unknown method 'hinton'") as err:
        get_method_class("hinton")
    for name in BASELINES:
        assert name in str(err.value)


def test_unknown_config_key_names_the_method_options():
    with pytest.raises(MethodError, match="'dkd' has no option") as err:
        method_config("dkd", {"gamma": 2.0})
    for option in ("alpha", "beta", "temperature", "warmup_epochs"):
        assert option in str(err.value)
    student = create_classifier(STUDENT_ARCH, 3, N_CLASSES, seed=0)
    with pytest.raises(MethodError, match="no option"):
        create_method("kd", student=student, teacher=None, info=INFO, temprature=3.0)


@pytest.mark.parametrize("name", list_methods())
def test_method_metadata_and_config(name):
    cls = get_method_class(name)
    assert cls.description and "\n" not in cls.description
    assert cls.paper
    assert dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen
    cfg = method_config(name)  # every field has a default
    fields = dataclasses.fields(cfg)
    if fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(cfg, fields[0].name, None)


@pytest.mark.parametrize("name", list_methods())
def test_one_training_step(name):
    student, teacher, method = _build(name)
    method.train()
    if method.uses_teacher:
        assert method.teacher is teacher
        assert not teacher.training and not any(m.training for m in teacher.modules())
        assert not any(p.requires_grad for p in teacher.parameters())
        teacher_ids = {id(p) for p in teacher.parameters()}
        assert not teacher_ids & {id(p) for p in method.parameters()}
        assert not any(k.startswith("_teacher") for k in method.state_dict())
        teacher_before = [p.detach().clone() for p in teacher.parameters()]
        teacher_buffers = [b.detach().clone() for b in teacher.buffers()]
    else:
        assert method.teacher is None

    trainable = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-3)
    losses = method.losses(_batch())
    assert "ce" in losses and len(losses) >= 1
    for key, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), key
    total = sum(losses.values())
    optimizer.zero_grad()
    total.backward()

    for pname, p in student.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in student.parameters())
    for pname, p in method.named_parameters():  # extra modules too (proxies, projections, temperature)
        if not pname.startswith(("student.", "base.student.")) and p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    student_before = [p.detach().clone() for p in student.parameters()]
    optimizer.step()
    assert any(not torch.equal(a, p) for a, p in zip(student_before, student.parameters()))

    if method.uses_teacher:
        assert all(torch.equal(a, p) for a, p in zip(teacher_before, teacher.parameters()))
        assert all(torch.equal(a, b) for a, b in zip(teacher_buffers, teacher.buffers()))  # BN stats untouched
        assert not teacher.training

    method.eval()
    with torch.no_grad():
        assert method.predict(_batch().student_x).shape == (6, N_CLASSES)


@pytest.mark.parametrize("name", [n for n in list_methods() if get_method_class(n).uses_teacher])
def test_distillation_terms_are_trainable(name):
    """Each term besides CE trains something, and together they move the student.

    (The ACKD RKD baseline detached the student features: its RKD term had no gradient at all.)
    """
    student, _, method = _build(name)
    method.train()
    losses = method.losses(_batch())
    distill = {k: v for k, v in losses.items() if k != "ce"}
    assert distill, "a distillation method needs a term besides CE"
    trainable = [p for p in method.parameters() if p.requires_grad]
    for key, value in distill.items():
        assert value.requires_grad, f"{key} is detached from every trainable parameter"
        grads = torch.autograd.grad(value, trainable, retain_graph=True, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads), key
    sum(distill.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_student_only_never_builds_the_teacher():
    student = create_classifier(STUDENT_ARCH, 3, N_CLASSES, seed=0)
    teacher = create_classifier(TEACHER_ARCH, 10, N_CLASSES, seed=1)
    method = create_method("student-only", student=student, teacher=teacher, info=INFO)
    assert method.teacher is None
    assert set(method.losses(_batch())) == {"ce"}


def test_ctkd_temperature_ascends_the_kd_loss():
    """At λ = −1 the temperature gets minus the KD term's gradient, and one Adam step raises the term.

    Computed in float64 at τ ≈ 1.95 (θ = −3), where the τ²-scaled KD term depends on τ: at the
    initial θ = 1 (τ ≈ 15.6) it is nearly flat in τ (∂L/∂θ ≈ 1e-5), and float32 gets that
    gradient's sign wrong on some CPUs. Here ∂L/∂θ ≈ 5e-4, ten orders above float64's rounding, and
    the Adam step (θ moves by lr = 0.1) changes the term by ≈ 5e-5.
    """
    _, teacher, method = _build("ctkd")
    teacher.double()
    method.double().train()
    batch = _batch(epoch=5)  # past the scaled curriculum (1 epoch for 12): λ = −1
    batch.student_x, batch.teacher_x = batch.student_x.double(), batch.teacher_x.double()
    assert method.reversal_factor(batch.epoch) == pytest.approx(-1.0)
    with torch.no_grad():
        method.temperature.theta.fill_(-3.0)
        logits_s = method.student(batch.student_x).logits
    logits_t = method.teacher_forward(batch.teacher_x).logits

    def kd_term(theta: torch.Tensor) -> torch.Tensor:  # the term as a plain function of θ, no reversal
        tau = method.cfg.t_start + method.cfg.t_end * torch.sigmoid(theta)
        return method.cfg.kd_weight * kd_loss(logits_s, logits_t, temperature=tau)

    theta = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
    before = kd_term(theta)
    (descent,) = torch.autograd.grad(before, theta)
    assert abs(float(descent)) > 1e-4  # a gradient far above float64 noise (~1e-17 here)
    optimizer = torch.optim.Adam(method.temperature.parameters(), lr=0.1)
    optimizer.zero_grad()
    method.losses(batch)["kd"].backward()
    # the reversal layer hands θ minus the term's gradient (λ = −1); float64 keeps ~1e-15 relative
    assert float(method.temperature.theta.grad) == pytest.approx(-float(descent), rel=1e-9)
    optimizer.step()
    after = kd_term(method.temperature.theta.detach())
    before = before.detach()
    g = float(descent)  # Adam's first step: θ −= lr · ĝ/(|ĝ| + eps) with ĝ = −g, eps = 1e-8
    assert float(method.temperature.theta.detach()) == pytest.approx(-3.0 + 0.1 * g / (abs(g) + 1e-8), rel=1e-9)
    assert float(after - before) > 1e-5  # the step ascends the term, by ≈ 0.1·|∂L/∂θ|


def test_dkd_warmup_scales_the_decoupled_terms():
    _, _, method = _build("dkd")
    assert method.warmup_epochs == 3  # round(20/240 · 12) = 1, floored at min(3, 12 // 4) = 3
    batch = _batch()
    batch.progress = 0.0
    zero = method.losses(batch)
    assert zero["tckd"].item() == 0.0 and zero["nckd"].item() == 0.0
    batch.progress = 1.5
    half = method.losses(batch)
    batch.progress = 4.0
    full = method.losses(batch)
    assert half["nckd"].item() == pytest.approx(0.5 * full["nckd"].item(), rel=1e-4)


def test_distilvpr_projects_only_when_widths_differ():
    _, _, method = _build("distilvpr")
    assert isinstance(method.projection, torch.nn.Linear)
    assert (method.projection.in_features, method.projection.out_features) == (96, 256)
    student = create_classifier(STUDENT_ARCH, 3, N_CLASSES, seed=0)
    same = create_method("distilvpr", student=student, teacher=create_classifier(STUDENT_ARCH, 10, N_CLASSES),
                         info=INFO)
    assert isinstance(same.projection, torch.nn.Identity)


def test_c2kd_selection_follows_krc():
    """OFSD keeps only the samples whose proxies agree in rank beyond ``krc``: none above τ = 1."""
    for krc, expect_active in ((1.0, False), (-1.0, True)):
        student = create_classifier(STUDENT_ARCH, 3, N_CLASSES, seed=0)
        teacher = create_classifier(TEACHER_ARCH, 10, N_CLASSES, seed=1)
        method = create_method("c2kd", student=student, teacher=teacher, info=INFO, krc=krc)
        method.train()
        losses = method.losses(_batch())
        assert (method.last_selected_fraction.item() > 0) == expect_active
        assert (losses["ofsd_student_proxy"].item() > 0) == expect_active
        assert (losses["ofsd_teacher_proxy"].item() > 0) == expect_active
        assert losses["kd_proxy_from_teacher"].item() > 0  # the unselected terms stay on


def test_multilabel_teacher_scores_become_a_class_distribution():
    """A BCE teacher's per-class scores enter KD as log-sigmoids (softmax = renormalised sigmoids)."""
    info = dataclasses.replace(INFO, teacher_multilabel=True)
    student = create_classifier(STUDENT_ARCH, 3, N_CLASSES, seed=0)
    teacher = create_classifier(TEACHER_ARCH, 10, N_CLASSES, seed=1)
    method = create_method("kd", student=student, teacher=teacher, info=info)
    method.eval()
    batch = _batch()
    with torch.no_grad():
        got = method.losses(batch)["kd"]
        logits_s = student(batch.student_x).logits
        scores_t = teacher(batch.teacher_x).logits
    expected = 0.9 * kd_loss(logits_s, torch.nn.functional.logsigmoid(scores_t), temperature=4.0)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, 0.9 * kd_loss(logits_s, scores_t, temperature=4.0))
