"""PointNeXt-S from `torch-pointcloud`: the 3D-native network a user would train instead (DESIGN.md §3.1).

Trained from scratch through our own engine (`python -m train.run --variant pointnext`), so it meets the same split,
augmentation, val selection, single test and run records as every Any2Point run. Its standard input: the y-up,
unit-sphere cloud as positions, and xyz + height above the cloud's lowest point as features.

torch-pointcloud groups points with `torch_geometric.nn.pool.{fps, knn, radius}`, which in torch_geometric 2.8 raise
ImportError without `pyg-lib` (compiled, not on PyPI). `use_standins()` puts the pure-torch versions below in their
place, only when pyg-lib is absent; tests/test_pointnext.py holds them to brute force.
"""
import importlib.util

import numpy as np
import torch
from torch import nn

from core.points import fps_steps

ARCHS = ("pointnext-sm",)  # torch-pointcloud registry names this project trains and tests


# --- pure-torch stand-ins for pyg-lib's fps / knn / radius (same signatures as torch_geometric.nn.pool) -----------
def _segments(n, batch, batch_size=None):
    """-> list of (start, count) per sample of a packed batch vector (sorted, as torch_geometric requires)."""
    if batch is None:
        return [(0, n)]
    counts = torch.bincount(batch, minlength=batch_size or 0).tolist()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
    return list(zip(starts, counts))


def _equal_sizes(segs):
    return len({c for _, c in segs}) == 1 and segs[0][1] > 0


def fps(x, batch=None, ratio=0.5, random_start=True, batch_size=None):
    """Farthest point sampling per sample: ceil(ratio * n_i) global indices each, from index 0 of the sample
    (random_start=False) or a random one; each pick the point farthest from those already picked."""
    segs = _segments(x.shape[0], batch, batch_size)
    pts = x.detach().float().reshape(x.shape[0], -1).cpu()
    out = []
    groups = [segs] if _equal_sizes(segs) else [[s] for s in segs]  # one vectorised loop when sizes match
    for group in groups:
        count = group[0][1]
        if count == 0:
            continue
        take = int(np.ceil(count * ratio))
        xt = torch.stack([pts[s:s + count] for s, _ in group]).transpose(1, 2).contiguous().numpy()
        start = (torch.randint(count, (len(group),)) if random_start else torch.zeros(len(group), dtype=torch.long))
        with np.errstate(all="ignore"):
            picks = fps_steps(np, xt, take, start=start.numpy())  # (G, take) local indices
        offsets = np.array([s for s, _ in group])[:, None]
        out.append(torch.from_numpy(picks + offsets).reshape(-1))
    idx = torch.cat(out) if out else torch.zeros(0, dtype=torch.long)
    return idx.to(x.device)  # sample by sample, each in pick order (as pyg-lib)


def _pairwise(x, y, segs_x, segs_y):
    """Yields (x_start, y_start, (G, My, Nx) squared distances) per group of samples of equal sizes."""
    same = _equal_sizes(segs_x) and _equal_sizes(segs_y)
    groups = [list(range(len(segs_x)))] if same else [[i] for i in range(len(segs_x))]
    for group in groups:
        nx, ny = segs_x[group[0]][1], segs_y[group[0]][1]
        if nx == 0 or ny == 0:
            continue
        xs = torch.stack([x[segs_x[i][0]:segs_x[i][0] + nx] for i in group]).float()
        ys = torch.stack([y[segs_y[i][0]:segs_y[i][0] + ny] for i in group]).float()
        d = torch.cdist(ys, xs).square()  # (G, My, Nx)
        yield [segs_x[i][0] for i in group], [segs_y[i][0] for i in group], d


def knn(x, y, k, batch_x=None, batch_y=None, cosine=False, num_workers=1, batch_size=None):
    """For each point of y its k nearest points of x in the same sample -> (2, E): row 0 y index, row 1 x index,
    nearest first."""
    if cosine:
        raise NotImplementedError("the pyg-lib stand-in has no cosine kNN")
    rows, cols = [], []
    for xs, ys, d in _pairwise(x, y, _segments(x.shape[0], batch_x, batch_size), _segments(y.shape[0], batch_y,
                                                                                          batch_size)):
        kk = min(k, d.shape[-1])
        nn_idx = d.topk(kk, dim=-1, largest=False, sorted=True).indices  # (G, My, kk)
        g, my = d.shape[:2]
        rows.append((torch.arange(my)[None, :, None] + torch.tensor(ys)[:, None, None]).expand(g, my, kk).reshape(-1))
        cols.append((nn_idx + torch.tensor(xs)[:, None, None]).reshape(-1))
    return _edges(rows, cols, x.device)


