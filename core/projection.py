"""3D-to-any virtual projection: token centres -> positions in the backbone's own 1D/2D positional space.

Parameter-free. The pretrained table is sampled, never re-learned, and the same positions give the guided
adapter its groups (3D voxels, per-view 2D/1D cells), computed once per forward.
"""
import math

import torch
import torch.nn.functional as F


def view_rotations(num_views=6, dtype=torch.float32, device=None, *, layout="legacy"):
    """(V, 3, 3) view rotations. Camera looks along +z, y is up.

    "legacy": four quarter turns about the up axis (y), then the two poles (about x); projected on the 1D direction
    (-1, 0, 1), views 0/2 and 1/3 give mirrored lines (t and 1 - t). "tilted", for 1D views: the official
    composition Rx(a) Ry(b) Rz(pi/2). Its four quarter turns a = k pi/2 put the lines on (0,1,1), (1,1,0),
    (0,1,-1), (-1,1,0), each tilted 45 degrees by the up axis; the official poles (a, b) = (0, -/+pi/2) would
    repeat the third line (once mirrored), so here they are (pi/2, +/-pi/2): the two horizontal diagonals
    (1,0,-1), (1,0,1). Six pairwise non-parallel lines, the six face diagonals of a cube.
    """
    def rot_x(a):
        c, s = math.cos(a), math.sin(a)
        return torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64)

    def rot_y(a):
        c, s = math.cos(a), math.sin(a)
        return torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)

    def rot_z(a):
        c, s = math.cos(a), math.sin(a)
        return torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float64)

    if not 1 <= num_views <= 6:
        raise ValueError(f"num_views must be 1..6, got {num_views}")
    if layout == "legacy":
        mats = [rot_y(i * math.pi / 2) for i in range(4)] + [rot_x(math.pi / 2), rot_x(-math.pi / 2)]
    elif layout == "tilted":
        angles = [(i * math.pi / 2, 0.0) for i in range(4)] + [(math.pi / 2, math.pi / 2), (math.pi / 2, -math.pi / 2)]
        mats = [rot_x(a) @ rot_y(b) @ rot_z(math.pi / 2) for a, b in angles]
    else:
        raise ValueError(f"layout must be 'legacy' or 'tilted', got {layout!r}")
    return torch.stack(mats[:num_views]).to(dtype=dtype, device=device)


def rotate_views(centres, num_views=6, layout="legacy"):
    """(B, G, 3) -> (V, B, G, 3) centres seen from each virtual view."""
    rot = view_rotations(num_views, centres.dtype, centres.device, layout=layout)
    return torch.einsum("vij,bgj->vbgi", rot, centres)


def project_2d(views, distance=1.8):
    """(V, B, G, 3) -> (V, B, G, 2) image-plane coordinates in [-1, 1], x right, y down (grid_sample order).

    The view is pushed back by `distance` and perspective-projected; dividing by the tangent of the half angle
    the unit sphere subtends makes the sphere exactly fill the plane, whatever the distance.
    """
    if distance <= 1:
        raise ValueError(f"distance must be > 1 (the cloud lies in the unit sphere), got {distance}")
    z = views[..., 2] + distance
    tan_half = 1.0 / math.sqrt(distance**2 - 1)
    u = views[..., 0] / z / tan_half
    v = -views[..., 1] / z / tan_half  # image rows grow downwards
    return torch.stack([u, v], dim=-1).clamp(-1, 1)


def project_1d(views, direction=(-1.0, 0.0, 1.0), eps=1e-6):
    """(V, B, G, 3) -> (V, B, G) positions in [0, 1], min/max taken per sample and view.

    Per sample, not per batch (the official code's batch min/max makes a prediction depend on its batch mates).
    """
    d = torch.tensor(direction, dtype=views.dtype, device=views.device)
    s = views @ (d / d.norm())
    lo, hi = s.amin(dim=-1, keepdim=True), s.amax(dim=-1, keepdim=True)
    return (s - lo) / (hi - lo).clamp_min(eps)


