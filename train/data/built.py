"""What the datasets our builders write have in common: points.npy (n, P, 3) + labels.npy + a manifest, y up."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DatasetError
from .folds import SPLITS


class BuiltDataset(Dataset):
    """Items are (points float32 (num_points, 3), label int) of the manifest rows `index` selects.

    `manifest` holds those rows, `groups` each item's bootstrap group (`group_of(row)`), `labels` the class names."""

    up_axis = "y"

    def __init__(self, root, index, *, labels, rows, group_of, num_points=None, split=None, fold=None):
        root = Path(root)
        points = np.load(root / "points.npy", mmap_mode="r")
        if num_points is not None and num_points > points.shape[1]:
            raise ValueError(f"num_points={num_points} but the build has {points.shape[1]} per model; rebuild with "
                             f"--points {num_points}")
        self.points = np.ascontiguousarray(points[index, :num_points])  # samples are i.i.d., so any prefix is fair
        self.targets = np.load(root / "labels.npy")[index]
        self.labels = list(labels)
        self.manifest = [rows[i] for i in index]
        self.groups = [group_of(r) for r in self.manifest]
        self.root, self.split, self.fold = root, split, fold

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        return torch.from_numpy(self.points[i].copy()), int(self.targets[i])


def split_table(table, models, extra=None) -> list[str]:
    """A build report's class table: train / val / test / total models per class, then the totals row.

    table: {class: {split: count}}; models: the build's total; extra=(header, {class: value}, total) adds a column."""
    def row(name, counts, total, more):
        return (f"{name:<18} " + " ".join(f"{counts[s]:>5}" for s in SPLITS) + f" {total:>6}"
                + (f" {more:>8}" if extra else ""))

    header, per_class, all_value = extra or ("", {}, "")
    lines = [row("class", dict(zip(SPLITS, SPLITS)), "total", header)]
    lines += [row(c, t, sum(t.values()), per_class.get(c)) for c, t in table.items()]
    return lines + [row("all", {s: sum(t[s] for t in table.values()) for s in SPLITS}, models, all_value)]


def require_build(root, outputs, hint):
    """A DatasetError saying how to build it, unless `root` holds a complete build (build.json is written last)."""
    root = Path(root)
    if not (root / "build.json").is_file() or not all((root / f).is_file() for f in outputs):
        raise DatasetError(f"No {hint[0]} build in {root}; run: python -m {hint[1]} --out {root}")
    return root


def few_shot(ds, k, seed):
    """A copy of BuiltDataset `ds` cut to k models per class, each from a different bootstrap group (kicad33: a
    family) while the class has groups left, then from its remaining models; seeded, so a (k, seed) pair is one draw.
    A class with fewer than k models keeps them all."""
    if k < 1:
        raise ValueError(f"shots must be at least 1, got {k}")
    rng = np.random.default_rng(seed)
    keep = []
    for c in sorted(set(int(t) for t in ds.targets)):
        members = [i for i in range(len(ds)) if ds.targets[i] == c]
        by_group = {}
        for i in rng.permutation(members).tolist():
            by_group.setdefault(ds.groups[i], []).append(i)
        firsts = [g[0] for g in by_group.values()]  # one random model of each group, groups in random order
        rest = [i for g in by_group.values() for i in g[1:]]
        keep += (firsts + rest)[:k]
    keep.sort()
    out = object.__new__(type(ds))
    out.__dict__.update(ds.__dict__)
    out.points, out.targets = ds.points[keep], ds.targets[keep]
    out.manifest, out.groups = [ds.manifest[i] for i in keep], [ds.groups[i] for i in keep]
    return out