def radius(x, y, r, batch_x=None, batch_y=None, max_num_neighbors=32, num_workers=1, batch_size=None):
    """For each point of y the points of x within distance r in the same sample -> (2, E), row 0 y index, row 1 x
    index. Above max_num_neighbors the nearest ones are kept (pyg-lib keeps an arbitrary subset; nearest is the
    order-independent choice), nearest first."""
    rows, cols = [], []
    for xs, ys, d in _pairwise(x, y, _segments(x.shape[0], batch_x, batch_size), _segments(y.shape[0], batch_y,
                                                                                          batch_size)):
        kk = min(max_num_neighbors or d.shape[-1], d.shape[-1])
        dist, nn_idx = d.topk(kk, dim=-1, largest=False, sorted=True)  # (G, My, kk)
        inside = dist <= r * r
        g, my = d.shape[:2]
        row = (torch.arange(my)[None, :, None] + torch.tensor(ys)[:, None, None]).expand(g, my, kk)
        rows.append(row[inside])
        cols.append((nn_idx + torch.tensor(xs)[:, None, None])[inside])
    return _edges(rows, cols, x.device)


def _edges(rows, cols, device):
    if not rows:
        return torch.zeros(2, 0, dtype=torch.long, device=device)
    return torch.stack([torch.cat(rows), torch.cat(cols)]).to(device)


def use_standins():
    """Route torch_geometric's fps / knn / radius to the stand-ins when pyg-lib is absent; True if it did."""
    if importlib.util.find_spec("pyg_lib") is not None:
        return False
    import torch_geometric.nn.pool as pool
    pool.fps, pool.knn, pool.radius = fps, knn, radius
    return True


# --- the classifier --------------------------------------------------------------------------------------------
class PointNeXt(nn.Module):
    """(B, N, 3) y-up normalised clouds -> logits (B, K); every parameter trained, from scratch.

    The engine's model protocol (labels, trainable_state_dict, load_trainable_state_dict, num_trainable) with the
    whole state trainable: BN statistics included, so a checkpoint restores the model exactly.
    """

    def __init__(self, num_classes, *, labels=None, arch="pointnext-sm"):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown PointNeXt architecture {arch!r}; use one of {', '.join(ARCHS)}")
        use_standins()
        from torch_pointcloud.models import create_model
        self.arch, self.labels = arch, list(labels) if labels is not None else [str(i) for i in range(num_classes)]
        self.net = create_model(arch, task="classification", in_channels=4, num_classes=num_classes)

    def forward(self, points):
        b, n, _ = points.shape
        height = points[..., 1:2] - points[..., 1:2].amin(dim=1, keepdim=True)  # y up: height above the base
        feats = torch.cat([points, height], dim=-1).reshape(b * n, 4)
        batch = torch.arange(b, device=points.device).repeat_interleave(n)
        return self.net(feats, points.reshape(b * n, 3), batch)

    def trainable_state_dict(self):
        return self.state_dict()

    def load_trainable_state_dict(self, state):
        self.load_state_dict(state)

    def num_trainable(self):
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def num_backbone(self):
        return 0


# --- entries ---------------------------------------------------------------------------------------------------
def save_pointnext(model, folder, *, name, training=None, metrics=None, card_extra=None):
    """A trained PointNeXt -> entry folder through the zoo's one entry writer (zoo.hub.save_entry): the whole state
    in adapter.safetensors, since nothing of it is frozen or shared."""
    from importlib.metadata import version

    from zoo.hub import save_entry
    config = dict(name=name, modality="3d", labels=list(model.labels), up="y", variant="pointnext",
                  backbone=dict(spec=f"torch-pointcloud:{model.arch}", library_version=version("torch-pointcloud")),
                  model=dict(arch=model.arch, features="xyz+height"), training=training or {}, metrics=metrics or {},
                  license="other")
    extra = {"description": f"PointNeXt-S (`{model.arch}` from torch-pointcloud) trained from scratch, every "
             "parameter: the 3D-native baseline the Any2Point entries are compared with.", **(card_extra or {})}
    return save_entry(folder, config=config, state=model.trainable_state_dict(), card_extra=extra)


def load_pointnext(folder):
    """An entry folder written by save_pointnext -> the PointNeXt in eval mode (verified like every entry)."""
    from zoo.hub import EntryError, load_entry
    config, state, _ = load_entry(folder)
    if config.get("variant") != "pointnext":
        raise EntryError(f"{folder} is not a PointNeXt entry (variant {config.get('variant')!r})")
    model = PointNeXt(len(config["labels"]), labels=config["labels"], arch=config["model"]["arch"])
    model.load_trainable_state_dict(state)
    return model.eval()
