"""Batched point-cloud primitives in plain torch (CPU or CUDA, no compiled extensions)."""
import numpy as np
import torch


def normalize(xyz, eps=1e-8):
    """(B, N, 3) -> (B, N, 3): centred on each cloud's centroid, scaled into the unit sphere (per sample).

    Computed in at least fp32 and pre-scaled by the largest coordinate, so huge coordinates cannot overflow the
    squared norm and fp16 clouds cannot divide by an eps that rounds to zero.
    """
    dtype = xyz.dtype
    x = xyz.float() if dtype in (torch.float16, torch.bfloat16) else xyz
    x = x / x.abs().amax(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    x = x - x.mean(dim=1, keepdim=True)
    radius = x.norm(dim=-1).amax(dim=1).clamp_min(eps)  # (B,)
    return (x / radius[:, None, None]).to(dtype)


# --- up axes ---------------------------------------------------------------------------------------------------
# The zoo's convention is y up (SweetHome3D, ModelNet, ShapeNet); CAD, scanners and KiCad are z up. Each up axis
# names the rotation that brings it to +y, as a signed permutation (per output axis: the input axis and its sign),
# so reorienting is exact: no arithmetic but sign flips. "z" is (x, y, z) -> (x, z, -y), the rotation the kicad
# builder applies (train/data/kicad.py Z_UP_TO_Y_UP; a test keeps the two equal).
UP_AXES = {
    "y": ((0, 1, 2), (1, 1, 1)),
    "z": ((0, 2, 1), (1, 1, -1)),  # (x, y, z) -> (x, z, -y)
    "-z": ((0, 2, 1), (1, -1, 1)),  # (x, y, z) -> (x, -z, y)
    "x": ((1, 0, 2), (-1, 1, 1)),  # (x, y, z) -> (-y, x, z)
    "-x": ((1, 0, 2), (1, -1, 1)),  # (x, y, z) -> (y, -x, z)
    "-y": ((0, 1, 2), (-1, -1, 1)),  # (x, y, z) -> (-x, -y, z)
}


def up_rotation(up):
    """The (3, 3) rotation matrix (float64 numpy) that takes a cloud whose up axis is `up` to y up."""
    perm, sign = _up(up)
    r = np.zeros((3, 3))
    r[range(3), perm] = sign
    return r


def reorient(points, up, to="y"):
    """(..., 3) numpy array or tensor whose up axis is `up` -> the same cloud with `to` as its up axis, exactly.

    reorient(p, "z") turns a z-up cloud into y-up: (x, y, z) -> (x, z, -y); reorient(p, "y", to="z") undoes it.
    """
    if up == to:
        return points
    r = up_rotation(to).T @ up_rotation(up)  # up -> y -> to; still a signed permutation
    perm, sign = np.abs(r).argmax(1), r[range(3), np.abs(r).argmax(1)]
    if torch.is_tensor(points):
        return points[..., torch.as_tensor(perm)] * torch.as_tensor(sign, dtype=points.dtype, device=points.device)
    points = np.asarray(points)
    return points[..., perm] * sign.astype(points.dtype if points.dtype.kind == "f" else np.float64)


def quarter_turn(points, k=1):
    """(..., 3) y-up numpy array or tensor -> turned k quarter turns about the y axis ((x, y, z) -> (z, y, -x) per
    turn), exactly. The zoo's entries were trained under random turns about y: the same object to them."""
    for _ in range(k % 4):
        points = points[..., [2, 1, 0]] * (points.new_tensor([1, 1, -1]) if torch.is_tensor(points) else
                                           np.array([1, 1, -1], dtype=points.dtype))
    return points


def upright_prior(xyz, base=0.1):
    """(B, N, 3) clouds read y up -> (B,) in [0, 2]: how much each looks like an object standing upright.

    The horizontal spread of its lowest `base` of height (objects stand on a wide base: feet, legs, a plinth)
    relative to its widest, plus its height relative to its largest extent. On the SweetHome3D clouds this alone
    tells the true up from the other one of (y, z) ~75% of the time; predict(up="auto") adds it to the model's
    confidence, which on its own gets ~65%.
    """
    x = xyz.float() - xyz.float().mean(1, keepdim=True)
    h = x[..., 1]
    lo, hi = h.amin(1, keepdim=True), h.amax(1, keepdim=True)
    low = ((h - lo) <= base * (hi - lo)).float()  # never empty: the lowest point is in it
    r = x[..., [0, 2]].norm(dim=-1)
    r = r / r.amax(1, keepdim=True).clamp_min(1e-12)
    ext = x.amax(1) - x.amin(1)
    return (r * low).sum(1) / low.sum(1) + ext[:, 1] / ext.amax(1).clamp_min(1e-12)


def _up(up):
    if up not in UP_AXES:
        raise ValueError(f"unknown up axis {up!r}; use one of {', '.join(UP_AXES)}")
    return UP_AXES[up]


def gather(x, idx):
    """x (B, N, C), idx (B, ...) long -> (B, ..., C)."""
    b, c = x.shape[0], x.shape[-1]
    flat = idx.reshape(b, -1)
    out = torch.gather(x, 1, flat.unsqueeze(-1).expand(-1, -1, c))
    return out.reshape(*idx.shape, c)


def farthest_point_sample(xyz, n):
    """(B, N, 3) -> (B, n) indices; deterministic and independent of the input order.

    Starts from the point farthest from the centroid (not from index 0), so permuting the input
    selects the same points in the same order.
    """
    # (B, 3, N) in fp32: the per-step reduction over 3 coordinates then runs along contiguous rows, ~2x faster
    # than over a trailing dim of 3; low precision would pick different points
    xt = xyz.detach().float().transpose(1, 2).contiguous()
    # under tracing (torch.jit.trace, ONNX export) numpy would be a constant of the example input: torch path
    if xt.device.type == "cpu" and not _tracing():  # n sequential steps: numpy's per-call cost is ~3x lower
        with np.errstate(all="ignore"):  # non-finite input: like torch, no warnings (callers validate clouds)
            return torch.from_numpy(fps_steps(np, xt.numpy(), n)).to(xyz.device)
    return fps_steps(torch, xt, n)


def _tracing():
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def fps_steps(xp, xt, n, start=None):
    """The FPS loop on (B, 3, N) fp32, written once for numpy (xp=np) and torch (xp=torch): same picks.

    start: (B,) first picks; default the point farthest from each centroid."""
    b, _, num = xt.shape
    on = {} if xp is np else {"device": xt.device}
    rows = xp.arange(b, **on)
    far = ((xt - xt.mean(2, keepdims=True)) ** 2).sum(1).argmax(1) if start is None else start
    dist = xp.full((b, num), float("inf"), dtype=xp.float32, **on)
    picks = []
    for _ in range(n):  # inherently sequential in n; vectorised over the batch and the points
        picks.append(far)
        d = ((xt - xt[rows, :, far][:, :, None]) ** 2).sum(1)  # (B, N)
        dist = xp.minimum(dist, d)
        dist[rows, far] = -1.0  # never pick a point twice, even among duplicates at distance 0
        far = dist.argmax(1)
    return xp.stack(picks, 1)


def canonical_sample(points, n):
    """(N, 3) numpy cloud -> (min(N, n), 3) float32 points, the same for every order of the input rows.

    The rows are sorted by their coordinates (x, then y, then z) first, so every later step sees one array whatever
    order the cloud came in (the centroid's float sum included); then, above n points, farthest point sampling from
    the point farthest from the centroid keeps n of them, ties going to the first in that sorted order. Rows with
    equal coordinates are interchangeable, so ties never depend on the input order. The result keeps the sorted
    order, so the function returns its own output unchanged: a caller may reduce a cloud once for several models."""
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"expected one cloud of shape (N, 3), got {pts.shape}")
    pts = pts + np.float32(0)  # -0.0 -> 0.0: rows the sort calls equal are then equal bit for bit
    pts = pts[np.lexsort(pts.T[::-1])]  # lexsort's last key is the primary one: x, then y, then z
    if len(pts) <= n:
        return np.ascontiguousarray(pts)
    picks = farthest_point_sample(torch.from_numpy(pts)[None], n)[0].numpy()
    return np.ascontiguousarray(pts[np.sort(picks)])


def knn(query, ref, k):
    """query (B, G, 3), ref (B, N, 3) -> (B, G, k) indices into ref of the k nearest points, nearest first."""
    d = torch.cdist(query.float(), ref.float())  # (B, G, N)
    return d.topk(k, dim=-1, largest=False, sorted=True).indices
