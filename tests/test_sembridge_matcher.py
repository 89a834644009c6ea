"""SemBridge SSM matcher: InfoNCE against numpy, pseudo-RGB radiometry, best-epoch selection, embeddings."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from ackd_bench.benchmark.data import ModalityData
from ackd_bench.sembridge.matcher import (
    Matcher,
    MatcherConfig,
    evaluate_matcher,
    get_matcher,
    info_nce,
    matcher_embeddings,
    pseudo_rgb,
    train_matcher,
)
from ackd_bench.sembridge.matching import initial_match
from tests.test_gallery import as_float64

BANDS = (3, 2, 1)  # R, G, B = B04, B03, B02 in a (B01, B02, B03, B04, B08) MS band list
TINY = MatcherConfig(arch="test_resnet", dim=16, batch=16, epochs=8, lr=3e-3)
U32 = 2.0**-24  # float32 unit roundoff


def _info_nce_bound(loss: float, d: int, b: int, t: float) -> float:
    """How far float32 rounding can move ``info_nce`` (it computes in float32) from its exact value.

    Each logit a·c/τ of unit d-vectors, and its offset from the row's maximum, is off by at most
    (d + 3)·u/τ (d products and sums, the division, the subtraction). A row's −log softmax moves by
    at most 2·max|δs|·(1 − p_ii) ≤ 2·max|δs|·L_i (1 − p ≤ −log p), so the mean over rows and both
    directions by at most 2(d + 3)·u/τ · loss; summing b exponentials, the log and the means add
    at most (2b + 4)·u absolute.
    """
    return 2 * (d + 3) * U32 / t * loss + (2 * b + 4) * U32


def _numpy_info_nce(a: np.ndarray, b: np.ndarray, t: float) -> float:
    """Plain float64 restatement: mean over both directions of −log softmax of the positive."""
    def one_way(x, y):
        total = 0.0
        for i in range(len(x)):
            s = np.array([x[i] @ y[j] for j in range(len(y))]) / t
            total += -(s[i] - s.max() - np.log(np.exp(s - s.max()).sum()))
        return total / len(x)
    return 0.5 * (one_way(a, b) + one_way(b, a))


def _modality(chips: dict[str, np.ndarray], labels: dict[str, np.ndarray], modality: str, offset: float) -> ModalityData:
    """A ModalityData built directly, with training-split statistics computed as `load_modality` does."""
    x = {s: torch.from_numpy(c) for s, c in chips.items()}
    train = x["train"].double() + offset
    return ModalityData(x=x, y={s: torch.from_numpy(v).long() for s, v in labels.items()},
                        mean=train.mean(dim=(0, 2, 3)).float(), std=train.std(dim=(0, 2, 3)).clamp_min(1e-6).float(),
                        offset=offset, modality=modality)


def _pair(seed: int = 0, n: dict[str, int] | None = None, px: int = 16, classes: int = 3):
    """MS (5 bands, uint16 stored as int16 + 32768) and RGB (uint8) modalities whose chips carry a class signal."""
    rng = np.random.default_rng(seed)
    n = n or {"train": 48, "val": 24, "test": 12}
    ms_chips, rgb_chips, ys, yr = {}, {}, {}, {}
    for split, k in n.items():
        ys[split] = rng.integers(0, classes, k)
        yr[split] = rng.integers(0, classes, k)
        band_scale = np.array([800, 1200, 1500, 1800, 3000])[None, :, None, None]
        signature = rng.normal(0.0, 1.0, (k, 5, 1, 1)) * band_scale  # per-chip spectrum: what pairs share
        ms = rng.gamma(2.0, 1.0, (k, 5, px, px)) * band_scale + 2 * band_scale + signature \
            + 500 * ys[split][:, None, None, None]
        ms_chips[split] = (np.clip(ms, 0, 65535).astype(np.int32) - 32768).astype(np.int16)
        rgb = rng.normal(90 + 30 * yr[split][:, None, None, None], 25, (k, 3, px, px))
        rgb_chips[split] = np.clip(rgb, 0, 255).astype(np.uint8)
    return _modality(ms_chips, ys, "ms", 32768.0), _modality(rgb_chips, yr, "rgb", 0.0)


@pytest.mark.parametrize("t", [1.0, 0.07, 0.5])
@pytest.mark.parametrize("b", [1, 2, 7])
def test_info_nce_matches_numpy(t, b):
    g = torch.Generator().manual_seed(b)
    a = torch.nn.functional.normalize(torch.randn(b, 5, generator=g), dim=1)
    c = torch.nn.functional.normalize(torch.randn(b, 5, generator=g), dim=1)
    got = info_nce(a, c, t)
    assert got.ndim == 0 and got.dtype == torch.float32
    want = _numpy_info_nce(a.double().numpy(), c.double().numpy(), t)  # of the same float32 inputs
    assert abs(float(got) - want) <= _info_nce_bound(want, 5, b, t)


def test_info_nce_is_symmetric_and_rewards_aligned_pairs():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(8, 4, generator=g), dim=1)
    b = torch.nn.functional.normalize(torch.randn(8, 4, generator=g), dim=1)
    # Symmetric exactly; computed, a·bᵀ and b·aᵀ may sum the same products in other orders, so the
    # two values are each within the float32 bound of the one exact value.
    ab, ba = float(info_nce(a, b, 0.1)), float(info_nce(b, a, 0.1))
    assert abs(ab - ba) <= 2 * _info_nce_bound(ab, 4, 8, 0.1)
    assert info_nce(a, a, 0.1) < info_nce(a, b, 0.1)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(a, b, 0.0)
    with pytest.raises(ValueError, match="shape"):
        info_nce(a, b[:4], 0.1)


def test_pseudo_rgb_has_rgb_batch_statistics_over_ms_train():
    ms, rgb = _pair()
    idx = torch.arange(ms.x["train"].shape[0])
    out = pseudo_rgb(ms, rgb, "train", idx, px=16, ms_band_index=BANDS)
    assert out.shape == (48, 3, 16, 16) and out.dtype == torch.float32
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3, rtol=0)
    real = rgb.batch("train", torch.arange(rgb.x["train"].shape[0]), px=16)  # the scale the RGB encoder trains on
    torch.testing.assert_close(real.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    # Explicitly: each output channel is its MS band standardised by the MS training statistics.
    raw = ms.x["train"].double() + 32768
    for c, b in enumerate(BANDS):
        expect = (raw[:, b] - ms.mean[b].double()) / ms.std[b].double()
        torch.testing.assert_close(out[:, c].double(), expect, atol=1e-4, rtol=1e-4)


def test_pseudo_rgb_uses_exactly_the_given_bands():
    ms, rgb = _pair()
    idx = torch.tensor([0, 5, 7])
    out = pseudo_rgb(ms, rgb, "val", idx, px=16, ms_band_index=BANDS)
    swapped = pseudo_rgb(ms, rgb, "val", idx, px=16, ms_band_index=(BANDS[2], BANDS[0], BANDS[1]))
    torch.testing.assert_close(swapped, out[:, [2, 0, 1]])
    assert not torch.allclose(swapped, out)
    # Bands that are not asked for (B01 and B08 here) do not influence the output.
    other = dataclasses.replace(ms, x={**ms.x, "val": ms.x["val"].clone()})
    other.x["val"][:, [0, 4]] = 1234
    torch.testing.assert_close(pseudo_rgb(other, rgb, "val", idx, px=16, ms_band_index=BANDS), out)
    other.x["val"][:, BANDS[0]] = 1234
    assert not torch.allclose(pseudo_rgb(other, rgb, "val", idx, px=16, ms_band_index=BANDS)[:, 0], out[:, 0])
    with pytest.raises(ValueError, match="out of range"):
        pseudo_rgb(ms, rgb, "val", idx, px=16, ms_band_index=(0, 1, 5))


@pytest.fixture(scope="module")
def trained():
    ms, rgb = _pair()
    matcher, metrics = train_matcher(ms, rgb, BANDS, TINY, seed=0, px=16)
    return ms, rgb, matcher, metrics


def test_train_matcher_learns_and_keeps_the_best_epoch(trained):
    ms, rgb, matcher, metrics = trained
    hist = metrics["history"]
    assert [h["epoch"] for h in hist] == list(range(1, TINY.epochs + 1))
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert all(np.isfinite([h["train_loss"], h["val_loss"], h["val_top1"]]).all() for h in hist)
    best_key = max((h["val_top1"], -h["val_loss"]) for h in hist)
    chosen = hist[metrics["selected_epoch"] - 1]
    assert (chosen["val_top1"], -chosen["val_loss"]) == best_key
    assert metrics["val_top1"] > metrics["val_chance"]
    # The returned weights are the selected epoch's (the authors' code kept epoch 1's): re-scoring them
    # reproduces the recorded metrics of that epoch.
    assert not matcher.training
    top1, loss = evaluate_matcher(matcher, ms, rgb, BANDS, "val", px=16, temperature=TINY.temperature,
                                  batch=TINY.batch)
    assert top1 == pytest.approx(chosen["val_top1"])
    assert loss == pytest.approx(chosen["val_loss"], rel=1e-4)


def test_train_matcher_restores_the_selected_epochs_weights(monkeypatch):
    """Validation peaks at epoch 2 of 4: neither the first (authors' bug) nor the last weights may come back."""
    import ackd_bench.sembridge.matcher as module

    scripted = iter([(0.25, 2.0), (0.75, 1.0), (0.5, 0.5), (0.75, 1.5)])  # epoch 4 ties on top-1, worse loss
    snapshots = []

    def fake_evaluate(matcher, *args, **kwargs):
        snapshots.append({k: v.clone() for k, v in matcher.state_dict().items()})
        return next(scripted)

    monkeypatch.setattr(module, "evaluate_matcher", fake_evaluate)
    ms, rgb = _pair(n={"train": 24, "val": 8, "test": 4})
    matcher, metrics = train_matcher(ms, rgb, BANDS, dataclasses.replace(TINY, epochs=4), seed=1, px=16)
    assert metrics["selected_epoch"] == 2 and metrics["val_top1"] == 0.75 and metrics["val_loss"] == 1.0
    state = matcher.state_dict()
    for k, v in snapshots[1].items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    assert any(not torch.equal(state[k], snapshots[0][k]) for k in state if state[k].is_floating_point())
    assert any(not torch.equal(state[k], snapshots[3][k]) for k in state if state[k].is_floating_point())


def test_train_matcher_is_reproducible_for_a_seed():
    ms, rgb = _pair(n={"train": 24, "val": 8, "test": 4})
    cfg = dataclasses.replace(TINY, epochs=2)
    _, m1 = train_matcher(ms, rgb, BANDS, cfg, seed=3, px=16)
    _, m2 = train_matcher(ms, rgb, BANDS, cfg, seed=3, px=16)
    assert m1["history"] == m2["history"]


def test_embeddings_are_normalised_and_feed_initial_match(trained):
    ms, rgb, matcher, _ = trained
    z_ms, z_rgb = matcher_embeddings(matcher, ms, rgb, BANDS, px=16, batch=20)
    assert z_ms.shape == (48, TINY.dim) and z_rgb.shape == (48, TINY.dim)
    torch.testing.assert_close(z_ms.norm(dim=1), torch.ones(48))
    torch.testing.assert_close(z_rgb.norm(dim=1), torch.ones(48))
    # Batching does not change the embeddings (eval mode: no dropout, frozen BN statistics). Compared
    # in float64, where batches of 7 and of 20 differ only in the order of float64 sums (~1e-15); the
    # embeddings come back rounded to float32, so they agree to one float32 rounding (2^-23 relative).
    # In float32 the two batch sizes may take different convolution algorithms, by the CPU.
    matcher64 = copy.deepcopy(matcher).double()
    ms64, rgb64 = as_float64(ms), as_float64(rgb)
    z20, _ = matcher_embeddings(matcher64, ms64, rgb64, BANDS, px=16, batch=20)
    z7, _ = matcher_embeddings(matcher64, ms64, rgb64, BANDS, px=16, batch=7)
    torch.testing.assert_close(z7, z20, rtol=2.0**-23, atol=1e-12)
    partner = initial_match(z_rgb, rgb.y["train"], z_ms, ms.y["train"])
    assert partner.shape == (48,)
    assert torch.equal(ms.y["train"][partner], rgb.y["train"])
    # and each is the most cosine-similar same-class MS chip, up to float32 rounding: initial_match
    # re-normalises and multiplies per class, so its cosines and these (d-term dot products of
    # vectors normalised to within (d/2 + 2)·u) differ by at most (4d + 8)·u; the chosen partner is
    # then within twice that of the best. A wrong choice here is ≥ 1.8e-3 below the best.
    sims = z_rgb @ z_ms.T
    slack = 2 * (4 * TINY.dim + 8) * U32
    for i in range(48):
        same = torch.nonzero(ms.y["train"] == rgb.y["train"][i]).flatten()
        assert float(sims[i, partner[i]]) >= float(sims[i, same].max()) - slack, i


def test_get_matcher_caches_by_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("ACKD_BENCH_CACHE", str(tmp_path))
    ms, rgb = _pair(n={"train": 16, "val": 8, "test": 4})
    cfg = dataclasses.replace(TINY, epochs=1)
    fp = "ab" * 32
    trained, meta = get_matcher(fp, ms, rgb, BANDS, cfg, seed=0, px=16)
    files = sorted(p.name for p in (tmp_path / "matchers" / fp[:16]).iterdir())
    assert len(files) == 2 and files[0].startswith("test_resnet__seed0__") and files[1].endswith(".safetensors")
    loaded, meta2 = get_matcher(fp, ms, rgb, BANDS, cfg, seed=0, px=16)
    assert meta2 == json.loads(json.dumps(meta)) and not loaded.training
    x = ms.batch("val", torch.arange(8), px=16)
    torch.testing.assert_close(loaded.embed_ms(x), trained.embed_ms(x))
    next((tmp_path / "matchers" / fp[:16]).glob("*.safetensors")).write_bytes(b"corrupt")
    with pytest.raises(ValueError, match="delete it to retrain"):
        get_matcher(fp, ms, rgb, BANDS, cfg, seed=0, px=16)


def test_the_matcher_trains_and_embeds_in_the_runs_precision_and_layout(tmp_path, monkeypatch):
    """On a GPU, fit passes bf16 and channels-last on: the matcher's encoders run so, its InfoNCE stays
    float32, and a bf16 matcher is cached apart from an fp32 one."""
    monkeypatch.setenv("ACKD_BENCH_CACHE", str(tmp_path))
    ms, rgb = _pair(n={"train": 16, "val": 8, "test": 4}, px=32)
    cfg = dataclasses.replace(TINY, epochs=1)
    seen = []
    embed = Matcher.embed_ms

    def spy(self, x):
        seen.append((torch.is_autocast_enabled("cpu"), x.is_contiguous(memory_format=torch.channels_last)))
        return embed(self, x)

    monkeypatch.setattr(Matcher, "embed_ms", spy)
    fp = "cd" * 32
    half, meta = get_matcher(fp, ms, rgb, BANDS, cfg, seed=0, px=32, precision="bf16", channels_last=True)
    assert len(seen) >= 2 and set(seen) == {(True, True)}  # training steps and validation
    assert meta["precision"] == "bf16" and all(np.isfinite(h["train_loss"]) for h in meta["history"])
    seen.clear()
    emb_ms, emb_rgb = matcher_embeddings(half, ms, rgb, BANDS, px=32, precision="bf16", channels_last=True)
    assert set(seen) == {(True, True)}
    assert emb_ms.dtype == emb_rgb.dtype == torch.float32
    torch.testing.assert_close(emb_ms.norm(dim=1), torch.ones(16), rtol=2e-2, atol=0)
    seen.clear()
    _, meta32 = get_matcher(fp, ms, rgb, BANDS, cfg, seed=0, px=32)
    assert set(seen) == {(False, False)} and "precision" not in meta32
    assert len(list((tmp_path / "matchers" / fp[:16]).glob("*.safetensors"))) == 2  # two cache entries
