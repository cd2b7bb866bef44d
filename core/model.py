"""Any2Point: tokenizer + virtual projection + frozen backbone with adapters + cls/max head."""
from contextlib import contextmanager, nullcontext
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.adapter import BottleneckAdapter, GuidedAdapter
from core.backbones import build_backbone
from core.points import normalize
from core.projection import VirtualProjection
from core.tokenizer import PointTokenizer


class Any2Point(nn.Module):
    """Point cloud (B, N, 3) -> logits (B, K) through a frozen 1D/2D transformer.

    Ablations and baselines are keyword arguments: pe="none"|"1d"|"2d" ("auto" = the backbone's own kind),
    adapter=False, guided=False (both off + pe on = linear probe), freeze_backbone=False (from scratch).
    """

    def __init__(self, backbone, num_classes, *, labels=None, num_points=2048, num_tokens=128, k=16,
                 tokenizer_dim=64, pe="auto", num_views=6, distance=None, direction=(-1.0, 0.0, 1.0),
                 voxel=0.12, cell_patches=2.0, cells_1d=38, adapter=True, adapter_dim=8, adapter_scale=0.3,
                 guided=True, guided_dim=12, guided_scale=0.5, head_hidden=256, dropout=0.5,
                 freeze_backbone=True):
        super().__init__()
        self.backbone = build_backbone(backbone)  # spec string, library model or Backbone
        bb = self.backbone
        c, depth = bb.width, len(bb.blocks)
        if labels is not None and len(labels) != num_classes:
            raise ValueError(f"{len(labels)} labels for {num_classes} classes")
        self.labels = list(labels) if labels is not None else [f"class_{i}" for i in range(num_classes)]
        self.num_points, self.pe_mode, self.freeze_backbone = num_points, pe, freeze_backbone
        if pe not in ("auto", "none", "1d", "2d"):
            raise ValueError(f"pe must be auto, none, 1d or 2d, got {pe!r}")
        kind = bb.pos_kind if pe in ("auto", "none") else pe
        distance = distance if distance is not None else bb.default_distance
        # everything Any2Point(backbone, len(labels), labels=labels, **config) needs to rebuild this model
        self.config = dict(num_points=num_points, num_tokens=num_tokens, k=k,
                           tokenizer_dim=tokenizer_dim, pe=pe, num_views=num_views, distance=distance,
                           direction=list(direction), voxel=voxel, cell_patches=cell_patches, cells_1d=cells_1d,
                           adapter=adapter, adapter_dim=adapter_dim, adapter_scale=adapter_scale, guided=guided,
                           guided_dim=guided_dim, guided_scale=guided_scale, head_hidden=head_hidden,
                           dropout=dropout, freeze_backbone=freeze_backbone)

        self.tokenizer = PointTokenizer(c, num_tokens=num_tokens, k=k, dim=tokenizer_dim)
        self.projection = VirtualProjection(kind, num_views=num_views, distance=distance, direction=direction,
                                            voxel=voxel, cell_patches=cell_patches, cells_1d=cells_1d)
        cls = bb.cls_init()
        self.cls_token = nn.Parameter(cls.clone() if cls is not None else torch.randn(c) * 0.02)
        self.cls_pos = nn.Parameter(torch.zeros(c))
        self.adapters = nn.ModuleList(BottleneckAdapter(c, adapter_dim, adapter_scale) for _ in range(depth)) \
            if adapter else None
        self.guided = GuidedAdapter(c, depth, num_views=num_views, inner=guided_dim, scale=guided_scale) \
            if guided else None
        self.head = nn.Sequential(
            nn.Linear(2 * c, head_hidden), nn.BatchNorm1d(head_hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(head_hidden, head_hidden), nn.BatchNorm1d(head_hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(head_hidden, num_classes))

        # hooks are bound methods / partials of our own modules, never closures over self: a deep copy or a pickle
        # of the model then carries hooks that call the copy's adapters
        if self.adapters is not None:
            for i in range(depth):
                bb.ffn_output(i).register_forward_hook(self.adapters[i].hook)
        # post-LN blocks (BERT) end in a LayerNorm: the guided update goes in before it, from a pre-hook
        self._post_ln = self.guided is not None and bb.post_norm(0) is not None
        if self._post_ln:
            for i in range(depth):
                bb.post_norm(i).register_forward_pre_hook(partial(self.guided.pre_norm_hook, i))
        bb.requires_grad_(not freeze_backbone)
        self.train(False)

    @contextmanager
    def bare(self):
        """Run without the bottleneck and guided adapters: the frozen backbone alone, or (through forward) the
        same model with its adapters off. Benchmarks compare against both."""
        parts = [*(self.adapters or []), *([self.guided] if self.guided is not None else [])]
        for a in parts:
            a.enabled = False
        try:
            yield
        finally:
            for a in parts:
                a.enabled = True

    def train(self, mode=True):
        super().train(mode)
        if self.freeze_backbone:  # frozen means frozen: no dropout, no stat updates in the backbone
            self.backbone.eval()
        return self

    def forward(self, points, record=None):
        """points (B, N, 3) -> logits (B, K). `record`: a list that receives each block's view weights (B, G, V)."""
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ValueError(f"expected points of shape (B, N, 3), got {tuple(points.shape)}")
        tokens, centres = self.tokenizer(normalize(points.float()))  # (B, G, C), (B, G, 3)
        return self.forward_tokens(tokens, centres, record)

    def forward_tokens(self, tokens, centres, record=None):
        """Point tokens (B, G, C) at centres (B, G, 3) -> logits (B, K): projection, the adapted backbone, head."""
        bb = self.backbone
        pe, groups = self.projection(centres, bb.pos_table())  # (B, G, C)
        if self.pe_mode == "none":
            pe = torch.zeros_like(pe)
        guided = self.guided is not None and self.guided.enabled
        if guided:
            groups = self.guided.prepare(groups)
            groups["record"] = record
        b = tokens.shape[0]
        x = torch.cat([self.cls_token.expand(b, 1, -1), tokens], dim=1)  # (B, 1 + G, C)
        pos = torch.cat([self.cls_pos.expand(b, 1, -1), pe.to(tokens.dtype).expand(b, -1, -1)], dim=1)
        after_block = guided and not self._post_ln
        with self.guided.active(groups) if guided and self._post_ln else nullcontext():
            for i, blk in enumerate(bb.blocks):
                x = x + pos.to(x.dtype)
                if i == 0:
                    x = bb.embed(x)
                x = blk(x)
                if after_block:
                    x = self.guided(x, groups, i)
        x = bb.final_norm(x)
        feat = torch.cat([x[:, 0], x[:, 1:].amax(dim=1)], dim=-1)  # (B, 2C)
        return self.head(feat)

    # --- the trainable part, for adapter-only artifacts -------------------------------------------------------
    def trainable_state_dict(self):
        """Everything but the frozen backbone: parameters and buffers (BN statistics) of our own modules."""
        return {k: v.detach() for k, v in self.state_dict().items()
                if not (self.freeze_backbone and k.startswith("backbone."))}

    def load_trainable_state_dict(self, state):
        expected = self.trainable_state_dict()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        bad = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
        if missing or unexpected or bad:
            raise ValueError(f"adapter state does not fit this model: missing {missing[:3]} ({len(missing)}), "
                             f"unexpected {unexpected[:3]} ({len(unexpected)}), shape mismatch {bad[:3]}")
        self.load_state_dict(state, strict=False)

    def num_trainable(self):
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def num_backbone(self):
        return sum(p.numel() for p in self.backbone.parameters())

    # --- convenience ----------------------------------------------------------------------------------------
    def _one_cloud(self, points, seed=0):
        """(N, 3) numpy/tensor -> (1, n, 3) float tensor on the model's device, n <= num_points (fixed-seed subset)."""
        pts = torch.as_tensor(np.asarray(points, dtype=np.float32) if not torch.is_tensor(points) else points)
        if pts.dim() != 2 or pts.shape[-1] != 3 or pts.shape[0] < 1:
            raise ValueError(f"expected one cloud of shape (N, 3), got {tuple(pts.shape)}")
        if not torch.isfinite(pts).all():
            raise ValueError("the cloud has NaN or infinite coordinates")
        if pts.shape[0] > self.num_points:
            g = torch.Generator().manual_seed(seed)
            pts = pts[torch.randperm(pts.shape[0], generator=g)[: self.num_points]]
        return pts.float().unsqueeze(0).to(next(self.parameters()).device)

    def _probs(self, logits, top_k=None):
        probs = F.softmax(logits.float(), dim=-1)[0].cpu()
        order = probs.argsort(descending=True)[: top_k or len(self.labels)]
        return {self.labels[i]: float(probs[i]) for i in order}

    @torch.no_grad()
    def predict(self, points, *, top_k=None, seed=0):
        """One cloud (N, 3) numpy/tensor -> {label: probability}, most likely first.

        Clouds larger than num_points are subsampled with a fixed seed, so a prediction is repeatable.
        """
        pts = self._one_cloud(points, seed)
        was_training = self.training
        self.eval()
        try:
            return self._probs(self(pts), top_k)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def explain(self, points, *, seed=0):
        """What the model saw for one cloud: normalised points, token centres, their virtual-view positions and
        guided-adapter cells, and each block's per-token view weights. Everything as CPU tensors."""
        pts = self._one_cloud(points, seed)
        was_training = self.training
        self.eval()
        try:
            xyz = normalize(pts)
            tokens, centres = self.tokenizer(xyz)  # once: the prediction below reuses these tokens
            _, groups = self.projection(centres, self.backbone.pos_table())
            record = []
            probs = self._probs(self.forward_tokens(tokens, centres, record=record))
            weights = torch.stack(record)[:, 0].cpu() if record else None
        finally:
            self.train(was_training)
        return dict(points=xyz[0].cpu(), centres=centres[0].cpu(), kind=self.projection.kind,
                    coords=groups["coords"][:, 0].cpu(), cells=groups["cells"][:, 0].cpu(),
                    view_weights=weights, probs=probs)  # coords (V, G, 2) or (V, G); weights (blocks, G, V)
