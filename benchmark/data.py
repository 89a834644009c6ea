"""Dataset splits as tensors on the training device: loaded once, normalised and augmented there."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ackd_bench.benchmark.errors import AckdBenchError

if TYPE_CHECKING:  # the dataset format needs the geo stack; training on tensors does not
    from ackd_bench.benchmark.dataset import Dataset


class DataError(AckdBenchError):
    """The dataset cannot serve what a run needs (a class without chips, an empty split, ...)."""


@dataclass
class ModalityData:
    """One modality's splits on the device, in their native integer dtype.

    uint16 chips are stored as int16 shifted by -32768 (indexing uint16 tensors is not supported
    on every device); ``offset`` undoes the shift when a batch is made float.

    Attributes:
        x: split -> (N, C, H, W) integer chips on the device.
        y: split -> (N,) int64 labels on the device.
        mean, std: per-channel statistics of the training split (float32, device), in stored units.
        offset: added to the stored integers to get the original values.
        modality: "ms" or "rgb".
        ids: split -> sample_id of every row (host side; maps rows back to the sample table).
        sets: split -> (N, K) float multi-hot class sets, for multi-label modalities only.
    """

    x: dict[str, Tensor]
    y: dict[str, Tensor]
    mean: Tensor
    std: Tensor
    offset: float
    modality: str
    ids: dict[str, np.ndarray] = field(default_factory=dict)
    sets: dict[str, Tensor] | None = None

    @property
    def channels(self) -> int:
        return int(self.x["train"].shape[1])

    def batch(self, split: str, idx: Tensor, *, px: int, augment: bool = False,
              generator: torch.Generator | None = None, flips: Tensor | None = None,
              channels_last: bool = False) -> Tensor:
        """Normalised float32 chips ``idx`` of ``split``, resized to ``px`` and optionally augmented.

        Augmentation applies one of the 8 flips/90-degree rotations per chip: ``flips`` (a (3, B)
        bool tensor on the device, see :func:`draw_flips`) says which, or else they are drawn here
        from ``generator`` (a CPU generator, so runs are reproducible on any device).
        ``channels_last`` returns the batch in that memory format (faster convolutions on GPUs).
        """
        x = self.x[split][idx].float()
        if self.offset:
            x = x + self.offset
        x = (x - self.mean[:, None, None]) / self.std[:, None, None]
        if x.shape[-1] != px:
            # Downsampling averages pixels (no aliasing); upsampling interpolates.
            mode = "area" if x.shape[-1] > px else "bilinear"
            x = F.interpolate(x, size=(px, px), mode=mode, **({} if mode == "area" else {"align_corners": False}))
        if augment or flips is not None:
            if flips is None:
                flips = draw_flips(x.shape[0], generator, x.device)
            x = torch.where(flips[0][:, None, None, None], x.flip(-1), x)
            x = torch.where(flips[1][:, None, None, None], x.flip(-2), x)
            x = torch.where(flips[2][:, None, None, None], x.transpose(-1, -2), x)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def draw_flips(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """(3, n) bool on ``device``: horizontal flip, vertical flip, transpose, each with probability 1/2.

    Drawn on the CPU from ``generator`` (the same numbers on every device), in one transfer; the
    training loop draws a whole epoch's at once so no step waits on the host.
    """
    return torch.rand(3, n, generator=generator).lt(0.5).to(device, non_blocking=True)


def load_modality(ds: Dataset, modality: str, device: torch.device, *,
                  max_train_per_class: int | None = None, seed: int = 0) -> ModalityData:
    """Copy one modality's splits onto ``device`` (once; the training loop never touches files)."""
    from ackd_bench.benchmark.dataset import SPLITS, label_sets

    array = getattr(ds, modality)
    xs, ys, ids = {}, {}, {}
    multi = ds.manifest["modalities"][modality]["label_type"] == "multi"
    sets: dict[str, Tensor] | None = {} if multi else None
    offset = 0.0
    for split in SPLITS:
        chips, labels, rows = ds.subset(modality, split)
        sample_ids = rows["sample_id"].to_numpy(dtype=object)
        if len(labels) == 0:
            raise DataError(f"{ds.root}: the {modality} {split} split is empty; rebuild the dataset with more chips")
        if split == "train" and max_train_per_class:
            keep = _first_per_class(labels, max_train_per_class, seed)
            chips, labels, sample_ids, rows = chips[keep], labels[keep], sample_ids[keep], rows.iloc[keep]
        if chips.dtype == np.uint16:
            chips = (chips.astype(np.int32) - 32768).astype(np.int16)
            offset = 32768.0
        xs[split] = torch.from_numpy(np.ascontiguousarray(chips)).to(device)
        ys[split] = torch.from_numpy(labels.astype(np.int64)).to(device)
        ids[split] = sample_ids
        if sets is not None:
            sets[split] = torch.from_numpy(label_sets(rows, len(ds.classes))).to(device)
    present = torch.bincount(ys["train"], minlength=len(ds.classes))
    if (present == 0).any():
        missing = [ds.classes[k] for k in torch.nonzero(present == 0).flatten().tolist()]
        raise DataError(f"{ds.root}: no {modality} training chips of class(es) {', '.join(missing)}")
    train = xs["train"].double() + offset
    mean = train.mean(dim=(0, 2, 3))
    std = train.std(dim=(0, 2, 3)).clamp_min(1e-6)
    del array
    return ModalityData(x=xs, y=ys, mean=mean.float(), std=std.float(), offset=offset, modality=modality, ids=ids,
                        sets=sets)


