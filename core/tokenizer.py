"""Point-PN style tokenizer: FPS centres, kNN groups, parameter-free trigonometric encoding, small residual MLPs."""
import math

import torch
from torch import nn

from core.points import farthest_point_sample, gather, knn


def trig_encode(x, num_freqs):
    """(..., D) -> (..., D * 2 * num_freqs): sin/cos at octave frequencies, no parameters."""
    freqs = (2.0 ** torch.arange(num_freqs, device=x.device, dtype=x.dtype)) * math.pi
    angles = x.unsqueeze(-1) * freqs  # (..., D, F)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class ResidualMLP(nn.Module):
    def __init__(self, dim, hidden=None):
        super().__init__()
        hidden = hidden or dim
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        return x + self.net(x)


class PointTokenizer(nn.Module):
    """(B, N, 3) normalised points -> tokens (B, G, out_dim), centres (B, G, 3)."""

    def __init__(self, out_dim, *, num_tokens=128, k=16, dim=64, num_freqs=4, depth=1):
        super().__init__()
        self.num_tokens, self.k, self.num_freqs = num_tokens, k, num_freqs
        enc_dim = 6 * 2 * num_freqs  # relative + absolute xyz, sin and cos
        self.embed = nn.Linear(enc_dim, dim)
        self.local = nn.Sequential(*[ResidualMLP(dim) for _ in range(depth)])
        self.group = nn.Sequential(*[ResidualMLP(dim) for _ in range(depth)])
        self.proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, out_dim))

    def forward(self, xyz):
        b, n, _ = xyz.shape
        g = self.num_tokens
        if n < max(g, self.k):  # tiny clouds: repeat points so FPS and kNN stay defined
            xyz = xyz[:, torch.arange(max(g, self.k), device=xyz.device) % n]
        centres = gather(xyz, farthest_point_sample(xyz, g))  # (B, G, 3)
        neigh = gather(xyz, knn(centres, xyz, self.k))  # (B, G, k, 3)
        rel = neigh - centres.unsqueeze(2)
        # per-sample scale so local shape, not cloud density, sets the frequencies
        rel = rel / rel.flatten(1).std(dim=1).clamp_min(1e-6)[:, None, None, None]
        feat = trig_encode(torch.cat([rel, neigh], dim=-1), self.num_freqs)  # (B, G, k, E)
        feat = self.local(self.embed(feat))  # (B, G, k, D)
        feat = feat.amax(dim=2) + feat.mean(dim=2)  # (B, G, D); summed, not concatenated: the budget is 1M
        return self.proj(self.group(feat)), centres
