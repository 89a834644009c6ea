"""Pairing controls (permuted, oracle, class-mean) and partner-quality diagnostics from latent truth."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import Tensor

from ackd_bench.benchmark.cli import main
from ackd_bench.benchmark.data import (ModalityData, PairingError, draw_flips, latent_vectors, load_modality,
                                       oracle_partners,
                                       pair_same_class, partner_quality)
from ackd_bench.benchmark.dataset import load_dataset, write_dataset
from ackd_bench.benchmark.dataset.synthetic import make_synthetic_dataset_inputs
from ackd_bench.benchmark.gallery import ClassMeans, build_gallery
from ackd_bench.benchmark.method import Batch, DataInfo, Method
from ackd_bench.benchmark.models import ModelOutput, create_classifier
from ackd_bench.benchmark.protocol import get_profile
from ackd_bench.benchmark.results import validate_run_result
from ackd_bench.benchmark.runner import ORACLE_POLICY, PAIRING_POLICY, method_label, run_experiment
from ackd_bench.benchmark.sweep import GridError, expand_grid, parse_grid
from ackd_bench.benchmark.train import fit

ARCH = "resnet18"
SQRT2 = math.sqrt(2.0)
# float64 throughout the latent computations: sums of a handful of terms, rounding far below this.
EXACT = 1e-12


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pairing")
    out = {}
    for name, latent in (("latent", True), ("plain", False)):
        manifest, samples, arrays = make_synthetic_dataset_inputs(0, per_class_split=6, ms_px=16, rgb_px=16,
                                                                  latent=latent)
        out[name] = write_dataset(root / name, manifest=manifest, samples=samples, arrays=arrays)
    return out


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    """One teacher cache for the module: its runs share the teacher (the same one, trained in any order)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACKD_BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _profile(**kw):
    return get_profile("smoke", teacher_px=16, student_px=16, batch_size=8, teacher_epochs=1, **kw)


def _latent_data(modality: str, labels, composition, subtype, factors=None) -> ModalityData:
    n = len(labels)
    factors = np.zeros((n, 0)) if factors is None else np.asarray(factors, dtype=np.float64)
    return ModalityData(x={"train": torch.zeros(n, 1, 1, 1)}, y={"train": torch.tensor(labels)},
                        mean=torch.zeros(1), std=torch.ones(1), offset=0.0, modality=modality,
                        latent={"composition": np.asarray(composition, dtype=np.float64),
                                "subtype": np.asarray(subtype, dtype=str), "factors": factors})


# --- oracle partners --------------------------------------------------------------------------------


def _reference_oracle(s: ModalityData, t: ModalityData) -> list[int]:
    """The documented oracle, restated with loops: same class; same known sub-type first, then the
    smallest sqrt(composition L2² + standardised-factor L2²); ties to the first teacher row."""
    pooled = np.concatenate([s.latent["factors"], t.latent["factors"]])
    known = pooled[~np.isnan(pooled).any(axis=1)]
    mean, std = known.mean(axis=0), known.std(axis=0)
    std[std == 0] = 1.0
    y_s, y_t = s.y["train"].tolist(), t.y["train"].tolist()
    out = []
    for i in range(len(y_s)):
        def key(j: int) -> tuple:
            d2 = float(np.sum((s.latent["composition"][i] - t.latent["composition"][j]) ** 2))
            fs, ft = s.latent["factors"][i], t.latent["factors"][j]
            if not (np.isnan(fs).any() or np.isnan(ft).any()):
                d2 += float(np.sum(((fs - mean) / std - (ft - mean) / std) ** 2))
            sub = s.latent["subtype"][i]
            return (not (sub != "" and sub == t.latent["subtype"][j]), math.sqrt(d2), j)

        out.append(min((j for j in range(len(y_t)) if y_t[j] == y_s[i]), key=key))
    return out


def test_oracle_picks_the_same_subtype_first_then_the_nearest():
    # Class 0 student "c0/a" at [1, 0]: t1 is nearer (distance 0) but of sub-type b; t0 is the oracle.
    # The unknown-sub-type student [0.9, 0.1] takes the nearest, t1; the class-1 student never a class-0 chip.
    student = _latent_data("rgb", [0, 0, 1], [[1, 0], [0.9, 0.1], [0.99, 0.01]], ["c0/a", "", ""])
    teacher = _latent_data("ms", [0, 0, 1, 1], [[0.6, 0.4], [1, 0], [0, 1], [0.5, 0.5]],
                           ["c0/a", "c0/b", "c1/b", "c1/a"])
    assert oracle_partners(student, teacher).tolist() == [0, 1, 3]


