"""A built benchmark in your own training loop: PyTorch datasets, same-class partners, xarray.

``load(path)`` opens a dataset written by ``build-dataset`` and hands out what a plain PyTorch,
Lightning or torchgeo loop expects, without the harness::

    from ackd_bench.benchmark import load

    bench = load("data/demo")
    student = bench.split("rgb", "train")            # samples: {"image": (3, H, W) float32, "label": int64}
    teacher = bench.split("ms", "train")
    loader = DataLoader(student, batch_size=64, shuffle=True, collate_fn=bench.partners(teacher, seed=0))
    for batch in loader:                             # + "partner_image", "partner_label" (same class)
        ...

Samples follow torchgeo's convention: a dict with ``image`` (float32, C x H x W) and ``label``
(int64 scalar), ``labels`` (float32 multi-hot over the classes) for multi-label modalities, and
the latent truth when the dataset carries it (``latent_composition``, ``latent_factors``,
``latent_subtype``). ``normalize=True`` (default) standardises each band with the training
split's mean and standard deviation, the statistics the harness uses (`Benchmark.stats`).

Partners are drawn as the harness draws them (`benchmark.data.pair_same_class`; class-carrying
teachers for multi-label ones): for every student sample a uniformly random teacher sample of its
class, afresh for every batch, from a seeded generator (each DataLoader worker derives its own).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import default_collate, get_worker_info

from ackd_bench.benchmark.data import DataError, pair_carrying_class, pair_same_class

if TYPE_CHECKING:
    import xarray as xr

    from ackd_bench.benchmark.dataset import Dataset


class ChipDataset(TorchDataset):
    """One modality and split of a built dataset as a map-style PyTorch dataset.

    Args:
        dataset: the opened dataset (`benchmark.dataset.load_dataset`).
        modality: ``"ms"`` or ``"rgb"``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        mean: per-band means to standardise with (None: raw digital numbers).
        std: per-band standard deviations to standardise with (None: raw digital numbers).
        transforms: a callable applied to every sample dict (after normalisation), as in torchgeo.

    Attributes:
        rows: the sample table rows, in dataset order (``sample_id``, ``split``, geometry, ...).
        targets: (N,) int64 labels, for samplers that balance classes.
    """

    def __init__(self, dataset: Dataset, modality: str, split: str, *, mean: torch.Tensor | None = None,
                 std: torch.Tensor | None = None, transforms: Any = None) -> None:
        from ackd_bench.benchmark.dataset import label_sets, latent_arrays

        chips, labels, rows = dataset.subset(modality, split)
        self.modality, self.split, self.rows = modality, split, rows.reset_index(drop=True)
        self.bands: list[str] = list(dataset.manifest["modalities"][modality]["bands"])
        self.classes: list[str] = dataset.classes
        self.chips = chips
        self.targets = torch.from_numpy(labels.astype(np.int64))
        multi = dataset.manifest["modalities"][modality]["label_type"] == "multi"
        self.sets = torch.from_numpy(label_sets(rows, len(self.classes))) if multi else None
        self.latent = None
        if dataset.has_latent:
            self.latent = latent_arrays(rows, len(self.classes), len(dataset.manifest["latent"]["factors"]))
        self.mean = None if mean is None else mean.float()
        self.std = None if std is None else std.float()
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = torch.from_numpy(self.chips[index].astype(np.float32))
        if self.mean is not None:
            image = (image - self.mean[:, None, None]) / self.std[:, None, None]
        sample: dict[str, Any] = {"image": image, "label": self.targets[index]}
        if self.sets is not None:
            sample["labels"] = self.sets[index]
        if self.latent is not None:
            sample["latent_composition"] = torch.from_numpy(self.latent["composition"][index].astype(np.float32))
            sample["latent_factors"] = torch.from_numpy(self.latent["factors"][index].astype(np.float32))
            sample["latent_subtype"] = str(self.latent["subtype"][index])
        return self.transforms(sample) if self.transforms is not None else sample


class SameClassPartners:
    """A ``collate_fn`` that adds a same-class teacher partner to every student sample of a batch.

    The batch gains ``partner_image``, ``partner_label`` (equal to ``label``) and ``partner_index``
    (rows of ``teacher``). Partners are drawn afresh for every batch, uniformly among the teacher
    samples of the student's class (whose class set carries it, for a multi-label teacher).

    Args:
        teacher: the teacher modality's dataset (usually ``bench.split("ms", "train")``).
        seed: seeds the draws; in a DataLoader worker the seed is combined with the worker's id, so
            workers draw different partners and a run is reproducible for a fixed worker count.

    Raises:
        ValueError (when called): a student class has no teacher sample.
    """

    def __init__(self, teacher: ChipDataset, seed: int = 0) -> None:
        self.teacher = teacher
        self.seed = seed
        self._generators: dict[int, torch.Generator] = {}

    def _generator(self) -> torch.Generator:
        info = get_worker_info()
        worker = info.id if info is not None else -1
        if worker not in self._generators:
            self._generators[worker] = torch.Generator().manual_seed(self.seed * 1009 + worker + 1)
        return self._generators[worker]

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = default_collate(samples)
        try:  # the harness's own draws, which also refuse a class without teacher samples
            if self.teacher.sets is not None:
                picks = pair_carrying_class(batch["label"], self.teacher.sets, self._generator())
            else:
                picks = pair_same_class(batch["label"], self.teacher.targets, self._generator())
        except DataError as err:
            raise ValueError(f"{err} (in this batch)") from None
        partners = [self.teacher[int(i)] for i in picks]
        batch["partner_image"] = torch.stack([p["image"] for p in partners])
        batch["partner_label"] = torch.stack([p["label"] for p in partners])
        batch["partner_index"] = picks
        return batch


@dataclass
class Benchmark:
    """An opened benchmark: per-modality, per-split PyTorch datasets, statistics and partners.

    Attributes:
        dataset: the underlying `benchmark.dataset.Dataset` (manifest, sample table, arrays).
    """

    dataset: Dataset
    _stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, init=False, repr=False)

    @property
    def classes(self) -> list[str]:
        return self.dataset.classes

    def bands(self, modality: str) -> list[str]:
        return list(self.dataset.manifest["modalities"][modality]["bands"])

    def stats(self, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-band mean and standard deviation of the modality's training chips (float32, raw units).

        Computed once per modality, in float64 over chunks of chips (no float copy of the split);
        the standard deviation is the unbiased one, as the harness's.
        """
        if modality not in self._stats:
            chips, _, _ = self.dataset.subset(modality, "train")
            # Shifted sums (by the first chip's band means) keep the variance free of cancellation.
            shift = chips[:1].astype(np.float64).mean(axis=(0, 2, 3)) if len(chips) else np.zeros(chips.shape[1])
            s1, s2 = np.zeros(chips.shape[1]), np.zeros(chips.shape[1])
            for start in range(0, len(chips), 256):
                block = chips[start:start + 256].astype(np.float64) - shift[None, :, None, None]
                s1 += block.sum(axis=(0, 2, 3))
                s2 += (block**2).sum(axis=(0, 2, 3))
            n = chips.shape[0] * chips.shape[2] * chips.shape[3]
            mean = shift + s1 / n
            var = np.maximum(s2 - s1**2 / n, 0.0) / max(n - 1, 1)
            self._stats[modality] = (torch.from_numpy(mean).float(),
                                     torch.from_numpy(np.sqrt(var)).clamp_min(1e-6).float())
        return self._stats[modality]

    def split(self, modality: str, split: str, *, normalize: bool = True, transforms: Any = None) -> ChipDataset:
        """The PyTorch dataset of one modality and split (standardised with `stats` by default)."""
        mean, std = self.stats(modality) if normalize else (None, None)
        return ChipDataset(self.dataset, modality, split, mean=mean, std=std, transforms=transforms)

    def partners(self, teacher: ChipDataset, *, seed: int = 0) -> SameClassPartners:
        """A collate function drawing same-class ``teacher`` partners for a student DataLoader."""
        return SameClassPartners(teacher, seed=seed)

    def to_xarray(self, modality: str) -> xr.Dataset:
        """The modality's chips as an ``xarray.Dataset`` (variable ``image``, dims sample x band x y x x).

        Coordinates: ``sample`` (sample ids), ``band`` (band names), and per sample ``split``,
        ``label``, ``class_name``, ``lon``/``lat`` (chip centre), ``datetime``, ``item_id`` and, with
        latent truth, ``latent_subtype``, ``latent_composition`` (sample x class) and
        ``latent_factors`` (sample x factor). The chips stay memory-mapped when they are stored in
        sample order. Attributes: the modality's manifest entry and the dataset fingerprint.
        """
        import xarray as xr

        from ackd_bench.benchmark.dataset import latent_arrays

        ds = self.dataset
        rows = ds.samples[ds.samples["modality"] == modality].sort_values("array_index")
        index = rows["array_index"].to_numpy(dtype=np.int64)
        array = getattr(ds, modality)
        data = array if np.array_equal(index, np.arange(array.shape[0])) else np.asarray(array[index])
        centres = rows.geometry.representative_point()
        coords: dict[str, Any] = {
            "sample": rows["sample_id"].to_numpy(dtype=str),
            "band": self.bands(modality),
            "split": ("sample", rows["split"].to_numpy(dtype=str)),
            "label": ("sample", rows["label"].to_numpy(dtype=np.int64)),
            "class_name": ("sample", rows["label_name"].to_numpy(dtype=str)),
            "lon": ("sample", centres.x.to_numpy()),
            "lat": ("sample", centres.y.to_numpy()),
            "datetime": ("sample", np.array(rows["datetime"].str.replace("Z", "", regex=False), dtype="datetime64[ns]")),
            "item_id": ("sample", rows["item_id"].to_numpy(dtype=str)),
        }
        if ds.has_latent:
            latent = latent_arrays(rows, len(ds.classes), len(ds.manifest["latent"]["factors"]))
            coords["class"] = ds.classes
            coords["factor"] = list(ds.manifest["latent"]["factors"])
            coords["latent_subtype"] = ("sample", latent["subtype"])
            coords["latent_composition"] = (("sample", "class"), latent["composition"])
            coords["latent_factors"] = (("sample", "factor"), latent["factors"])
        manifest = ds.manifest["modalities"][modality]
        attrs = {"fingerprint": ds.fingerprint, "modality": modality,
                 **{k: v for k, v in manifest.items() if k != "bands" and v is not None}}
        attrs = {k: (", ".join(v) if isinstance(v, list) else v) for k, v in attrs.items()}
        return xr.Dataset({"image": (("sample", "band", "y", "x"), data)}, coords=coords, attrs=attrs)


def load(path: str | Path, *, verify: bool = True) -> Benchmark:
    """Open a built dataset for your own training loop (see the module docstring).

    Args:
        path: the dataset directory (``build-dataset --out``).
        verify: check every file's checksum first (as ``inspect`` does).

    Raises:
        DatasetNotFoundError, DatasetCorruptError: as `benchmark.dataset.load_dataset`.
    """
    from ackd_bench.benchmark.dataset import load_dataset

    return Benchmark(load_dataset(Path(path), verify=verify))
