"""Read any common point-cloud or mesh file into an (N, 3) float32 array.

Used by the app for uploads, the `python -m zoo` CLI and the datasets (`zoo.read_points`), so every failure becomes a `PointCloudError` whose message
is one sentence a user can act on; the original exception stays chained for debugging.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np

MESH_EXTENSIONS = (".ply", ".obj", ".stl", ".off", ".glb", ".gltf")
CLOUD_EXTENSIONS = (".xyz", ".txt", ".pts", ".npy", ".npz", ".pcd")
SUPPORTED_EXTENSIONS = MESH_EXTENSIONS + CLOUD_EXTENSIONS
NPZ_KEYS = ("points", "xyz", "data", "pos")
_PCD_TYPES = {"F": "f", "I": "i", "U": "u"}


class PointCloudError(ValueError):
    """A file could not be turned into a point cloud; the message says why in one sentence."""


def read_points(path, *, num_points: int = 2048, seed: int = 0, max_points: int = 200_000,
                max_bytes: int = 100 * 2**20) -> np.ndarray:
    """The points of a cloud file, or `num_points` area-weighted surface samples of a mesh (same seed, same cloud)."""
    path = Path(path)
    name, ext = path.name, path.suffix.lower()
    if not path.is_file():
        raise PointCloudError(f"File not found: '{path}'; check the path and try again.")
    if ext not in SUPPORTED_EXTENSIONS:
        raise PointCloudError(f"Unsupported file type '{ext or name}'; use one of: {', '.join(SUPPORTED_EXTENSIONS)}.")
    size = path.stat().st_size
    if size > max_bytes:
        raise PointCloudError(f"'{name}' is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:g} MiB limit; "
                              "downsample or simplify it first.")
    if size == 0:
        raise PointCloudError(f"'{name}' is empty; choose a file that contains points or a mesh.")
    try:
        if ext in MESH_EXTENSIONS:
            pts = _read_mesh(path, num_points, seed)
        elif ext in (".npy", ".npz"):
            pts = _read_numpy(path)
        elif ext == ".pcd":
            pts = _read_pcd(path.read_bytes(), name)
        else:
            pts = _read_text(path.read_bytes().decode("utf-8", errors="replace"), name)
    except PointCloudError:
        raise
    except Exception as e:  # trimesh/numpy/struct internals: their messages mean nothing to a user
        raise PointCloudError(f"Could not parse '{name}' as {ext[1:].upper()}; the file is corrupt or not in "
                              "that format.") from e
    return _check(pts, name, max_points, seed)


def _check(pts, name, max_points, seed) -> np.ndarray:
    pts = np.asarray(pts)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise PointCloudError(f"'{name}' has data of shape {tuple(pts.shape)}; expected N x 3 "
                              "(extra columns are ignored, the first three are x, y, z).")
    with np.errstate(over="ignore", invalid="ignore"):  # checked on the float32 cloud we return, overflow included
        pts = pts[:, :3].astype(np.float32)
    bad = int((~np.isfinite(pts).all(axis=1)).sum())
    if bad:
        raise PointCloudError(f"'{name}' has {bad} points with NaN or infinite coordinates; remove them and try again.")
    if len(pts) < 2:
        raise PointCloudError(f"'{name}' has only {len(pts)} point(s); a cloud needs at least 2 distinct points.")
    if np.ptp(pts, axis=0).max() == 0:
        raise PointCloudError(f"'{name}' is degenerate: all {len(pts)} points are identical (zero extent).")
    if len(pts) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(pts), max_points, replace=False))
        pts = pts[keep]
    return np.ascontiguousarray(pts, dtype=np.float32)


def _read_mesh(path: Path, num_points: int, seed: int) -> np.ndarray:
    import trimesh

    scene = trimesh.load_scene(str(path))
    parts = scene.dump()  # transforms baked in
    meshes = [g for g in parts if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    if meshes:
        mesh = trimesh.util.concatenate(meshes) if len(meshes) > 1 else meshes[0]
        if mesh.area > 0:
            pts, _ = trimesh.sample.sample_surface(mesh, num_points, seed=seed)
            return pts
    # vertex-only files (and meshes whose faces have no area) are read as their points
    verts = [np.asarray(g.vertices) for g in parts if hasattr(g, "vertices") and len(g.vertices)]
    if not verts:
        raise PointCloudError(f"'{path.name}' contains no geometry (no vertices or faces); export it again "
                              "with the mesh included.")
    return np.concatenate(verts)


def _read_numpy(path: Path) -> np.ndarray:
    data = np.load(path, allow_pickle=False)  # never unpickle user files
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            keys = list(data.keys())
            key = next((k for k in NPZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise PointCloudError(f"'{path.name}' has arrays {keys} but none named {', '.join(NPZ_KEYS)}; "
                                      "rename the point array to 'points'.")
            data = data[key]
    if data.dtype.names and {"x", "y", "z"} <= set(data.dtype.names):
        data = np.stack([data["x"], data["y"], data["z"]], axis=-1)
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise PointCloudError(f"'{path.name}' holds {data.dtype} values, not numbers; save the points as floats.")
    return data


def _read_text(text: str, name: str) -> np.ndarray:
    text = text.replace(",", " ")
    try:  # fast path: a clean numeric table
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data" is handled below
            pts = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2, comments=("#", "//"))
        if pts.size:
            return pts
    except ValueError:
        pass
    rows, short = [], 0
    for line in text.splitlines():
        parts = line.split()
        try:
            values = [float(p) for p in parts[:3]]
        except ValueError:
            continue  # header, comment or other non-numeric line
        if len(values) == 3:
            rows.append(values)
        elif values:
            short += 1
    if not rows:
        if short:
            raise PointCloudError(f"'{name}' has numeric lines with fewer than 3 columns; each line needs x y z.")
        raise PointCloudError(f"'{name}' has no numeric lines; each point should be a line 'x y z' or 'x,y,z'.")
    return np.array(rows)


def _read_pcd(raw: bytes, name: str) -> np.ndarray:
    head, pos = {}, 0
    while "DATA" not in head:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise PointCloudError(f"'{name}' has no DATA line; it is not a valid PCD file.")
        line = raw[pos:end].decode("latin-1").strip()
        pos = end + 1
        if line and not line.startswith("#"):
            key, *vals = line.split()
            head[key.upper()] = vals
    fields = head["FIELDS"]
    if not {"x", "y", "z"} <= set(fields):
        raise PointCloudError(f"'{name}' has fields {fields} but no x, y, z; it does not hold 3D points.")
    counts = [int(c) for c in head.get("COUNT", [1] * len(fields))]
    types = [np.dtype(f"<{_PCD_TYPES[t.upper()]}{s}") for t, s in zip(head["TYPE"], head["SIZE"])]
    n = int(head["POINTS"][0]) if "POINTS" in head else int(head["WIDTH"][0]) * int(head["HEIGHT"][0])
    xyz = [fields.index(a) for a in "xyz"]
    kind = head["DATA"][0].lower()
    if kind == "ascii":
        starts = np.cumsum([0] + counts)
        return np.loadtxt(io.StringIO(raw[pos:].decode("latin-1")), dtype=np.float64, ndmin=2,
                          usecols=[starts[i] for i in xyz], max_rows=n)
    if kind == "binary":  # row-major records
        dt = np.dtype([(f"f{i}", t, (c,)) for i, (t, c) in enumerate(zip(types, counts))])
        rec = np.frombuffer(raw, dt, count=n, offset=pos)
        return np.stack([rec[f"f{i}"][:, 0] for i in xyz], axis=1)
    if kind == "binary_compressed":  # LZF of the column-major layout: all x, then all y, ...
        csize, usize = struct.unpack_from("<II", raw, pos)
        expected = n * sum(t.itemsize * c for t, c in zip(types, counts))
        if usize != expected:  # checked before allocating: a tiny header could otherwise ask for gigabytes
            raise PointCloudError(f"'{name}' declares {usize} uncompressed bytes but {n} points of these fields "
                                  f"take {expected}; the file is corrupt.")
        data = lzf_decompress(raw[pos + 8:pos + 8 + csize], usize)
        cols, off = {}, 0
        for i, (t, c) in enumerate(zip(types, counts)):
            cols[i] = np.frombuffer(data, t, count=n * c, offset=off).reshape(n, c)[:, 0]
            off += n * c * t.itemsize
        return np.stack([cols[i] for i in xyz], axis=1)
    raise PointCloudError(f"'{name}' has PCD data type '{kind}'; save it as ascii, binary or binary_compressed.")


def lzf_decompress(src: bytes, out_len: int) -> bytes:
    """LZF (liblzf) decoder, as used by PCL's binary_compressed PCD."""
    out, i, o = bytearray(out_len), 0, 0
    while i < len(src):
        ctrl = src[i]
        i += 1
        if ctrl < 32:  # literal run of ctrl + 1 bytes
            out[o:o + ctrl + 1] = src[i:i + ctrl + 1]
            i += ctrl + 1
            o += ctrl + 1
            continue
        length = ctrl >> 5
        if length == 7:
            length += src[i]
            i += 1
        ref = o - ((ctrl & 0x1F) << 8) - src[i] - 1
        i += 1
        length += 2
        if ref < 0 or o + length > out_len:
            raise ValueError("corrupt LZF stream")
        if ref + length <= o:
            out[o:o + length] = out[ref:ref + length]
        else:  # overlapping back-reference repeats a pattern byte by byte
            for k in range(length):
                out[o + k] = out[ref + k]
        o += length
    if o != out_len:
        raise ValueError("LZF stream shorter than declared")
    return bytes(out)


def write_points(path, points) -> Path:
    """Write an (N, 3) cloud as binary little-endian vertex-only .ply, .npy or .xyz (exact float32 round trip)."""
    path = Path(path)
    pts = np.ascontiguousarray(np.asarray(points, dtype=np.float32)[:, :3])
    ext = path.suffix.lower()
    if ext == ".ply":
        header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(pts)}\n"
                  "property float x\nproperty float y\nproperty float z\nend_header\n")
        path.write_bytes(header.encode("ascii") + pts.astype("<f4").tobytes())
    elif ext == ".npy":
        np.save(path, pts)
    elif ext == ".xyz":
        np.savetxt(path, pts, fmt="%.9g")  # 9 significant digits round-trip float32 exactly
    else:
        raise PointCloudError(f"Cannot write '{ext}'; use .ply, .npy or .xyz.")
    return path