def test_oracle_partners_are_the_nearest_in_latent_truth_on_a_synthetic_dataset(datasets):
    ds = load_dataset(datasets["latent"])
    rgb, ms = (load_modality(ds, m, torch.device("cpu")) for m in ("rgb", "ms"))
    # Some unknown factors and sub-types, as a partly labelled world would have.
    rgb.latent["factors"][1] = np.nan
    ms.latent["subtype"][2] = ""
    oracle = oracle_partners(rgb, ms)
    assert oracle.tolist() == _reference_oracle(rgb, ms)
    assert torch.equal(ms.y["train"][oracle], rgb.y["train"])


def test_latent_vectors_give_the_oracles_latent_distance():
    """‖v_s − v_t‖ is the oracle's d(s, t) = sqrt(‖c_s − c_t‖² + ‖z_s − z_t‖²), z standardised over both
    modalities' chips; worked out here for two factors with hand-computed means and deviations."""
    factors_s, factors_t = [[1.0, 10.0], [3.0, 10.0]], [[5.0, 20.0], [7.0, 20.0]]
    student = _latent_data("rgb", [0, 0], [[1, 0], [0.5, 0.5]], ["a", "b"], factors_s)
    teacher = _latent_data("ms", [0, 0], [[0, 1], [1, 0]], ["a", "b"], factors_t)
    v_s, v_t = latent_vectors(student, teacher)
    # factor 1: values 1, 3, 5, 7 → mean 4, std √5; factor 2: 10, 10, 20, 20 → mean 15, std 5
    z = lambda f: [(f[0] - 4) / math.sqrt(5), (f[1] - 15) / 5]  # noqa: E731
    np.testing.assert_allclose(v_s, [[1, 0, *z(factors_s[0])], [0.5, 0.5, *z(factors_s[1])]], rtol=0, atol=EXACT)
    np.testing.assert_allclose(v_t, [[0, 1, *z(factors_t[0])], [1, 0, *z(factors_t[1])]], rtol=0, atol=EXACT)
    # the oracle's distance from student 0 to teacher 1: composition 0, factors (1 → 7, 10 → 20)
    d = math.sqrt((6 / math.sqrt(5)) ** 2 + (10 / 5) ** 2)
    assert np.linalg.norm(v_s[0] - v_t[1]) == pytest.approx(d, abs=EXACT)


def test_oracle_needs_latent_truth_on_both_sides():
    student = _latent_data("rgb", [0], [[1.0]], ["x"])
    teacher = _latent_data("ms", [0], [[1.0]], ["x"])
    teacher.latent = None
    with pytest.raises(PairingError, match="ms training chips carry no latent truth"):
        oracle_partners(student, teacher)


# --- partner quality ---------------------------------------------------------------------------------


def test_partner_quality_on_a_hand_worked_case():
    student = _latent_data("rgb", [0, 0, 1], [[1, 0], [0.9, 0.1], [0, 1]], ["c0/a", "", "c1/a"])
    teacher = _latent_data("ms", [0, 0, 1, 1], [[0.6, 0.4], [1, 0], [0, 1], [0.5, 0.5]],
                           ["c0/a", "c0/b", "c1/b", "c1/a"])
    q = partner_quality(student, teacher, {"used": torch.tensor([1, 0, 2]), "partial": torch.tensor([1, -1, 2])})
    assert (q["students"], q["students_with_subtype"]) == (3, 2)
    # used: distances 0, ‖(0.3, −0.3)‖, 0; both students with a known sub-type got the other sub-type.
    assert q["used"]["composition_distance"] == pytest.approx(0.3 * SQRT2 / 3, abs=EXACT)
    assert q["used"]["subtype_agreement"] == 0.0 and q["used"]["n"] == 3
    # random same-class: per student the mean over its class's teachers: 0.2√2, 0.2√2, 0.25√2; agreement ½, ½.
    assert q["random_same_class"]["composition_distance"] == pytest.approx(0.65 * SQRT2 / 3, abs=EXACT)
    assert q["random_same_class"]["subtype_agreement"] == pytest.approx(0.5, abs=EXACT)
    # oracle: t0 (same sub-type), t1 (nearest; sub-type unknown), t3 (same sub-type).
    assert q["oracle"]["composition_distance"] == pytest.approx((0.4 + 0.1 + 0.5) * SQRT2 / 3, abs=EXACT)
    assert q["oracle"]["subtype_agreement"] == 1.0
    # A student without a partner (-1) is left out.
    assert q["partial"] == {"composition_distance": 0.0, "subtype_agreement": 0.0, "n": 2}


