"""Any2Point: tokenizer + virtual projection + frozen backbone with adapters + cls/max head.

The nn.Module only: what serving needs around it (subsampling, up axes, predict / embed / explain, the thread
policy) is zoo.serving's."""
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from core.adapter import BottleneckAdapter, FullGuidedAdapter, GuidedAdapter
from core.backbones import wrap
from core.config import Any2PointConfig
from core.points import normalize
from core.projection import VirtualProjection
from core.tokenizer import PointPNTokenizer, PointTokenizer


@dataclass
class Trace:
    """What one forward saw, filled in when passed to forward / features / forward_tokens (per forward: concurrent
    forwards of one model each keep their own). `reference` runs the guided adapter's plain reference path."""
    reference: bool = False
    points: torch.Tensor | None = None  # (B, N, 3) the normalised clouds (forward / features only)
    centres: torch.Tensor | None = None  # (B, G, 3) token centres
    groups: dict | None = None  # the projection's groups: coords (V, B, G, 2) or (V, B, G), cells (V, B, G), ...
    view_weights: list = field(default_factory=list)  # per block the guided adapter's view weights (B, G, V)


class Any2Point(nn.Module):
    """Point cloud (B, N, 3) -> logits (B, K) through a frozen 1D/2D transformer.

    Settings are an `Any2PointConfig` (core/config.py; keyword overrides work too), and `model.config` is that
    object with `distance` resolved. Ablations and baselines are settings: pe="none"|"1d"|"2d", adapter=False,
    guided=False (both off + pe on = linear probe), freeze_backbone=False (from scratch); see config.PRESETS.
    `info` is what the model is, declared by whoever built it (zoo: a `zoo.registry.ModelInfo`), or None.
    """

    def __init__(self, backbone, num_classes, *, config=None, labels=None, info=None, **overrides):
        super().__init__()
        self.backbone = wrap(backbone)  # a library model or a Backbone; spec strings: zoo.build_backbone
        bb = self.backbone
        c, depth = bb.width, len(bb.blocks)
        if labels is not None and len(labels) != num_classes:
            raise ValueError(f"{len(labels)} labels for {num_classes} classes")
        self.labels = list(labels) if labels is not None else [f"class_{i}" for i in range(num_classes)]
        cfg = config if config is not None else Any2PointConfig()
        if not isinstance(cfg, Any2PointConfig):
            raise TypeError(f"config must be an Any2PointConfig, got {type(cfg).__name__} (use from_dict)")
        cfg = cfg.replace(**overrides) if overrides else cfg
        if cfg.distance is None:
            cfg = cfg.replace(distance=bb.default_distance)
        self.config, self.info = cfg, info
        self.num_points, self.pe_mode, self.freeze_backbone = cfg.num_points, cfg.pe, cfg.freeze_backbone
        kind = bb.pos_kind if cfg.pe in ("auto", "none") else cfg.pe

        if cfg.tokenizer == "pointpn":
            self.tokenizer = PointPNTokenizer(c, stages=(*cfg.pointpn_stages, cfg.num_tokens), k=cfg.k,
                                              embed_dim=cfg.pointpn_embed_dim, widths=cfg.pointpn_widths,
                                              hidden=cfg.pointpn_hidden, blocks=cfg.pointpn_blocks)
        else:
            self.tokenizer = PointTokenizer(c, num_tokens=cfg.num_tokens, k=cfg.k, dim=cfg.tokenizer_dim)
        self.projection = VirtualProjection(kind, num_views=cfg.num_views, distance=cfg.distance,
                                            direction=cfg.direction, voxel=cfg.voxel, cell_patches=cfg.cell_patches,
                                            cells_1d=cfg.cells_1d, views_1d=cfg.views_1d)
        cls = bb.cls_init()
        self.cls_token = nn.Parameter(cls.clone() if cls is not None else torch.randn(c) * 0.02)
        self.cls_pos = nn.Parameter(torch.zeros(c))
        self.adapters = nn.ModuleList(BottleneckAdapter(c, cfg.adapter_dim, cfg.adapter_scale, cfg.adapter_dropout)
                                      for _ in range(depth)) if cfg.adapter else None
        if not cfg.guided:
            self.guided = None
        elif cfg.guided_mode == "full":
            self.guided = FullGuidedAdapter(c, depth, num_views=cfg.num_views, inner=cfg.guided_dim,
                                            heads=cfg.guided_heads, scale=cfg.guided_scale,
                                            cell_max=cfg.guided_cell_max)
        else:
            self.guided = GuidedAdapter(c, depth, num_views=cfg.num_views, inner=cfg.guided_dim,
                                        scale=cfg.guided_scale)
        # norm(x) * g0 + b0 then * a + c spans every affine of norm(x): training (a, c) from (1, 0) is training the
        # final norm's own affine, without copying the frozen backbone's weights into the artifact
        self.final_scale = nn.Parameter(torch.ones(c)) if cfg.final_affine else None
        self.final_shift = nn.Parameter(torch.zeros(c)) if cfg.final_affine else None
        h, p = cfg.head_hidden, cfg.dropout
        self.head = nn.Sequential(
            nn.Linear(2 * c, h), nn.BatchNorm1d(h), nn.GELU(), nn.Dropout(p),
            nn.Linear(h, h), nn.BatchNorm1d(h), nn.GELU(), nn.Dropout(p),
            nn.Linear(h, num_classes))

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
        bb.requires_grad_(not cfg.freeze_backbone)
        self.train(False)

    @contextmanager
    def bare(self, *parts):
        """Run with adapters off: `parts` of "adapters" (the bottleneck adapters) and "guided" (the guided
        adapter); none named: both, the frozen backbone alone, or (through forward) the same model with its adapters
        off. Benchmarks compare against both."""
        unknown = set(parts) - {"adapters", "guided"}
        if unknown:
            raise ValueError(f"unknown adapter part {sorted(unknown)[0]!r}; use 'adapters' and/or 'guided'")
        parts = parts or ("adapters", "guided")
        mods = [*(self.adapters or [])] if "adapters" in parts else []
        mods += [self.guided] if "guided" in parts and self.guided is not None else []
        for a in mods:
            a.enabled = False
        try:
            yield
        finally:
            for a in mods:
                a.enabled = True

    def train(self, mode=True):
        super().train(mode)
        if self.freeze_backbone:  # frozen means frozen: no dropout, no stat updates in the backbone
            self.backbone.eval()
        return self

    def forward(self, points, trace=None):
        """points (B, N, 3) -> logits (B, K). `trace`: a Trace that receives what this forward saw."""
        return self.head(self.features(points, trace))

    def forward_tokens(self, tokens, centres, trace=None):
        """Point tokens (B, G, C) at centres (B, G, 3) -> logits (B, K): projection, the adapted backbone, head."""
        return self.head(self.token_features(tokens, centres, trace))

    def features(self, points, trace=None):
        """points (B, N, 3) -> (B, 2C): what the head sees, concat(cls, max over point tokens) after the final norm."""
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ValueError(f"expected points of shape (B, N, 3), got {tuple(points.shape)}")
        xyz = normalize(points.float())
        if trace is not None:
            trace.points = xyz
        tokens, centres = self.tokenizer(xyz)  # (B, G, C), (B, G, 3)
        return self.token_features(tokens, centres, trace)

    def token_features(self, tokens, centres, trace=None):
        """Point tokens (B, G, C) at centres (B, G, 3) -> the head's input (B, 2C): projection, the adapted backbone,
        the final norm and the cls + max pooling. The one place the pooled features are computed."""
        bb = self.backbone
        pe, groups = self.projection(centres, bb.pos_table())  # (B, G, C)
        if trace is not None:
            trace.centres, trace.groups = centres, groups
        if self.pe_mode == "none":
            pe = torch.zeros_like(pe)
        guided = self.guided is not None and self.guided.enabled
        if guided:
            ctx = self.guided.prepare(groups, record=None if trace is None else trace.view_weights,
                                      reference=trace is not None and trace.reference)
        b = tokens.shape[0]
        x = torch.cat([self.cls_token.expand(b, 1, -1), tokens], dim=1)  # (B, 1 + G, C)
        pos = torch.cat([self.cls_pos.expand(b, 1, -1), pe.to(tokens.dtype).expand(b, -1, -1)], dim=1)
        after_block = guided and not self._post_ln
        with self.guided.active(ctx) if guided and self._post_ln else nullcontext():
            for i, blk in enumerate(bb.blocks):
                x = x + pos.to(x.dtype)
                if i == 0:
                    x = bb.embed(x)
                x = blk(x)
                if after_block:
                    x = self.guided(x, ctx, i)
        x = bb.final_norm(x)
        if self.final_scale is not None:
            x = x * self.final_scale.to(x.dtype) + self.final_shift.to(x.dtype)
        return torch.cat([x[:, 0], x[:, 1:].amax(dim=1)], dim=-1)  # (B, 2C)

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