def corners_2d(uv, h, w):
    """uv (..., 2) in [-1, 1] edge-to-edge -> bilinear corners: flat indices into an (H*W) grid and weights, (..., 4).

    The convention of grid_sample(align_corners=False, padding_mode="border"): -1/+1 are the plane's edges, so a
    point at a patch centre gets weight 1 on that patch.
    """
    px = (((uv[..., 0] + 1) * w - 1) / 2).clamp(0, w - 1)
    py = (((uv[..., 1] + 1) * h - 1) / 2).clamp(0, h - 1)
    x0, y0 = px.floor().long(), py.floor().long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    fx, fy = px - x0, py - y0
    idx = torch.stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1], dim=-1)
    wts = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=-1)
    return idx, wts


def corners_1d(pos, length):
    """pos (...) in [0, L-1] -> linear-interpolation neighbours and weights, (..., 2) (exact at integers)."""
    pos = pos.clamp(0, length - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=length - 1)
    frac = pos - lo
    return torch.stack([lo, hi], dim=-1), torch.stack([1 - frac, frac], dim=-1)


def _gather_weighted(flat, idx, wts):
    """flat (M, C), idx/wts (..., K) -> (..., C) = sum_k wts * flat[idx]."""
    return (flat[idx] * wts.unsqueeze(-1).to(flat.dtype)).sum(dim=-2)


def sample_2d(table, uv):
    """table (H, W, C), uv (..., 2) in [-1, 1] edge-to-edge -> (..., C), bilinear."""
    h, w, c = table.shape
    return _gather_weighted(table.reshape(h * w, c), *corners_2d(uv.float(), h, w))


def sample_1d(table, pos):
    """table (L, C), pos (...) in [0, L-1] -> (..., C), linear interpolation (exact at integers)."""
    return _gather_weighted(table, *corners_1d(pos.float(), table.shape[0]))


def weighted_bag(idx, table, wts):
    """Per-row weighted sums of table rows: idx/wts (N, K), table (M, C) -> (N, C), as F.embedding_bag(mode="sum").

    Half-precision tables (bf16 under autocast on a GPU) are summed in float32 and cast back: CUDA has no
    per_sample_weights backward for bf16, and the float32 sum is the more accurate one anyway.
    """
    dtype = table.dtype
    if dtype in (torch.float16, torch.bfloat16):
        table = table.float()
    out = F.embedding_bag(idx, table, per_sample_weights=wts.to(table.dtype), mode="sum")
    return out.to(dtype)


def sample_views(table, idx, wts):
    """Mean over views of the sampled PE without materialising it per view: idx/wts (V, B, G, K) -> (B, G, C).

    One embedding_bag over the V*K weighted rows of each token (the table is read, never copied).
    """
    v, b, g, k = idx.shape
    flat = table.reshape(-1, table.shape[-1])
    idx = idx.permute(1, 2, 0, 3).reshape(b * g, v * k)
    wts = (wts / v).permute(1, 2, 0, 3).reshape(b * g, v * k)
    return weighted_bag(idx, flat, wts).reshape(b, g, -1)


def as_kind(table, kind):
    """The table seen as `kind`: a 2D grid read row-major as 1D, or a 1D table folded into a square grid.

    Only the "other projection" ablation needs this; the native kind passes through unchanged.
    """
    if kind == "1d" and table.dim() == 3:
        return table.reshape(-1, table.shape[-1])
    if kind == "2d" and table.dim() == 2:
        side = int(math.isqrt(table.shape[0]))
        return table[: side * side].reshape(side, side, table.shape[-1])
    return table


def _compact(ids):
    """Arbitrary non-negative ids -> dense 0..U-1 and U (group membership is all that matters)."""
    uniq, inverse = torch.unique(ids, return_inverse=True)
    return inverse, uniq.numel()


