"""SemBridge as a method: the plug-in over every base, its loss weighting, matching inside training, diagnostics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from ackd_bench.benchmark.cli import main
from ackd_bench.benchmark.data import latent_vectors, load_modality, true_partners
from ackd_bench.benchmark.dataset import load_dataset, write_dataset
from ackd_bench.benchmark.dataset.synthetic import make_synthetic_dataset_inputs
from ackd_bench.benchmark.method import (Batch, DataInfo, MethodError, create_method, get_method_class,
                                         list_methods, method_config)
from ackd_bench.benchmark.models import create_classifier
from ackd_bench.benchmark.protocol import get_profile
from ackd_bench.benchmark.results import load_run_results
from ackd_bench.benchmark.runner import method_label
from ackd_bench.benchmark.train import fit
from ackd_bench.sembridge.matcher import MatcherConfig, get_matcher, matcher_embeddings
from ackd_bench.sembridge.matching import initial_match
from ackd_bench.sembridge.method import (OFFICIAL_WEIGHTS, TASK_TERMS, all_logits, matcher_hits, pairing_costs,
                                         rgb_band_index)
from ackd_bench.sembridge.planner import SemanticPlanner, coral_loss
from tests.test_sembridge_matching import kl_cost_bound

N_CLASSES = 4
INFO = DataInfo(n_classes=N_CLASSES, student_channels=3, teacher_channels=10,
                class_names=("water", "forest", "crop", "urban"), epochs=12)
BASES = [n for n in list_methods() if "sembridge" not in n]


def _batch(n: int = 6, px: int = 32, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(student_x=torch.randn(n, 3, px, px, generator=g), labels=torch.arange(n) % N_CLASSES,
                 teacher_x=torch.randn(n, 10, px, px, generator=g), index=torch.arange(n),
                 teacher_index=torch.arange(n), epoch=3, progress=3.5)


def _build(name: str, student_arch: str = "test_resnet", teacher_arch: str = "test_byobnet", **options):
    student = create_classifier(student_arch, 3, N_CLASSES, seed=0)
    teacher = create_classifier(teacher_arch, 10, N_CLASSES, seed=1)
    return create_method(name, student=student, teacher=teacher, info=INFO, **options)


def _fresh(batch: Batch) -> Batch:
    """The same batch without cached network outputs."""
    return Batch(**{**batch.__dict__, "cache": {}})


# ---- registry --------------------------------------------------------------------------------------


def test_every_base_has_a_sembridge_variant_and_plugins_do_not_nest():
    names = set(list_methods())
    assert "sembridge" in names
    for base in BASES:
        assert f"sembridge+{base}" in names
        cls = get_method_class(f"sembridge+{base}")
        assert cls.Base is get_method_class(base) and cls.is_plugin
    assert not any(n.count("sembridge") > 1 for n in names)
    with pytest.raises(MethodError, match="unknown method 'sembridge\\+sembridge'"):
        get_method_class("sembridge+sembridge")
    with pytest.raises(MethodError, match="plug-ins: sembridge\\+<method>"):
        get_method_class("sembridge+hinton")


def test_sembridge_config_has_its_own_and_the_base_options():
    cfg = method_config("sembridge+dkd", {"beta": 4.0, "ssm": False, "planner": "sinkhorn"})
    assert cfg.beta == 4.0 and cfg.alpha == 1.0 and not cfg.ssm and cfg.planner == "sinkhorn"
    with pytest.raises(MethodError, match="no option"):
        method_config("sembridge", {"gamma": 1})
    with pytest.raises(MethodError, match="lambda_kd must lie in"):
        method_config("sembridge", {"lambda_kd": 1.5})
    with pytest.raises(MethodError, match="planner must be"):
        method_config("sembridge+rkd", {"planner": "emd"})


# ---- losses and weighting ------------------------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
def test_paper_weighting_is_base_terms_plus_alignment(base):
    """L = L_task + λ1·L_kd + (1 − λ1)·(L_ot1 + L_ot2), the base's own terms computed independently."""
    lam = 0.3
    sb = _build(f"sembridge+{base}", lambda_kd=lam)
    ref = create_method(base, student=sb.student, teacher=sb.teacher, info=INFO)  # same networks
    sb.train(), ref.train()
    # bases with parameters of their own (CTKD's temperature, C2KD's proxies) get the same weights
    ref.load_state_dict({k[len("base."):]: v for k, v in sb.state_dict().items() if k.startswith("base.")})
    batch = _batch()
    terms = sb.losses(batch)
    base_terms = ref.losses(_fresh(batch))
    for key, value in base_terms.items():
        factor = 1.0 if key in TASK_TERMS else lam
        torch.testing.assert_close(terms[key], factor * value, rtol=1e-5, atol=1e-6)
    t_out, s_out = sb.teacher(batch.teacher_x), sb.student(batch.student_x)
    ot = SemanticPlanner.ot_losses(sb.planner(t_out.feature_map, s_out.feature_map))
    torch.testing.assert_close(terms["ot1"], (1 - lam) * ot["ot1"], rtol=1e-5, atol=1e-7)
    # L_ot2 on the backbones' pooled embeddings; 256 ≠ 96 channels here, so through P_t and P_s
    e_t, e_s = sb.planner.proj_t(t_out.features), sb.planner.proj_s(s_out.features)
    torch.testing.assert_close(terms["ot2"], (1 - lam) * coral_loss(e_s, e_t), rtol=1e-5, atol=1e-7)
    assert set(terms) == set(base_terms) | {"ot1", "ot2"}


