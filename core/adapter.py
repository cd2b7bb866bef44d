"""Trainable parts that ride on the frozen blocks: the bottleneck adapter and the any-to-3D guided adapter (in a
bottleneck space, GuidedAdapter; at full width as in the official code, FullGuidedAdapter).

A guided adapter works on one forward's groups (who shares a voxel, a cell): `prepare` builds a typed context from
the projection's groups once per forward, and every block's call takes it. Each has a plain reference path beside
the fast one (`reference=True`), which tests hold the fast one to."""
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.projection import weighted_bag

# the guided adapter and context of the forward running in this thread (or task): post-LN blocks apply the update
# from a pre-hook on their closing LayerNorm, which has no other way to reach this forward's context
_ACTIVE = ContextVar("any2point_guided_forward", default=None)


class BottleneckAdapter(nn.Module):
    """On the FFN branch output: x + scale * up(gelu(drop(down(x)))) (dropout: official 0.1, training only)."""

    def __init__(self, dim, bottleneck=8, scale=0.3, dropout=0.0):
        super().__init__()
        self.scale, self.enabled, self.dropout = scale, True, dropout
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.normal_(self.up.weight, std=1e-3)  # near-identity at start, yet every tensor gets a gradient
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        # four kernels (addmm, gelu, addmm, add): the hot path runs once per block
        h = F.linear(x, self.down.weight, self.down.bias)
        if self.dropout and self.training:
            h = F.dropout(h, self.dropout)
        h = F.gelu(h)
        return torch.add(x, F.linear(h, self.up.weight, self.up.bias), alpha=self.scale)

    def hook(self, module, args, out):
        """Forward hook on the block's FFN-output module."""
        return self(out) if self.enabled else out


@dataclass
class GuidedContext:
    """One forward's state for every block of a GuidedAdapter, built once by its `prepare`."""
    groups: dict  # the projection's groups: voxels (B, G), cells (V, B, G), mask (V, B, G, G); read only
    mean: torch.Tensor  # (1 + V, B, G, G) 0/1 same-voxel (row 0) / same-cell matrices, rows normalised to sum 1
    fused: tuple  # fused_weights() for this forward (cached in inference)
    one: torch.Tensor  # a scalar 1, the "+ 1" of cos + 1 inside one baddbmm
    record: list | None = None  # receives each block's view weights (B, G, V)
    reference: bool = False  # run the plain reference path instead


@dataclass
class FullGuidedContext:
    """One forward's state for every block of a FullGuidedAdapter, built once by its `prepare`: per token the row
    of its voxel and (per view) of its cell, rows unique per sample (and view), sorted by view."""
    groups: dict  # the projection's groups, as for GuidedContext
    vox_row: torch.Tensor  # (B*G,)
    vox_size: torch.Tensor  # (voxels, 1)
    cell_row: torch.Tensor  # (V, B*G)
    token_rows: torch.Tensor  # (B*G, V)
    cell_size: torch.Tensor  # (cells, 1)
    view_rows: list  # cells per view: each view's rows are one slice
    attn_mask: torch.Tensor  # (V*B, 1, G, G) same-cell
    record: list | None = None
    reference: bool = False


class _Guided(nn.Module):
    """What both guided adapters share: the on/off switch (Any2Point.bare) and the post-LN pre-hook."""

    def __init__(self):
        super().__init__()
        self.enabled = True

    @contextmanager
    def active(self, context):
        """While a forward runs the blocks: lets pre_norm_hook find this forward's context."""
        token = _ACTIVE.set((self, context))
        try:
            yield
        finally:
            _ACTIVE.reset(token)

    def pre_norm_hook(self, block, module, args):
        """Forward pre-hook on a post-LN block's closing LayerNorm: add the update to its input."""
        active = _ACTIVE.get()
        if active is None or active[0] is not self:  # the backbone called on its own (bare path, baselines)
            return None
        return (self(args[0], active[1], block),) + tuple(args[1:])

    def forward(self, x, context, block):
        """x (B, 1 + G, C): a prefix token, then the point tokens -> x with the update added to the point tokens."""
        return (self.forward_reference if context.reference else self.forward_fast)(x, context, block)


