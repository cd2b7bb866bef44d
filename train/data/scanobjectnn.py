"""ScanObjectNN (Uy et al., ICCV 2019) from the official h5 files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DatasetError

CLASSES = ["bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed", "pillow",
           "sink", "sofa", "toilet"]
VARIANTS = {  # variant -> (folder, file stem)
    "PB_T50_RS": ("main_split", "objectdataset_augmentedrot_scale75"),
    "OBJ_BG": ("main_split", "objectdataset"),
    "OBJ_ONLY": ("main_split_nobg", "objectdataset"),
}
DOWNLOAD = "download h5_files.zip from https://hkust-vgd.github.io/scanobjectnn/ (terms of use apply) and unzip it"


def load_h5(path: Path, hint: str) -> tuple[np.ndarray, np.ndarray]:
    """(data float32 (n, P, 3), label int64 (n,)) of an h5 file with keys `data` and `label`."""
    import h5py

    if not path.is_file():
        raise DatasetError(f"Missing {path}; {hint}.")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path} is not a readable h5 file; {hint}.") from e
    with f:
        if "data" not in f or "label" not in f:
            raise DatasetError(f"{path} has keys {sorted(f.keys())}, expected 'data' and 'label'; "
                               "it is not a point-cloud h5 file of this dataset.")
        data, label = np.asarray(f["data"], dtype=np.float32), np.asarray(f["label"]).reshape(-1)
    if data.ndim != 3 or data.shape[2] < 3 or len(data) != len(label):
        raise DatasetError(f"{path} holds data {data.shape} and label {label.shape}; expected (n, points, 3) and (n,).")
    return np.ascontiguousarray(data[..., :3]), label.astype(np.int64)


class ScanObjectNN(Dataset):
    """Items are (points float32 (num_points, 3), label int); the first `num_points` of each 2048-point object."""

    up_axis = "y"

    def __init__(self, root, split: str = "train", variant: str = "PB_T50_RS", num_points: int = 2048):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', not {split!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {list(VARIANTS)}, not {variant!r}")
        root = Path(root)
        if not (root / VARIANTS[variant][0]).is_dir() and (root / "h5_files").is_dir():
            root = root / "h5_files"  # accept the folder the official zip unpacks into, or its parent
        folder, stem = VARIANTS[variant]
        path = root / folder / f"{'training' if split == 'train' else 'test'}_{stem}.h5"
        self.points, self.targets = load_h5(path, f"{DOWNLOAD} under {root}")
        if num_points > self.points.shape[1]:
            raise ValueError(f"num_points={num_points} but {path.name} has only {self.points.shape[1]} per object")
        if self.targets.size and (self.targets.min() < 0 or self.targets.max() >= len(CLASSES)):
            raise DatasetError(f"{path} has labels outside 0..{len(CLASSES) - 1}; it is not a ScanObjectNN file.")
        self.points = np.ascontiguousarray(self.points[:, :num_points])
        self.labels = list(CLASSES)
        self.split, self.variant, self.num_points = split, variant, num_points

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        return torch.from_numpy(self.points[i].copy()), int(self.targets[i])  # a copy: augmentations may work in place