def _first_per_class(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 11])
    keep = []
    for k in np.unique(labels):
        where = np.flatnonzero(labels == k)
        keep.append(np.sort(rng.permutation(where)[:n]))
    return np.sort(np.concatenate(keep))


def true_partners(ds: Dataset, student: ModalityData, teacher: ModalityData) -> Tensor | None:
    """Co-located teacher partners from the dataset's ``pair_id`` column, or None if it has none.

    Returns:
        (N_s,) int64 positions in the teacher's training rows; -1 where a student chip has no
        partner in them (partial datasets, or a partner dropped by ``max_train_per_class``).
    """
    if "pair_id" not in ds.samples.columns:
        return None
    pair_of = dict(zip(ds.samples["sample_id"], ds.samples["pair_id"]))
    position = {sid: i for i, sid in enumerate(teacher.ids["train"])}
    found = [position.get(pair_of.get(sid, ""), -1) for sid in student.ids["train"]]
    return torch.tensor(found, dtype=torch.int64, device=student.y["train"].device)


def pair_carrying_class(student_labels: Tensor, teacher_sets: Tensor, generator: torch.Generator) -> Tensor:
    """For every student sample, a uniformly random teacher sample whose class set carries its class.

    The pairing policy for multi-label teachers: a teacher chip tagged {crop, water} may teach
    a crop student and a water student alike.

    Args:
        student_labels: (N_s,) int64.
        teacher_sets: (N_t, K) multi-hot class sets of the teacher samples.
        generator: CPU generator.

    Returns:
        (N_s,) int64 indices into the teacher samples.
    """
    u = torch.rand(student_labels.shape[0], generator=generator, dtype=torch.float64).to(student_labels.device)
    out = torch.empty_like(student_labels)
    for k in torch.unique(student_labels).tolist():
        carriers = torch.nonzero(teacher_sets[:, k] > 0).flatten()
        if carriers.numel() == 0:
            raise DataError(f"no teacher sample carries class {k}")
        mine = student_labels == k
        out[mine] = carriers[torch.minimum((u[mine] * carriers.numel()).long(), torch.tensor(carriers.numel() - 1))]
    return out


def pair_same_class(student_labels: Tensor, teacher_labels: Tensor, generator: torch.Generator) -> Tensor:
    """For every student sample, a uniformly random teacher sample of the same class.

    The ACKD pairing policy for baselines (DESIGN.md): there are no instance pairs across
    modalities, so each epoch draws fresh same-class partners. Runs in O(N) on the device.

    Args:
        student_labels: (N_s,) int64.
        teacher_labels: (N_t,) int64; every class of the students must occur.
        generator: CPU generator (reproducible across devices).

    Returns:
        (N_s,) int64 indices into the teacher samples.
    """
    n_classes = int(max(student_labels.max(), teacher_labels.max())) + 1
    order = torch.argsort(teacher_labels, stable=True)
    counts = torch.bincount(teacher_labels, minlength=n_classes)
    starts = torch.cumsum(counts, 0) - counts
    need = counts[student_labels]
    if (need == 0).any():
        raise DataError("a student class has no teacher samples to pair with")
    u = torch.rand(student_labels.shape[0], generator=generator, dtype=torch.float64).to(student_labels.device)
    pick = starts[student_labels] + torch.minimum((u * need).long(), need - 1)
    return order[pick]
