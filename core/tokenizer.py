"""Point tokenizers: the one-stage PointTokenizer (CPU-cheap) and the official hierarchical PointPNTokenizer."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from core.points import farthest_point_sample, gather, knn


def trig_encode(x, num_freqs):
    """(..., D) -> (..., D * 2 * num_freqs): sin/cos at octave frequencies, no parameters."""
    freqs = (2.0 ** torch.arange(num_freqs, device=x.device, dtype=x.dtype)) * math.pi
    angles = x.unsqueeze(-1) * freqs  # (..., D, F)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


def neighbour_max(x, dim=2):
    """Max over the neighbours of each group, (B, G, k, D) -> (B, G, D). max(), not amax(): the same values, and the
    same parameter gradients (a tie sends the whole gradient to one of its equal entries instead of splitting it
    evenly; both see the same Jacobian), but amax's backward builds a float copy of its (B, G, k, D) tie mask and
    sums it, a quarter of the Point-PN tokenizer's training time on a CPU. `neighbour_max_reference` is amax."""
    return x.max(dim=dim).values


def neighbour_max_reference(x, dim=2):
    return x.amax(dim=dim)


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
        feat = neighbour_max(feat) + feat.mean(dim=2)  # (B, G, D); summed, not concatenated: the budget is 1M
        return self.proj(self.group(feat)), centres


# --- the official hierarchical Point-PN (Any2Point's tokenizer) ---------------------------------------------------
def geometry_encode(rel, width, alpha=1000.0, beta=100.0):
    """Point-NN/Point-PN PosE: rel (..., 3) -> (..., width), parameter-free.

    F = width // 6 frequencies per axis, angles beta * rel / alpha^(f / F); channels axis-major, sin block then cos
    block (the official channels-first layout, read channels-last). A width that is not a multiple of 6 gets zeros
    in its last channels.
    """
    num_freqs = width // 6
    freqs = alpha ** (torch.arange(num_freqs, device=rel.device, dtype=rel.dtype) / max(num_freqs, 1))
    angles = (beta * rel).unsqueeze(-1) / freqs  # (..., 3, F)
    enc = torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # (..., 6F)
    return F.pad(enc, (0, width - enc.shape[-1])) if enc.shape[-1] != width else enc


class LinearBN(nn.Module):
    """Linear (a 1x1 conv, channels last) + BN over every leading position (BN2d on (B, C, G, K) in the official
    code), optionally + ReLU. No bias: under a training-mode BN its gradient is exactly zero (the official code
    carries 1,952 such parameters that never train). In eval the BN is affine and folds into the Linear."""

    def __init__(self, in_dim, out_dim, *, act=True):
        super().__init__()
        self.linear, self.bn, self.act = nn.Linear(in_dim, out_dim, bias=False), nn.BatchNorm1d(out_dim), act

    def forward(self, x):
        if self.training:
            y = self.bn(self.linear(x).reshape(-1, self.bn.num_features)).view(*x.shape[:-1], -1)
        else:
            bn = self.bn
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            y = F.linear(x, self.linear.weight * scale[:, None], bn.bias - bn.running_mean * scale)
        return y.relu_() if self.act else y  # in place: BN's backward needs its input, not its output


class PNBlock(nn.Module):
    """Point-PN residual bottleneck: relu(BN(fc(relu(BN(fc(x))))) + x), width -> hidden -> width."""

    def __init__(self, width, hidden):
        super().__init__()
        self.net = nn.Sequential(LinearBN(width, hidden), LinearBN(hidden, width, act=False))

    def forward(self, x):
        return (self.net(x) + x).relu_()


