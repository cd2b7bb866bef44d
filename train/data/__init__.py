"""Point-cloud file readers and datasets. Every dataset yields (points float32 tensor (N, 3), label int) and has
`labels` (class names) and `targets` (int array).

Point files are read by `zoo.read_points` (zoo/files.py). Names are imported lazily: `python -m train.data.sh3d`
must not find its module pre-imported.
"""

import importlib

_HOME = {
    "DatasetError": "errors", "MeshFolder": "folder", "ModelNet40": "modelnet40", "ScanObjectNN": "scanobjectnn",
    "SH3D": "sh3d", "Kicad33": "kicad",
}
_DATASETS = {"scanobjectnn": "ScanObjectNN", "modelnet40": "ModelNet40", "folder": "MeshFolder", "sh3d": "SH3D",
             "kicad33": "Kicad33"}
__all__ = [*_HOME, "DATASETS"]


def __getattr__(name):
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    if name == "DATASETS":  # {"scanobjectnn": ScanObjectNN, ...} for command lines
        return {key: __getattr__(cls) for key, cls in _DATASETS.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
