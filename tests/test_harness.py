"""The harness: metrics, device data, pairing, the training loop, teachers, devices, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from ackd_bench.benchmark.data import load_modality, pair_same_class, true_partners
from ackd_bench.benchmark.dataset import load_dataset, write_dataset
from ackd_bench.benchmark.dataset.synthetic import make_synthetic_dataset_inputs
from ackd_bench.benchmark.errors import DatasetSchemaError
from ackd_bench.benchmark.method import Batch, DataInfo, Method
from ackd_bench.benchmark.models import create_classifier
from ackd_bench.benchmark.protocol import classification_metrics, get_profile
from ackd_bench.benchmark.runner import DeviceError, resolve_device
from ackd_bench.benchmark.teacher import get_teacher
from ackd_bench.benchmark.train import Supervised, TrainingError, fit

ARCH = "resnet18"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    manifest, samples, arrays = make_synthetic_dataset_inputs(0, per_class_split=6, ms_px=16, rgb_px=32)
    return write_dataset(tmp_path_factory.mktemp("tiny") / "ds", manifest=manifest, samples=samples, arrays=arrays)


def _profile(**kw):
    return get_profile("smoke", teacher_px=16, student_px=16, batch_size=8, **kw)


def test_metrics_hand_worked():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    m = classification_metrics(y_true, y_pred, 3)
    # per class: recall 2/3, 1/2, 1; precision 1, 1/2, 1/2
    assert m["oa"] == pytest.approx(4 / 6)
    assert m["per_class_accuracy"] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert m["macro_recall"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["macro_precision"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)
    f1 = [2 * p * r / (p + r) for p, r in ((1, 2 / 3), (0.5, 0.5), (0.5, 1.0))]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # A class neither present nor predicted is left out of the macro averages.
    m4 = classification_metrics(y_true, y_pred, 4)
    assert m4["macro_f1"] == pytest.approx(m["macro_f1"]) and len(m4["per_class_accuracy"]) == 4


def test_pairing_is_same_class_uniform_and_reproducible():
    s = torch.tensor([0, 1, 2, 1, 0] * 4000)
    t = torch.tensor([2, 0, 1, 1, 0, 2, 2])
    idx = pair_same_class(s, t, torch.Generator().manual_seed(0))
    assert torch.equal(t[idx], s)
    again = pair_same_class(s, t, torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)
    # Class 2 has three teacher samples (0, 5, 6): each is drawn about a third of the time. Each share
    # of n = 4000 draws has standard error √(p(1 − p)/n) = 0.0075: a tolerance of 5 of them (0.037)
    # is missed by a uniform draw with probability < 2e-6, and never by a draw that favours one
    # sample 1.5 : 1 : 1 (shares 0.43 / 0.29 / 0.29).
    n = int((s == 2).sum())
    counts = torch.bincount(idx[s == 2], minlength=7)[[0, 5, 6]].double() / n
    tolerance = 5 * (1 / 3 * 2 / 3 / n) ** 0.5
    assert torch.allclose(counts, torch.full((3,), 1 / 3, dtype=torch.float64), rtol=0, atol=tolerance)


def test_device_data_exact_and_normalised(tiny):
    ds = load_dataset(tiny)
    ms = load_modality(ds, "ms", torch.device("cpu"))
    chips, labels, _ = ds.subset("ms", "train")
    # uint16 survive the int16 storage exactly.
    assert torch.equal((ms.x["train"].long() + 32768), torch.from_numpy(chips.astype(np.int64)))
    x = ms.batch("train", torch.arange(len(labels)), px=16)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(ms.channels), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(ms.channels), atol=1e-2)
    aug = ms.batch("train", torch.arange(len(labels)), px=16, augment=True, generator=torch.Generator().manual_seed(1))
    # Flips and rotations permute pixels within each chip.
    assert torch.allclose(aug.flatten(2).sort(-1).values, x.flatten(2).sort(-1).values)


def test_fit_is_deterministic_and_resumes_identically(tiny, tmp_path):
    ds = load_dataset(tiny)
    dev = torch.device("cpu")
    rgb = load_modality(ds, "rgb", dev)
    info = DataInfo(n_classes=3, student_channels=3, teacher_channels=10, class_names=tuple(ds.classes), epochs=4)
    prof = _profile()

    def run(epochs, ckpt=None, resume=False):
        model = create_classifier(ARCH, 3, 3, seed=0)
        res = fit(Supervised(model, info), rgb, None, prof, seed=0, student_px=16, teacher_px=16,
                  epochs=epochs, checkpoint=ckpt, resume=resume, progress=False)
        return res, model

    full, model_a = run(4)
    again, model_b = run(4)
    assert full.history == again.history
    ckpt = tmp_path / "run.pt"
    run(2, ckpt)
    resumed, model_c = run(4, ckpt, resume=True)
    assert [h["val_oa"] for h in resumed.history] == [h["val_oa"] for h in full.history]
    for (k, a), c in zip(model_a.state_dict().items(), model_c.state_dict().values()):
        assert torch.equal(a, c), k


class _Exploding(Method):
    description = "test"
    paper = "test"
    uses_teacher = False

    def losses(self, batch: Batch):
        ce = F.cross_entropy(self.student(batch.student_x).logits, batch.labels)
        return {"ce": ce, "boom": ce * float("nan") if batch.epoch == 1 else ce * 0}


def test_nan_loss_names_epoch_step_and_term(tiny):
    ds = load_dataset(tiny)
    rgb = load_modality(ds, "rgb", torch.device("cpu"))
    info = DataInfo(n_classes=3, student_channels=3, teacher_channels=10, class_names=tuple(ds.classes), epochs=3)
    method = _Exploding(create_classifier(ARCH, 3, 3, seed=0), None, info, None)
    with pytest.raises(TrainingError, match=r"epoch 1, step 0: \{'boom': nan\}"):
        fit(method, rgb, None, _profile(), seed=0, student_px=16, teacher_px=16, epochs=3, progress=False)


def test_teacher_cached_and_checked_against_fingerprint(tiny, cache, tmp_path):
    ds = load_dataset(tiny)
    ms = load_modality(ds, "ms", torch.device("cpu"))
    prof = _profile()
    teacher, meta = get_teacher(ds, ms, ARCH, 0, prof, progress=False)
    weights = next(cache.rglob("*.safetensors"))
    stamp = weights.stat().st_mtime_ns
    again, meta2 = get_teacher(ds, ms, ARCH, 0, prof, progress=False)
    assert meta2 == meta and weights.stat().st_mtime_ns == stamp  # reused, not retrained
    for a, b in zip(teacher.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    # The same checkpoint offered for another dataset is refused.
    sidecar = weights.with_suffix(".json")
    other = json.loads(sidecar.read_text())
    other["dataset_fingerprint"] = "0" * 64
    fake = tmp_path / "other.safetensors"
    fake.write_bytes(weights.read_bytes())
    fake.with_suffix(".json").write_text(json.dumps(other))
    with pytest.raises(TrainingError, match="fingerprint"):
        get_teacher(ds, ms, ARCH, 0, prof, checkpoint=fake, progress=False)
    # A bf16 teacher is cached apart (32 px: the CPU's bf16 convolution backward misbehaves on 1x1 maps).
    bf16 = get_profile("smoke", teacher_px=32, student_px=16, batch_size=8, precision="bf16")
    _, meta_half = get_teacher(ds, ms, ARCH, 0, bf16, progress=False)
    assert meta_half["precision"] == "bf16" and meta["precision"] == "fp32"
    stems = sorted(p.stem for p in cache.rglob("*.safetensors"))
    assert stems == [f"{ARCH}__seed0__smoke", f"{ARCH}__seed0__smoke__bf16"]


def test_cuda_requested_without_cuda_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")


def _paired_inputs():
    manifest, samples, arrays = make_synthetic_dataset_inputs(0, per_class_split=4, ms_px=16, rgb_px=32)
    ms = samples[samples["modality"] == "ms"]
    pair_id = []
    for n, row in enumerate(samples.itertuples()):
        same = ms[(ms["split"] == row.split) & (ms["label"] == row.label)]["sample_id"].tolist()
        # Every third RGB chip has no co-located MS chip (a partial dataset).
        pair_id.append(same[n % len(same)] if row.modality == "rgb" and n % 3 else "")
    return manifest, samples.assign(pair_id=pair_id), arrays


class _Recorder(Method):
    description = "test"
    paper = "test"

    def __init__(self, *args):
        super().__init__(*args)
        self.seen: list[tuple[Tensor, Tensor]] = []

    def losses(self, batch: Batch):
        self.seen.append((batch.index.clone(), batch.teacher_index.clone()))
        return {"ce": F.cross_entropy(self.student(batch.student_x).logits, batch.labels)}


def test_true_pairs_are_used_where_the_dataset_has_them(tmp_path):
    manifest, samples, arrays = _paired_inputs()
    ds = load_dataset(write_dataset(tmp_path / "paired", manifest=manifest, samples=samples, arrays=arrays))
    plain = write_dataset(tmp_path / "plain", manifest=manifest, samples=samples.drop(columns="pair_id"),
                          arrays=arrays)
    assert ds.fingerprint != load_dataset(plain).fingerprint  # the pairs are part of what defines the data
    rgb = load_modality(ds, "rgb", torch.device("cpu"))
    ms = load_modality(ds, "ms", torch.device("cpu"))
    pairs = true_partners(ds, rgb, ms)
    pair_of = dict(zip(samples["sample_id"], samples["pair_id"]))
    for i, sid in enumerate(rgb.ids["train"]):
        expected = pair_of[sid]
        assert (ms.ids["train"][pairs[i]] == expected) if expected else pairs[i] == -1
    info = DataInfo(n_classes=3, student_channels=3, teacher_channels=10, class_names=tuple(ds.classes), epochs=2)
    method = _Recorder(create_classifier(ARCH, 3, 3, seed=0), create_classifier(ARCH, 10, 3, seed=1), info, None)
    fit(method, rgb, ms, _profile(), seed=0, student_px=16, teacher_px=16, epochs=2, progress=False,
        fixed_partners=pairs)
    for idx, tidx in method.seen:
        paired = pairs[idx] >= 0
        assert torch.equal(tidx[paired], pairs[idx][paired])
        assert torch.equal(ms.y["train"][tidx], rgb.y["train"][idx])  # unpaired ones: same class


def test_pair_with_another_class_is_refused(tmp_path):
    manifest, samples, arrays = _paired_inputs()
    rgb_rows = samples.index[(samples["modality"] == "rgb") & (samples["pair_id"] != "")]
    other = samples[(samples["modality"] == "ms") & (samples["label"] != samples.loc[rgb_rows[0], "label"])
                    & (samples["split"] == samples.loc[rgb_rows[0], "split"])]["sample_id"].iloc[0]
    samples.loc[rgb_rows[0], "pair_id"] = other
    with pytest.raises(DatasetSchemaError, match="differ in split or label"):
        write_dataset(tmp_path / "bad", manifest=manifest, samples=samples, arrays=arrays)
