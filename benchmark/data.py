"""Dataset splits as tensors on the training device: loaded once, normalised and augmented there."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ackd_bench.benchmark.errors import AckdBenchError

if TYPE_CHECKING:  # the dataset format needs the geo stack; training on tensors does not
    from ackd_bench.benchmark.dataset import Dataset


class DataError(AckdBenchError):
    """The dataset cannot serve what a run needs (a class without chips, an empty split, ...)."""


class PairingError(AckdBenchError):
    """A pairing policy cannot run with this method or dataset (oracle without latent truth, ...)."""


#: Teacher-partner policies of the harness (``--pairing``): ``permuted``, fresh random same-class
#: partners every epoch (the ACKD default); ``oracle``, each student chip's same-class teacher chip
#: nearest in latent truth (:func:`oracle_partners`), fixed; ``class-mean``, the class mean of the
#: teacher's outputs (:func:`benchmark.gallery.class_mean_gallery`), no instance at all.
PAIRINGS = ("permuted", "oracle", "class-mean")


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
        latent: latent truth of the training rows, host side (datasets with latent columns only):
            ``composition`` (N, K), ``subtype`` (N,) str ("" unknown), ``factors`` (N, F), NaN
            rows where unknown (see :func:`benchmark.dataset.latent_arrays`).
    """

    x: dict[str, Tensor]
    y: dict[str, Tensor]
    mean: Tensor
    std: Tensor
    offset: float
    modality: str
    ids: dict[str, np.ndarray] = field(default_factory=dict)
    sets: dict[str, Tensor] | None = None
    latent: dict[str, np.ndarray] | None = None

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
    """Copy one modality's splits onto ``device`` (once; the training loop never touches files).

    Raises:
        DataError: the dataset has fewer than 2 classes, a split is empty or holds chips of one
            class only, or a class has no training chips (a classifier of one class scores 100 %
            and means nothing).
    """
    from ackd_bench.benchmark.dataset import SPLITS, label_sets, latent_arrays

    if len(ds.classes) < 2:
        raise DataError(f"{ds.root}: the dataset has {len(ds.classes)} class(es) ({', '.join(ds.classes)}); "
                        "classification needs at least 2; rebuild it with two or more classes")
    array = getattr(ds, modality)
    xs, ys, ids = {}, {}, {}
    latent = None
    multi = ds.manifest["modalities"][modality]["label_type"] == "multi"
    sets: dict[str, Tensor] | None = {} if multi else None
    offset = 0.0
    for split in SPLITS:
        chips, labels, rows = ds.subset(modality, split)
        sample_ids = rows["sample_id"].to_numpy(dtype=object)
        if len(labels) == 0:
            raise DataError(f"{ds.root}: the {modality} {split} split is empty; rebuild the dataset with more chips")
        if len(np.unique(labels)) < 2:
            raise DataError(f"{ds.root}: the {modality} {split} split holds chips of one class only "
                            f"({ds.classes[int(labels[0])]}), so its accuracy would mean nothing; rebuild the "
                            "dataset so that every split holds at least 2 classes")
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
        if split == "train" and ds.has_latent:
            latent = latent_arrays(rows, len(ds.classes), len(ds.manifest["latent"]["factors"]))
    present = torch.bincount(ys["train"], minlength=len(ds.classes))
    if (present == 0).any():
        missing = [ds.classes[k] for k in torch.nonzero(present == 0).flatten().tolist()]
        raise DataError(f"{ds.root}: no {modality} training chips of class(es) {', '.join(missing)}")
    train = xs["train"].double() + offset
    mean = train.mean(dim=(0, 2, 3))
    std = train.std(dim=(0, 2, 3)).clamp_min(1e-6)
    del array
    return ModalityData(x=xs, y=ys, mean=mean.float(), std=std.float(), offset=offset, modality=modality, ids=ids,
                        sets=sets, latent=latent)


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


# ---- latent truth: oracle partners and partner quality ------------------------------------------


