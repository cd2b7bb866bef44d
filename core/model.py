"""Any2Point: tokenizer + virtual projection + frozen backbone with adapters + cls/max head."""
import os
from contextlib import contextmanager, nullcontext
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.adapter import BottleneckAdapter, FullGuidedAdapter, GuidedAdapter
from core.backbones import wrap
from core.config import Any2PointConfig
from core.points import normalize, quarter_turn, reorient, upright_prior
from core.projection import VirtualProjection
from core.tokenizer import PointPNTokenizer, PointTokenizer


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

    @property
    def trained(self):
        """Whether the trainable part was trained (declared by `info`); a freshly built model is not."""
        return bool(getattr(self.info, "trained", False))

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
        return self.head(self.features(points, record))

    def forward_tokens(self, tokens, centres, record=None):
        """Point tokens (B, G, C) at centres (B, G, 3) -> logits (B, K): projection, the adapted backbone, head."""
        return self.head(self.token_features(tokens, centres, record))

    def features(self, points, record=None):
        """points (B, N, 3) -> (B, 2C): what the head sees, concat(cls, max over point tokens) after the final norm."""
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ValueError(f"expected points of shape (B, N, 3), got {tuple(points.shape)}")
        tokens, centres = self.tokenizer(normalize(points.float()))  # (B, G, C), (B, G, 3)
        return self.token_features(tokens, centres, record)

    def token_features(self, tokens, centres, record=None):
        """Point tokens (B, G, C) at centres (B, G, 3) -> the head's input (B, 2C): projection, the adapted backbone,
        the final norm and the cls + max pooling. The one place the pooled features are computed."""
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

    # --- convenience ----------------------------------------------------------------------------------------
    @property
    def up(self):
        """The up axis of the clouds this model was trained on, as `info` declares it ("y" when it does not say)."""
        return getattr(self.info, "up", None) or "y"

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

    def _oriented(self, pts, up):
        """A cloud tensor whose up axis is `up` (None: the model's own) -> the same cloud in the model's convention."""
        return reorient(pts, up or self.up, to=self.up)

    def _probs(self, logits, top_k=None):
        return self._ranked(F.softmax(logits.float(), dim=-1)[0].cpu(), top_k)

    def _ranked(self, probs, top_k=None):
        order = probs.argsort(descending=True)[: top_k or len(self.labels)]
        return {self.labels[i]: float(probs[i]) for i in order}

    @contextmanager
    def _inference(self, num_points):
        """Eval mode, no autograd, and the thread policy for a forward of `num_points` points in all."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad(), inference_threads(num_points):
                yield
        finally:
            self.train(was_training)

    def predict(self, points, *, top_k=None, seed=0, up=None):
        """One cloud (N, 3) numpy/tensor -> {label: probability}, most likely first.

        Clouds larger than num_points are subsampled with a fixed seed, so a prediction is repeatable. `up` is the
        cloud's up axis: None (the model's own, `model.up`), "y", "z" or another of core.points.UP_AXES (the cloud
        is turned exactly into the model's convention), or "auto" (see predict_batch).
        """
        if up == "auto":
            return self.predict_batch([points], top_k=top_k, seed=seed, up=up)[0]
        pts = self._oriented(self._one_cloud(points, seed), up)
        with self._inference(pts.shape[1]):
            return self._probs(self(pts), top_k)

    def predict_batch(self, clouds, *, top_k=None, seed=0, up=None, batch_size=16, with_up=False):
        """Clouds [(N_i, 3), ...] -> [{label: probability}, ...], batched forwards of up to `batch_size` clouds.

        Each cloud is subsampled as in predict; clouds of equal size (after that) share a batch, so each result is
        predict's up to float rounding. up: as in predict, or "auto": each orientation in AUTO_UP is scored by the
        model's confidence (minus the entropy of its mean prediction over AUTO_TURNS quarter turns about the
        vertical, the turns it was trained under) plus the entry's up_prior (default AUTO_PRIOR) x
        core.points.upright_prior, and each cloud gets the best one's prediction, averaged over those turns (ties go
        to the first, the model's own). with_up=True returns [(probabilities, up axis used), ...].
        """
        pts = [self._one_cloud(c, seed)[0] for c in clouds]
        auto = up == "auto"
        ups = [self.up, *[u for u in AUTO_UP if u != self.up]] if auto else [up or self.up]
        turns = max(1, AUTO_TURNS) if auto and len(ups) > 1 else 1
        # jobs: (cloud, candidate up, turn) -> the cloud in the model's convention (turned in a y-up reading)
        jobs = {}
        for i, p in enumerate(pts):
            for u in ups:
                y_up = reorient(self._oriented(p, u), self.up, to="y")
                for k in range(turns):
                    jobs[i, u, k] = reorient(quarter_turn(y_up, k), "y", to=self.up)
        probs = self._batched_probs(jobs, batch_size)
        weight = getattr(self.info, "up_prior", None)
        weight = AUTO_PRIOR if weight is None else weight  # the entry's own (its objects' posture), else the default
        out = []
        for i in range(len(pts)):
            means = {u: torch.stack([probs[i, u, k] for k in range(turns)]).mean(0) for u in ups}
            best = None
            for u, mean in means.items():
                if len(ups) > 1:
                    prior = upright_prior(reorient(jobs[i, u, 0], self.up, to="y")[None])[0].item()
                    score = (mean * mean.clamp_min(1e-12).log()).sum().item() + weight * prior
                else:
                    score = 0.0
                if best is None or score > best[0]:
                    best = (score, u)
            out.append((self._ranked(means[best[1]], top_k), best[1]))
        return out if with_up else [ranked for ranked, _ in out]

    def _batched_probs(self, clouds, batch_size):
        """{key: (n, 3) cloud} -> {key: (K,) probabilities on the CPU}, forwards batched by cloud size."""
        by_size, probs = {}, {}
        for key, p in clouds.items():
            by_size.setdefault(p.shape[0], []).append(key)
        for size, keys in by_size.items():
            for start in range(0, len(keys), batch_size):
                chunk = keys[start:start + batch_size]
                with self._inference(size * len(chunk)):
                    out = F.softmax(self(torch.stack([clouds[k] for k in chunk])).float(), dim=-1).cpu()
                probs.update(zip(chunk, out))
        return probs

    def detect_up(self, points, *, seed=0):
        """The up axis "auto" picks for one cloud (N, 3): the orientation in AUTO_UP predicted most confidently."""
        return self.predict_batch([points], seed=seed, up="auto", with_up=True)[0][1]

    def embed(self, points, *, seed=0, up=None):
        """One cloud (N, 3) -> (D,) float32 numpy, D = 2 x backbone width: the pooled features the head sees
        (concat(cls, max over point tokens) after the final norm), for retrieval, clustering or a new head.

        Same subsampling and `up` as predict ("auto" orients the cloud as predict would). For clouds of at most
        num_points points the result does not depend on the order of the points (up to float rounding).
        """
        up = self.detect_up(points, seed=seed) if up == "auto" else up
        pts = self._oriented(self._one_cloud(points, seed), up)
        with self._inference(pts.shape[1]):
            return self.features(pts)[0].float().cpu().numpy()

    def explain(self, points, *, seed=0, up=None):
        """What the model saw for one cloud: normalised points, token centres, their virtual-view positions and
        guided-adapter cells, and each block's per-token view weights. Everything as CPU tensors; `up` as in
        predict, and the up axis used under "up"."""
        up = self.detect_up(points, seed=seed) if up == "auto" else up or self.up
        pts = self._oriented(self._one_cloud(points, seed), up)
        with self._inference(pts.shape[1]):
            xyz = normalize(pts)
            tokens, centres = self.tokenizer(xyz)  # once: the prediction below reuses these tokens
            _, groups = self.projection(centres, self.backbone.pos_table())
            record = []
            probs = self._probs(self.forward_tokens(tokens, centres, record=record))
            weights = torch.stack(record)[:, 0].cpu() if record else None
        return dict(points=xyz[0].cpu(), centres=centres[0].cpu(), kind=self.projection.kind,
                    coords=groups["coords"][:, 0].cpu(), cells=groups["cells"][:, 0].cpu(),
                    view_weights=weights, probs=probs, up=up)  # coords (V, G, 2) or (V, G); weights (blocks, G, V)


# --- inference on shared cores ------------------------------------------------------------------------------------
# torch splits every op over all cores by default; the ops of a small forward are short and the threads meet after
# each one, so a single core that another process (or request) holds stalls them all: on 2 shared cores, with one
# core kept busy, the three default entries' predict went from ~0.14 s to 0.6-5.7 s (benchmarks/busy_cpu.py: 8-21x
# slower than on one thread). One thread loses little on a small forward, so predict / embed / predict_batch use one
# for forwards of up to SMALL_FORWARD points (B x N: predict_batch's default 16 clouds of 1,024, which in a check
# on 2 shared cores still ran 1.7-3.6x faster on one thread) and leave torch's setting alone above that, where a
# machine with free cores gains from more. INFERENCE_THREADS (or the environment's ANY2POINT_TORCH_THREADS) pins every such
# forward to that many threads instead; 0 turns the policy off.
SMALL_FORWARD = 16384
INFERENCE_THREADS = None
# predict(up="auto"): the orientations it scores (core.points.UP_AXES names; the model's own always comes first),
# the quarter turns its confidence and its prediction are averaged over, and the weight of the upright prior.
# Chosen on the SweetHome3D val split of all three default entries (turns 1/2/4 x prior weight 0-8 x turn-0 or
# turn-mean prediction x hard or soft choice: the worst entry's z-up and y-up gap was smallest here, -1.8 points;
# the previous 2 turns / turn-0 prediction: -3.6 on val, -6.7 on test); costs len(AUTO_UP) x AUTO_TURNS forwards.
# Averaging the prediction over the turns it already ran is where most of the gain comes from: a wrong pick costs
# less when the kept prediction is steadier.
# An entry may carry its own prior weight (config.json "up_prior", from its dataset loader's UP_PRIOR): components
# lie flat on a board, so for kicad33 the prior counts against "standing tall" (-2, chosen on the Whisper entry's
# kicad33 val split: the z-up gap went from -15.0 at +2 to -1.4).
AUTO_UP = ("y", "z")
AUTO_TURNS = 4
AUTO_PRIOR = 2.0


def inference_thread_count(num_points):
    """Intra-op threads for a forward of `num_points` points in all, or None to leave torch's setting alone."""
    n = INFERENCE_THREADS
    if n is None and os.environ.get("ANY2POINT_TORCH_THREADS", "").strip():
        value = os.environ["ANY2POINT_TORCH_THREADS"].strip()
        if not value.isdigit():
            raise ValueError(f"ANY2POINT_TORCH_THREADS must be a whole number of threads, got {value!r}")
        n = int(value)
    if n is not None:
        return n or None
    return 1 if num_points <= SMALL_FORWARD else None


@contextmanager
def inference_threads(num_points):
    """Run the block with the thread policy's count for `num_points` points, restoring the previous count after.

    torch's count is per thread once a thread has set it (OpenMP), so concurrent callers (the app's queue
    workers) do not undo each other's setting."""
    n, before = inference_thread_count(num_points), torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
