"""Batched point-cloud primitives in plain torch (CPU or CUDA, no compiled extensions)."""
import torch


def normalize(xyz, eps=1e-8):
    """(B, N, 3) -> (B, N, 3): centred on each cloud's centroid, scaled into the unit sphere (per sample)."""
    xyz = xyz - xyz.mean(dim=1, keepdim=True)
    radius = xyz.norm(dim=-1).amax(dim=1).clamp_min(eps)  # (B,)
    return xyz / radius[:, None, None]


def gather(x, idx):
    """x (B, N, C), idx (B, ...) long -> (B, ..., C)."""
    b, c = x.shape[0], x.shape[-1]
    flat = idx.reshape(b, -1)
    out = torch.gather(x, 1, flat.unsqueeze(-1).expand(-1, -1, c))
    return out.reshape(*idx.shape, c)


def farthest_point_sample(xyz, n):
    """(B, N, 3) -> (B, n) indices; deterministic and independent of the input order.

    Starts from the point farthest from the centroid (not from index 0), so permuting the input
    selects the same points in the same order.
    """
    b, num, _ = xyz.shape
    xyz = xyz.float()  # distances in low precision pick different points
    batch = torch.arange(b, device=xyz.device)
    idx = torch.empty(b, n, dtype=torch.long, device=xyz.device)
    far = (xyz - xyz.mean(dim=1, keepdim=True)).square().sum(-1).argmax(dim=1)  # (B,)
    dist = torch.full((b, num), float("inf"), device=xyz.device)
    for i in range(n):  # inherently sequential in n; vectorised over the batch and the points
        idx[:, i] = far
        d = (xyz - xyz[batch, far].unsqueeze(1)).square().sum(-1)
        dist = torch.minimum(dist, d)
        far = dist.argmax(dim=1)
    return idx


def knn(query, ref, k):
    """query (B, G, 3), ref (B, N, 3) -> (B, G, k) indices into ref of the k nearest points, nearest first."""
    d = torch.cdist(query.float(), ref.float())  # (B, G, N)
    return d.topk(k, dim=-1, largest=False, sorted=True).indices