def test_partner_quality_without_known_subtypes_reports_none():
    student = _latent_data("rgb", [0], [[1.0, 0.0]], [""])
    teacher = _latent_data("ms", [0], [[0.5, 0.5]], [""])
    q = partner_quality(student, teacher, {"used": torch.tensor([0])})
    assert q["used"]["subtype_agreement"] is None
    assert q["used"]["composition_distance"] == pytest.approx(0.5 * SQRT2, abs=EXACT)


# --- class-mean --------------------------------------------------------------------------------------


def test_class_mean_rows_are_the_class_means_of_the_teacher_outputs():
    g = torch.Generator().manual_seed(0)
    n, k, temperature = 11, 3, 4.0
    labels = torch.tensor([0, 1, 2, 0, 0, 1, 2, 2, 0, 1, 0])
    out = ModelOutput(logits=torch.randn(n, k, generator=g) * 5, features=torch.randn(n, 6, generator=g),
                      feature_map=torch.randn(n, 2, 3, 3, generator=g))
    means = ClassMeans(k, temperature)
    for rows in (torch.arange(0, 4), torch.arange(4, n)):  # in two batches, as the gallery is built
        means.add(ModelOutput(out.logits[rows], out.features[rows], out.feature_map[rows]), labels[rows])
    gallery = means.gallery()
    assert gallery.logits.shape == (k, k) and gallery.logits.dtype == torch.float32
    z = out.logits.double().numpy()
    soft = np.exp(z / temperature) / np.exp(z / temperature).sum(1, keepdims=True)
    for c in range(k):
        mine = (labels == c).numpy()
        # Stored in float32: relative error ≤ 2⁻²⁴ per value; 1e-6 bounds it at these magnitudes (|z| ≲ 20).
        np.testing.assert_allclose(gallery.features[c].double().numpy(), out.features.double().numpy()[mine].mean(0),
                                   rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(gallery.feature_map[c].double().numpy(),
                                   out.feature_map.double().numpy()[mine].mean(0), rtol=1e-6, atol=1e-6)
        # What KD reads at T: softmax(row / T) is the mean class distribution, not the softmax of the mean logit.
        row = gallery.logits[c].double().numpy() / temperature
        np.testing.assert_allclose(np.exp(row) / np.exp(row).sum(), soft[mine].mean(0), rtol=1e-6, atol=1e-7)
        assert gallery.logits[c].double().mean().item() == pytest.approx(z[mine].mean(), abs=1e-5)


class _Recorder(Method):
    description = "test"
    paper = "test"

    def __init__(self, *args):
        super().__init__(*args)
        self.seen: list[tuple[Tensor, Tensor, Tensor]] = []

    def losses(self, batch: Batch):
        self.seen.append((batch.index.clone(), batch.teacher_index.clone(), self.teacher_out(batch).logits.clone()))
        return {"ce": F.cross_entropy(self.student(batch.student_x).logits, batch.labels)}


def _fit_recorder(ds, pairing: str = "permuted", **kw):
    rgb, ms = (load_modality(ds, m, torch.device("cpu")) for m in ("rgb", "ms"))
    info = DataInfo(n_classes=3, student_channels=3, teacher_channels=10, class_names=tuple(ds.classes), epochs=2)
    method = _Recorder(create_classifier(ARCH, 3, 3, seed=0), create_classifier(ARCH, 10, 3, seed=1), info, None)
    extra = {} if pairing == "permuted" else {"pairing": pairing}
    fitted = fit(method, rgb, ms, _profile(), seed=0, student_px=16, teacher_px=16, epochs=2, progress=False,
                 **extra, **kw)
    return method, fitted, rgb, ms


def test_class_mean_fit_reads_the_class_mean_row_of_each_students_class(datasets):
    ds = load_dataset(datasets["plain"])
    method, fitted, rgb, ms = _fit_recorder(ds, "class-mean")
    assert fitted.teacher_outputs == "class-mean" and fitted.partners is None
    full = build_gallery(method.teacher, ms, 16)
    z = full.logits.double()
    for idx, tidx, logits in method.seen:
        assert torch.equal(tidx, rgb.y["train"][idx])  # row k of the K-row gallery for a class-k student
        for c in tidx.unique().tolist():
            mean_p = torch.softmax(z[ms.y["train"] == c], dim=1).mean(0)  # the Recorder has no temperature: T = 1
            # float32 teacher outputs computed in other batches: agreement to 1e-5 in probability.
            got = torch.softmax(logits[tidx == c].double(), 1)
            assert torch.allclose(got, mean_p.expand_as(got), atol=1e-5)
    # Every pairing draws the same numbers: the students are visited in the same order as under permuted.
    permuted, *_ = _fit_recorder(ds)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(method.seen, permuted.seen))