def _np_scatter_coral(a: np.ndarray, b: np.ndarray) -> float:
    """The authors' ``utils/loss_kd.py`` CORAL written out: mean((S_a − S_b)²) / (4d), S the centred scatter."""
    def scatter(x):
        xc = x - x.mean(0, keepdims=True)
        return xc.T @ xc
    d = a.shape[1]
    return float(np.mean((scatter(a) - scatter(b)) ** 2) / (4 * d))


def _np_kl(z_t: np.ndarray, z_s: np.ndarray, t: float) -> float:
    """KL(softmax(z_t/t) ‖ softmax(z_s/t)) summed over classes, batch mean, no T²."""
    def log_softmax(z):
        z = z / t
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))
    lt, ls = log_softmax(z_t), log_softmax(z_s)
    return float((np.exp(lt) * (lt - ls)).sum(1).mean())


def _official_setup(name: str, *, student_arch: str = "test_resnet", teacher_arch: str = "test_byobnet", **options):
    sb = _build(name, student_arch, teacher_arch, weighting="official", **options)
    sb.double().train()
    sb.teacher.double()  # held outside the method's module tree
    batch = _batch()
    batch.student_x, batch.teacher_x = batch.student_x.double(), batch.teacher_x.double()
    terms = sb.losses(batch)
    assert all(v.dtype == torch.float64 for v in terms.values())
    t_out, s_out = sb.teacher(batch.teacher_x), sb.student(batch.student_x)
    return sb, batch, terms, t_out, s_out