class GuidedAdapter(_Guided):
    """Any-to-3D guided adapter for all blocks of one model (point tokens only), in a bottleneck space.

    Per block, tokens go down to `inner` dims. Per view, each 2D/1D cell is summarised by its mean plus an
    attention pooling of its tokens (one learned query per view); each 3D voxel by its mean, the 3D guide. The
    summaries are broadcast back to their tokens, go through a per-block BN+GELU, and each view is weighted by its
    cosine similarity to the 3D guide; the weighted sum goes back up to the block width.

    A cheaper variant, not the official structure (that is FullGuidedAdapter, ~10x the cost on a CPU):
    - grouping runs at `inner` dims, not at full width once per view (6 copies of every token per block), so each
      block adds at most a rank-`inner` update, near zero at the start (the official one is full-rank, large from
      step 0); the 3D guide is the voxel mean, without the official max;
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
        self._fused = None  # (key, weights): fused_weights for inference, see _fused_cached

    def prepare(self, groups, *, record=None, reference=False):
        """The projection's groups -> this forward's GuidedContext: who is in whose voxel / cell, as (1 + V, B, G,
        G) 0/1 matrices with rows normalised to sum 1 (row 0 = voxels), so one matmul gives every group mean of a
        block; and the fused per-block weights of `fused_weights`."""
        vox, same_cell = groups["voxels"], groups["mask"]  # (B, G), (V, B, G, G)
        same = torch.cat([(vox[:, :, None] == vox[:, None, :]).unsqueeze(0), same_cell]).float()
        fused = self._fused_cached() if not (self.training or torch.is_grad_enabled()) else self.fused_weights()
        return GuidedContext(groups, same / same.sum(dim=-1, keepdim=True), fused, same.new_ones(()), record,
                             reference)

    def _fused_cached(self):
        """Inference: the fused weights change only when a parameter or BN statistic does: in place (version
        counter) or replaced (`.data =`, `.half()`, `.to(device)`: storage, dtype, device)."""
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in self._fused_inputs())
        if self._fused is None or self._fused[0] != key:
            self._fused = (key, self.fused_weights())
        return self._fused[1]

    def _fused_inputs(self):
        yield from (self.query, self.value_w, self.value_b)
        for m in self.bn:
            yield from (m.weight, m.bias, m.running_mean, m.running_var)

    def fused_weights(self):
        """(depth, d, K) weights and (depth, K) biases: from h, in one GEMM, each row's (voxel row, then views)
        score, then per row [the part to average (d) | its values (d) | a 1, the softmax denominator's].

        The voxel row scores 0 and has no values: mean only. In eval, each block's BN is an affine map and
        goes in here, exactly (group means are linear maps whose rows sum to 1, and the attention pool is a ratio
        of two of them); in training the BN runs on its own, for its batch statistics.
        """
        v, d, depth = self.num_views, self.inner, len(self.down)
        ref = self.value_w
        if self.training:
            a, c = ref.new_ones(depth, 1 + v, d), ref.new_zeros(depth, 1 + v, d)
        else:
            bn_w = torch.stack([torch.rsqrt(m.running_var + m.eps) * m.weight for m in self.bn])  # (depth, (1+V)*d)
            bn_b = torch.stack([m.bias for m in self.bn]) - torch.stack([m.running_mean for m in self.bn]) * bn_w
            a, c = bn_w.view(depth, 1 + v, d).to(ref.dtype), bn_b.view(depth, 1 + v, d).to(ref.dtype)
        value_w = F.pad(ref[:, 0], (0, 0, 0, 0, 1, 0))  # (1 + V, d, d)
        value_b = F.pad(self.value_b.view(v, d), (0, 0, 1, 0))  # (1 + V, d)
        w = torch.cat([torch.eye(d, dtype=ref.dtype, device=ref.device) * a[:, :, None, :],
                       value_w * a[:, :, None, :], ref.new_zeros(depth, 1 + v, d, 1)], dim=-1)  # (depth, 1+V, d, 2d+1)
        b = torch.cat([c, value_b * a, ref.new_ones(depth, 1 + v, 1)], dim=-1)  # (depth, 1 + V, 2d + 1)
        score = F.pad(self.query, (1, 0)).expand(depth, d, 1 + v)
        return (torch.cat([score, w.permute(0, 2, 1, 3).reshape(depth, d, -1)], dim=-1),
                torch.cat([ref.new_zeros(depth, 1 + v), b.view(depth, -1)], dim=-1))

    def forward_fast(self, x, ctx, block):
        """Written for few kernels: on a CPU each costs ~30 us here (after the backbone's GEMMs), whatever its size."""
        b, t, c = x.shape
        g, v, d = t - 1, self.num_views, self.inner
        # normalise and project the whole sequence (contiguous, one extra row), then drop the prefix token
        down = self.down[block]
        h = F.linear(F.layer_norm(x, (c,)), down.weight, down.bias)[:, 1:]  # (B, G, d)
        w, bias = ctx.fused
        y = torch.addmm(bias[block], h.reshape(b * g, d), w[block]).view(b, g, -1)
        s, rows = y[..., :1 + v], y[..., 1 + v:].view(b, g, 1 + v, 2 * d + 1)
        # softmax inside each cell = exp / (cell sum of exp), shift-invariant. In fp32/bf16 the clamp alone keeps
        # every exp finite and > 0, so every denominator is > 0 (exact for scores inside [-60, 60]); fp16 overflows
        # and underflows sooner: there the sample's max goes first and denominators are clamped
        half = s.dtype == torch.float16
        if half:
            s = s - s.amax(dim=1, keepdim=True)
        e = s.clamp(-60.0, 60.0).exp().permute(2, 0, 1).unsqueeze(-1)  # (1 + V, B, G, 1)
        rows = rows.permute(2, 0, 1, 3)  # (1 + V, B, G, 2d + 1)
        means = torch.matmul(ctx.mean.to(rows.dtype), torch.cat([rows[..., :d], rows[..., d:] * e], dim=-1))
        # per token and row: its group's mean + the attention pool (a ratio of means = the ratio of sums)
        den = means[..., -1:].clamp_min(1e-4) if half else means[..., -1:]
        pooled = torch.addcdiv(means[..., :d], means[..., d:-1], den)
        feats = pooled.permute(1, 2, 0, 3).reshape(b * g, (1 + v) * d)
        if self.training:  # in eval the BN is folded into the fused weights
            feats = self.bn[block](feats)
        feats = F.gelu(feats).view(b * g, 1 + v, d)
        # cos of each view to the 3D guide; weights (cos + 1) / sum over views (the 1/2 of (cos + 1) / 2 cancels)
        unit = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        u = torch.baddbmm(ctx.one.to(unit.dtype), unit[:, 1:], unit[:, 0, :, None]).squeeze(-1)
        den = u.sum(dim=-1, keepdim=True).clamp_min(1e-6)  # (B*G, 1); u is cos + 1, (B*G, V)
        if ctx.record is not None:
            ctx.record.append((u / den).view(b, g, v).detach())
        z = torch.bmm(u.unsqueeze(1), feats[:, 1:]).view(b, g, d) / den.view(b, g, 1)
        z = F.pad(z, (0, 0, 1, 0)).to(x.dtype)  # (B, 1 + G, d), the prefix token gets 0
        out = torch.addmm(x.reshape(b * t, c), z.view(b * t, d), self.up[block].to(x.dtype), alpha=self.scale)
        return out.view(b, t, c)

    def forward_reference(self, x, ctx, block):
        """The same update written plainly, one view at a time: group means and each cell's softmax from 0/1
        masks, the BN as a module, no fused weights. Slow; the fast path is tested against it."""
        b, t, c = x.shape
        g, v, d = t - 1, self.num_views, self.inner
        h = self.down[block](F.layer_norm(x, (c,)))[:, 1:]  # (B, G, d)
        vox = ctx.groups["voxels"]
        same = (vox[:, :, None] == vox[:, None, :]).to(h.dtype)  # (B, G, G)
        feats = [same @ h / same.sum(-1, keepdim=True)]  # the 3D guide: the voxel mean
        for i in range(v):
            cell = ctx.groups["mask"][i]  # (B, G, G) same cell
            mean = cell.to(h.dtype) @ h / cell.sum(-1, keepdim=True).to(h.dtype)
            score = (h @ self.query[:, i]).unsqueeze(1).expand(b, g, g)  # member j's score, for every token's row
            attn = score.masked_fill(~cell, float("-inf")).softmax(dim=-1)  # each token's cell, softmax over members
            value = h @ self.value_w[i, 0] + self.value_b[i, 0, 0]
            feats.append(mean + attn @ value)
        feats = F.gelu(self.bn[block](torch.cat(feats, dim=-1).reshape(b * g, (1 + v) * d))).view(b * g, 1 + v, d)
        unit = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        cos = (unit[:, 1:] * unit[:, :1]).sum(-1)  # (B*G, V)
        w = (cos + 1) / (cos + 1).sum(dim=-1, keepdim=True).clamp_min(1e-6)
        if ctx.record is not None:
            ctx.record.append(w.view(b, g, v).detach())
        z = (w.unsqueeze(-1) * feats[:, 1:]).sum(1).view(b, g, d)
        return torch.cat([x[:, :1], x[:, 1:] + self.scale * (z @ self.up[block])], dim=1)


class FullGuidedAdapter(_Guided):
    """The official any-to-3D guided adapter at full width C, for all blocks of one model (point tokens only).

    Per view v, with modules shared by all blocks: x_v = x + proj_v(attn_v(LN_v(x))), a small self-attention
    (`inner` dims in `heads` heads) masked to the tokens of the same 2D/1D cell; then per cell its mean (+ its max
    with `cell_max`, the official ModelNet40 setting), a per-block per-view BN(C) + GELU, back to the cell's tokens.
    The 3D guide: per voxel the max + mean of x, a per-block BN(C) + GELU. Views are weighted by
    w_v = (cos(x_v, x3d) + 1) / 2, normalised over views: x += scale * sum_v w_v x_v. A full-rank local smoothing,
    large from step 0. Same interface as GuidedAdapter (prepare / forward / pre_norm_hook / active).

    Where the form differs from the official code (same function): the attention of all views is one batched
    call; group means and maxes are scatters into one row per group (the official scatter_mean / segment_csr), so
    each BN sees one row per non-empty group, as the official voxel BN does. The official cell BN also sees the
    empty cells of the whole grid as zero rows, statistics that depend on the grid resolution: not copied.
    """

    def __init__(self, dim, depth, *, num_views=6, inner=12, heads=6, scale=0.5, cell_max=False):
        super().__init__()
        if inner % heads:
            raise ValueError(f"inner ({inner}) must be a multiple of heads ({heads})")
        v = num_views
        self.num_views, self.inner, self.heads, self.scale, self.cell_max = v, inner, heads, scale, cell_max
        self.norm = nn.ModuleList(nn.LayerNorm(dim) for _ in range(v))
        self.qkv = nn.ModuleList(nn.Linear(dim, 3 * inner, bias=False) for _ in range(v))
        # no bias on proj: it would shift every token of a view alike, which the cell BN then removes in training
        # (an exactly zero gradient; the official code carries one)
        self.proj = nn.ModuleList(nn.Linear(inner, dim, bias=False) for _ in range(v))
        for m in [*self.qkv, *self.proj]:  # the official PointViT init
            nn.init.xavier_uniform_(m.weight)
        self.bn_3d = nn.ModuleList(nn.BatchNorm1d(dim) for _ in range(depth))
        self.bn_views = nn.ModuleList(nn.ModuleList(nn.BatchNorm1d(dim) for _ in range(v)) for _ in range(depth))

    def prepare(self, groups, *, record=None, reference=False):
        """The projection's groups -> this forward's FullGuidedContext (the rows of every group, their sizes)."""
        vox, cells, mask = groups["voxels"], groups["cells"], groups["mask"]  # (B, G), (V, B, G), (V, B, G, G)
        v, b, g = cells.shape
        if v != self.num_views:
            raise ValueError(f"{v} views in the groups, the adapter has {self.num_views}")
        vox_row, vox_size = _group_rows(vox.reshape(1, b, g))
        cell_row, cell_size, view_of_row = _group_rows(cells, per_view=True)
        return FullGuidedContext(groups, vox_row=vox_row.view(b * g), vox_size=vox_size,
                                 cell_row=cell_row.view(v, b * g), token_rows=cell_row.view(v, b * g).t().contiguous(),
                                 cell_size=cell_size, view_rows=torch.bincount(view_of_row, minlength=v).tolist(),
                                 attn_mask=mask.reshape(v * b, 1, g, g), record=record, reference=reference)

    def attend(self, p, attn_mask):
        """p (B, G, C) -> (V, B*G, C): x_v = x + proj_v(attn_v(LN_v(x))) for every view at once.

        The LN affine goes into the qkv weights (one GEMM for all views); the attention scale is inner^-0.5, not
        head_dim^-0.5, as in the official code.
        """
        b, g, c = p.shape
        v, d, hd = self.num_views, self.inner, self.inner // self.heads
        w = torch.cat([(n.weight[:, None] * q.weight.t()) for n, q in zip(self.norm, self.qkv)], dim=1)  # (C, V*3d)
        bias = torch.cat([n.bias @ q.weight.t() for n, q in zip(self.norm, self.qkv)])  # (V*3d,)
        qkv = torch.addmm(bias, F.layer_norm(p, (c,)).reshape(b * g, c), w)  # (B*G, V*3d)
        qkv = qkv.view(b, g, v, 3, self.heads, hd).permute(3, 2, 0, 4, 1, 5).reshape(3, v * b, self.heads, g, hd)
        out = F.scaled_dot_product_attention(*qkv, attn_mask=attn_mask, scale=d**-0.5)  # (V*B, heads, G, hd)
        out = out.view(v, b, self.heads, g, hd).permute(0, 1, 3, 2, 4).reshape(v, b * g, d)
        proj = torch.stack([m.weight.t() for m in self.proj])  # (V, d, C)
        return torch.baddbmm(p.reshape(1, b * g, c), out, proj)

    @staticmethod
    def pool(src, rows, size, with_max=True):
        """src (R, C), rows (R,) -> (num_groups, C): each group's mean (+ max)."""
        out = src.new_zeros(size.shape[0], src.shape[1]).index_add(0, rows, src) / size.to(src.dtype)
        if with_max:  # every row has a member: include_self=False never keeps the zeros
            idx = rows[:, None].expand_as(src)
            out = out + src.new_zeros(out.shape).scatter_reduce(0, idx, src, "amax", include_self=False)
        return out

    def forward_fast(self, x, fg, block):
        b, t, c = x.shape
        g, v = t - 1, self.num_views
        p = x[:, 1:]
        guide = self.pool(p.reshape(b * g, c), fg.vox_row, fg.vox_size)  # (voxels, C), max + mean
        guide = F.gelu(self.bn_3d[block](guide))
        unit_guide = (guide / guide.norm(dim=-1, keepdim=True).clamp_min(1e-8)).index_select(0, fg.vox_row)
        xv = self.attend(p, fg.attn_mask)  # (V, B*G, C)
        cells = self.pool(xv.reshape(v * b * g, c), fg.cell_row.view(-1), fg.cell_size, self.cell_max)
        cells = torch.cat([bn(rows) for bn, rows in zip(self.bn_views[block], cells.split(fg.view_rows))])
        cells = F.gelu(cells)  # (cells, C): x_v of every token is its cell's row
        # cos as F.cosine_similarity (each norm clamped at 1e-8); weights (cos + 1) / sum over views (the 1/2 of
        # (cos + 1) / 2 cancels). Norms per cell row, not per token; the broadcasting cosine_similarity's
        # backward is ~10x slower on a CPU
        rows = fg.cell_row.view(-1)  # (V*B*G,); index_select: ~2x faster than indexing with a 2D index
        dots = (cells.index_select(0, rows).view(v, b * g, c) * unit_guide).sum(dim=-1)  # (V, B*G)
        w = dots / cells.norm(dim=-1).clamp_min(1e-8).index_select(0, rows).view(v, b * g) + 1
        w = w / w.sum(dim=0, keepdim=True)
        if fg.record is not None:
            fg.record.append(w.t().reshape(b, g, v).detach())
        # sum_v w_v x_v straight from the cell rows: one embedding_bag, no (V, B*G, C) copy
        update = weighted_bag(fg.token_rows, cells, w.t())
        update = update.view(b, g, c)
        return torch.cat([x[:, :1], p + self.scale * update.to(x.dtype)], dim=1)

    def forward_reference(self, x, ctx, block):
        """The official structure, one sample / view / group at a time (slow; the fast path is tested against
        it). BN sees one row per group, as in the fast path."""
        b, t, c = x.shape
        g, v, heads = t - 1, self.num_views, self.heads
        hd = self.inner // heads
        vox, cells = ctx.groups["voxels"], ctx.groups["cells"]
        p = x[:, 1:]

        def scatter_rows(bn, members, rows, out):
            for (i, m), r in zip(members, F.gelu(bn(torch.stack(rows)))):
                out[i, m] = r

        guide = p.new_zeros(b, g, c)
        members, rows = [], []
        for i in range(b):
            for label in vox[i].unique():
                m = vox[i] == label
                members.append((i, m))
                rows.append(p[i, m].amax(0) + p[i, m].mean(0))
        scatter_rows(self.bn_3d[block], members, rows, guide)
        views = p.new_zeros(v, b, g, c)
        for k in range(v):
            members, rows = [], []
            for i in range(b):
                for label in cells[k, i].unique():
                    m = cells[k, i] == label
                    xc = p[i, m]  # (n, C): this cell's tokens only
                    q, key, val = self.qkv[k](self.norm[k](xc)).view(-1, 3, heads, hd).permute(1, 2, 0, 3)
                    att = torch.softmax(q @ key.transpose(-1, -2) * self.inner**-0.5, dim=-1)
                    h = xc + self.proj[k]((att @ val).permute(1, 0, 2).reshape(-1, self.inner))
                    members.append((i, m))
                    rows.append(h.mean(0) + (h.amax(0) if self.cell_max else 0))
            scatter_rows(self.bn_views[block][k], members, rows, views[k])
        w = (F.cosine_similarity(views, guide.unsqueeze(0), dim=-1) + 1) / 2  # (V, B, G)
        w = w / w.sum(0, keepdim=True)
        if ctx.record is not None:
            ctx.record.append(w.permute(1, 2, 0).detach())
        return torch.cat([x[:, :1], p + self.scale * (w.unsqueeze(-1) * views).sum(0)], dim=1)


def _group_rows(ids, per_view=False):
    """ids (V, B, G) group labels, compared within one (view, sample) -> per token the dense row of its group
    (V, B, G), each group's size (rows, 1) and, with per_view, each row's view (rows,). Rows are sorted by view,
    then sample: each view's groups are one contiguous slice."""
    v, b, g = ids.shape
    span = int(ids.max()) - int(ids.min()) + 1
    key = (ids - ids.min()) + torch.arange(v * b, device=ids.device).view(v, b, 1) * span
    uniq, rows = torch.unique(key, sorted=True, return_inverse=True)
    size = torch.bincount(rows.view(-1), minlength=uniq.numel()).unsqueeze(1)
    return (rows, size, torch.div(uniq, b * span, rounding_mode="floor")) if per_view else (rows, size)
