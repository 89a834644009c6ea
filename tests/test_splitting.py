"""Spatial block splits: whole blocks per split, class balance near the targets, reproducible."""

import numpy as np
import pandas as pd

from ackd_bench.curation.splitting import assign_blocks


def _chips(n_blocks=60, per_block=12, n_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(n_blocks):
        dominant = b % n_classes  # blocks are spatially coherent: mostly one class each
        labels = np.where(rng.random(per_block) < 0.8, dominant, rng.integers(0, n_classes, per_block))
        rows += [{"block": f"b{b:03d}", "label": int(k)} for k in labels]
    return pd.DataFrame(rows)


def test_blocks_never_span_two_splits():
    chips = _chips()
    split = assign_blocks(chips, (0.7, 0.15, 0.15), seed=0, n_classes=4)
    per_block = pd.DataFrame({"block": chips["block"], "split": split}).groupby("block")["split"].nunique()
    assert (per_block == 1).all()
    assert set(split) == {"train", "val", "test"}


def test_class_shares_follow_targets():
    chips = _chips(n_blocks=120)
    split = assign_blocks(chips, (0.6, 0.2, 0.2), seed=3, n_classes=4)
    share = pd.crosstab(chips["label"], split, normalize="index")
    assert np.allclose(share["train"], 0.6, atol=0.08)
    assert np.allclose(share["val"], 0.2, atol=0.08)
    assert np.allclose(share["test"], 0.2, atol=0.08)


def test_seed_changes_assignment_and_is_reproducible():
    chips = _chips()
    a = assign_blocks(chips, (0.7, 0.15, 0.15), seed=1, n_classes=4)
    b = assign_blocks(chips, (0.7, 0.15, 0.15), seed=1, n_classes=4)
    c = assign_blocks(chips, (0.7, 0.15, 0.15), seed=2, n_classes=4)
    assert a.equals(b)
    assert not a.equals(c)