def test_official_weighting_matches_the_authors_formula():
    """0.3·CE + 0.4·KL(T = 3, no T²) + 0.003·(their scatter CORAL of L_ot1 and L_ot2), each term against
    numpy restatements of the authors' code (float64: the two computations agree to ~1e-13 relative,
    a scatter of 6 rows and a KL of 4 classes have condition numbers far below 1e2, so 1e-10 is a bound)."""
    sb, batch, terms, t_out, s_out = _official_setup("sembridge", student_arch="resnet18", teacher_arch="resnet18")
    logits, z_t = s_out.logits.detach().numpy(), t_out.logits.detach().numpy()
    torch.testing.assert_close(terms["ce"], 0.3 * F.cross_entropy(s_out.logits, batch.labels), rtol=1e-12, atol=0)
    assert terms["kd"].item() == pytest.approx(0.4 * _np_kl(z_t, logits, 3.0), rel=1e-10)
    assert OFFICIAL_WEIGHTS["ot"] == pytest.approx(0.003)
    # L_ot2: the backbones' pooled 512-d embeddings, equal widths, so no projection (as their code)
    expected_ot2 = _np_scatter_coral(s_out.features.detach().numpy(), t_out.features.detach().numpy())
    assert terms["ot2"].item() == pytest.approx(0.003 * expected_ot2, rel=1e-10)
    # L_ot1: each sample's refined tokens flattened, rows = the batch (1×1 maps at 32 px: one token each)
    out = sb.planner(t_out.feature_map, s_out.feature_map)
    expected_ot1 = _np_scatter_coral(out["student_refined"].flatten(1).detach().numpy(),
                                     out["teacher_refined"].flatten(1).detach().numpy())
    assert terms["ot1"].item() == pytest.approx(0.003 * expected_ot1, rel=1e-10)
    assert set(terms) == {"ce", "kd", "ot1", "ot2"}


@pytest.mark.parametrize("base", ["lskd", "ctkd", "dkd", "rkd", "logits"])
def test_official_weighting_uses_the_authors_kd_term_of_each_base(base):
    """The distiller's unweighted ``kd`` as their ``Distillers/*.py`` compute it, times lam_kd = 0.4."""
    sb, batch, terms, t_out, s_out = _official_setup(f"sembridge+{base}")
    zs, zt = s_out.logits.detach().numpy(), t_out.logits.detach().numpy()
    distill = {k: v.item() for k, v in terms.items() if k not in ("ce", "ot1", "ot2")}
    if base == "lskd":
        def z(x):
            return (x - x.mean(1, keepdims=True)) / (x.std(1, ddof=1, keepdims=True) + 1e-7)
        assert distill["kd"] == pytest.approx(0.4 * 9 * _np_kl(z(zt), z(zs), 3.0), rel=1e-9)
    elif base == "ctkd":
        tau = sb.base.temperature(sb.base.reversal_factor(batch.epoch)).item()
        assert distill["kd"] == pytest.approx(0.4 * _np_kl(zt, zs, tau), rel=1e-9)  # no τ²
    elif base == "logits":
        assert distill["logits"] == pytest.approx(0.4 * 0.01 * np.mean((zs - zt) ** 2), rel=1e-10)
    else:  # dkd, rkd: their weights inside the term (DKD's own; RKD's 25 and 50 times 0.1)
        ref = create_method(base, student=sb.student, teacher=sb.teacher, info=INFO).double()
        ref_terms = {k: v.item() for k, v in ref.losses(_fresh(batch)).items() if k not in TASK_TERMS}
        factor = 0.4 * (0.1 if base == "rkd" else 1.0)
        assert distill.keys() == ref_terms.keys()
        for k, v in ref_terms.items():
            assert distill[k] == pytest.approx(factor * v, rel=1e-9)
    torch.testing.assert_close(terms["ce"], 0.3 * F.cross_entropy(s_out.logits, batch.labels), rtol=1e-12, atol=0)


def test_official_weighting_refuses_bases_the_authors_code_lacks():
    for base in ("distilvpr", "c2kd", "student-only"):
        with pytest.raises(MethodError, match="no '.*' distiller"):
            _build(f"sembridge+{base}", weighting="official")


def test_ot2_spaces():
    """``backbone`` (default) compares the pooled backbone embeddings; ``planner`` the plan-pooled tokens,
    which on a 1×1 map (one token per sample) is L_ot1 again: the double count the default removes."""
    batch = _batch()
    planner_space = _build("sembridge", "resnet18", "resnet18", ot2_space="planner").losses(batch)
    torch.testing.assert_close(planner_space["ot2"], planner_space["ot1"], rtol=1e-6, atol=0)
    sb = _build("sembridge", "resnet18", "resnet18")
    terms = sb.losses(_fresh(batch))
    e_t, e_s = sb.teacher(batch.teacher_x).features, sb.student(batch.student_x).features
    w = 1 - sb.opts.lambda_kd
    torch.testing.assert_close(terms["ot2"], w * coral_loss(e_s, e_t), rtol=1e-5, atol=0)
    assert abs(terms["ot2"].item() - terms["ot1"].item()) > 1e-3 * abs(terms["ot1"].item())
    with pytest.raises(MethodError, match="ot2_space"):
        method_config("sembridge", {"ot2_space": "tokens"})