class PNStage(nn.Module):
    """One Point-PN stage: FPS centres + kNN over the previous stage's points, [neighbour | centre] features, the
    geometry encoding of the group-normalised offsets added, residual blocks, max over the k neighbours."""

    def __init__(self, num_centres, k, in_dim, width, hidden, blocks, alpha, beta):
        super().__init__()
        self.num_centres, self.k, self.width, self.alpha, self.beta = num_centres, k, width, alpha, beta
        # the official trees always double the width (no layer here); Point-PN's own linear1 when they do not
        self.expand = LinearBN(2 * in_dim, width) if 2 * in_dim != width else nn.Identity()
        self.blocks = nn.Sequential(*[PNBlock(width, hidden) for _ in range(blocks)])

    def forward(self, xyz, feat):
        """xyz (B, M, 3), feat (B, M, D) -> centres (B, S, 3), features (B, S, width)."""
        idx = farthest_point_sample(xyz, self.num_centres)  # (B, S)
        centres, centre_feat = gather(xyz, idx), gather(feat, idx)
        neigh = knn(centres, xyz, self.k)  # (B, S, k)
        rel = gather(xyz, neigh) - centres.unsqueeze(2)  # (B, S, k, 3)
        # per group and axis by the max-abs offset (the official ScanObjectNN normalisation): local shape, not size
        rel = rel / rel.abs().amax(dim=2, keepdim=True).clamp_min(1e-8)
        x = torch.cat([gather(feat, neigh), centre_feat.unsqueeze(2).expand(-1, -1, self.k, -1)], dim=-1)
        # the encoding in fp32 whatever the autocast: beta * rel reaches 100 rad, where bf16 keeps no phase
        x = self.expand(x) + geometry_encode(rel.float(), self.width, self.alpha, self.beta).to(x.dtype)
        return centres, neighbour_max(self.blocks(x))


class PointPNTokenizer(nn.Module):
    """Hierarchical Point-PN, the official Any2Point tokenizer: (B, N, 3) -> tokens (B, G, out_dim), centres (B, G, 3).

    Per-point embedding 3 -> embed_dim (Linear + BN + ReLU), then one PNStage per entry of `stages` (its number of
    centres; each stage samples the previous one's points, G = stages[-1]) with output width `widths[i]`,
    `hidden[i]` bottleneck channels and `blocks[i]` residual blocks. When widths[-1] != out_dim a Linear maps the
    tokens to out_dim, as the official PointViT does. The defaults are the official sizes: at out_dim 768 every
    stage doubles the width by concatenation, 274,720 parameters. CPU-sized: stages=(256, 128), k=24,
    embed_dim=32, widths=(64, 128), hidden=(32, 32), blocks=(1, 1).
    """

    def __init__(self, out_dim, *, stages=(512, 256, 128), k=64, embed_dim=96, widths=(192, 384, 768),
                 hidden=(96, 192, 32), blocks=(2, 1, 1), alpha=1000.0, beta=100.0):
        super().__init__()
        stages = tuple(stages)
        if not len(stages) == len(widths) == len(hidden) == len(blocks) or not stages:
            raise ValueError(f"stages, widths, hidden and blocks need one entry per stage, got {stages}, "
                             f"{widths}, {hidden}, {blocks}")
        if any(a < b for a, b in zip(stages, stages[1:])) or min(stages[:-1], default=k) < k:
            raise ValueError(f"stages must not grow and every stage but the last needs >= k={k} points: {stages}")
        self.num_tokens, self.k, self.min_points = stages[-1], k, max(stages[0], k)
        self.embed = LinearBN(3, embed_dim)
        dims = (embed_dim, *widths)
        self.stages = nn.ModuleList(PNStage(s, k, dims[i], dims[i + 1], hidden[i], blocks[i], alpha, beta)
                                    for i, s in enumerate(stages))
        self.proj = nn.Linear(widths[-1], out_dim) if widths[-1] != out_dim else nn.Identity()

    def forward(self, xyz):
        n = xyz.shape[1]
        if n < self.min_points:  # tiny clouds: repeat points so FPS and kNN stay defined
            xyz = xyz[:, torch.arange(self.min_points, device=xyz.device) % n]
        feat = self.embed(xyz)  # (B, N, embed_dim)
        for stage in self.stages:
            xyz, feat = stage(xyz, feat)  # (B, S, 3), (B, S, width)
        return self.proj(feat), xyz
