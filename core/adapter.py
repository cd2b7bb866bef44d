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
    at width C per block). Grouping at `inner` dims keeps the structure while the adapter costs about as much as a
    bottleneck adapter, and the budget stays well under 1M parameters at width 768.
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
        # per block: BN over the 3D feature and the V view features side by side ((1 + V) * d channels), computed
        # on tokens after scattering back, so statistics are weighted by cell size
        self.bn = nn.ModuleList(nn.BatchNorm1d((1 + v) * d) for _ in range(depth))

    def prepare(self, groups):
        """Everything that is the same for every block, computed once per forward."""
        v, (b, g) = self.num_views, groups["voxels"].shape
        # one pooling pass serves the voxels (rows 0..BG-1) and every view's cells (the rows after)
        ids = torch.cat([groups["voxels"].reshape(-1), groups["cells"].reshape(-1) + groups["num_voxels"]])
        num = groups["num_voxels"] + groups["num_cells"]
        groups["pool"] = (ids, num, group_counts(ids, num))
        mask = groups["mask"].reshape(v * b, g, g)
        groups["attn_bias"] = torch.zeros(mask.shape, device=mask.device).masked_fill_(~mask, float("-inf"))
        # the per-view LayerNorm affine folded into the q/k/v projection: one einsum per block instead of three ops
        groups["qkv"] = (self.norm_w.unsqueeze(-1) * self.qkv_w,
                         torch.einsum("vd,vde->ve", self.norm_b, self.qkv_w) + self.qkv_b)
        return groups

    def forward(self, x, groups, block):
        """x (B, G, C) point tokens -> (B, G, C)."""
        b, g, _ = x.shape
        v, d = self.num_views, self.inner
        h = self.down[block](F.layer_norm(x, x.shape[-1:]))  # (B, G, d)

        qkv_w, qkv_b = groups["qkv"]
        qkv = torch.einsum("bgd,vde->vbge", F.layer_norm(h, (d,)), qkv_w) + qkv_b[:, None, None]  # (V, B, G, 3d)
        q, k, val = qkv.reshape(v * b, g, 3 * d).split(d, dim=-1)
        att = F.scaled_dot_product_attention(q, k, val, attn_mask=groups["attn_bias"].to(q.dtype))
        att = torch.einsum("vbgd,vde->vbge", att.reshape(v, b, g, d), self.out_w) + self.out_b[:, None, None]

        rows = torch.cat([h.reshape(1, b * g, d), (h + att).reshape(v, b * g, d)])  # (1 + V, BG, d): 3D, views
        ids, num, counts = groups["pool"]
        pooled = pool_max_mean(rows.reshape(-1, d), ids, num, counts)[ids]  # (rows, d)
        feats = pooled.reshape(1 + v, b * g, d).transpose(0, 1).reshape(b * g, (1 + v) * d)
        feats = F.gelu(self.bn[block](feats)).reshape(b, g, 1 + v, d)
        x3d, hv = feats[:, :, :1], feats[:, :, 1:]

        cos = (F.normalize(hv, dim=-1) * F.normalize(x3d, dim=-1)).sum(-1)  # (B, G, V)
        w = (cos + 1) / 2
        w = w / w.sum(dim=-1, keepdim=True).clamp_min(1e-6)
        if groups.get("record") is not None:  # per forward, not module state: concurrent calls stay apart
            groups["record"].append(w.detach())
        return x + self.scale * self.up[block]((w.unsqueeze(-1) * hv).sum(dim=2))
