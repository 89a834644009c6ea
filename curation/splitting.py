"""The split stage: whole spatial blocks go to train, val or test, so no place leaks across splits."""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLIT_NAMES = ("train", "val", "test")


def assign_blocks(chips: pd.DataFrame, fractions: tuple[float, float, float], seed: int,
                  n_classes: int) -> pd.Series:
    """Assign each chip's spatial block to a split, balancing classes across splits.

    Blocks are visited in a seeded random order; each goes to the split whose per-class deficit
    (target count minus count so far, weighted by the block's class counts) is largest. With
    many blocks this approaches the target fractions per class; a block is never divided.

    Args:
        chips: needs columns ``block`` and ``label``.
        fractions: target train/val/test fractions.
        seed: RNG seed for the visiting order.
        n_classes: number of classes.

    Returns:
        The split name of every chip, aligned with ``chips``.
    """
    per_block = pd.crosstab(chips["block"], chips["label"]).reindex(columns=range(n_classes), fill_value=0)
    blocks = per_block.index.to_numpy()
    counts = per_block.to_numpy(dtype=np.float64)
    totals = counts.sum(axis=0)
    target = np.outer(np.asarray(fractions, dtype=np.float64), totals)  # (3, K)
    current = np.zeros_like(target)
    order = np.random.default_rng([seed, 7]).permutation(len(blocks))
    choice = {}
    for b in order:
        need = np.clip(target - current, 0.0, None) / np.maximum(totals, 1.0)  # (3, K)
        # An explicit product and sum, not BLAS (`@`): BLAS kernels sum in CPU-dependent orders.
        score = (need * counts[b]).sum(axis=1)
        # Ties (e.g. every split already full) go to the split furthest below its overall share.
        score += 1e-9 * (target.sum(axis=1) - current.sum(axis=1))
        s = int(np.argmax(score))
        current[s] += counts[b]
        choice[blocks[b]] = SPLIT_NAMES[s]
    return chips["block"].map(choice)