def test_everything_off_and_lambda_one_is_the_base_method():
    sb = _build("sembridge+dkd", lambda_kd=1.0, ssm=False, dynm=False, ot1=False, ot2=False)
    assert sb.planner is None
    ref = create_method("dkd", student=sb.student, teacher=sb.teacher, info=INFO)
    batch = _batch()
    a, b = sb.losses(batch), ref.losses(_fresh(batch))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_ablation_switches_drop_their_terms():
    assert "ot1" not in _build("sembridge", ot1=False).losses(_batch())
    assert "ot2" not in _build("sembridge", ot2=False).losses(_batch())


def test_student_forward_runs_once_per_step(monkeypatch):
    sb = _build("sembridge+rkd")
    calls = []
    original = sb.student.forward
    monkeypatch.setattr(sb.student, "forward", lambda x: calls.append(1) or original(x))
    sb.losses(_batch())
    assert len(calls) == 1


def test_teacher_projection_is_frozen_and_alignment_trains_the_student():
    sb = _build("sembridge")
    assert not sb.planner.proj_t.weight.requires_grad
    terms = sb.losses(_batch())
    grads = torch.autograd.grad(terms["ot1"] + terms["ot2"], list(sb.student.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert sb.planner.proj_s.weight.requires_grad


@pytest.mark.parametrize("planner", ["attention", "sinkhorn"])
@pytest.mark.parametrize("teacher_arch,student_arch", [
    ("shufflenet_v2_x0_5", "shufflenet_v2_x0_5"), ("resnet18", "shufflenet_v2_x0_5"),
    ("shufflenet_v2_x0_5", "mobilenetv2_100"),
])
def test_shufflenet_pairs_train(teacher_arch, student_arch, planner):
    """The authors' code cannot run S pairs (1024-d tokens vs a 512-d attention); here every pair trains."""
    sb = _build("sembridge", student_arch, teacher_arch, planner=planner)
    sb.train()
    opt = torch.optim.Adam([p for p in sb.parameters() if p.requires_grad], lr=1e-3)
    terms = sb.losses(_batch(n=4, px=64))
    assert {"ot1", "ot2"} <= terms.keys() and all(torch.isfinite(v) for v in terms.values())
    before = [p.detach().clone() for p in sb.student.parameters()]
    opt.zero_grad()
    sum(terms.values()).backward()
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, sb.student.parameters()))


# ---- matching inside training ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    manifest, samples, arrays = make_synthetic_dataset_inputs(2, per_class_split=6, ms_px=16, rgb_px=32)
    return write_dataset(tmp_path_factory.mktemp("tiny") / "ds", manifest=manifest, samples=samples, arrays=arrays)


def _setup(tiny, **options):
    ds = load_dataset(tiny)
    rgb, ms = (load_modality(ds, m, torch.device("cpu")) for m in ("rgb", "ms"))
    info = DataInfo(n_classes=len(ds.classes), student_channels=3, teacher_channels=ms.channels,
                    class_names=tuple(ds.classes), epochs=6)
    teacher = create_classifier("resnet18", ms.channels, len(ds.classes), seed=1).eval()
    student = create_classifier("resnet18", 3, len(ds.classes), seed=0)
    m = create_method("sembridge", student=student, teacher=teacher, info=info,
                      **{"matcher_epochs": 1, "diagnostic_samples": 12, **options})
    ctx = {"seed": 0, "epochs": 6, "student_px": 16, "teacher_px": 16, "progress": False,
           "fingerprint": ds.fingerprint, "teacher_bands": ds.manifest["modalities"]["ms"]["bands"]}
    return ds, rgb, ms, m, ctx


