"""3D-to-any virtual projection: token centres -> positions in the backbone's own 1D/2D positional space.

Parameter-free. The pretrained table is sampled, never re-learned, and the same positions give the guided
adapter its groups (3D voxels, per-view 2D/1D cells), computed once per forward.
"""
import math

import torch
import torch.nn.functional as F


def view_rotations(num_views=6, dtype=torch.float32, device=None):
    """(V, 3, 3): four quarter turns about the up axis (y), then the two poles (about x). Camera looks along +z."""
    def rot_y(a):
        c, s = math.cos(a), math.sin(a)
        return [[c, 0, s], [0, 1, 0], [-s, 0, c]]

    def rot_x(a):
        c, s = math.cos(a), math.sin(a)
        return [[1, 0, 0], [0, c, -s], [0, s, c]]

    mats = [rot_y(i * math.pi / 2) for i in range(4)] + [rot_x(math.pi / 2), rot_x(-math.pi / 2)]
    if not 1 <= num_views <= 6:
        raise ValueError(f"num_views must be 1..6, got {num_views}")
    return torch.tensor(mats[:num_views], dtype=dtype, device=device)


def rotate_views(centres, num_views=6):
    """(B, G, 3) -> (V, B, G, 3) centres seen from each virtual view."""
    rot = view_rotations(num_views, centres.dtype, centres.device)
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


def sample_2d(table, uv):
    """table (H, W, C), uv (..., 2) in [-1, 1] edge-to-edge -> (..., C), bilinear.

    align_corners=False maps -1/+1 to the plane's edges, so a point at a patch centre returns that patch exactly.
    """
    h, w, c = table.shape
    grid = uv.reshape(1, -1, 1, 2).to(table.dtype)
    out = F.grid_sample(table.permute(2, 0, 1).unsqueeze(0), grid, mode="bilinear",
                        padding_mode="border", align_corners=False)  # (1, C, M, 1)
    return out[0, :, :, 0].t().reshape(*uv.shape[:-1], c)


def sample_1d(table, pos):
    """table (L, C), pos (...) in [0, L-1] -> (..., C), linear interpolation (exact at integers)."""
    length = table.shape[0]
    pos = pos.to(table.dtype).clamp(0, length - 1)
    lo = pos.floor().long().clamp(max=length - 1)
    hi = (lo + 1).clamp(max=length - 1)
    frac = (pos - lo.to(pos.dtype)).unsqueeze(-1)
    return table[lo] * (1 - frac) + table[hi] * frac


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
    """Centres (B, G, 3) + pretrained table -> PE (B, G, C) averaged over views, and the guided-adapter groups."""

    def __init__(self, kind, *, num_views=6, distance=1.8, direction=(-1.0, 0.0, 1.0), voxel=0.12,
                 cell_patches=2.0, cells_1d=38):
        super().__init__()
        if kind not in ("1d", "2d"):
            raise ValueError(f"projection kind must be '1d' or '2d', got {kind!r}")
        self.kind, self.num_views, self.distance, self.direction = kind, num_views, distance, tuple(direction)
        self.voxel, self.cell_patches, self.cells_1d = voxel, cell_patches, cells_1d

    def forward(self, centres, table):
        table = as_kind(table, self.kind)
        views = rotate_views(centres.float(), self.num_views)  # (V, B, G, 3)
        if self.kind == "2d":
            coords = project_2d(views, self.distance)  # (V, B, G, 2)
            pe = sample_2d(table, coords)
            cells, num_cells = cell_ids_2d(coords, table.shape[:2], self.cell_patches)
        else:
            coords = project_1d(views, self.direction)  # (V, B, G)
            pe = sample_1d(table, coords * (table.shape[0] - 1))
            cells, num_cells = cell_ids_1d(coords, self.cells_1d)
        vox, num_vox = voxel_ids(centres.float(), self.voxel)
        same_cell = cells.unsqueeze(-1) == cells.unsqueeze(-2)  # (V, B, G, G)
        groups = dict(voxels=vox, num_voxels=num_vox, cells=cells, num_cells=num_cells,
                      mask=same_cell, coords=coords)
        return pe.mean(dim=0), groups
