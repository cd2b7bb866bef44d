"""Point-cloud datasets, in one table. Every dataset yields (points float32 tensor (N, 3), label int) and has `labels`
(class names) and `targets` (int array).

TABLE is the one place a dataset is registered: train/run.py's --dataset choices and builder, and the zoo's
registry (a recipe's labels, its training command) read it. Adding a dataset is one loader module and one row
(`register` adds one at run time). A loader module may declare CLASSES (the class list, when it is fixed), UP_PRIOR
(the weight of predict(up="auto")'s upright prior for its objects), DATA_LICENCE and WEIGHTS_LICENSE (what an entry
trained on it says).

Point files are read by `zoo.read_points` (zoo/files.py). Loaders are imported lazily: `python -m train.data.sh3d`
must not find its module pre-imported, and reading the table costs no import of a loader.
"""
import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset. The loader is called `Loader(root, split, num_points=..., [fold=...], [<variant_kw>=...])`."""
    name: str  # the --dataset value, and an entry's `dataset`
    loader: str  # "module:Class"; a module starting with "." is one of train.data's
    help: str = ""  # one line for --dataset's help
    val: str = "split"  # "split": the loader has a val split; "carve": 10% of train (fixed seed) becomes val
    folds: bool = False  # takes --fold (5-fold cross-validation rounds)
    variant_kw: str | None = None  # the loader's keyword that --variant-data fills
    variants: tuple = ()  # the values it takes, the default first
    variant_fallback: bool = False  # a value it does not take means the default (else the loader reports it)
    entries: dict = field(default_factory=dict)  # other entry `dataset` names of it -> their --variant-data

    def module(self):
        mod = self.loader.partition(":")[0]
        return importlib.import_module(mod, __name__) if mod.startswith(".") else importlib.import_module(mod)

    @property
    def cls(self):
        return getattr(self.module(), self.loader.partition(":")[2])

    @property
    def classes(self):
        """The class list its loader module declares (CLASSES), or None when the data says (a mesh folder)."""
        classes = getattr(self.module(), "CLASSES", None)
        return None if classes is None else tuple(classes)

    @property
    def up_prior(self):
        return getattr(self.module(), "UP_PRIOR", None)

    @property
    def data_licence(self):
        return getattr(self.module(), "DATA_LICENCE", None)

    @property
    def weights_license(self):
        return getattr(self.module(), "WEIGHTS_LICENSE", None)

    def load(self, root, split, *, num_points, fold=None, variant=None):
        kw = dict(num_points=num_points)
        if self.folds:
            kw["fold"] = fold
        elif fold is not None:
            raise ValueError(f"--fold applies to the cross-validated datasets "
                             f"({', '.join(n for n, s in TABLE.items() if s.folds)}), not {self.name}")
        if self.variant_kw:
            if variant is None or (self.variant_fallback and variant not in self.variants):
                variant = self.variants[0]
            kw[self.variant_kw] = variant
        return self.cls(root, split, **kw)

    def flags(self, variant=None):
        """train/run.py's flags for this dataset (and a variant)."""
        return f"--dataset {self.name}" + (f" --variant-data {variant}" if variant else "")


TABLE = {s.name: s for s in (
    DatasetSpec("sh3d", ".sh3d:SH3D", "the offline SweetHome3D benchmark (python -m train.data.sh3d)", folds=True),
    DatasetSpec("kicad33", ".kicad:Kicad33", "the offline electronic-component benchmark (python -m train.data.kicad)",
                folds=True),
    DatasetSpec("scanobjectnn", ".scanobjectnn:ScanObjectNN", "ScanObjectNN h5 (main_split/)", val="carve",
                variant_kw="variant", variants=("PB_T50_RS", "OBJ_BG", "OBJ_ONLY"),
                entries={"scanobjectnn-pb-t50-rs": "PB_T50_RS"}),
    DatasetSpec("modelnet40", ".modelnet40:ModelNet40", "ModelNet40 resampled txt or hdf5", val="carve",
                variant_kw="format", variants=("auto", "resampled", "hdf5"), variant_fallback=True),
    DatasetSpec("folder", ".folder:MeshFolder", "your own meshes: one sub-folder per class"),
)}


def register(spec):
    """Add (or replace) a row at run time: a dataset of your own, without editing this file."""
    TABLE[spec.name] = spec
    return spec


def dataset_spec(name):
    """A --dataset name or an entry's `dataset` -> (its row, the --variant-data it implies or None)."""
    if name in TABLE:
        return TABLE[name], None
    for spec in TABLE.values():
        if name in spec.entries:
            return spec, spec.entries[name]
    raise KeyError(f"unknown dataset {name!r}; known: {', '.join(TABLE)}")


_HOME = {
    "DatasetError": "errors", "MeshFolder": "folder", "ModelNet40": "modelnet40", "ScanObjectNN": "scanobjectnn",
    "SH3D": "sh3d", "Kicad33": "kicad",
}
__all__ = [*_HOME, "DATASETS", "TABLE", "DatasetSpec", "dataset_spec", "register"]


def __getattr__(name):
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    if name == "DATASETS":  # {"sh3d": SH3D, ...}: the table's loader classes
        return {key: spec.cls for key, spec in TABLE.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
