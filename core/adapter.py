"""Trainable parts that ride on the frozen blocks: the bottleneck adapter and the any-to-3D guided adapter."""
import threading
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class BottleneckAdapter(nn.Module):
    """On the FFN branch output: x + scale * up(gelu(down(x)))."""

    def __init__(self, dim, bottleneck=8, scale=0.3):
        super().__init__()
        self.scale, self.enabled = scale, True
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.normal_(self.up.weight, std=1e-3)  # near-identity at start, yet every tensor gets a gradient
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        # x + scale * up(h) as one addmm: up's bias rides in as a scaled row (the hot path runs 12x a forward)
        h = F.gelu(self.down(x)).flatten(0, -2)
        out = torch.addmm(x.flatten(0, -2) + self.scale * self.up.bias, h, self.up.weight.t(), alpha=self.scale)
        return out.view_as(x)

    def hook(self, module, args, out):
        """Forward hook on the block's FFN-output module."""
        return self(out) if self.enabled else out


class GuidedAdapter(nn.Module):
    """Any-to-3D guided adapter for all blocks of one model (point tokens only), in a bottleneck space.

    Per block, tokens go down to `inner` dims. Per view, each 2D/1D cell is summarised by its mean plus an
    attention pooling of its tokens (one learned query per view); each 3D voxel by its mean, the 3D guide. The
    summaries are broadcast back to their tokens, go through a per-block BN+GELU, and each view is weighted by its
    cosine similarity to the 3D guide; the weighted sum goes back up to the block width.

    How it differs in form from the official code (same structure, ~4x cheaper on a CPU):
    - grouping runs at `inner` dims, not at full width once per view (6 copies of every token per block);
    - the local step is attention pooling inside each cell, not a (G, G) self-attention masked to the cell and then
      a mean: the mean of a cell's attention outputs is itself a weighted mean of its values, so pooling with one
      query keeps that form at G scores per view instead of G^2;
    - groups are dense (G, G) 0/1 matrices built once per forward, so all the cell and voxel sums of a block are
      one matmul instead of scatters and gathers.
    """

    def __init__(self, dim, depth, *, num_views=6, inner=12, scale=0.5):
        super().__init__()
        v, d = num_views, inner
        self.num_views, self.inner, self.scale = v, d, scale
        self.down = nn.ModuleList(nn.Linear(dim, d) for _ in range(depth))
        # no bias on the way up: the bottleneck adapter's bias already shifts every token, and without one the update
        # is a single addmm into the residual stream
        self.up = nn.ParameterList(nn.Parameter(torch.randn(d, dim) * 1e-3) for _ in range(depth))  # near-identity
        # one attention pooling per view, shared by all blocks: a query and a value projection
        self.query = nn.Parameter(torch.randn(d, v) * d**-0.5)
        self.value_w = nn.Parameter(torch.randn(v, 1, d, d) * d**-0.5)
        self.value_b = nn.Parameter(torch.zeros(v, 1, 1, d))
        # per block: BN over the 3D guide and the V view features side by side ((1 + V) * d channels), on tokens
        # after the summaries are broadcast back, so statistics are weighted by group size
        self.bn = nn.ModuleList(nn.BatchNorm1d((1 + v) * d) for _ in range(depth))
        self._groups = {}  # thread id -> this forward's groups, for pre_norm_hook (a plain dict: copies, pickles)

    @contextmanager
    def active(self, groups):
        """While a forward runs the blocks: lets pre_norm_hook find its groups (per thread, so concurrent
        forwards of one model stay apart)."""
        self._groups[threading.get_ident()] = groups
        try:
            yield
        finally:
            self._groups.pop(threading.get_ident(), None)

    def pre_norm_hook(self, block, module, args):
        """Forward pre-hook on a post-LN block's closing LayerNorm: add the update to its input."""
        groups = self._groups.get(threading.get_ident())
        if groups is None:  # the backbone called on its own (bare path, baselines)
            return None
        return (self(args[0], groups, block),) + tuple(args[1:])

    def prepare(self, groups):
        """What every block shares, once per forward: who is in whose voxel / cell, as (1 + V, B, G, G) 0/1."""
        vox, same_cell = groups["voxels"], groups["mask"]  # (B, G), (V, B, G, G)
        same = torch.cat([(vox[:, :, None] == vox[:, None, :]).unsqueeze(0), same_cell]).float()
        groups["same"], groups["inv_count"] = same, 1.0 / same.sum(dim=-1, keepdim=True)
        return groups

    def forward(self, x, groups, block):
        """x (B, 1 + G, C): a prefix token, then the point tokens -> x with the update added to the point tokens."""
        b, t, c = x.shape
        g, v, d = t - 1, self.num_views, self.inner
        # normalise and project the whole sequence (contiguous, one extra row), then drop the prefix token
        h = self.down[block](F.layer_norm(x, (c,)))[:, 1:]  # (B, G, d)
        # softmax inside each cell = exp / (cell sum of exp); one shift per sample and view keeps exp finite.
        # Tiny contractions are broadcast products, not matmuls: on a CPU a small GEMM costs ~5x an elementwise op.
        s = (h.unsqueeze(-1) * self.query.to(h.dtype)).sum(dim=-2).float()  # (B, G, V)
        e = (s - s.amax(dim=1, keepdim=True)).exp().permute(2, 0, 1).unsqueeze(-1).to(h.dtype)  # (V, B, G, 1)
        val = torch.matmul(h, self.value_w) + self.value_b  # (V, B, G, d)
        rows = torch.cat([h.expand(1 + v, b, g, d),  # row 0 = voxels: mean only
                          F.pad(torch.cat([e * val, e], dim=-1), (0, 0, 0, 0, 0, 0, 1, 0))], dim=-1)
        sums = torch.matmul(groups["same"].to(h.dtype), rows)  # (1 + V, B, G, 2d + 1): group sums, per token
        pooled = sums[..., :d] * groups["inv_count"].to(h.dtype) + sums[..., d:-1] / sums[..., -1:].clamp_min(1e-30)
        feats = pooled.permute(1, 2, 0, 3).reshape(b * g, (1 + v) * d)
        feats = F.gelu(self.bn[block](feats)).view(b, g, 1 + v, d)
        x3d, hv = feats[:, :, :1], feats[:, :, 1:]

        # (cos + 1) / 2, normalised over the views (the 1/2 cancels)
        cos = (hv * x3d).sum(dim=-1) / (hv.norm(dim=-1) * x3d.norm(dim=-1)).clamp_min(1e-8)  # (B, G, V)
        w = (cos + 1) / (cos.sum(dim=-1, keepdim=True) + v).clamp_min(1e-6)
        if groups.get("record") is not None:  # per forward, not module state: concurrent calls stay apart
            groups["record"].append(w.detach())
        z = F.pad((w.unsqueeze(-1) * hv).sum(dim=2), (0, 0, 1, 0))  # (B, 1 + G, d), the prefix token gets 0
        out = torch.addmm(x.reshape(b * t, c), z.view(b * t, d).to(x.dtype), self.up[block].to(x.dtype),
                          alpha=self.scale)
        return out.view(b, t, c)
