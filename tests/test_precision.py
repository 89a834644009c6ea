"""bf16 autocast (``--precision bf16``): every method trains under it, and its loss terms are float32.

The networks run in bf16 under autocast; the distillation losses (softmax/KL, logit distances)
are computed in float32 on every device, so they keep their digits: KL between near-equal
distributions is a small difference of large numbers. Checked on the CPU's bf16 autocast (which,
unlike CUDA's, leaves softmax and KL in bf16 unless the loss casts).
"""

from __future__ import annotations

import pytest
import torch

from ackd_bench.benchmark.data import pair_same_class
from ackd_bench.benchmark.gallery import build_gallery
from ackd_bench.benchmark.method import create_method, list_methods
from ackd_bench.benchmark.models import create_classifier
from ackd_bench.benchmark.train import _autocast, make_batch
from tests.test_gallery import ARCH, INFO, K, _modality

CONTEXT = {"seed": 0, "epochs": 4, "student_px": 16, "teacher_px": 16, "progress": False, "fingerprint": "bf16-test",
           "teacher_bands": ["B02", "B03", "B04", "B08"]}


@pytest.fixture(scope="module")
def data():
    return _modality(24, 3, 16, seed=0), _modality(30, 4, 16, seed=1, dtype=torch.int16)


def _losses(name: str, data, precision: str, cache_dir) -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    rgb, ms = data
    teacher = create_classifier(ARCH, 4, K, seed=1)
    method = create_method(name, student=create_classifier(ARCH, 3, K, seed=0), teacher=teacher, info=INFO,
                           **({"matcher_epochs": 1} if name.startswith("sembridge") else {}))
    if method.uses_teacher:
        method.use_teacher_gallery(build_gallery(teacher, ms, 16, precision))
    method.prepare(rgb, ms, CONTEXT)
    method.on_epoch_start(2, {"epochs": 4})  # past DKD's warm-up start, so every term is live
    partners = method.epoch_partners(2) if method.uses_teacher else None
    if method.uses_teacher and partners is None:
        partners = pair_same_class(rgb.y["train"], ms.y["train"], torch.Generator().manual_seed(0))
    idx = torch.arange(12)
    batch = make_batch(rgb, None, idx, partners[idx] if partners is not None else idx, student_px=16, teacher_px=16,
                       epoch=2, progress=2.5)
    method.train()
    with _autocast(torch.device("cpu"), precision):
        terms = method.losses(batch)
    return terms, method


@pytest.mark.parametrize("name", [n for n in list_methods() if "+" not in n or n == "sembridge+dkd"])
def test_under_bf16_autocast_every_loss_term_is_float32_close_to_fp32_and_trains(name, data, tmp_path, monkeypatch):
    monkeypatch.setenv("ACKD_BENCH_CACHE", str(tmp_path))  # one matcher, trained once, for both precisions
    full, _ = _losses(name, data, "fp32", tmp_path)
    half, method = _losses(name, data, "bf16", tmp_path)
    assert set(half) == set(full)
    for term, value in half.items():
        assert value.dtype == torch.float32, f"{name}: {term} is {value.dtype}"
        # the networks ran in bf16 (about 3 significant digits), the losses in float32
        assert float(value.detach()) == pytest.approx(float(full[term].detach()), rel=0.05, abs=0.01), term
    sum(half.values()).backward()
    grads = [p.grad for p in method.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().max()) > 0 for g in grads)