def test_permuted_is_the_documented_random_same_class_draw(datasets):
    """The default pairing replays exactly: per epoch same-class partners, a shuffle, flips, from one generator."""
    ds = load_dataset(datasets["plain"])
    method, fitted, rgb, ms = _fit_recorder(ds)
    gen = torch.Generator().manual_seed(0)
    expected = []
    n = rgb.y["train"].shape[0]
    for _ in range(2):
        partners = pair_same_class(rgb.y["train"], ms.y["train"], gen)
        perm = torch.randperm(n, generator=gen)
        draw_flips(n, gen, torch.device("cpu"))
        expected += [(idx, partners[idx]) for idx in perm.split(8) if idx.numel() > 1]
    assert len(method.seen) == len(expected)
    for (idx, tidx, _), (want_idx, want_t) in zip(method.seen, expected):
        assert torch.equal(idx, want_idx) and torch.equal(tidx, want_t)
    assert torch.equal(fitted.partners, partners)  # the last epoch's partners are reported


# --- the runner and the command line -----------------------------------------------------------------


def test_labels_carry_a_non_default_pairing():
    assert method_label("kd", None) == method_label("kd", None, "permuted") == "kd"
    assert method_label("kd", None, "oracle") == "kd[pairing=oracle]"
    assert method_label("dkd", {"beta": 4}, "class-mean") == "dkd[beta=4,pairing=class-mean]"


def test_oracle_run_uses_the_oracle_partners_and_reports_their_quality(datasets, tmp_path):
    [result] = run_experiment(datasets["latent"], method="kd", arch=ARCH, teacher_arch=ARCH, seeds=[0],
                              profile=_profile(epochs=1), device="cpu", out=tmp_path, progress=False,
                              pairing="oracle")
    validate_run_result(result)
    assert result["method"]["label"] == "kd[pairing=oracle]" and "kd[pairing=oracle]" in result["run_id"]
    assert result["protocol"]["pairing"] == ORACLE_POLICY and result["protocol"]["pairing_control"] == "oracle"
    q = result["diagnostics"]["partner_quality"]
    assert q["used"] == q["oracle"]  # the partners used are the oracle's
    assert set(q) >= {"used", "oracle", "random_same_class", "definition"}
    ds = load_dataset(datasets["latent"])
    rgb, ms = (load_modality(ds, m, torch.device("cpu"), max_train_per_class=48, seed=0) for m in ("rgb", "ms"))
    # Agreement is 1 exactly for students whose sub-type some same-class teacher chip has.
    reachable = [any(t_sub == s_sub and t_y == s_y for t_sub, t_y in zip(ms.latent["subtype"], ms.y["train"].tolist()))
                 for s_sub, s_y in zip(rgb.latent["subtype"], rgb.y["train"].tolist())]
    assert q["oracle"]["subtype_agreement"] == pytest.approx(np.mean(reachable), abs=EXACT)
    assert q["oracle"]["subtype_agreement"] >= q["random_same_class"]["subtype_agreement"]


def test_permuted_run_is_unchanged_and_reports_partner_quality(datasets, tmp_path):
    [plain] = run_experiment(datasets["plain"], method="kd", arch=ARCH, teacher_arch=ARCH, seeds=[0],
                             profile=_profile(epochs=1), device="cpu", out=tmp_path / "plain", progress=False)
    assert plain["method"]["label"] == "kd" and plain["protocol"]["pairing"] == PAIRING_POLICY
    assert "pairing_control" not in plain["protocol"] and "partner_quality" not in plain["diagnostics"]
    [latent] = run_experiment(datasets["latent"], method="kd", arch=ARCH, teacher_arch=ARCH, seeds=[0],
                              profile=_profile(epochs=1), device="cpu", out=tmp_path / "latent", progress=False)
    q = latent["diagnostics"]["partner_quality"]
    assert latent["method"]["label"] == "kd" and q["used"]["n"] == q["students"] > 0
    # Random partners of the last epoch: their distance is an estimate of the exact expectation.
    assert 0 < q["used"]["composition_distance"] and 0 < q["random_same_class"]["composition_distance"]


