"""Trainable parts that ride on the frozen blocks: the bottleneck adapter and the any-to-3D guided adapter."""
import torch
import torch.nn.functional as F
from torch import nn


class BottleneckAdapter(nn.Module):
    """On the FFN branch output: x + scale * up(gelu(down(x)))."""

    def __init__(self, dim, bottleneck=8, scale=0.3):
        super().__init__()
        self.scale = scale
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.normal_(self.up.weight, std=1e-3)  # near-identity at start, yet every tensor gets a gradient
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        return x + self.scale * self.up(F.gelu(self.down(x)))


def pool_max_mean(x, ids, num, counts):
    """x (M, C) rows, ids (M,) in 0..num-1 -> (num, C) per-group max + mean."""
    idx = ids.unsqueeze(-1).expand_as(x)
    mx = x.new_zeros(num, x.shape[-1]).scatter_reduce(0, idx, x, "amax", include_self=False)
    mean = x.new_zeros(num, x.shape[-1]).index_add(0, ids, x) / counts.unsqueeze(-1).to(x.dtype)
    return mx + mean


def group_counts(ids, num):
    return torch.bincount(ids.reshape(-1), minlength=num).clamp_min(1)


class GuidedAdapter(nn.Module):
    """Any-to-3D guided adapter for all blocks of one model (point tokens only).

    Per view: a tiny masked self-attention (tokens see only their own cell), then per-cell max+mean pooling;
    3D voxels give a reference feature that only weighs the views by cosine similarity. The attentions and
    their norms are shared by all blocks (keeps the budget under 1M); the BN+GELU transforms are per block.
    """

    def __init__(self, dim, depth, *, num_views=6, inner=12, scale=0.5):
        super().__init__()
        v = num_views
        self.num_views, self.inner, self.scale = v, inner, scale
        self.norm_w = nn.Parameter(torch.ones(v, dim))
        self.norm_b = nn.Parameter(torch.zeros(v, dim))
        self.qkv_w = nn.Parameter(torch.randn(v, dim, 3 * inner) * dim**-0.5)
        self.qkv_b = nn.Parameter(torch.zeros(v, 3 * inner))
        self.out_w = nn.Parameter(torch.randn(v, inner, dim) * 1e-3)
        self.out_b = nn.Parameter(torch.zeros(v, dim))
        # BN over tokens after scattering back (statistics weighted by cell size); one per block, views side by side
        self.bn_3d = nn.ModuleList(nn.BatchNorm1d(dim) for _ in range(depth))
        self.bn_views = nn.ModuleList(nn.BatchNorm1d(v * dim) for _ in range(depth))
        self.record = None  # a list to receive each block's view weights (B, G, V), for explanations

    def prepare(self, groups):
        """Counts for pooling, computed once per forward and reused by every block."""
        groups["voxel_counts"] = group_counts(groups["voxels"], groups["num_voxels"])
        groups["cell_counts"] = group_counts(groups["cells"], groups["num_cells"])
        return groups

    def forward(self, x, groups, block):
        """x (B, G, C) point tokens -> (B, G, C)."""
        b, g, c = x.shape
        v, d = self.num_views, self.inner

        x3d = pool_max_mean(x.reshape(b * g, c), groups["voxels"].reshape(-1), groups["num_voxels"],
                            groups["voxel_counts"])[groups["voxels"]]  # (B, G, C)
        x3d = F.gelu(self.bn_3d[block](x3d.reshape(b * g, c))).reshape(b, g, c)

        xn = F.layer_norm(x, (c,)).unsqueeze(0) * self.norm_w[:, None, None] + self.norm_b[:, None, None]
        qkv = torch.einsum("vbgc,vcd->vbgd", xn, self.qkv_w) + self.qkv_b[:, None, None]  # (V, B, G, 3d)
        q, k, val = qkv.reshape(v * b, g, 3 * d).split(d, dim=-1)
        att = F.scaled_dot_product_attention(q, k, val, attn_mask=groups["mask"].reshape(v * b, g, g))
        att = torch.einsum("vbgd,vdc->vbgc", att.reshape(v, b, g, d), self.out_w) + self.out_b[:, None, None]
        xv = x.unsqueeze(0) + att  # (V, B, G, C)

        cells = groups["cells"]
        xv = pool_max_mean(xv.reshape(-1, c), cells.reshape(-1), groups["num_cells"],
                           groups["cell_counts"])[cells]  # (V, B, G, C)
        xv = xv.permute(1, 2, 0, 3).reshape(b * g, v * c)
        xv = F.gelu(self.bn_views[block](xv)).reshape(b, g, v, c)

        w = (F.cosine_similarity(xv, x3d.unsqueeze(2), dim=-1) + 1) / 2  # (B, G, V)
        w = w / w.sum(dim=-1, keepdim=True).clamp_min(1e-6)
        if self.record is not None:
            self.record.append(w.detach())
        return x + self.scale * (w.unsqueeze(-1) * xv).sum(dim=2)