def voxel_ids(centres, voxel=0.12):
    """(B, G, 3) -> (B, G) dense voxel ids, unique across the batch; voxels offset by each sample's minimum."""
    b = centres.shape[0]
    n = int(math.ceil(2.0 / voxel)) + 1  # the unit sphere spans 2 units per axis
    cell = ((centres - centres.amin(dim=1, keepdim=True)) / voxel).floor().long().clamp(0, n - 1)
    ids = (cell[..., 0] * n + cell[..., 1]) * n + cell[..., 2]
    ids = ids + torch.arange(b, device=centres.device)[:, None] * n**3
    return _compact(ids)


def cell_ids_2d(uv, grid_hw, cell_patches=2.0):
    """uv (V, B, G, 2) -> (V, B, G) dense ids of image-plane cells `cell_patches` patches wide, per (view, sample)."""
    h, w = grid_hw
    rows, cols = int(math.ceil(h / cell_patches)), int(math.ceil(w / cell_patches))
    col = ((uv[..., 0] + 1) / 2 * w / cell_patches).floor().long().clamp(0, cols - 1)
    row = ((uv[..., 1] + 1) / 2 * h / cell_patches).floor().long().clamp(0, rows - 1)
    return _offset_compact(row * cols + col, rows * cols)


def cell_ids_1d(t, num_cells=38):
    """t (V, B, G) in [0, 1] -> (V, B, G) dense ids of `num_cells` equal segments, per (view, sample)."""
    return _offset_compact((t * num_cells).floor().long().clamp(0, num_cells - 1), num_cells)


def _offset_compact(ids, per_group):
    v, b = ids.shape[:2]
    offset = torch.arange(v * b, device=ids.device).reshape(v, b, 1) * per_group
    return _compact(ids + offset)


class VirtualProjection(torch.nn.Module):
    """Centres (B, G, 3) + pretrained table -> PE (B, G, C) averaged over views, and the guided-adapter groups.

    views_1d: the 1D views' rotations (see view_rotations): "legacy" (the default, so saved models reproduce) or
    "tilted" (six distinct lines; new recipes). 2D views always use the legacy turns.
    """

    def __init__(self, kind, *, num_views=6, distance=1.8, direction=(-1.0, 0.0, 1.0), voxel=0.12,
                 cell_patches=2.0, cells_1d=38, views_1d="legacy"):
        super().__init__()
        if kind not in ("1d", "2d"):
            raise ValueError(f"projection kind must be '1d' or '2d', got {kind!r}")
        if views_1d not in ("legacy", "tilted"):
            raise ValueError(f"views_1d must be 'legacy' or 'tilted', got {views_1d!r}")
        self.views_1d = views_1d
        self.kind, self.num_views, self.distance, self.direction = kind, num_views, distance, tuple(direction)
        self.voxel, self.cell_patches, self.cells_1d = voxel, cell_patches, cells_1d

    def forward(self, centres, table):
        # geometry in fp32 whatever the autocast: under bf16, 511 rounds to 512 and indexes past a 512-row table
        with torch.autocast(centres.device.type, enabled=False):
            return self._forward(centres.float(), table)

    def _forward(self, centres, table):
        """centres (B, G, 3) fp32 (forward converts them)."""
        table = as_kind(table, self.kind)
        views = rotate_views(centres, self.num_views, self.views_1d if self.kind == "1d" else "legacy")  # (V, B, G, 3)
        if self.kind == "2d":
            coords = project_2d(views, self.distance)  # (V, B, G, 2)
            corners = corners_2d(coords, *table.shape[:2])
            cells, num_cells = cell_ids_2d(coords, table.shape[:2], self.cell_patches)
        else:
            coords = project_1d(views, self.direction)  # (V, B, G)
            corners = corners_1d(coords * (table.shape[0] - 1), table.shape[0])
            cells, num_cells = cell_ids_1d(coords, self.cells_1d)
        vox, num_vox = voxel_ids(centres, self.voxel)
        same_cell = cells.unsqueeze(-1) == cells.unsqueeze(-2)  # (V, B, G, G)
        groups = dict(voxels=vox, num_voxels=num_vox, cells=cells, num_cells=num_cells,
                      mask=same_cell, coords=coords)
        return sample_views(table, *corners), groups