def test_prepare_pairs_each_student_with_its_ssm_match(tiny, cache):
    ds, rgb, ms, m, ctx = _setup(tiny)
    m.prepare(rgb, ms, ctx)
    bands = rgb_band_index(ds.manifest["modalities"]["ms"]["bands"])
    matcher, _ = get_matcher(ds.fingerprint, ms, rgb, bands, MatcherConfig(epochs=1), seed=0, px=16)
    ms_emb, rgb_emb = matcher_embeddings(matcher, ms, rgb, bands, px=16)
    expected = initial_match(rgb_emb, rgb.y["train"], ms_emb, ms.y["train"])
    assert torch.equal(m.epoch_partners(0), expected)
    assert torch.equal(ms.y["train"][expected], rgb.y["train"])
    assert m.rematch_at == [1, 2, 3, 4]  # the S2S-EU schedule [30, 60, 95, 135] of 200 epochs, scaled to 6
    assert "partner" in m.state_dict() and "initial_partner" in m.state_dict()


def test_rematch_epoch_picks_min_kl_partners_like_a_per_sample_loop(tiny, cache):
    _, rgb, ms, m, ctx = _setup(tiny, ssm=False)
    m.prepare(rgb, ms, ctx)
    before = m.partner.clone()
    assert m.on_epoch_start(0, {}) is None  # not a re-matching epoch
    stats = m.on_epoch_start(1, {})
    s_logits = all_logits(m.student, rgb, 16)
    t_logits = all_logits(m.teacher, ms, 16)
    T = 3.0
    # The untrained networks' logits are small (|z| < 0.2), so the KLs are 1e-6 to 2e-4 and some
    # students' two cheapest partners are 6e-7 apart: at float32's rounding of the costs (whose
    # terms are ~log K). So: the KLs in float64 of the same logits; the chosen partner must be the
    # cheapest up to the float32 bound on both costs (kl_cost_bound), and exactly the cheapest
    # wherever that bound decides it (13 of the 18 students here; a random or costliest choice fails).
    bound = kl_cost_bound(s_logits.numpy(), t_logits.numpy(), T)
    decided = 0
    for i in range(s_logits.shape[0]):
        same = torch.nonzero(ms.y["train"] == rgb.y["train"][i]).flatten()
        log_q = F.log_softmax(s_logits[i].double() / T, 0)
        kls = np.array([float((F.softmax(t_logits[j].double() / T, 0)
                               * (F.log_softmax(t_logits[j].double() / T, 0) - log_q)).sum()) for j in same.tolist()])
        slack = bound[i, same.numpy()]
        best, chosen = int(np.argmin(kls)), int(torch.nonzero(same == m.partner[i]).flatten()[0])
        assert kls[chosen] - kls[best] <= slack[chosen] + slack[best], i
        others = np.arange(len(same)) != best
        if (kls[others] - kls[best] > slack[others] + slack[best]).all():
            decided += 1
            assert chosen == best, i
    assert decided >= s_logits.shape[0] // 3  # the check is not vacuous
    assert stats["rematch_changed"] == pytest.approx(float((before != m.partner).float().mean()))
    assert stats["rematch_s"] >= 0


def test_no_dynm_never_rematches(tiny, cache):
    _, rgb, ms, m, ctx = _setup(tiny, ssm=False, dynm=False)
    m.prepare(rgb, ms, ctx)
    assert m.rematch_at == [] and m.on_epoch_start(1, {}) is None


