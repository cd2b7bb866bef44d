"""Tiny random backbones, one per family, built from configs (no downloads). Shared by the tests."""
import torch

from core.backbones import FAMILIES

# one tiny random library model per backbone family, from the family table itself (core/backbones/__init__.py)
TINY = {f.key: f.tiny for f in FAMILIES if f.tiny is not None}

def tiny_model(family="timm-dinov2", num_classes=3, **kw):
    from core import Any2Point
    torch.manual_seed(0)
    kw = {"num_tokens": 32, "k": 8, "num_points": 256, **kw}
    return Any2Point(TINY[family](), num_classes, **kw)


def shape_cloud(kind, n=256, generator=None):
    """Surface samples of a unit sphere or cube, (n, 3)."""
    p = torch.randn(n, 3, generator=generator)
    if kind == "sphere":
        return p / p.norm(dim=-1, keepdim=True)
    return p / p.abs().amax(dim=-1, keepdim=True)


def sphere_cube_clouds(n, points, seed=0):
    """n clouds alternating sphere / cube surfaces (an easy 2-class problem): float32 (n, points, 3), labels (n,)."""
    import numpy as np
    g = np.random.default_rng(seed)
    p = g.normal(size=(n, points, 3)).astype(np.float32)
    labels = np.arange(n) % 2
    p[labels == 0] /= np.linalg.norm(p[labels == 0], axis=-1, keepdims=True)
    p[labels == 1] /= np.abs(p[labels == 1]).max(axis=-1, keepdims=True)
    return p, labels


def write_scanobjectnn(root, sizes=(("training", 24), ("test", 8)), points=256):
    """A tiny ScanObjectNN PB_T50_RS in the official h5 layout under root/main_split/."""
    import h5py
    import numpy as np
    (root / "main_split").mkdir(parents=True)
    for name, n in sizes:
        pts, labels = sphere_cube_clouds(n, points, seed=n)
        with h5py.File(root / f"main_split/{name}_objectdataset_augmentedrot_scale75.h5", "w") as f:
            f["data"], f["label"] = pts, labels.astype(np.int64)
    return root