def oracle_partners(student: ModalityData, teacher: ModalityData) -> Tensor:
    """For every student training chip, the same-class teacher training chip nearest in latent truth.

    The latent distance between student chip s and teacher chip t is

        d(s, t) = sqrt(‖c_s − c_t‖² + ‖z_s − z_t‖²)

    with c the ``latent_composition`` (class shares) and z the ``latent_factors`` standardised per
    factor (mean and standard deviation over the training chips of both modalities that carry
    factors; the factor term is left out where either chip's factors are unknown). Sub-types come
    first: a candidate whose ``latent_subtype`` equals the student's (both known) beats every
    candidate whose does not (a mismatch adds a penalty larger than any d of the class), so the
    oracle is the nearest chip of the student's own sub-type where one exists, else the nearest
    overall. Candidates are the teacher chips of the student's class (multi-label teachers:
    carrying it); ties go to the first teacher row.

    Returns:
        (N_s,) int64 teacher training rows, on the student data's device.

    Raises:
        PairingError: either modality lacks latent truth.
    """
    _require_latent(student, teacher)
    partners = np.empty(student.y["train"].shape[0], dtype=np.int64)
    for s_rows, t_rows, _, latent_d, same in _latent_blocks(student, teacher):
        partners[s_rows] = t_rows[np.argmin(_oracle_cost(latent_d, same), axis=1)]
    return torch.from_numpy(partners).to(student.y["train"].device)


def partner_quality(student: ModalityData, teacher: ModalityData, pairings: dict[str, Tensor]) -> dict[str, Any]:
    """How close in latent truth the teacher partners of the student training chips are.

    For each named pairing (teacher row of every student chip; rows < 0, "no partner", are left
    out), and for a uniformly random same-class partner (the exact expectation, not a draw) and the
    oracle partners (:func:`oracle_partners`): ``composition_distance``, the mean L2 distance
    between a student chip's ``latent_composition`` and its partner's; ``subtype_agreement``, the
    share of student chips with a known sub-type whose partner has the same one (None when no
    student chip has a known sub-type).

    Raises:
        PairingError: either modality lacks latent truth.
    """
    _require_latent(student, teacher)
    s_comp, s_sub = student.latent["composition"], student.latent["subtype"]
    known = s_sub != ""
    out: dict[str, Any] = {"students": int(len(s_sub)), "students_with_subtype": int(known.sum()),
                           "definition": "composition_distance: mean L2 between a student chip's latent_composition "
                                         "and its partner's; subtype_agreement: share of student chips with a known "
                                         "sub-type whose partner has the same; random_same_class: expectation over a "
                                         "uniformly random same-class partner; oracle: nearest in latent truth"}
    random_d = np.zeros(len(s_sub))
    random_same = np.zeros(len(s_sub))
    oracle = np.empty(len(s_sub), dtype=np.int64)
    for s_rows, t_rows, composition_d, latent_d, same in _latent_blocks(student, teacher):
        random_d[s_rows] = composition_d.mean(axis=1)
        random_same[s_rows] = same.mean(axis=1)
        oracle[s_rows] = t_rows[np.argmin(_oracle_cost(latent_d, same), axis=1)]
    out["random_same_class"] = _quality_summary(random_d, random_same, known)
    t_comp, t_sub = teacher.latent["composition"], teacher.latent["subtype"]
    for name, partner in {"oracle": oracle, **{k: v.cpu().numpy() for k, v in pairings.items()}}.items():
        has = partner >= 0
        p = np.where(has, partner, 0)
        distance = np.linalg.norm(s_comp - t_comp[p], axis=1)
        agree = (s_sub == t_sub[p]) & known
        out[name] = _quality_summary(distance[has], agree[has].astype(np.float64), known[has])
    return out


def _quality_summary(distance: np.ndarray, agreement: np.ndarray, known: np.ndarray) -> dict[str, Any]:
    return {"composition_distance": float(distance.mean()) if len(distance) else None,
            "subtype_agreement": float(agreement[known].mean()) if known.any() else None,
            "n": int(len(distance))}


def _oracle_cost(latent_d: np.ndarray, same: np.ndarray) -> np.ndarray:
    # A mismatch costs more than the largest distance of the block: sub-type agreement decides first.
    return latent_d + (~same) * (latent_d.max(initial=0.0) + 1.0)