def test_fit_trains_on_sembridge_partners_and_logs_rematching(tiny, cache, monkeypatch):
    _, rgb, ms, m, ctx = _setup(tiny)
    seen = []
    original = m.losses
    monkeypatch.setattr(m, "losses", lambda b: seen.append((b.epoch, b.index, b.teacher_index)) or original(b))
    partners_at = {}
    original_partners = m.epoch_partners
    monkeypatch.setattr(m, "epoch_partners", lambda e: partners_at.setdefault(e, original_partners(e).clone()))
    profile = get_profile("smoke", teacher_px=16, student_px=16, batch_size=8, epochs=3)
    result = fit(m, rgb, ms, profile, seed=0, student_px=16, teacher_px=16, epochs=3, progress=False,
                 context={k: v for k, v in ctx.items() if k in ("fingerprint", "teacher_bands")})
    for epoch, idx, tidx in seen:
        assert torch.equal(tidx, partners_at[epoch][idx])
    assert "rematch_changed" in result.history[1] and "rematch_changed" in result.history[2]
    assert "rematch_changed" not in result.history[0]
    diag = m.diagnostics()["sembridge"]
    assert set(diag["transport_end"]["probability_T"]) == {"random", "ssm", "dynm"}
    assert set(diag["transport_start"]["matcher"]) == {"random", "ssm"}


def test_interrupted_run_resumes_with_the_same_partners(tiny, cache, tmp_path):
    """Partners live in the checkpoint: a run stopped between re-matchings resumes exactly."""
    profile = get_profile("smoke", teacher_px=16, student_px=16, batch_size=8, epochs=6)

    def run(ckpt=None, resume=False, stop_at=None):
        _, rgb, ms, m, ctx = _setup(tiny, diagnostic_samples=0)
        if stop_at is not None:
            original = m.on_epoch_start

            def stop(epoch, c):
                if epoch == stop_at:
                    raise KeyboardInterrupt
                return original(epoch, c)

            m.on_epoch_start = stop
        res = fit(m, rgb, ms, profile, seed=0, student_px=16, teacher_px=16, epochs=6, checkpoint=ckpt,
                  resume=resume, progress=False,
                  context={k: v for k, v in ctx.items() if k in ("fingerprint", "teacher_bands")})
        return res, m

    full, a = run()
    ckpt = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        run(ckpt, stop_at=3)
    resumed, b = run(ckpt, resume=True)

    def trace(res):
        return [(h["val_oa"], h.get("rematch_changed")) for h in res.history]

    assert trace(resumed) == trace(full)
    assert torch.equal(a.partner, b.partner) and torch.equal(a.initial_partner, b.initial_partner)
    for (k, x), y in zip(a.student.state_dict().items(), b.student.state_dict().values()):
        assert torch.equal(x, y), k


def test_rgb_band_index():
    assert rgb_band_index(["B02", "B03", "B04", "B08"]) == (2, 1, 0)
    assert rgb_band_index(["blue", "green", "red", "nir"]) == (2, 1, 0)
    with pytest.raises(MethodError, match="-o ssm=false"):
        rgb_band_index(["B08", "B11", "B12"])


def test_pairing_costs_rank_nearer_partners_cheaper():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(60, 4, generator=g)
    teacher = torch.cat([student + 0.05 * torch.randn(60, 4, generator=g), torch.randn(60, 4, generator=g) * 3])
    near, far = torch.arange(60), torch.arange(60, 120)
    costs = pairing_costs(teacher, student, {"near": near, "far": far}, samples=40, seed=0)
    assert costs["near"]["emd"] < costs["far"]["emd"]
    for c in costs.values():
        assert c["pair"] >= c["emd"] - 1e-9  # a matching is one coupling; W2² is the cheapest
        assert c["sinkhorn"] >= c["emd"] - 1e-6
    # the "pair" cost is the mean squared distance of the matched rows, worked out directly
    idx = np.sort(np.random.default_rng([0, 5]).choice(60, size=40, replace=False))
    direct = float(((teacher[near[idx]].double() - student[idx].double()) ** 2).sum(1).mean())  # as pair: float64
    assert costs["near"]["pair"] == pytest.approx(direct, rel=1e-12)


