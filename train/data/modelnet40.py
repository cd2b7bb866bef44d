"""ModelNet40 in its two common distributions: `modelnet40_normal_resampled` (txt) and `modelnet40_ply_hdf5_2048`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DatasetError
from .scanobjectnn import load_h5

RESAMPLED, HDF5 = "modelnet40_normal_resampled", "modelnet40_ply_hdf5_2048"
DOWNLOAD = {
    "resampled": f"download {RESAMPLED}.zip (https://shapenet.cs.stanford.edu/media/{RESAMPLED}.zip, or a mirror) "
                 "and unzip it",
    "hdf5": f"download {HDF5}.zip (https://shapenet.cs.stanford.edu/media/{HDF5}.zip, or a mirror) and unzip it",
}


def _find(root: Path, name: str, *patterns: str) -> Path | None:
    """The dataset folder: root itself if it holds a file matching `patterns`, else root/name."""
    for d in (root, root / name):
        if any(next(d.glob(p), None) for p in patterns):
            return d
    return None


def _names(path: Path, hint: str) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"Missing {path}; {hint}.")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


class ModelNet40(Dataset):
    """Items are (points float32 (num_points, 3), label int): the first `num_points` points of each shape."""

    up_axis = "y"

    def __init__(self, root, split: str = "train", num_points: int = 1024, format: str = "auto"):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', not {split!r}")
        if format not in ("auto", "resampled", "hdf5"):
            raise ValueError(f"format must be 'auto', 'resampled' or 'hdf5', not {format!r}")
        root = Path(root)
        found = {"resampled": _find(root, RESAMPLED, "modelnet40_shape_names.txt"),
                 "hdf5": _find(root, HDF5, "shape_names.txt", "ply_data_*.h5")}
        if format == "auto":
            format = "resampled" if found["resampled"] else "hdf5" if found["hdf5"] else None
            if format is None:
                raise DatasetError(f"No ModelNet40 under {root} (looked for {RESAMPLED}/ and {HDF5}/); "
                                   f"{DOWNLOAD['resampled']} into {root}.")
        folder = found[format] or root / (RESAMPLED if format == "resampled" else HDF5)
        self.root, self.split, self.num_points, self.format = folder, split, num_points, format
        self._cache: dict[int, np.ndarray] = {}
        if format == "resampled":
            self._init_resampled(folder, split)
        else:
            self._init_hdf5(folder, split)

    def _init_resampled(self, d: Path, split: str):
        hint = f"{DOWNLOAD['resampled']} so that {d} holds it"
        self.labels = _names(d / "modelnet40_shape_names.txt", hint)
        ids = _names(d / f"modelnet40_{split}.txt", hint)
        index = {c: i for i, c in enumerate(self.labels)}
        self.files, targets = [], []
        for sid in ids:
            cls = sid.rsplit("_", 1)[0]  # "flower_pot_0001" -> "flower_pot"
            if cls not in index:
                raise DatasetError(f"{d / f'modelnet40_{split}.txt'} lists {sid!r}, whose class {cls!r} is not in "
                                   "modelnet40_shape_names.txt; the download is inconsistent.")
            self.files.append(d / cls / f"{sid}.txt")
            targets.append(index[cls])
        missing = [f for f in self.files if not f.is_file()]
        if missing:
            raise DatasetError(f"{len(missing)} of {len(self.files)} {split} files are missing (first: {missing[0]}); "
                               f"{hint}.")
        self.targets = np.array(targets, dtype=np.int64)
        self.points = None

    def _init_hdf5(self, d: Path, split: str):
        hint = f"{DOWNLOAD['hdf5']} so that {d} holds it"
        self.labels = _names(d / "shape_names.txt", hint)
        listing = d / f"{split}_files.txt"
        files = ([d / Path(ln).name for ln in _names(listing, hint)] if listing.is_file()
                 else sorted(d.glob(f"ply_data_{split}*.h5")))
        if not files:
            raise DatasetError(f"No ply_data_{split}*.h5 in {d}; {hint}.")
        parts = [load_h5(f, hint) for f in files]
        points = np.concatenate([p for p, _ in parts])
        if self.num_points > points.shape[1]:
            raise ValueError(f"num_points={self.num_points} but the h5 files hold {points.shape[1]} per shape")
        self.points = np.ascontiguousarray(points[:, :self.num_points])
        self.targets = np.concatenate([t for _, t in parts])
        if self.targets.size and self.targets.max() >= len(self.labels):
            raise DatasetError(f"Labels in {d} go up to {self.targets.max()} but shape_names.txt lists "
                               f"{len(self.labels)} classes; the download is inconsistent.")

    def _load(self, i: int) -> np.ndarray:
        if self.points is not None:
            return self.points[i]
        if i not in self._cache:
            f = self.files[i]
            try:
                pts = np.loadtxt(f, delimiter=",", usecols=(0, 1, 2), max_rows=self.num_points, dtype=np.float32,
                                 ndmin=2)
            except ValueError as e:
                raise DatasetError(f"{f} is not 'x,y,z,nx,ny,nz' lines; re-download the dataset.") from e
            if len(pts) < self.num_points:
                raise DatasetError(f"{f} has {len(pts)} points, fewer than num_points={self.num_points}.")
            self._cache[i] = pts
        return self._cache[i]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        return torch.from_numpy(self._load(i).copy()), int(self.targets[i])  # a copy: augmentations may work in place
