"""The paper's augmentations, batched: random scale, rotation about the up axis (y), optional jitter."""
import math

import torch


def augment(points, generator=None, *, scale=(0.9, 1.1), rotate=True, jitter=0.0):
    """(B, N, 3) -> (B, N, 3). Randomness comes only from `generator`, so a resumed run replays it exactly."""
    b = points.shape[0]
    dev = points.device

    def rand(*shape):
        return torch.rand(*shape, generator=generator).to(dev)

    out = points * (scale[0] + (scale[1] - scale[0]) * rand(b, 1, 3))  # per-axis, as in Point-BERT/Any2Point
    if rotate:
        a = rand(b) * 2 * math.pi
        c, s, z, o = a.cos(), a.sin(), torch.zeros_like(a), torch.ones_like(a)
        rot = torch.stack([c, z, s, z, o, z, -s, z, c], dim=-1).reshape(b, 3, 3)
        # in the points' precision whatever the autocast: the trainer augments inside it, and a bf16 matmul would
        # round every training cloud to 3 digits (the geometry encoding's beta = 100 turns that into phase noise)
        with torch.autocast(dev.type, enabled=False):
            out = out @ rot.transpose(1, 2).to(out.dtype)
    if jitter:
        out = out + (torch.randn(out.shape, generator=generator).to(dev) * jitter).clamp(-5 * jitter, 5 * jitter)
    return out


RESAMPLE_FROM = 2048  # points a resampling run loads per cloud (ScanObjectNN's and our builds' size)


@torch.no_grad()
def resample(points, n, generator=None, *, train=True):
    """(B, P, 3) -> (B, n, 3), the official per-step resampling. Training: FPS down to n * 1200 / 1024 points, then a
    random n of them, a new subset at every step; eval (train=False): the FPS n points, the same every time."""
    from core.points import farthest_point_sample, gather
    if not train:
        return gather(points, farthest_point_sample(points, n))
    pool = min(points.shape[1], round(n * 1200 / 1024))
    sub = gather(points, farthest_point_sample(points, pool))
    pick = torch.stack([torch.randperm(pool, generator=generator)[:n] for _ in range(points.shape[0])])
    return gather(sub, pick.to(points.device))


@torch.no_grad()
def vote_logits(model, points, votes=10, seed=0):
    """Test-time voting: mean logits over `votes` augmented passes (the first pass is the unaugmented cloud)."""
    g = torch.Generator().manual_seed(seed)
    total = model(points).float()
    for _ in range(votes - 1):
        total += model(augment(points, g, rotate=False)).float()
    return total / votes