def test_pairing_costs_use_only_students_with_a_partner_in_every_pairing():
    """A partial build's true pairs (−1: no partner): every pairing is costed on the co-located students."""
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(30, 3, generator=g), torch.randn(30, 3, generator=g)
    true = torch.where(torch.arange(30) % 3 == 0, torch.arange(30), torch.tensor(-1))  # students 0, 3, ..., 27
    other = torch.arange(30).flip(0)
    costs = pairing_costs(teacher, student, {"true": true, "other": other}, samples=100, seed=0)
    rows = torch.arange(0, 30, 3)
    t64, s64 = teacher.double(), student.double()  # as pairing_costs: float64
    assert costs["true"]["pair"] == pytest.approx(float((t64[rows] - s64[rows]).square().sum(1).mean()), rel=1e-12)
    assert costs["other"]["pair"] == pytest.approx(float((t64[other[rows]] - s64[rows]).square().sum(1).mean()),
                                                   rel=1e-12)
    assert pairing_costs(teacher, student, {"none": torch.full((30,), -1)}, samples=10, seed=0) == {}


def test_matcher_hits_on_hand_ranked_embeddings():
    """Class 0 has MS chips 0–3, class 1 MS chips 4–5. Student 0 (class 0) is nearest MS 2 then 0 (its
    true partner): rank 2; student 1 (class 1) ranks its partner 5 first; student 2 has no partner."""
    ms = torch.tensor([[1.0, 0.2], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    rgb = torch.tensor([[1.0, 0.05], [1.0, 0.0], [0.0, 1.0]])
    y_s, y_t = torch.tensor([0, 1, 0]), torch.tensor([0, 0, 0, 0, 1, 1])
    hits = matcher_hits(ms, rgb, y_s, y_t, torch.tensor([0, 5, -1]), ks=(1, 2))
    assert hits["students_with_true_partner"] == 2
    assert hits["hit@1"] == 0.5 and hits["hit@2"] == 1.0
    assert hits["chance@1"] == pytest.approx((1 / 4 + 1 / 2) / 2)
    assert hits["chance@2"] == pytest.approx((2 / 4 + 1.0) / 2)
    assert hits["median_rank"] == 1.5 and hits["median_candidates"] == 3.0
    assert matcher_hits(ms, rgb, y_s, y_t, torch.full((3,), -1)) == {"students_with_true_partner": 0}


# ---- runner and CLI ----------------------------------------------------------------------------------


def test_method_label():
    assert method_label("kd", None) == "kd"
    assert method_label("sembridge", {"ssm": False, "planner": "sinkhorn"}) == "sembridge[planner=sinkhorn,ssm=false]"


def test_cli_sembridge_run_and_ablation_are_separate_rows(tiny, cache, tmp_path):
    out = tmp_path / "res"
    common = ["--arch", "resnet18", "--dataset", tiny, "--profile", "smoke", "--epochs", "2", "--device", "cpu",
              "--out", out, "--quiet", "--option", "matcher_epochs=1", "--option", "diagnostic_samples=10"]
    run = CliRunner().invoke(main, [str(a) for a in ["run", "--method", "sembridge", *common]])
    assert run.exit_code == 0, run.output
    run = CliRunner().invoke(main, [str(a) for a in ["run", "--method", "sembridge", "-o", "ssm=false", "-o", "ot1=false",
                                                     *common]])
    assert run.exit_code == 0, run.output
    results = {r["method"]["label"]: r for r in load_run_results([out])}
    labels = ("sembridge[diagnostic_samples=10,matcher_epochs=1]",
              "sembridge[diagnostic_samples=10,matcher_epochs=1,ot1=false,ssm=false]")
    assert set(results) == set(labels)
    full, ablated = (results[k] for k in labels)
    assert full["protocol"]["pairing"].startswith("sembridge")
    assert full["diagnostics"]["sembridge"]["matching"]["ssm"] is True
    assert ablated["method"]["config"]["ssm"] is False and "ot1" not in ablated["diagnostics"]["history"][0]
    assert "matcher" not in ablated["diagnostics"]["sembridge"]["transport_end"]
    json.dumps(full)  # the diagnostics are plain JSON
    table = CliRunner().invoke(main, ["table", str(out)])
    assert table.exit_code == 0 and all(f"| {label} |" in table.output for label in labels)


def test_cli_sembridge_options_refuse_other_methods(tiny, cache, tmp_path):
    res = CliRunner().invoke(main, ["run", "--method", "kd", "--arch", "resnet18", "--dataset", str(tiny),
                                    "-o", "ssm=false", "--out", str(tmp_path)])
    assert res.exit_code == 1 and "method 'kd' has no option(s) ssm" in res.output
    assert not any(tmp_path.iterdir())


def test_run_on_a_paired_dataset_records_diagnostics_against_the_true_pairs(tmp_path, cache):
    """On a build with co-located pairs (``pair_id``) and latent truth, a SemBridge run records the
    matcher's hit@k against the true pairs, the true pairs' partner quality and their transport costs,
    including the latent space (a space the matching does not optimise)."""
    manifest, samples, arrays = make_synthetic_dataset_inputs(3, per_class_split=6, ms_px=16, rgb_px=32, latent=True)
    samples = samples.copy()
    samples["pair_id"] = ""
    ms = samples[samples["modality"] == "ms"]
    rgb_rows = samples.index[samples["modality"] == "rgb"]
    # every RGB chip's partner: the MS chip of the same class and split at the same position in that group
    for (label, split), group in samples.loc[rgb_rows].groupby(["label", "split"]):
        partners = ms[(ms["label"] == label) & (ms["split"] == split)]["sample_id"].to_list()
        samples.loc[group.index, "pair_id"] = partners[:len(group)]
    ds_path = write_dataset(tmp_path / "paired", manifest={**manifest, "consistency": {"mode": "paired", "overlap": 1.0}},
                            samples=samples, arrays=arrays)
    out = tmp_path / "res"
    run = CliRunner().invoke(main, [str(a) for a in [
        "run", "--method", "sembridge", "--arch", "resnet18", "--dataset", ds_path, "--profile", "smoke",
        "--epochs", "2", "--device", "cpu", "--out", out, "--quiet", "--option", "matcher_epochs=1"]])
    assert run.exit_code == 0, run.output
    (result,) = load_run_results([out])
    diag = result["diagnostics"]["sembridge"]
    students = diag["matching"]["students"]
    hits = diag["matching"]["matcher"]["true_pair_hits"]
    assert hits["students_with_true_partner"] == students
    assert hits["hit@1"] <= hits["hit@5"] <= hits["hit@10"] <= 1.0
    assert 0 < hits["chance@1"] <= hits["chance@5"] <= 1.0
    # the synthetic pairs are not co-located in latent truth, so only the bookkeeping is asserted
    assert diag["true_pairs_quality"]["true"]["n"] == students
    for moment in ("transport_start", "transport_end"):
        for space in ("probability_T", "matcher", "latent"):
            assert {"random", "ssm", "true"} <= diag[moment][space].keys()
    # the true pairs' latent cost: the mean squared latent distance of the pairs, from the dataset itself
    # (every student is in the diagnostic's subsample: 500 > students); float64 sums of ~50 terms
    ds = load_dataset(ds_path)
    rgb, ms = (load_modality(ds, m, torch.device("cpu")) for m in ("rgb", "ms"))
    v_s, v_t = latent_vectors(rgb, ms)
    true = true_partners(ds, rgb, ms).numpy()
    assert (true >= 0).all()
    expected = float(np.square(v_t[true] - v_s).sum(1).mean())
    assert diag["transport_end"]["latent"]["true"]["pair"] == pytest.approx(expected, rel=1e-9)
    assert diag["transport_end"]["latent"]["true"]["pair"] >= diag["transport_end"]["latent"]["true"]["emd"] - 1e-9
