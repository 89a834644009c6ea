"""The demo world's latent truth: true class, sub-type and appearance factors, as rasters.

The world writes them beside its imagery as a STAC collection of its own (:data:`TRUTH_COLLECTION`),
one item per region with three COG assets: ``class`` (true WorldCover code), ``subtype`` (sub-type
id; the names are in the item's ``ackd:subtypes``, id k naming entry k - 1, 0 unknown) and
``factors`` (one band per factor of ``ackd:factors``, value / 255). A build that is told about the
collection reads them per chip like any other asset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classes import CLASS_CODES

TRUTH_COLLECTION = "ackd-demo-truth"
TRUTH_ASSETS = ("class", "subtype", "factors")
FACTOR_SCALE = 255  # factors are stored as round(255 * value)


@dataclass
class TruthLayers:
    """Truth rasters of a window or region on one grid: codes, sub-type ids, quantised factors."""

    label: np.ndarray
    subtype: np.ndarray
    factors: np.ndarray

    @classmethod
    def empty(cls, height: int, width: int, n_factors: int) -> TruthLayers:
        return cls(np.zeros((height, width), np.uint8), np.zeros((height, width), np.uint8),
                   np.zeros((n_factors, height, width), np.uint8))

    def put(self, top: int, left: int, part: TruthLayers) -> None:
        """Copy ``part`` into this one with its top-left corner at (top, left)."""
        rows, cols = part.label.shape
        self.label[top:top + rows, left:left + cols] = part.label
        self.subtype[top:top + rows, left:left + cols] = part.subtype
        self.factors[:, top:top + rows, left:left + cols] = part.factors

    def subsample(self, step: int) -> TruthLayers:
        """Every ``step``-th pixel along both axes (nearest-neighbour: fractions stay unbiased)."""
        return TruthLayers(self.label[::step, ::step].copy(), self.subtype[::step, ::step].copy(),
                           self.factors[:, ::step, ::step].copy())


def quantise_factors(factors: np.ndarray) -> np.ndarray:
    """Factors in [0, 1] (float32) to uint8 levels; one rounding, identical on every CPU."""
    return np.rint(np.clip(factors, 0.0, 1.0) * np.float32(FACTOR_SCALE)).astype(np.uint8)


def block_majority(labels: np.ndarray, subtypes: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Coarse labels by majority of ``factor`` × ``factor`` blocks (ties: lower code), and each
    block's most common sub-type among its pixels of that class (ties: lower id).

    Returns:
        (labels, subtypes) of shape (h / factor, w / factor).
    """
    h, w = labels.shape
    blocks = labels.reshape(h // factor, factor, w // factor, factor)
    counts = np.stack([(blocks == code).sum(axis=(1, 3)) for code in CLASS_CODES])
    majority = np.asarray(CLASS_CODES, np.uint8)[np.argmax(counts, axis=0)]
    fine_majority = np.repeat(np.repeat(majority, factor, axis=0), factor, axis=1)
    block = (np.arange(h) // factor)[:, None] * (w // factor) + (np.arange(w) // factor)[None, :]
    n_ids = 256
    keep = labels == fine_majority
    votes = np.bincount((block[keep] * n_ids + subtypes[keep]).ravel(), minlength=block.size // factor**2 * n_ids)
    votes = votes.reshape(-1, n_ids)
    return majority, np.argmax(votes, axis=1).astype(np.uint8).reshape(majority.shape)
