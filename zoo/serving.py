"""What users call on a zoo model: `load_model` returns a `ZooModel` around the lean `core.Any2Point` module.

    m = load_model("any2point-vision-dinov2s-sh3d")
    m.labels; m.predict(points, up="y"); m.predict_batch(clouds); m.embed(points); m.explain(points)
    m(points_tensor)                 # (B, N, 3) -> logits (B, K), the module's own forward
    m.module                         # the nn.Module itself (training, export, state dicts)

Every cloud that meets the model goes through `cloud()` first: validated, in one canonical order, and above the
entry's num_points reduced by core.points.canonical_sample (farthest point sampling from the point farthest from the
centroid, ties by coordinates), so a prediction or an embedding does not depend on the order of the points.
"""
import hashlib
import os
import threading
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from core.model import Trace
from core.points import canonical_sample, quarter_turn, reorient, upright_prior
from zoo.files import stable_subset

# clouds above PRESAMPLE x num_points are first cut to that many points by a hash of their coordinates (also
# order-invariant): farthest point sampling costs N per picked point, ~1.5 s for 1,024 of 200,000 on a CPU
PRESAMPLE = 16


def subsample(points, n):
    """(N, 3) float32 numpy -> at most n points (read-only), as every ZooModel reduces a cloud: order-invariant and
    repeatable. The last SAMPLE_CACHE results are kept, so models of one size given one cloud (the app's three, a
    loop over entries) reduce it once."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    key = (hashlib.blake2b(points.tobytes(), digest_size=16).digest(), len(points), n)
    with _SAMPLES_LOCK:
        if key in _SAMPLES:
            _SAMPLES.move_to_end(key)
            return _SAMPLES[key]
    out = canonical_sample(stable_subset(points, PRESAMPLE * n) if len(points) > PRESAMPLE * n else points, n)
    out.setflags(write=False)
    with _SAMPLES_LOCK:
        _SAMPLES[key] = out
        while len(_SAMPLES) > SAMPLE_CACHE:
            _SAMPLES.popitem(last=False)
    return out


SAMPLE_CACHE = 16
_SAMPLES, _SAMPLES_LOCK = OrderedDict(), threading.Lock()


# --- inference on shared cores ------------------------------------------------------------------------------------
# torch splits every op over all cores by default; the ops of a small forward are short and the threads meet after
# each one, so a single core that another process (or request) holds stalls them all: on 2 shared cores, with one
# core kept busy, the three default entries' predict went from ~0.14 s to 0.6-5.7 s (benchmarks/busy_cpu.py: 8-21x
# slower than on one thread). One thread loses little on a small forward, so predict / embed / predict_batch use one
# for forwards of up to SMALL_FORWARD points (B x N: predict_batch's default 16 clouds of 1,024, which in a check
# on 2 shared cores still ran 1.7-3.6x faster on one thread) and leave torch's setting alone above that, where a
# machine with free cores gains from more. INFERENCE_THREADS (or the environment's ANY2POINT_TORCH_THREADS) pins
# every such forward to that many threads instead; 0 turns the policy off.
SMALL_FORWARD = 16384
INFERENCE_THREADS = None
# up="auto": the orientations it scores (core.points.UP_AXES names; the model's own always comes first), the
# quarter turns its confidence and its prediction are averaged over, and the weight of the upright prior.
# Chosen on the SweetHome3D val split of all three default entries (turns 1/2/4 x prior weight 0-8 x turn-0 or
# turn-mean prediction x hard or soft choice: the worst entry's z-up and y-up gap was smallest here, -1.8 points;
# the previous 2 turns / turn-0 prediction: -3.6 on val, -6.7 on test); costs len(AUTO_UP) x AUTO_TURNS forwards.
# Averaging the prediction over the turns it already ran is where most of the gain comes from: a wrong pick costs
# less when the kept prediction is steadier.
# An entry may carry its own prior weight (config.json "up_prior", from its dataset's UP_PRIOR): components lie
# flat on a board, so for kicad33 the prior counts against "standing tall" (-2, chosen on the Whisper entry's
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


class ZooModel:
    """A loaded zoo entry: the Any2Point module (`.module`) plus predict / predict_batch / embed / explain, the up
    axis search and the thread policy. Attributes it does not define are the module's (labels, info, config,
    num_points, backbone, num_trainable, ...); calling it is calling the module."""

    def __init__(self, module):
        self.module = module

    def __getattr__(self, name):
        module = self.__dict__.get("module")  # not self.module: unpickling asks before __init__ has run
        if module is None:
            raise AttributeError(name)
        return getattr(module, name)

    def __setattr__(self, name, value):  # the module's attributes stay the module's (model.info = ...)
        if name == "module":
            object.__setattr__(self, name, value)
        else:
            setattr(self.module, name, value)

    def __call__(self, points, trace=None):
        return self.module(points, trace)

    def __repr__(self):
        return f"ZooModel({self.info.name if self.info else type(self.module).__name__})"

    def eval(self):
        self.module.eval()
        return self

    def train(self, mode=True):
        self.module.train(mode)
        return self

    def to(self, *args, **kwargs):
        self.module.to(*args, **kwargs)
        return self

    @property
    def trained(self):
        """Whether the trainable part was trained (declared by the module's `info`); a fresh recipe is not."""
        return bool(getattr(self.module.info, "trained", False))

    @property
    def up(self):
        """The up axis of the clouds this model was trained on, as `info` declares it ("y" when it does not say)."""
        return getattr(self.module.info, "up", None) or "y"

    @property
    def device(self):
        return next(self.module.parameters()).device

    # --- one cloud in, as the model sees it ---------------------------------------------------------------------
    def cloud(self, points, up=None):
        """(N, 3) numpy/tensor -> the (n, 3) float32 tensor the model sees, n <= num_points, on its device: turned
        exactly from `up` into the model's up axis ("auto": read as the model's own), then in a canonical order and
        subsampled by `subsample`. The same for every order of the input rows, and for every exact turn of them
        that `up` undoes."""
        pts = points.detach().cpu().numpy() if torch.is_tensor(points) else np.asarray(points)
        if pts.ndim != 2 or pts.shape[-1] != 3 or pts.shape[0] < 1:
            raise ValueError(f"expected one cloud of shape (N, 3), got {tuple(pts.shape)}")
        with np.errstate(over="ignore", invalid="ignore"):
            pts = pts.astype(np.float32, copy=False)
        if not np.isfinite(pts).all():
            raise ValueError("the cloud has NaN or infinite coordinates")
        if up != "auto":
            pts = reorient(pts, up or self.up, to=self.up)
        return torch.from_numpy(subsample(pts, self.module.num_points).copy()).to(self.device)

    def _ranked(self, probs, top_k=None):
        order = probs.argsort(descending=True)[: top_k or len(self.module.labels)]
        return {self.module.labels[i]: float(probs[i]) for i in order}

    @contextmanager
    def _inference(self, num_points):
        """Eval mode, no autograd, and the thread policy for a forward of `num_points` points in all."""
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad(), inference_threads(num_points):
                yield
        finally:
            self.module.train(was_training)

    # --- predictions --------------------------------------------------------------------------------------------
    def predict(self, points, *, top_k=None, up=None):
        """One cloud (N, 3) numpy/tensor -> {label: probability}, most likely first.

        `up` is the cloud's up axis: None (the model's own, `model.up`), "y", "z" or another of
        core.points.UP_AXES (the cloud is turned exactly into the model's convention), or "auto" (see
        predict_batch). Clouds above num_points are subsampled as `cloud()` says: repeatable, order-invariant.
        """
        return self.predict_batch([points], top_k=top_k, up=up)[0]

    def predict_batch(self, clouds, *, top_k=None, up=None, batch_size=16, with_up=False):
        """Clouds [(N_i, 3), ...] -> [{label: probability}, ...], batched forwards of up to `batch_size` clouds.

        Clouds of equal size (after subsampling) share a batch, so each result is predict's up to float rounding.
        up: as in predict, or "auto": each orientation in AUTO_UP is scored by the model's confidence (minus the
        entropy of its mean prediction over AUTO_TURNS quarter turns about the vertical, the turns it was trained
        under) plus the entry's up_prior (default AUTO_PRIOR) x core.points.upright_prior, and each cloud gets the
        best one's prediction, averaged over those turns (ties go to the first, the model's own).
        with_up=True returns [(probabilities, up axis used), ...].
        """
        out = [(self._ranked(probs, top_k), used) for probs, used, _ in self._run(clouds, up, batch_size)]
        return out if with_up else [ranked for ranked, _ in out]

    def detect_up(self, points):
        """The up axis "auto" picks for one cloud (N, 3): the orientation in AUTO_UP predicted most confidently."""
        return self._run([points], "auto", 16)[0][1]

    def embed(self, points, *, up=None):
        """One cloud (N, 3) -> (D,) float32 numpy, D = 2 x backbone width: the pooled features the head sees
        (concat(cls, max over point tokens) after the final norm), for retrieval, clustering or a new head.

        Same subsampling and `up` as predict ("auto" orients the cloud as predict would); the same for every
        order of the points.
        """
        up = self.detect_up(points) if up == "auto" else up
        pts = self.cloud(points, up)
        with self._inference(pts.shape[0]):
            return self.module.features(pts[None])[0].float().cpu().numpy()

    def explain(self, points, *, top_k=None, up=None):
        """One cloud's prediction and what the model saw, from the same forward(s) as the prediction: `probs`
        ({label: probability}, as predict), `up` (the axis used), the normalised points, token centres, their
        virtual-view positions (`coords` (V, G, 2) or (V, G), `kind` "2d" / "1d") and guided-adapter `cells`
        (V, G), and each block's per-token view weights (blocks, G, V) or None. CPU tensors. With up="auto" the
        views are those of the chosen orientation's first turn."""
        probs, used, seen = self._run([points], up, 16, trace=True)[0]
        return dict(seen, probs=self._ranked(probs, top_k), up=used, kind=self.module.projection.kind)

    # --- the engine -------------------------------------------------------------------------------------------
    def _run(self, clouds, up, batch_size, trace=False):
        """Clouds -> [(probabilities (K,), up axis used, what the model saw or None)]: every orientation "auto"
        scores, batched by cloud size; the chosen one's probabilities (mean over its turns)."""
        pts = [self.cloud(c, up) for c in clouds]  # "auto": read as the model's own up axis, turned below
        own = self.up
        auto = up == "auto"
        ups = [own, *[u for u in AUTO_UP if u != own]] if auto else [own]
        turns = max(1, AUTO_TURNS) if auto and len(ups) > 1 else 1
        jobs = {}  # (cloud, candidate up, turn) -> the cloud in the model's convention (turned in a y-up reading)
        for i, p in enumerate(pts):
            for u in ups:
                y_up = reorient(reorient(p, u, to=own), own, to="y")
                for k in range(turns):
                    jobs[i, u, k] = reorient(quarter_turn(y_up, k), "y", to=own)
        probs, seen = self._forward(jobs, batch_size, trace)
        weight = getattr(self.module.info, "up_prior", None)
        weight = AUTO_PRIOR if weight is None else weight  # the entry's own (its objects' posture), else the default
        out = []
        for i in range(len(pts)):
            means = {u: torch.stack([probs[i, u, k] for k in range(turns)]).mean(0) for u in ups}
            best = None
            for u, mean in means.items():
                score = 0.0
                if len(ups) > 1:
                    prior = upright_prior(reorient(jobs[i, u, 0], own, to="y")[None])[0].item()
                    score = (mean * mean.clamp_min(1e-12).log()).sum().item() + weight * prior
                if best is None or score > best[0]:
                    best = (score, u)
            out.append((means[best[1]], best[1] if auto else up or own, seen.get((i, best[1], 0))))
        return out

    def _forward(self, jobs, batch_size, trace):
        """{key: (n, 3) cloud} -> ({key: (K,) probabilities on the CPU}, {key: what the model saw} when `trace`),
        forwards batched by cloud size."""
        by_size, probs, seen = {}, {}, {}
        for key, p in jobs.items():
            by_size.setdefault(p.shape[0], []).append(key)
        for size, keys in by_size.items():
            for start in range(0, len(keys), batch_size):
                chunk = keys[start:start + batch_size]
                t = Trace() if trace else None
                with self._inference(size * len(chunk)):
                    out = F.softmax(self.module(torch.stack([jobs[k] for k in chunk]), t).float(), dim=-1).cpu()
                probs.update(zip(chunk, out))
                for j, key in enumerate(chunk if trace else ()):
                    weights = torch.stack([w[j] for w in t.view_weights]).cpu() if t.view_weights else None
                    seen[key] = dict(points=t.points[j].cpu(), centres=t.centres[j].cpu(),
                                     coords=t.groups["coords"][:, j].cpu(), cells=t.groups["cells"][:, j].cpu(),
                                     view_weights=weights)
        return probs, seen
