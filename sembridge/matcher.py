"""SemBridge SSM matcher: MS and RGB encoders trained CLIP-style on MS chips and their own pseudo-RGB bands.

The self-supervised semantic-aware matcher of arXiv 2511.08901 §SFM (paper-notes §2.1 (a)): an MS
encoder M_V and an RGB encoder M_G, trained with a symmetric InfoNCE loss on positive pairs
(MS chip, pseudo-RGB made from that chip's own R, G, B bands). Only the MS *training* split is used;
no class labels enter the loss. Its embeddings feed `matching.initial_match`.

Deliberate departures from the authors' code (official-code-notes §3.1, §8 items 3-5):
* the best epoch is chosen on the MS *validation* split and its weights are actually kept (the
  authors compare a never-updated meter and keep the epoch-1 weights);
* the learning-rate schedule is stepped (theirs is created and never stepped);
* pseudo-RGB is mapped to the RGB modality's radiometry and normalised like real RGB batches (theirs
  is 0-255 at training time but [-1, 1] JPGs at matching time), and uses true R, G, B bands;
* each encoder runs once per call (their RGB encoder runs twice, updating BN statistics twice).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from ackd_bench.benchmark.boundary import InputError, expect_mapping
from ackd_bench.benchmark.boundary import load_file as load_user_file
from ackd_bench.benchmark.data import ModalityData
from ackd_bench.benchmark.dataset.files import atomic_write_text, cache_root, sha256_file
from ackd_bench.benchmark.models import create_classifier
from ackd_bench.benchmark.precision import autocast, float32_loss
from torch import Tensor, nn


@dataclass(frozen=True)
class MatcherConfig:
    """Matcher hyper-parameters; defaults from the authors' `configration/config_matcher.py` unless noted.

    Attributes:
        arch: timm backbone of both encoders (authors: resnet34 from scratch; resnet18 here, scaled).
        dim: projection dimension (authors: 256).
        dropout: dropout in the projection head (authors: 0.1).
        temperature: InfoNCE temperature, fixed (not learned). The authors use τ = 1.0 on
            LayerNorm'd, *un-normalised* 256-d outputs, whose dot products are ~256·cos, i.e. an
            effective τ ≈ 0.004 on cosines. Our outputs are L2-normalised, where τ = 1 would give
            logits in [-1, 1] and almost no contrast, so we use CLIP's initial 0.07.
        lr, weight_decay: AdamW (authors: 1e-3, 1e-3); cosine-annealed per step (authors' scheduler is never stepped).
        batch: pairs per step (authors: 64).
        epochs: authors 100; 10 suits the `fast` profile.
        augment: draw an independent flip/rotation for each view of a pair (authors: none), so the
            embeddings do not key on pixel-exact geometry.
    """

    arch: str = "resnet18"
    dim: int = 256
    dropout: float = 0.1
    temperature: float = 0.07
    lr: float = 1e-3
    weight_decay: float = 1e-3
    batch: int = 64
    epochs: int = 10
    augment: bool = True


@float32_loss
def info_nce(z_a: Tensor, z_b: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE (CLIP): ½ [CE(z_a z_bᵀ/τ, diag) + CE(z_b z_aᵀ/τ, diag)].

    L_{a→b} = −(1/B) Σ_i log exp(a_i·b_i/τ) / Σ_j exp(a_i·b_j/τ), and L_{b→a} symmetrically
    (paper-notes §2.1 (a), L_semantic). Row i of z_a and row i of z_b are a positive pair; every
    other row of the batch is a negative. Inputs are used as given (normalise them beforehand).

    Args:
        z_a: (B, d) embeddings of view a.
        z_b: (B, d) embeddings of view b.
        temperature: τ > 0.

    Returns:
        0-d float32 loss.
    """
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(f"expected two (B, d) tensors of one shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = z_a.float() @ z_b.float().T / temperature
    target = torch.arange(z_a.shape[0], device=z_a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def pseudo_rgb(ms: ModalityData, rgb: ModalityData, split: str, idx: Tensor, *, px: int,
               ms_band_index: tuple[int, int, int], generator: torch.Generator | None = None,
               augment: bool = False) -> Tensor:
    """Pseudo-RGB chips made from MS chips' own R, G, B bands, normalised exactly like real RGB batches.

    Mapping, per output channel c with MS band b = ms_band_index[c] (e.g. B04, B03, B02):
        u_c = (v_b − μ^MS_b) / σ^MS_b · σ^RGB_c + μ^RGB_c      (moment matching to the RGB training split)
        out_c = (u_c − μ^RGB_c) / σ^RGB_c                         (the normalisation of `ModalityData.batch`)
    μ, σ are the per-channel statistics of each modality's training split. The two steps compose to
    the MS band's own standardisation, so pseudo-RGB has, like real RGB batches, mean 0 and std 1
    per channel over the training split: the RGB encoder sees the same scale at training and at
    matching time. (A first-and-second-moment match; band response and GSD differences remain.)

    Args:
        ms: the MS modality.
        rgb: the RGB modality (3 channels).
        split: which MS split to read.
        idx: (B,) rows of that split.
        px: output side length (resized as `ModalityData.batch` does).
        ms_band_index: positions of the R, G, B bands in the MS band list (from the manifest).
        generator: as in `ModalityData.batch`.
        augment: as in `ModalityData.batch` (one flip/rotation per chip).

    Returns:
        (B, 3, px, px) float32.
    """
    return _to_rgb_radiometry(ms.batch(split, idx, px=px, augment=augment, generator=generator), ms, rgb,
                              ms_band_index)


def _to_rgb_radiometry(ms_batch: Tensor, ms: ModalityData, rgb: ModalityData, bands: tuple[int, int, int]) -> Tensor:
    """Apply the `pseudo_rgb` mapping to an already standardised MS batch (B, C_ms, h, w)."""
    if rgb.channels != 3 or len(bands) != 3:
        raise ValueError(f"pseudo-RGB needs a 3-channel RGB modality and 3 MS bands, got {rgb.channels} and {bands}")
    if not all(0 <= b < ms.channels for b in bands):
        raise ValueError(f"ms_band_index {bands} out of range for {ms.channels} MS bands")
    mu, sd = rgb.mean[:, None, None], rgb.std[:, None, None]
    u = ms_batch[:, list(bands)] * sd + mu  # standardised MS band -> RGB units
    return (u - mu) / sd  # normalised as real RGB batches are


class _Encoder(nn.Module):
    """A timm backbone's pooled features, projected (Linear→ReLU→Dropout→Linear) and L2-normalised."""

    def __init__(self, arch: str, in_chans: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.backbone = create_classifier(arch, in_chans, num_classes=0)
        nf = self.backbone.num_features
        self.head = nn.Sequential(nn.Linear(nf, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.head(self.backbone(x).features), dim=1)


class Matcher(nn.Module):
    """M = (M_V, M_G): an MS encoder (C_ms channels) and an RGB encoder (3 channels) into one unit sphere.

    Args:
        ms_channels: MS input bands.
        cfg: architecture, projection dimension and dropout.
        seed: makes the initial weights reproducible.
    """

    def __init__(self, ms_channels: int, cfg: MatcherConfig, seed: int | None = None) -> None:
        super().__init__()
        if seed is not None:
            torch.manual_seed(seed)
        self.ms = _Encoder(cfg.arch, ms_channels, cfg.dim, cfg.dropout)
        self.rgb = _Encoder(cfg.arch, 3, cfg.dim, cfg.dropout)

    def embed_ms(self, x: Tensor) -> Tensor:
        """(B, C_ms, h, w) normalised MS chips -> (B, dim) unit vectors."""
        return self.ms(x)

    def embed_rgb(self, x: Tensor) -> Tensor:
        """(B, 3, h, w) normalised RGB (or pseudo-RGB) chips -> (B, dim) unit vectors."""
        return self.rgb(x)


def _layout(x: Tensor, channels_last: bool) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def evaluate_matcher(matcher: Matcher, ms: ModalityData, rgb: ModalityData, ms_band_index: tuple[int, int, int],
                     split: str, *, px: int, temperature: float, batch: int = 64, precision: str = "fp32",
                     channels_last: bool = False) -> tuple[float, float]:
    """Held-out contrastive metrics on an MS split: (top-1 MS→pseudo-RGB retrieval accuracy, InfoNCE).

    Retrieval: each MS chip's embedding is compared with the pseudo-RGB embeddings of *every* chip of
    the split; a hit when its own pseudo-RGB is the most similar (chance: 1/N). InfoNCE is averaged
    over consecutive batches of `batch` chips (the training loss's scale), batches of one skipped.
    The encoders run as `train_matcher` trained them (`precision`, `channels_last`); similarities
    and losses are float32.
    """
    was_training = matcher.training
    matcher.eval()
    n = ms.x[split].shape[0]
    device = ms.y[split].device
    za, zb = [], []
    for rows in torch.arange(n, device=device).split(256):
        x = ms.batch(split, rows, px=px)
        with autocast(device, precision):
            pseudo = _to_rgb_radiometry(x, ms, rgb, ms_band_index)
            za.append(matcher.embed_ms(_layout(x, channels_last)).float())
            zb.append(matcher.embed_rgb(_layout(pseudo, channels_last)).float())
    a, b = torch.cat(za), torch.cat(zb)
    hits = 0
    for rows in torch.arange(n, device=device).split(1024):
        hits += int(((a[rows] @ b.T).argmax(dim=1) == rows).sum())
    losses = [(float(info_nce(a[r], b[r], temperature)), r.numel()) for r in torch.arange(n).split(batch) if r.numel() > 1]
    matcher.train(was_training)
    loss = sum(v * k for v, k in losses) / max(1, sum(k for _, k in losses)) if losses else math.nan
    return hits / n, loss


def train_matcher(ms: ModalityData, rgb: ModalityData, ms_band_index: tuple[int, int, int], cfg: MatcherConfig,
                  *, seed: int, px: int = 64, progress: bool = False, precision: str = "fp32",
                  channels_last: bool = False) -> tuple[Matcher, dict]:
    """Train the SSM matcher on the MS training split; keep the epoch with the best validation retrieval.

    Pairs are (MS chip, its own pseudo-RGB), so neither real RGB chips nor labels are used. After
    every epoch the MS validation split is scored by `evaluate_matcher`; the epoch with the highest
    top-1 retrieval (ties: lower val InfoNCE, then the earlier epoch) is selected and its weights are
    restored before returning. ``precision`` (``bf16``: encoders under bf16 autocast, InfoNCE in
    float32) and ``channels_last`` are the student run's (``fit`` passes them on CUDA).

    Returns:
        The matcher in eval mode with the selected weights, and metrics: ``history`` (per epoch:
        epoch (1-based), train_loss, val_top1, val_loss), ``selected_epoch``, ``val_top1``,
        ``val_loss``, ``val_chance``, ``train_s`` and ``config``.
    """
    device = ms.y["train"].device
    matcher = Matcher(ms.channels, cfg, seed=seed).to(device)
    if channels_last:
        matcher.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(matcher.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = ms.x["train"].shape[0]
    steps_per_epoch = sum(1 for k in range(0, n, cfg.batch) if min(cfg.batch, n - k) > 1)
    if steps_per_epoch == 0 or ms.x["val"].shape[0] < 2:
        raise ValueError(f"the matcher needs at least 2 MS training and 2 validation chips, got {n} and "
                         f"{ms.x['val'].shape[0]}")
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    best: tuple[float, float] | None = None
    best_state: dict[str, Tensor] = {}
    selected = 0
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        matcher.train()
        order = torch.randperm(n, generator=gen).to(device)
        total, seen = 0.0, 0
        for rows in order.split(cfg.batch):
            if rows.numel() < 2:  # InfoNCE of one pair has no negatives
                continue
            x_ms = ms.batch("train", rows, px=px, augment=cfg.augment, generator=gen)
            x_rgb = pseudo_rgb(ms, rgb, "train", rows, px=px, ms_band_index=ms_band_index, generator=gen,
                               augment=cfg.augment)
            with autocast(device, precision):
                loss = info_nce(matcher.embed_ms(_layout(x_ms, channels_last)),
                                matcher.embed_rgb(_layout(x_rgb, channels_last)), cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total = total + loss.detach() * rows.numel()  # summed on the device: no wait per step
            seen += rows.numel()
        total = float(total)
        top1, val_loss = evaluate_matcher(matcher, ms, rgb, ms_band_index, "val", px=px,
                                          temperature=cfg.temperature, batch=cfg.batch, precision=precision,
                                          channels_last=channels_last)
        history.append({"epoch": epoch, "train_loss": total / seen, "val_top1": top1, "val_loss": val_loss})
        if best is None or (top1, -val_loss) > best:  # strict: ties keep the earlier epoch
            best, selected = (top1, -val_loss), epoch
            best_state = copy.deepcopy(matcher.state_dict())
        if progress:
            print(f"matcher epoch {epoch}/{cfg.epochs}: train {total / seen:.4f}, val top-1 {top1:.3f}, "
                  f"val loss {val_loss:.4f}{' *' if selected == epoch else ''}", flush=True)
    matcher.load_state_dict(best_state)
    matcher.eval()
    chosen = history[selected - 1]
    metrics = {"history": history, "selected_epoch": selected, "val_top1": chosen["val_top1"],
               "val_loss": chosen["val_loss"], "val_chance": 1.0 / ms.x["val"].shape[0],
               "train_s": time.perf_counter() - start, "config": asdict(cfg)}
    return matcher, metrics


def get_matcher(fingerprint: str, ms: ModalityData, rgb: ModalityData, ms_band_index: tuple[int, int, int],
                cfg: MatcherConfig, *, seed: int, px: int = 64, progress: bool = False, precision: str = "fp32",
                channels_last: bool = False) -> tuple[Matcher, dict]:
    """The matcher for this dataset, from the cache or trained by `train_matcher` and cached (as teachers are).

    Cached at ``$ACKD_BENCH_CACHE/matchers/<fingerprint[:16]>/<arch>__seed<s>__<key>.safetensors`` (+ ``.json``),
    where ``key`` hashes the config, ``px``, the band indices, the MS training rows and a
    ``precision`` other than fp32, so changing any of them retrains (``channels_last`` is a memory
    layout only and shares the entry).

    Raises:
        ValueError: the cached weights do not match their recorded sha256 or dataset fingerprint.
    """
    from safetensors.torch import load_file, save_file

    # The training rows count too: a smoke profile's per-class cap must not reuse (or poison) the
    # cache entry of a full run on the same dataset.
    rows = hashlib.sha256("\n".join(map(str, ms.ids.get("train", []))).encode()).hexdigest()[:16]
    spec = {"config": asdict(cfg), "px": px, "ms_band_index": list(ms_band_index), "ms_channels": ms.channels,
            "ms_train_rows": int(ms.x["train"].shape[0]), "ms_train_ids_sha256": rows}
    if precision != "fp32":  # fp32 keys stay those of matchers cached before precision was an option
        spec["precision"] = precision
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    weights = cache_root() / "matchers" / fingerprint[:16] / f"{cfg.arch}__seed{seed}__{key}.safetensors"
    meta_path = weights.with_suffix(".json")
    if weights.exists() and meta_path.exists():
        try:
            meta = expect_mapping(load_user_file(meta_path, what="metadata"), f"matcher metadata {meta_path}")
            stated = meta["dataset_fingerprint"], meta["checkpoint_sha256"]
        except (InputError, KeyError) as err:
            raise InputError(f"cached matcher metadata {meta_path} is damaged ({err}); delete it and "
                             f"{weights.name} to retrain the matcher") from None
        if stated[0] != fingerprint or sha256_file(weights) != stated[1]:
            raise InputError(f"cached matcher {weights} does not match its metadata; delete it to retrain")
        matcher = Matcher(ms.channels, cfg).to(ms.y["train"].device)
        matcher.load_state_dict(load_file(weights, device=str(ms.y["train"].device)))
        if channels_last:
            matcher.to(memory_format=torch.channels_last)
        return matcher.eval(), meta
    matcher, metrics = train_matcher(ms, rgb, ms_band_index, cfg, seed=seed, px=px, progress=progress,
                                     precision=precision, channels_last=channels_last)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_suffix(f".tmp-{os.getpid()}")
    save_file({k: v.detach().contiguous().cpu() for k, v in matcher.state_dict().items()}, str(tmp))
    os.replace(tmp, weights)
    meta = {**metrics, **spec, "seed": seed, "dataset_fingerprint": fingerprint,
            "checkpoint_sha256": sha256_file(weights)}
    atomic_write_text(meta_path, json.dumps(meta, indent=1, sort_keys=True))
    return matcher, meta


@torch.no_grad()
def matcher_embeddings(matcher: Matcher, ms: ModalityData, rgb: ModalityData, ms_band_index: tuple[int, int, int],
                       *, px: int = 64, batch: int = 256, precision: str = "fp32",
                       channels_last: bool = False) -> tuple[Tensor, Tensor]:
    """Embeddings of every MS training chip (M_V) and every real RGB training chip (M_G), in eval mode,
    computed as the matcher was trained (``precision``, ``channels_last``).

    `ms_band_index` is unused here (real RGB chips are embedded) and kept so all matcher entry
    points take the same arguments.

    Returns:
        ((N_ms, dim), (N_rgb, dim)) L2-normalised float32 tensors on the data's device, in row order.
    """
    del ms_band_index
    was_training = matcher.training
    matcher.eval()
    out = []
    for data, embed in ((ms, matcher.embed_ms), (rgb, matcher.embed_rgb)):
        rows = torch.arange(data.x["train"].shape[0], device=data.y["train"].device)
        with autocast(data.y["train"].device, precision):
            out.append(torch.cat([embed(data.batch("train", r, px=px, channels_last=channels_last)).float()
                                  for r in rows.split(batch)]))
    matcher.train(was_training)
    return out[0], out[1]
