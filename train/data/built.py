"""What the datasets our builders write have in common: points.npy (n, P, 3) + labels.npy + a manifest, y up."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DatasetError


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


def require_build(root, outputs, hint):
    """A DatasetError saying how to build it, unless `root` holds a complete build (build.json is written last)."""
    root = Path(root)
    if not (root / "build.json").is_file() or not all((root / f).is_file() for f in outputs):
        raise DatasetError(f"No {hint[0]} build in {root}; run: python -m {hint[1]} --out {root}")
    return root
