"""Grouped, class-stratified splits and k-fold cross-validation, shared by the built benchmarks (kicad33, SweetHome3D).

Two facts live here and nowhere else:
- how groups (families, upstream models) are dealt into bins (folds or train/val/test) within each class, so that
  every class gets its share and no group straddles two bins (`assign_groups`);
- which folds a cross-validation round `k` trains, validates and tests on (`fold_split`): test = fold k,
  val = fold (k + 1) % 5, train = the other three, so over k = 0..4 every item is tested exactly once.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .folder import stable_hash

NUM_FOLDS = 5
SPLITS = ("train", "val", "test")


def assign_groups(classes, groups, fractions, seed: int | str = 0) -> list[int]:
    """Bin index per item: within each class, whole groups go to bins in proportion to `fractions`.

    Groups are dealt largest first (ties in a seeded hash order), each to the bin furthest below its target share of
    the class; that keeps shares close even when a few groups are large, and is deterministic given the seed.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    out = [-1] * len(classes)
    members = defaultdict(lambda: defaultdict(list))  # class -> group -> item indices
    for i, (c, g) in enumerate(zip(classes, groups)):
        members[c][g].append(i)
    for cls, by_group in members.items():
        targets = fractions / fractions.sum() * sum(map(len, by_group.values()))
        filled = np.zeros(len(fractions))
        # equal deficits (equal folds) go to the first bin in a per-class order, so that no fold collects every
        # class's remainder
        order = sorted(range(len(fractions)), key=lambda b: stable_hash(f"{seed}:{cls}:{b}"))
        for g in sorted(by_group, key=lambda g: (-len(by_group[g]), stable_hash(f"{seed}:{g}"), g)):
            deficit = targets - filled
            b = next(b for b in order if deficit[b] >= deficit.max() - 1e-9)
            filled[b] += len(by_group[g])
            for i in by_group[g]:
                out[i] = b
    return out


def assign_folds(classes, groups, seed: int | str = 0, num_folds: int = NUM_FOLDS) -> list[int]:
    """Fold (0..num_folds-1) per item: equal, class-stratified shares of whole groups."""
    return assign_groups(classes, groups, [1.0] * num_folds, f"{seed}:folds")


def fold_split(fold: int, k: int, num_folds: int = NUM_FOLDS) -> str:
    """The split an item of fold `fold` belongs to in cross-validation round `k`."""
    if not 0 <= k < num_folds:
        raise ValueError(f"fold must be in 0..{num_folds - 1}, not {k!r}")
    return "test" if fold == k else "val" if fold == (k + 1) % num_folds else "train"


def select(split: str | None, splits=None, folds=None, fold: int | None = None,
           num_folds: int = NUM_FOLDS) -> np.ndarray:
    """Indices of the items in `split` (None: all): by the fold rule when `fold` is given, else by `splits`."""
    if split not in (None, *SPLITS):
        raise ValueError(f"split must be 'train', 'val', 'test' or None, not {split!r}")
    labels = splits if fold is None else [fold_split(f, fold, num_folds) for f in folds]
    return np.array([i for i, s in enumerate(labels) if split is None or s == split], dtype=np.int64)
