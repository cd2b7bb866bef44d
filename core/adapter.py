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
    """Any-to-3D guided adapter for all blocks of one model (point tokens only), in a bottleneck space.

    Per block, tokens are projected down to `inner` dims. Per view: a tiny masked self-attention (tokens see only
    their own cell), then per-cell max+mean pooling; 3D voxels give a reference feature that only weighs the views
    by cosine similarity. The weighted view features are projected back up and added. The attentions are shared by
    all blocks; projections and BN+GELU transforms are per block.

    Why the bottleneck: the paper pools and normalises full-width features once per view (6 copies of every token
    at width C per block). Doing the grouping at `inner` dims keeps the same structure while the adapter costs about
    as much as a bottleneck adapter, and the parameter budget stays well under 1M at width 768.
    """

    def __init__(self, dim, depth, *, num_views=6, inner=12, scale=0.5):
        super().__init__()
        v, d = num_views, inner
        self.num_views, self.inner, self.scale = v, d, scale
        self.down = nn.ModuleList(nn.Linear(dim, d) for _ in range(depth))
        self.up = nn.ModuleList(nn.Linear(d, dim) for _ in range(depth))
        for up in self.up:
            nn.init.normal_(up.weight, std=1e-3)  # near-identity start, but every tensor gets a gradient
            nn.init.zeros_(up.bias)
        self.norm_w = nn.Parameter(torch.ones(v, d))
        self.norm_b = nn.Parameter(torch.zeros(v, d))
        self.qkv_w = nn.Parameter(torch.randn(v, d, 3 * d) * d**-0.5)
        self.qkv_b = nn.Parameter(torch.zeros(v, 3 * d))
        self.out_w = nn.Parameter(torch.randn(v, d, d) * d**-0.5)
        self.out_b = nn.Parameter(torch.zeros(v, d))
        # BN over tokens after scattering back (statistics weighted by cell size); one per block, views side by side
        self.bn_3d = nn.ModuleList(nn.BatchNorm1d(d) for _ in range(depth))
        self.bn_views = nn.ModuleList(nn.BatchNorm1d(v * d) for _ in range(depth))
        self.record = None  # a list to receive each block's view weights (B, G, V), for explanations

    def prepare(self, groups):
        """Counts for pooling, computed once per forward and reused by every block."""
        groups["voxel_counts"] = group_counts(groups["voxels"], groups["num_voxels"])
        groups["cell_counts"] = group_counts(groups["cells"], groups["num_cells"])
        return groups

    def forward(self, x, groups, block):
        """x (B, G, C) point tokens -> (B, G, C)."""
        b, g, _ = x.shape
        v, d = self.num_views, self.inner
        h = self.down[block](F.layer_norm(x, x.shape[-1:]))  # (B, G, d)

        vox = groups["voxels"]
        x3d = pool_max_mean(h.reshape(b * g, d), vox.reshape(-1), groups["num_voxels"], groups["voxel_counts"])[vox]
        x3d = F.gelu(self.bn_3d[block](x3d.reshape(b * g, d))).reshape(b, g, 1, d)

        hn = F.layer_norm(h, (d,)).unsqueeze(0) * self.norm_w[:, None, None] + self.norm_b[:, None, None]
        qkv = torch.einsum("vbgd,vde->vbge", hn, self.qkv_w) + self.qkv_b[:, None, None]  # (V, B, G, 3d)
        q, k, val = qkv.reshape(v * b, g, 3 * d).split(d, dim=-1)
        att = F.scaled_dot_product_attention(q, k, val, attn_mask=groups["mask"].reshape(v * b, g, g))
        att = torch.einsum("vbgd,vde->vbge", att.reshape(v, b, g, d), self.out_w) + self.out_b[:, None, None]
        hv = h.unsqueeze(0) + att  # (V, B, G, d)

        cells = groups["cells"]
        hv = pool_max_mean(hv.reshape(-1, d), cells.reshape(-1), groups["num_cells"], groups["cell_counts"])[cells]
        hv = hv.permute(1, 2, 0, 3).reshape(b * g, v * d)
        hv = F.gelu(self.bn_views[block](hv)).reshape(b, g, v, d)

        w = (F.cosine_similarity(hv, x3d, dim=-1) + 1) / 2  # (B, G, V)
        w = w / w.sum(dim=-1, keepdim=True).clamp_min(1e-6)
        if self.record is not None:
            self.record.append(w.detach())
        return x + self.scale * self.up[block]((w.unsqueeze(-1) * hv).sum(dim=2))