def _require_latent(student: ModalityData, teacher: ModalityData) -> None:
    if student.latent is None or teacher.latent is None:
        missing = " and ".join(d.modality for d in (student, teacher) if d.latent is None)
        raise PairingError(f"the {missing} training chips carry no latent truth (latent_composition, latent_subtype, "
                           "latent_factors)")


def _standardized_factors(student: ModalityData, teacher: ModalityData):
    """Latent factors standardised per factor over the training chips of both modalities that carry
    them (0 where unknown), and which rows carry them: (z_s, z_t, known_s, known_t)."""
    s, t = student.latent, teacher.latent
    pooled = np.concatenate([s["factors"], t["factors"]])
    rows_known = ~np.isnan(pooled).any(axis=1) & (pooled.shape[1] > 0)
    mean = pooled[rows_known].mean(axis=0) if rows_known.any() else np.zeros(pooled.shape[1])
    std = pooled[rows_known].std(axis=0) if rows_known.any() else np.ones(pooled.shape[1])
    std = np.where(std > 0, std, 1.0)
    z_s, z_t = (np.nan_to_num((f - mean) / std) for f in (s["factors"], t["factors"]))
    return z_s, z_t, rows_known[:len(z_s)], rows_known[len(z_s):]


def latent_vectors(student: ModalityData, teacher: ModalityData) -> tuple[np.ndarray, np.ndarray]:
    """Every training chip's latent truth as one vector [c, z]: the ``latent_composition`` c and the
    standardised ``latent_factors`` z of :func:`oracle_partners` (z = 0 where unknown), so that the
    Euclidean distance between a student and a teacher vector is the oracle's latent distance d
    whenever both carry factors. A space no method sees or optimises: the diagnostics' truth.

    Returns:
        (N_s, K + F) and (N_t, K + F) float64 arrays, training rows in order.

    Raises:
        PairingError: either modality lacks latent truth.
    """
    _require_latent(student, teacher)
    z_s, z_t, _, _ = _standardized_factors(student, teacher)
    return (np.concatenate([student.latent["composition"], z_s], axis=1),
            np.concatenate([teacher.latent["composition"], z_t], axis=1))


def _latent_blocks(student: ModalityData, teacher: ModalityData):
    """Per student class: (student rows, candidate teacher rows, composition L2 (S, T), latent distance
    d (S, T, see :func:`oracle_partners`), same known sub-type (S, T) bool), float64 on the host."""
    s, t = student.latent, teacher.latent
    z_s, z_t, known_s, known_t = _standardized_factors(student, teacher)
    codes = {name: i for i, name in enumerate(sorted(set(s["subtype"]) | set(t["subtype"])))}
    code_s = np.array([codes[x] if x else -1 for x in s["subtype"]], dtype=np.int64)
    code_t = np.array([codes[x] if x else -2 for x in t["subtype"]], dtype=np.int64)  # -1 != -2: unknown never agrees
    y_s = student.y["train"].cpu().numpy()
    carriers = teacher.sets["train"].cpu().numpy() > 0 if teacher.sets is not None else None
    y_t = teacher.y["train"].cpu().numpy()
    for k in np.unique(y_s):
        s_rows = np.flatnonzero(y_s == k)
        t_rows = np.flatnonzero(carriers[:, k] if carriers is not None else y_t == k)
        if t_rows.size == 0:
            raise DataError(f"no teacher training chip of class {k} to pair with")
        composition_sq = _squared_distances(s["composition"][s_rows], t["composition"][t_rows])
        factor_sq = (_squared_distances(z_s[s_rows], z_t[t_rows])
                     * known_s[s_rows, None] * known_t[None, t_rows])
        same = code_s[s_rows, None] == code_t[None, t_rows]
        yield s_rows, t_rows, np.sqrt(composition_sq), np.sqrt(composition_sq + factor_sq), same


def _squared_distances(a: np.ndarray, b: np.ndarray, chunk_elements: int = 1 << 22) -> np.ndarray:
    """(len(a), len(b)) squared Euclidean distances from explicit differences (exact 0 for equal rows)."""
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.float64)
    step = max(1, chunk_elements // max(1, b.shape[0] * max(1, a.shape[1])))
    for i in range(0, a.shape[0], step):
        out[i:i + step] = np.square(a[i:i + step, None, :] - b[None, :, :]).sum(axis=-1)
    return out