def test_student_only_records_no_partner_quality(datasets, tmp_path):
    [result] = run_experiment(datasets["latent"], method="student-only", arch=ARCH, teacher_arch=ARCH, seeds=[0],
                              profile=_profile(epochs=1), device="cpu", out=tmp_path, progress=False)
    assert "partner_quality" not in result["diagnostics"] and result["protocol"]["pairing"] == "none"


def test_oracle_without_latent_truth_is_refused_before_training(datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("ACKD_BENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(PairingError, match=r"dataset synthetic-tiny at .*plain has no latent truth"):
        run_experiment(datasets["plain"], method="kd", arch=ARCH, teacher_arch=ARCH, seeds=[0],
                       profile=_profile(epochs=1), device="cpu", out=tmp_path / "out", progress=False,
                       pairing="oracle")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()  # no teacher was trained


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_refuses_oracle_without_latent_truth_with_one_line(datasets, tmp_path):
    res = _cli("run", "--method", "kd", "--arch", ARCH, "--dataset", datasets["plain"], "--pairing", "oracle",
               "--profile", "smoke", "--device", "cpu", "--out", tmp_path / "out", "--quiet")
    assert res.exit_code == 1
    [line] = res.output.strip().splitlines()
    assert line.startswith("Error: dataset synthetic-tiny") and "latent truth" in line
    assert not (tmp_path / "out").exists()


def test_cli_checks_pairing_before_the_dataset_loads(tmp_path):
    missing = tmp_path / "nowhere"
    res = _cli("run", "--method", "kd", "--arch", ARCH, "--dataset", missing, "--pairing", "nearest")
    assert res.exit_code == 2 and "permuted" in res.output
    for method, why in (("sembridge", "picks its own teacher partners"), ("student-only", "uses no teacher")):
        res = _cli("run", "--method", method, "--arch", ARCH, "--dataset", missing, "--pairing", "class-mean")
        assert res.exit_code == 1 and why in res.output and "nowhere" not in res.output


def test_sweep_grid_pairing(datasets):
    base = {"pairs": [{"teacher": ARCH, "student": ARCH}], "methods": ["student-only", "kd", "sembridge"],
            "seeds": [0], "profile": "smoke"}
    grid = parse_grid({**base, "pairing": "oracle"}, datasets=[datasets["latent"]])
    assert [m.label for m in grid.methods] == ["student-only", "kd[pairing=oracle]", "sembridge"]
    override = parse_grid({**base, "pairing": "oracle"}, datasets=[datasets["latent"]], pairing="class-mean")
    assert [m.label for m in override.methods][1] == "kd[pairing=class-mean]"
    own = parse_grid({**base, "methods": ["kd", {"method": "kd", "pairing": "oracle"}]}, datasets=[Path("x")])
    assert [m.label for m in own.methods] == ["kd", "kd[pairing=oracle]"]
    assert any("kd[pairing=oracle]" in r.filename for r in expand_grid(grid))
    with pytest.raises(GridError, match="unknown pairing 'nearest'"):
        parse_grid({**base, "pairing": "nearest"}, datasets=[Path("x")])
    with pytest.raises(GridError, match="picks its own teacher partners"):
        parse_grid({**base, "methods": [{"method": "sembridge", "pairing": "oracle"}]}, datasets=[Path("x")])
    with pytest.raises(PairingError, match="no latent truth"):
        expand_grid(parse_grid({**base, "pairing": "oracle"}, datasets=[datasets["plain"]]))


def test_sembridge_reports_the_quality_of_its_own_partners(datasets, tmp_path):
    [result] = run_experiment(datasets["latent"], method="sembridge", arch=ARCH, teacher_arch=ARCH, seeds=[0],
                              profile=_profile(epochs=2), device="cpu", out=tmp_path, progress=False,
                              method_options={"ssm": False, "diagnostic_samples": 0, "ot1": False, "ot2": False})
    own = result["diagnostics"]["sembridge"]["partner_quality"]
    harness = result["diagnostics"]["partner_quality"]
    assert set(own) >= {"initial", "oracle", "random_same_class"}
    assert own["oracle"] == harness["oracle"] and own["random_same_class"] == harness["random_same_class"]
    # The last epoch's partners are SemBridge's final matching.
    final = own.get("dynm", own["initial"])
    assert harness["used"] == final
