"""A folder of meshes / clouds, one sub-folder per class: `root/<class>/*` or `root/{train,val,test}/<class>/*`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.files import SUPPORTED_EXTENSIONS, read_points

from .errors import DatasetError

SPLITS = ("train", "val", "test")


def stable_hash(text: str) -> int:
    """A hash that, unlike hash(), is the same in every process and on every machine."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def hash_split(key: str, fractions=(0.8, 0.1, 0.1)) -> str:
    """Deterministic split of an item by its key, so adding files never moves existing ones between splits."""
    u = stable_hash(key) % 10_000 / 10_000
    return "train" if u < fractions[0] else "val" if u < fractions[0] + fractions[1] else "test"


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


class MeshFolder(Dataset):
    """Items are (points float32 (num_points, 3), label int); labels are the sorted class-folder names.

    With `train/ val/ test/` folders, `split` picks one (None: all); without them a split is drawn 80/10/10 from a
    hash of each file's path relative to root. Sampled clouds are cached in memory.
    """

    def __init__(self, root, split: str | None = None, num_points: int = 2048, seed: int = 0):
        if split not in (None, *SPLITS):
            raise ValueError(f"split must be one of {SPLITS} or None, not {split!r}")
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"Folder not found: {root}; create it with one sub-folder of model files per class.")
        split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
        if split_dirs and split and not (root / split).is_dir():
            raise DatasetError(f"{root} has split folders {[d.name for d in split_dirs]} but no {split}/; add it.")
        bases = ([root / split] if split else split_dirs) if split_dirs else [root]
        self.labels = sorted({d.name for b in split_dirs or [root] for d in b.iterdir() if d.is_dir() and _visible(d)})
        self.files, targets = [], []
        for label, cls in enumerate(self.labels):
            for base in bases:
                for f in sorted((base / cls).rglob("*")):
                    rel = f.relative_to(root).as_posix()
                    if (f.is_file() and f.suffix.lower() in SUPPORTED_EXTENSIONS and _visible(f)
                            and (split_dirs or split is None or hash_split(rel) == split)):
                        self.files.append(f)
                        targets.append(label)
        if not self.files:
            raise DatasetError(f"No model files{f' for split {split!r}' if split else ''} under {root}; expected "
                               f"<class>/<file> with extensions {', '.join(SUPPORTED_EXTENSIONS)}.")
        self.targets = np.array(targets, dtype=np.int64)
        self.root, self.split, self.num_points, self.seed = root, split, num_points, seed
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, i: int) -> np.ndarray:
        if i not in self._cache:
            f = self.files[i]
            seed = (self.seed + stable_hash(f.relative_to(self.root).as_posix())) % 2**32
            pts = read_points(f, num_points=self.num_points, seed=seed)
            if len(pts) != self.num_points:  # clouds come at their own size; draw a fixed-size subset
                rng = np.random.default_rng(seed)
                pts = pts[rng.choice(len(pts), self.num_points, replace=len(pts) < self.num_points)]
            self._cache[i] = pts
        return self._cache[i]

    def __getitem__(self, i):
        return torch.from_numpy(self._load(i).copy()), int(self.targets[i])  # a copy: augmentations may work in place
