"""Read any common point-cloud or mesh file into an (N, 3) float32 array.

Used by the app for uploads, the `python -m zoo` CLI and the datasets (`zoo.read_points`), so every failure becomes a
`PointCloudError` whose message is one sentence a user can act on; the original exception stays chained for debugging.

Files are untrusted: no reader allocates from a count or length the file declares before checking it against what the
file holds (its size) and the limits (`max_bytes`, `max_elements`, `max_mesh_elements`). A header that declares more
than the file holds is refused with the mismatch, never read as a smaller cloud. Text is parsed a block of lines at a
time, so a 50 MiB line or a flood of tiny lines costs a few MiB. Mesh files never reach outside their own folder (no
absolute paths, no `..`, no URLs) and their materials and images are never read. `timeout_s` / `max_memory_mb` run
the read in a worker process with a deadline and an address-space cap, for callers that serve strangers (the app).
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import warnings
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

MESH_EXTENSIONS = (".ply", ".obj", ".stl", ".off", ".glb", ".gltf")
CLOUD_EXTENSIONS = (".xyz", ".txt", ".pts", ".npy", ".npz", ".pcd")
SUPPORTED_EXTENSIONS = MESH_EXTENSIONS + CLOUD_EXTENSIONS
NPZ_KEYS = ("points", "xyz", "data", "pos")
_PCD_TYPES = {"F": "f", "I": "i", "U": "u"}
_PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4", "float": "f4",
              "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4",
              "uint32": "u4", "int64": "i8", "uint64": "u8", "float16": "f2", "float32": "f4", "float64": "f8"}
_GLTF_COMPONENTS = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}  # componentType -> bytes
_GLTF_TYPES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_BLOCK = 1 << 20  # text is parsed this many bytes of whole lines at a time
_HEADER_BYTES = 1 << 20  # a PLY / PCD header that has not ended by then is not a header
_SLOW_TEXT_LINES = 2_000_000  # trimesh's own text parsers cost ~400 bytes a line: only this many go to them
_JSON_TOKENS = 1_000_000  # json.loads makes a Python object per token (~60 bytes): a glTF may hold this many
_NPZ_MEMBERS = 256  # an .npz with more arrays than this is not a point file; its directory is not parsed


class PointCloudError(ValueError):
    """A file could not be turned into a point cloud; the message says why in one sentence."""


def read_points(path, *, num_points: int = 2048, seed: int = 0, max_points: int = 200_000,
                max_bytes: int = 100 * 2**20, max_elements: int = 10_000_000, max_mesh_elements: int = 2_000_000,
                timeout_s: float | None = None, max_memory_mb: float | None = None) -> np.ndarray:
    """The points of a cloud file, or `num_points` area-weighted surface samples of a mesh (same seed, same cloud).

    max_bytes bounds the file, and what an .npz member or a compressed PCD decompresses to; max_elements the points a
    cloud may declare or hold; max_mesh_elements the vertices, and the faces, of a mesh (glTF instances included:
    trimesh spends ~300 bytes on each). Clouds above max_points are downsampled (stable_subset: the same points for
    every order of the file's rows). With timeout_s and/or max_memory_mb the read runs in a worker process that is
    stopped at the deadline and cannot allocate more than max_memory_mb MiB beyond what it has mapped at the start
    (its imports).
    """
    kw = dict(num_points=num_points, seed=seed, max_points=max_points, max_bytes=max_bytes,
              max_elements=max_elements, max_mesh_elements=max_mesh_elements)
    if timeout_s is not None or max_memory_mb is not None:
        return _read_isolated(Path(path).absolute(), kw, timeout_s, max_memory_mb)  # the worker has its own cwd
    try:
        return _read(Path(path), **kw)
    except OSError as e:  # unreadable: permissions, a folder, a file gone meanwhile
        raise PointCloudError(f"Could not read '{Path(path).name}': {e.strerror or e}.") from e


def _read(path, *, num_points, seed, max_points, max_bytes, max_elements, max_mesh_elements):
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
    lim = dict(name=name, max_bytes=max_bytes, max_elements=max_elements, max_mesh=max_mesh_elements)
    try:
        if ext in MESH_EXTENSIONS:
            pts = _read_mesh(path, ext, num_points, seed, lim)
        elif ext == ".npy":
            with open(path, "rb") as f:
                pts = _read_npy(f, size, lim, name)
        elif ext == ".npz":
            pts = _read_npz(path, size, lim)
        elif ext == ".pcd":
            pts = _read_pcd(path.read_bytes(), lim)
        else:
            pts = _read_text(path.read_bytes(), lim)
    except (PointCloudError, OSError):
        raise
    except MemoryError as e:  # only under a memory cap (the app's worker): the checks above bound the rest
        raise PointCloudError(f"'{name}' needs more memory to read than this server allows; downsample or simplify "
                              "it first.") from e
    except Exception as e:  # trimesh/numpy/struct internals: their messages mean nothing to a user
        raise PointCloudError(f"Could not parse '{name}' as {ext[1:].upper()}; the file is corrupt or not in "
                              "that format.") from e
    return _check(pts, name, max_points)


def _shape_error(name, shape):
    return PointCloudError(f"'{name}' has data of shape {tuple(shape)}; expected N x 3 "
                           "(extra columns are ignored, the first three are x, y, z).")


def _check(pts, name, max_points) -> np.ndarray:
    pts = np.asarray(pts)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise _shape_error(name, pts.shape)
    with np.errstate(over="ignore", invalid="ignore"):  # checked on the float32 cloud we return, overflow included
        pts = pts[:, :3].astype(np.float32, copy=False)  # no second copy of a cloud that is float32 already
    bad = int((~np.isfinite(pts).all(axis=1)).sum())
    if bad:
        raise PointCloudError(f"'{name}' has {bad} points with NaN or infinite coordinates; remove them and try again.")
    if len(pts) < 2:
        raise PointCloudError(f"'{name}' has only {len(pts)} point(s); a cloud needs at least 2 distinct points.")
    if np.ptp(pts, axis=0).max() == 0:
        raise PointCloudError(f"'{name}' is degenerate: all {len(pts)} points are identical (zero extent).")
    if len(pts) > max_points:
        pts = stable_subset(pts, max_points)
    return np.ascontiguousarray(pts, dtype=np.float32)


def stable_subset(points, n):
    """(N, 3) float32 -> n of its rows, picked by a hash of their coordinates: spread like a random sample, yet the
    same rows in the same order whatever order the file lists them in (the rows with the n smallest hashes)."""
    pts = np.ascontiguousarray(points, dtype=np.float32)
    if len(pts) <= n:
        return pts
    bits = (pts + np.float32(0)).view(np.uint32).astype(np.uint64)  # + 0: -0.0 and 0.0 hash alike
    h = bits[:, 0] * np.uint64(0x9E3779B97F4A7C15) ^ bits[:, 1] * np.uint64(0xC2B2AE3D27D4EB4F) \
        ^ bits[:, 2] * np.uint64(0x165667B19E3779F9)
    h ^= h >> np.uint64(31)  # a splitmix64-style finish: every input bit reaches the low bits the sort compares
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(29)
    keep = np.argpartition(h, n - 1)[:n]
    return pts[keep[np.argsort(h[keep], kind="stable")]]


def _too_many(lim, n, what="points", key="max_elements", verb="declares"):
    if n > lim[key]:
        raise PointCloudError(f"'{lim['name']}' {verb} {n} {what}; at most {lim[key]} can be read, "
                              "downsample or simplify it first.")


def _mismatch(lim, declared, held):
    return PointCloudError(f"'{lim['name']}' declares {declared} but holds {held}; the file is truncated or corrupt.")


# --- numpy ---------------------------------------------------------------------------------------------------------
def _read_npy(f, available, lim, label):
    """One .npy array from the stream `f` of exactly `available` bytes; the header is checked before any allocation."""
    start = f.tell()
    version = np.lib.format.read_magic(f)
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise PointCloudError(f"Could not parse '{label}' as NPY; the file is corrupt or not in that format.")
    # numpy reads the declared header length in one read, which allocates it first: check it is a header's size
    fmt = "<H" if version == (1, 0) else "<I"
    (hlen,) = struct.unpack(fmt, f.read(struct.calcsize(fmt)) or b"\0" * struct.calcsize(fmt))
    if hlen > 10_000:
        raise _mismatch(lim, f"a {hlen} byte header", "a numpy header is at most 10000")
    f.seek(start + 8)  # back to just after the magic and version
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(f)  # literal_eval of at most 10,000 bytes: nothing is executed
    have = available - f.tell()
    if dtype.hasobject:
        raise PointCloudError(f"'{label}' holds Python objects, which are never unpickled; save the points as a float "
                              "array.")
    xyz = bool(dtype.names) and {"x", "y", "z"} <= set(dtype.names)
    if not xyz and not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise PointCloudError(f"'{label}' holds {dtype} values, not numbers; save the points as floats.")
    count = 1
    for s in shape:
        count *= s
    need = count * dtype.itemsize
    if need != have:
        what = f"{shape[0]} points" if len(shape) == 2 else f"an array of shape {shape}"
        raise _mismatch(lim, f"{what} ({need} bytes)", f"{have} bytes")
    _too_many(lim, shape[0] if shape else 1)
    if need > lim["max_bytes"]:
        raise PointCloudError(f"'{label}' decompresses to {need / 2**20:.1f} MiB, over the "
                              f"{lim['max_bytes'] / 2**20:g} MiB limit; downsample it first.")
    data = np.empty(count, dtype)
    view, done = memoryview(data.view(np.uint8).reshape(-1)), 0
    while done < need:  # never more than the checked size, whatever the stream would still give
        got = f.readinto(view[done:done + _BLOCK * 16])
        if not got:
            raise _mismatch(lim, f"{need} bytes of data", f"{done}")
        done += got
    data = data.reshape(shape[::-1]).transpose() if fortran else data.reshape(shape)
    if xyz:
        data = np.stack([data["x"], data["y"], data["z"]], axis=-1)
        if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
            raise PointCloudError(f"'{label}' holds {data.dtype} values, not numbers; save the points as floats.")
    return data


def _read_npz(path, size, lim):
    name = lim["name"]
    with open(path, "rb") as f:
        # the central directory is read whole and becomes a Python object per member: count them first
        tail_len = min(size, 22 + 65535)
        f.seek(size - tail_len)
        tail = f.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + 22 > len(tail):
            raise PointCloudError(f"Could not parse '{name}' as NPZ; the file is corrupt or not in that format.")
        members, cd_size = struct.unpack_from("<HI", tail, at + 10)
        if (members == 0xFFFF or cd_size == 0xFFFFFFFF) and at >= 20 and tail[at - 20:at - 16] == b"PK\x06\x07":
            f.seek(struct.unpack_from("<Q", tail, at - 12)[0])
            z64 = f.read(56)
            if len(z64) == 56 and z64[:4] == b"PK\x06\x06":
                members, cd_size = struct.unpack_from("<QQ", z64, 32)
        if members > _NPZ_MEMBERS:
            raise PointCloudError(f"'{name}' holds {members} arrays; a point file holds one (at most "
                                  f"{_NPZ_MEMBERS} are looked at).")
        if cd_size > min(size, 1 << 20):  # zipfile parses the directory's bytes, whatever the member count says
            raise _mismatch(lim, f"a zip directory of {cd_size} bytes for {members} arrays", "a point file's")
        f.seek(0)
        with zipfile.ZipFile(f) as z:
            names = z.namelist()
            keys = [n[:-4] if n.endswith(".npy") else n for n in names]  # what numpy's NpzFile calls them
            key = next((k for k in NPZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise PointCloudError(f"'{name}' has arrays {keys} but none named {', '.join(NPZ_KEYS)}; "
                                      "rename the point array to 'points'.")
            info = z.getinfo(key + ".npy" if key + ".npy" in names else key)
            # the uncompressed size, from the zip header, before a byte is inflated
            if info.file_size > lim["max_bytes"]:
                raise PointCloudError(f"'{name}' holds an array of {info.file_size / 2**20:.1f} MiB uncompressed, "
                                      f"over the {lim['max_bytes'] / 2**20:g} MiB limit; downsample it first.")
            with z.open(info) as member:  # zipfile never yields more than file_size bytes, and checks the CRC
                data = _read_npy(member, info.file_size, lim, f"{name}/{info.filename}")
                member.read(1)  # at the end: a CRC mismatch (a corrupt or lying member) raises here
    return data


# --- text ----------------------------------------------------------------------------------------------------------
def _line_blocks(raw, start, end, name):
    """(a, b) byte ranges of raw[start:end], consecutive, each about _BLOCK bytes of whole lines."""
    while start < end:
        stop = min(start + _BLOCK, end)
        if stop < end:
            cut = max(raw.rfind(b"\n", start, stop), raw.rfind(b"\r", start, stop))
            if cut < 0:
                raise PointCloudError(f"'{name}' has a line longer than {_BLOCK >> 20} MiB; each point should be a "
                                      "short line 'x y z'.")
            stop = cut + 1
        yield start, stop
        start = stop


def _loadtxt(text, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "input contained no data" is handled by the callers
        return np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2, **kw)


def _f32(a):
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is refused by _check, as before
        return a.astype(np.float32)


def _read_text(raw, lim):
    """x y z lines (commas allowed, extra columns ignored, non-numeric lines skipped), one block at a time.

    Block by block this gives what one pass over the whole text gave: a clean numeric table is read as a table, any
    other text line by line (the first three numbers of each line), and a table of fewer than 3 columns is refused
    with its shape."""
    name = lim["name"]
    parts, rows, short, narrow, tables_only = [], 0, 0, set(), True
    for a, b in _line_blocks(raw, 0, len(raw), name):
        text = raw[a:b].decode("utf-8", errors="replace").replace(",", " ")
        try:
            block = _loadtxt(text, comments=("#", "//"))
        except ValueError:
            block = _cr_table(text)
            tables_only = False  # one pass over the whole text would have gone line by line: so do the messages
        if block is None:  # not a clean table: line by line, as before
            block, n_short = _text_rows(text)
            short += n_short
        elif not block.size:
            continue
        elif block.shape[1] < 3:  # a table of 1 or 2 columns: refused with its shape if the whole file is one
            narrow.add(block.shape[1])
            short += len(block)
            continue
        rows += len(block)
        _too_many(lim, rows, verb="has")
        if len(block):
            parts.append(_f32(block[:, :3]))
    if parts:
        return np.concatenate(parts)
    if tables_only and len(narrow) == 1:
        raise _shape_error(name, (short, narrow.pop()))
    if short:
        raise PointCloudError(f"'{name}' has numeric lines with fewer than 3 columns; each line needs x y z.")
    raise PointCloudError(f"'{name}' has no numeric lines; each point should be a line 'x y z' or 'x,y,z'.")


def _cr_table(text):
    """A clean table with old-Mac (CR) line ends, which loadtxt does not split, or None. Only 3 or more columns: the
    first three numbers of each line, what the line-by-line reading gives, 100x faster."""
    if "\r" not in text:
        return None
    try:
        block = _loadtxt(text.replace("\r\n", "\n").replace("\r", "\n"), comments=("#", "//"))
    except ValueError:
        return None
    return block if block.size and block.shape[1] >= 3 else None


def _text_rows(text):
    """The first three numbers of every line that starts with three numbers, and how many lines had only 1 or 2."""
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
    return np.array(rows, dtype=np.float64).reshape(-1, 3), short


def _cut_after_lines(raw, start, count):
    """Offset just past the `count`-th line from `start`, or None when the text has fewer lines."""
    pos, end = start, len(raw)
    while count:
        if pos >= end:
            return None
        stop = min(pos + _BLOCK, end)
        n = raw.count(b"\n", pos, stop)
        if n < count:
            count -= n
            pos = stop
            if pos >= end and count == 1 and raw[end - 1:end] != b"\n":  # a last line without its newline
                return end
            continue
        at = np.flatnonzero(np.frombuffer(raw, np.uint8, count=stop - pos, offset=pos) == 10)[count - 1]
        return pos + int(at) + 1
    return pos


class _Irregular(Exception):
    """Text our own parsers leave to trimesh's: blank or comment lines, ragged rows, words."""


def _uniform_blocks(raw, start, stop, count, lim):
    """Exactly `count` numeric lines of one width in raw[start:stop], a float64 block at a time (_Irregular if the
    text is anything else), so a caller keeps only what it converts each block to."""
    width, rows = None, 0
    for a, b in _line_blocks(raw, start, stop, lim["name"]):
        try:
            block = _loadtxt(raw[a:b].decode("utf-8"), comments=None)
        except ValueError:  # UnicodeDecodeError included
            raise _Irregular from None
        if block.size == 0 or (width is not None and block.shape[1] != width):
            raise _Irregular
        width, rows = block.shape[1], rows + len(block)
        yield block
    if rows != count:  # loadtxt skipped blank lines
        raise _Irregular


# --- PCD -----------------------------------------------------------------------------------------------------------
def _read_pcd(raw, lim):
    name = lim["name"]
    head, pos = {}, 0
    while "DATA" not in head:
        end = raw.find(b"\n", pos, _HEADER_BYTES)
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
    if not (len(counts) == len(head["TYPE"]) == len(head["SIZE"]) == len(fields)) or min(counts) < 1:
        raise PointCloudError(f"'{name}' has {len(fields)} FIELDS but SIZE, TYPE or COUNT do not match them; the "
                              "header is corrupt.")
    types = [np.dtype(f"<{_PCD_TYPES[t.upper()]}{s}") for t, s in zip(head["TYPE"], head["SIZE"])]
    grid = int(head["WIDTH"][0]) * int(head["HEIGHT"][0]) if "WIDTH" in head and "HEIGHT" in head else None
    n = int(head["POINTS"][0]) if "POINTS" in head else grid
    if n is None or n < 0:
        raise PointCloudError(f"'{name}' does not say how many points it holds (POINTS); the header is corrupt.")
    if grid is not None and grid != n:
        raise _mismatch(lim, f"{n} points", f"a {head['WIDTH'][0]} x {head['HEIGHT'][0]} grid")
    xyz = [fields.index(a) for a in "xyz"]
    kind = head["DATA"][0].lower()
    rec = sum(t.itemsize * c for t, c in zip(types, counts))
    if kind == "ascii":
        lines = raw.count(b"\n", pos) + (raw[-1:] != b"\n")
        if lines < n:
            raise _mismatch(lim, f"{n} points", f"{lines} lines")
        _too_many(lim, n)
        starts = np.cumsum([0] + counts)
        cols, parts, got = [int(starts[i]) for i in xyz], [], 0
        for a, b in _line_blocks(raw, pos, len(raw), name):
            block = _loadtxt(raw[a:b].decode("latin-1"), usecols=cols)
            got += len(block)
            if got > n:
                break
            parts.append(_f32(block))
        if got != n:
            raise _mismatch(lim, f"{n} points", f"{'more' if got > n else f'{got}'} lines of them")
        return np.concatenate(parts) if parts else np.zeros((0, 3), np.float32)
    have = len(raw) - pos
    if kind == "binary":  # row-major records
        if have != n * rec:
            raise _mismatch(lim, f"{n} points", f"{have // rec}" + (f" (and {have % rec} stray bytes)"
                                                                      if have % rec else ""))
        _too_many(lim, n)
        dt = np.dtype([(f"f{i}", t, (c,)) for i, (t, c) in enumerate(zip(types, counts))])
        rec_arr = np.frombuffer(raw, dt, count=n, offset=pos)
        return np.stack([rec_arr[f"f{i}"][:, 0] for i in xyz], axis=1)
    if kind == "binary_compressed":  # LZF of the column-major layout: all x, then all y, ...
        if have < 8:
            raise _mismatch(lim, "compressed data", f"{have} bytes")
        csize, usize = struct.unpack_from("<II", raw, pos)
        expected = n * rec
        if usize != expected:  # checked before allocating: a tiny header could otherwise ask for gigabytes
            raise PointCloudError(f"'{name}' declares {usize} uncompressed bytes but {n} points of these fields "
                                  f"take {expected}; the file is corrupt.")
        if usize > lim["max_bytes"]:
            raise PointCloudError(f"'{name}' decompresses to {usize / 2**20:.1f} MiB, over the "
                                  f"{lim['max_bytes'] / 2**20:g} MiB limit; downsample it first.")
        if csize != have - 8:
            raise _mismatch(lim, f"{csize} compressed bytes", f"{have - 8}")
        _too_many(lim, n)
        data = lzf_decompress(raw[pos + 8:pos + 8 + csize], usize)
        cols, off = {}, 0
        for i, (t, c) in enumerate(zip(types, counts)):
            cols[i] = np.frombuffer(data, t, count=n * c, offset=off).reshape(n, c)[:, 0]
            off += n * c * t.itemsize
        return np.stack([cols[i] for i in xyz], axis=1)
    raise PointCloudError(f"'{name}' has PCD data type '{kind}'; save it as ascii, binary or binary_compressed.")


def lzf_decompress(src: bytes, out_len: int) -> bytearray:
    """LZF (liblzf) decoder, as used by PCL's binary_compressed PCD. Never writes past out_len."""
    out, i, o = bytearray(out_len), 0, 0
    while i < len(src):
        ctrl = src[i]
        i += 1
        if ctrl < 32:  # literal run of ctrl + 1 bytes
            if o + ctrl + 1 > out_len or i + ctrl + 1 > len(src):
                raise ValueError("corrupt LZF stream")
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
        else:  # an overlapping back-reference repeats the last o - ref bytes: one slice, not a byte-by-byte loop
            period = out[ref:o]
            out[o:o + length] = (period * (length // len(period) + 1))[:length]
        o += length
    if o != out_len:
        raise ValueError("LZF stream shorter than declared")
    return out


# --- meshes --------------------------------------------------------------------------------------------------------
def _read_mesh(path: Path, ext: str, num_points: int, seed: int, lim) -> np.ndarray:
    import trimesh

    raw = path.read_bytes()
    buffers = {}  # the only assets a mesh may load: glTF buffers, checked and read from its own folder
    # what our own parsers made of it: None (trimesh reads the file as is), re-encoded bytes (ASCII PLY as binary),
    # a dict of arrays for trimesh (OFF) or the points themselves (a PLY without faces)
    source = None
    if ext == ".ply":
        source = _check_ply(raw, lim)
    elif ext == ".off":
        source = _check_off(raw, lim)
    elif ext == ".stl":
        _check_stl(raw, lim)
    elif ext == ".obj":
        _check_obj(raw, lim)
    else:
        buffers = _check_gltf(raw, ext, path.parent, lim)
    if isinstance(source, np.ndarray):
        return source
    if isinstance(source, dict):
        scene = trimesh.load_scene(source)
    else:  # an open stream and a mapping as resolver: trimesh opens no path of its own
        scene = trimesh.load_scene(io.BytesIO(raw if source is None else source), file_type=ext[1:],
                                   resolver=buffers, skip_materials=True)
    _check_instances(scene, lim)
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


def _check_instances(scene, lim):
    """scene.dump() copies a geometry once per node that places it: bound the copies before they are made (the
    geometries themselves were bounded before loading; only a scene that places one twice is counted here)."""
    placed = [scene.graph[node][1] for node in scene.graph.nodes_geometry]
    if len(placed) == len(set(placed)):
        return
    verts = faces = 0
    for name in placed:
        g = scene.geometry.get(name)
        verts += len(getattr(g, "vertices", ()))
        faces += len(getattr(g, "faces", ()))
    _too_many(lim, verts, "vertices (counting every placed copy)", "max_mesh")
    _too_many(lim, faces, "faces (counting every placed copy)", "max_mesh")


def _slow_text(raw, start, lim, what):
    """Text that only trimesh's own parser reads: it costs ~400 bytes a line, so the lines are bounded."""
    lines = raw.count(b"\n", start) + raw.count(b"\r", start)
    if lines > _SLOW_TEXT_LINES:
        raise PointCloudError(f"'{lim['name']}' is {what} with {lines} lines; at most {_SLOW_TEXT_LINES} are "
                              "read, save it as binary PLY or GLB first.")


def _ply_header(raw, lim):
    """-> (format, [(element, count, [(property, dtype, list count dtype or None)])], data offset)."""
    name = lim["name"]
    end = raw.find(b"end_header", 0, _HEADER_BYTES)
    if not raw[:16].lower().lstrip().startswith(b"ply") or end < 0:
        raise PointCloudError(f"Could not parse '{name}' as PLY; the file is corrupt or not in that format.")
    nl = raw.find(b"\n", end)
    start = len(raw) if nl < 0 else nl + 1
    fmt, elements = None, []
    for line in raw[:end].decode("latin-1").splitlines()[1:]:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            count = int(parts[2])
            if count < 0:
                raise ValueError("negative element count")
            elements.append((parts[1], count, []))
        elif parts[0] == "property":
            if parts[1] == "list":
                elements[-1][2].append((parts[4], np.dtype(_PLY_TYPES[parts[3]]), np.dtype(_PLY_TYPES[parts[2]])))
            else:
                elements[-1][2].append((parts[2], np.dtype(_PLY_TYPES[parts[1]]), None))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise PointCloudError(f"'{name}' has PLY format '{fmt}'; it should be ascii or binary_little/big_endian.")
    return fmt, elements, start


def _declared(elements):
    if len(elements) == 1 and elements[0][0] == "vertex":
        return f"{elements[0][1]} points"
    return " and ".join(f"{n} {'vertices' if e == 'vertex' else 'faces' if e == 'face' else e}"
                        for e, n, _ in elements)


def _check_ply(raw, lim):
    """Counts against the limits and the data. -> None (trimesh reads the file as is), the same PLY re-encoded as
    binary (from ASCII), or the points of a vertex-only PLY (read here: what trimesh would return, at 1/10 the cost)."""
    fmt, elements, start = _ply_header(raw, lim)
    if fmt != "ascii":  # the size the records take, list lengths from each element's first record (as trimesh does)
        order, pos, expected = "<" if fmt == "binary_little_endian" else ">", start, 0
        for _, count, props in elements:
            rec = 0
            for _, dt, count_dt in props:
                if count_dt is None:
                    rec += dt.itemsize
                    continue
                if not count or pos + rec + count_dt.itemsize > len(raw):
                    rec += count_dt.itemsize  # an empty element, or no data left: its lists do not matter
                    continue
                k = int(np.frombuffer(raw, count_dt.newbyteorder(order), count=1, offset=pos + rec)[0])
                rec += count_dt.itemsize + k * dt.itemsize
            pos += count * rec
            expected += count * rec
        have = len(raw) - start
        if have != expected:
            held = f"{have} bytes"
            if len(elements) == 1 and elements[0][1] and expected % elements[0][1] == 0:
                held = f"{have // (expected // elements[0][1])}"
            raise _mismatch(lim, f"{_declared(elements)} ({expected} bytes)", held)
        _ply_limits(elements, lim)
        return _ply_points(raw, start, elements, "<" if fmt == "binary_little_endian" else ">")
    old_mac = raw.count(b"\r", start) > raw.count(b"\n", start)  # CR line ends: lines are not counted by \n
    total = sum(count for _, count, _ in elements)
    if not old_mac and _cut_after_lines(raw, start, total) is None:
        lines = raw.count(b"\n", start) + (raw[-1:] != b"\n")
        raise _mismatch(lim, _declared(elements), f"{lines} lines")
    _ply_limits(elements, lim)
    points = None if old_mac else _ply_ascii_points(raw, start, elements, lim)
    if points is not None:
        return points
    binary = None if old_mac else _ply_ascii_to_binary(raw, start, elements, lim)
    if binary is None:  # ragged lists, comments, blank lines: trimesh's own ASCII reader, on bounded text
        _slow_text(raw, start, lim, "an irregular ASCII PLY")
        return None
    points = _ply_points(binary, binary.index(b"end_header\n") + 11, elements, "<")
    return binary if points is None else points


def _ply_ascii_points(raw, start, elements, lim):
    """x, y, z of an ASCII PLY that holds only vertices of scalar properties, a block at a time (the cheapest way to
    what trimesh's reader gives: each value cast to its declared type, then through float64 to float32), or None."""
    if len(elements) != 1 or elements[0][0] != "vertex" or not elements[0][1]:
        return None
    _, count, props = elements[0]
    names = [p for p, _, _ in props]
    if any(count_dt is not None for _, _, count_dt in props) or not {"x", "y", "z"} <= set(names):
        return None
    cols = [(names.index(a), props[names.index(a)][1]) for a in "xyz"]
    parts = []
    try:
        for block in _uniform_blocks(raw, start, _cut_after_lines(raw, start, count), count, lim):
            if block.shape[1] != len(props):
                return None
            with np.errstate(over="ignore", invalid="ignore"):
                parts.append(np.stack([block[:, c].astype(dt).astype(np.float64 if dt.itemsize == 8 else dt)
                                       .astype(np.float32) for c, dt in cols], axis=1))
    except _Irregular:
        return None
    return np.concatenate(parts)


def _ply_points(data, start, elements, order):
    """x, y, z of a PLY without faces (trimesh makes it a point cloud of exactly these), or None. Each coordinate is
    cast as trimesh casts it: through float64, then to float32 by _check."""
    if any(e == "face" and n for e, n, _ in elements) or not any(e == "vertex" and n for e, n, _ in elements):
        return None
    offset = 0
    for element, count, props in elements:
        if any(count_dt is not None for _, _, count_dt in props):
            return None  # records of list lengths only trimesh's reader resolves
        dt = np.dtype([(p, d.newbyteorder(order)) for p, d, _ in props])
        if element == "vertex":
            rec = np.frombuffer(data, dt, count=count, offset=start + offset)
            cols = [rec[a] for a in "xyz"]
            if any(c.dtype.itemsize == 8 and c.dtype.kind in "iu" for c in cols):  # float64 is not exact for them
                cols = [c.astype(np.float64) for c in cols]
            return np.stack(cols, axis=1)
        offset += count * dt.itemsize
    return None


def _ply_limits(elements, lim):
    meshy = any(e == "face" and n for e, n, _ in elements)
    for element, count, _ in elements:
        # a PLY without faces is read here as a cloud; with faces, trimesh builds a mesh of it
        _too_many(lim, count, "faces" if element == "face" else "vertices" if element == "vertex" else element,
                  "max_mesh" if meshy else "max_elements")


def _ply_ascii_to_binary(raw, start, elements, lim):
    """The same PLY in binary_little_endian, for trimesh's binary reader (~20x less memory than its ASCII one): each
    value goes through the same float64 -> declared type cast trimesh's ASCII reader applies. None if irregular."""
    head, body, pos = ["ply", "format binary_little_endian 1.0"], [], start
    try:
        for element, count, props in elements:
            head.append(f"element {element} {count}")
            for prop, dt, count_dt in props:
                head.append(f"property list {_ply_name(count_dt)} {_ply_name(dt)} {prop}" if count_dt is not None
                            else f"property {_ply_name(dt)} {prop}")
            if not count:
                continue
            stop, fields = _cut_after_lines(raw, pos, count), None
            for block in _uniform_blocks(raw, pos, stop, count, lim):
                fields = fields or _ply_fields(props, block)
                body.append(_ply_records(block, fields))
            pos = stop
    except _Irregular:
        return None
    return ("\n".join(head + ["end_header"]) + "\n").encode() + b"".join(body)


def _ply_fields(props, first):
    """(record field, dtype, text column, list length) of an element, list lengths from its first row."""
    fields, col = [], 0
    for i, (prop, dt, count_dt) in enumerate(props):
        if count_dt is None:
            fields.append((f"p{i}", dt.newbyteorder("<"), col, None))
            col += 1
            continue
        if col >= first.shape[1] or first[0, col] != int(first[0, col]) or first[0, col] < 0:
            raise _Irregular
        k = int(first[0, col])
        fields += [(f"c{i}", count_dt.newbyteorder("<"), col, None), (f"p{i}", dt.newbyteorder("<"), col + 1, k)]
        col += 1 + k
    if col != first.shape[1]:
        raise _Irregular
    return fields


def _ply_records(block, fields):
    rec = np.zeros(len(block), [(f, dt) if k is None else (f, dt, (k,)) for f, dt, _, k in fields])
    with np.errstate(over="ignore", invalid="ignore"):
        for f, _, c, k in fields:
            if k is not None and not (block[:, c - 1] == k).all():
                raise _Irregular  # lists of different lengths: trimesh's binary reader assumes one length
            rec[f] = block[:, c] if k is None else block[:, c:c + k]
    return rec.tobytes()


def _ply_name(dt):
    return {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint", "f4": "float",
            "f8": "double", "i8": "int64", "u8": "uint64", "f2": "float16"}[dt.str[1:]]


def _check_off(raw, lim):
    """Counts against the limits and the lines; clean text is parsed here into the arrays trimesh's OFF reader makes
    (a dict for trimesh.load_scene), anything else goes to that reader on bounded text (None)."""
    m = re.search(rb"C?OFF", raw[:_HEADER_BYTES])
    if m is None:
        raise PointCloudError(f"Could not parse '{lim['name']}' as OFF; the file is corrupt or not in that format.")
    if b"#" in raw or raw.count(b"\r") > raw.count(b"\n"):  # comments anywhere, or CR line ends: trimesh's
        _slow_text(raw, 0, lim, "an irregular OFF file")  # reader decides (it never allocates from the counts)
        return None
    pos = m.end()
    counts_end = raw.find(b"\n", pos)
    while counts_end >= 0 and not raw[pos:counts_end].strip():  # the counts are the first non-empty line
        pos, counts_end = counts_end + 1, raw.find(b"\n", counts_end + 1)
    counts = raw[pos:counts_end if counts_end >= 0 else len(raw)].split()
    nv, nf = int(counts[0]), int(counts[1])
    if nv < 0 or nf < 0:
        raise ValueError("negative counts")
    start = len(raw) if counts_end < 0 else counts_end + 1
    vend = _cut_after_lines(raw, start, nv)
    fend = None if vend is None else _cut_after_lines(raw, vend, nf)
    if fend is None:
        lines = raw.count(b"\n", start) + (raw[-1:] != b"\n")
        raise _mismatch(lim, f"{nv} vertices and {nf} faces", f"{lines} lines")
    _too_many(lim, nv, "vertices", "max_mesh")
    _too_many(lim, nf, "faces", "max_mesh")
    verts, faces, k = [], [], None
    try:
        for block in _uniform_blocks(raw, start, vend, nv, lim):
            if block.shape[1] < 3:
                raise _Irregular
            verts.append(block[:, :3].copy())
        for block in _uniform_blocks(raw, vend, fend, nf, lim):
            k = int(block[0, 0]) if k is None else k
            if k not in (3, 4) or (block[:, 0] != k).any() or block.shape[1] < 1 + k:
                raise _Irregular  # mixed or other polygons: trimesh triangulates them its own way
            if (block[:, 1:1 + k] != np.round(block[:, 1:1 + k])).any():
                raise _Irregular
            faces.append(block[:, 1:1 + k].astype(np.int64))
        if not verts:
            raise _Irregular
    except _Irregular:
        _slow_text(raw, 0, lim, "an irregular OFF file")
        return None
    verts = np.concatenate(verts)
    faces = np.concatenate(faces) if faces else np.zeros((0, 3), np.int64)
    from trimesh.geometry import triangulate_quads
    idx = triangulate_quads(faces)
    if len(idx) and (idx.min() < 0 or idx.max() >= nv):
        raise PointCloudError(f"'{lim['name']}' has a face index outside its {nv} vertices; the file is corrupt.")
    return dict(vertices=verts, faces=idx)


def _check_stl(raw, lim):
    n = struct.unpack_from("<I", raw, 80)[0] if len(raw) >= 84 else None
    if n is not None and len(raw) == 84 + 50 * n:  # binary: exactly 84 + 50 n bytes, as trimesh requires
        _too_many(lim, n, "triangles", "max_mesh")
        return
    if not raw.lstrip()[:5].lower() == b"solid":
        declared = f"{n} triangles ({84 + 50 * n} bytes)" if n is not None else "a binary STL header"
        raise _mismatch(lim, declared, f"{len(raw)} bytes")
    _too_many(lim, sum(raw.count(v) for v in (b"vertex", b"VERTEX", b"Vertex")) // 3, "triangles", "max_mesh")
    _slow_text(raw, 0, lim, "an ASCII STL")


def _check_obj(raw, lim):
    # conservative counts (every line starting with v / f, vn and vt too); counted in place, raw is not copied
    _too_many(lim, raw.count(b"\nv") + raw.startswith(b"v"), "vertices", "max_mesh")
    _too_many(lim, raw.count(b"\nf") + raw.startswith(b"f"), "faces", "max_mesh")


def _check_gltf(raw, ext, folder, lim):
    """Chunk, buffer, view and accessor sizes against the data, instanced counts against the limits, external buffers
    against the folder: -> {uri: bytes}, the buffers trimesh may read (checked and read here, never by trimesh)."""
    name = lim["name"]
    bin_len = None
    if ext == ".glb":
        magic, version, length = struct.unpack_from("<III", raw, 0)
        if magic != 0x46546C67 or version != 2:
            raise PointCloudError(f"Could not parse '{name}' as GLB; the file is corrupt or not in that format.")
        if length != len(raw):
            raise _mismatch(lim, f"a length of {length} bytes", f"{len(raw)}")
        pos, chunks = 12, []
        while pos < len(raw):
            clen, ctype = struct.unpack_from("<II", raw, pos)
            if pos + 8 + clen > len(raw):
                raise _mismatch(lim, f"a chunk of {clen} bytes", f"{len(raw) - pos - 8} bytes after its header")
            chunks.append((ctype, pos + 8, clen))
            pos += 8 + clen
        if not chunks or chunks[0][0] != 0x4E4F534A:
            raise PointCloudError(f"'{name}' has no JSON chunk first; it is not a valid GLB file.")
        text = raw[chunks[0][1]:chunks[0][1] + chunks[0][2]]
        bin_len = next((clen for ctype, _, clen in chunks[1:] if ctype == 0x004E4942), None)
    else:
        text = raw
    tokens = sum(text.count(c) for c in (b",", b":", b"[", b"{"))
    if tokens > _JSON_TOKENS:
        raise PointCloudError(f"'{name}' has {tokens} JSON values; at most {_JSON_TOKENS} are read, move data "
                              "into binary buffers (.glb).")
    tree = json.loads(text)
    buffers, lengths, external = {}, [], 0
    for i, b in enumerate(tree.get("buffers", [])):
        declared = _nonneg(b.get("byteLength"), f"buffer {i} byteLength", lim)
        uri = b.get("uri")
        if uri is None:
            have = bin_len if (ext == ".glb" and i == 0) else None
            if have is None:
                raise PointCloudError(f"'{name}' has buffer {i} without data; export it again as one .glb file.")
        elif uri.startswith("data:"):
            at = uri.find("base64,")
            if at < 0:
                raise PointCloudError(f"'{name}' has a data: URI that is not base64; export it again.")
            payload = len(uri) - at - 7
            have = payload * 3 // 4 - uri[-2:].count("=")
        else:
            data = _external_buffer(uri, folder, lim["max_bytes"] - len(raw) - external, lim)
            external += len(data)
            buffers[uri] = data
            have = len(data)
        if declared > have:
            raise _mismatch(lim, f"buffer {i} of {declared} bytes", f"{have}")
        lengths.append(declared)
    views = []
    for i, v in enumerate(tree.get("bufferViews", [])):
        off = _nonneg(v.get("byteOffset", 0), f"bufferView {i} byteOffset", lim)
        n = _nonneg(v.get("byteLength"), f"bufferView {i} byteLength", lim)
        buf = _nonneg(v.get("buffer"), f"bufferView {i} buffer", lim)
        if buf >= len(lengths) or off + n > lengths[buf]:
            raise _mismatch(lim, f"bufferView {i} of {n} bytes at {off}",
                            f"a buffer of {lengths[buf] if buf < len(lengths) else 0} bytes")
        views.append((n, v.get("byteStride")))
    counts = []
    for i, a in enumerate(tree.get("accessors", [])):
        count = _nonneg(a.get("count"), f"accessor {i} count", lim)
        item = _GLTF_COMPONENTS[a["componentType"]] * _GLTF_TYPES[a["type"]]
        if "bufferView" in a:
            view = _nonneg(a["bufferView"], f"accessor {i} bufferView", lim)
            n, stride = views[view]
            stride = item if stride is None else _nonneg(stride, f"bufferView {view} byteStride", lim) or item
            need = _nonneg(a.get("byteOffset", 0), f"accessor {i} byteOffset", lim) + (count and (count - 1) * stride
                                                                                       + item)
            if need > n:
                raise _mismatch(lim, f"{count} items in accessor {i} ({need} bytes)",
                                f"a view of {n} bytes")
        elif count * item > lim["max_bytes"]:  # no data: trimesh fills it with zeros
            raise _mismatch(lim, f"{count} zero items in accessor {i}", "no data for them")
        _too_many(lim, count, f"items in accessor {i}")
        counts.append(count)
    mesh_cost = []  # (vertices, faces) of each mesh, all its primitives
    for m in tree.get("meshes", []):
        verts = faces = 0
        for p in m.get("primitives", []):
            pos = p.get("attributes", {}).get("POSITION")
            nv = counts[pos] if isinstance(pos, int) and 0 <= pos < len(counts) else 0
            ni = counts[p["indices"]] if isinstance(p.get("indices"), int) and 0 <= p["indices"] < len(counts) else nv
            verts, faces = verts + nv, faces + ni // 3
        mesh_cost.append((verts, faces))
    # scene.dump() makes a copy of a mesh for each node that places it (and trimesh builds the unplaced ones too)
    uses = [n["mesh"] for n in tree.get("nodes", [])
            if isinstance(n.get("mesh"), int) and 0 <= n["mesh"] < len(mesh_cost)]
    placed = set(uses)
    cost = [mesh_cost[m] for m in uses] + [c for m, c in enumerate(mesh_cost) if m not in placed]
    _too_many(lim, sum(v for v, _ in cost), "vertices (counting every placed copy)", "max_mesh")
    _too_many(lim, sum(f for _, f in cost), "faces (counting every placed copy)", "max_mesh")
    return buffers


def _nonneg(value, what, lim):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PointCloudError(f"'{lim['name']}' has an invalid {what} ({value!r}); the file is corrupt.")
    return value


def _external_buffer(uri, folder: Path, budget, lim):
    """A glTF buffer file next to the .gltf: a plain relative path inside its folder, nothing else."""
    name = lim["name"]
    path = urllib.parse.unquote(uri)
    parts = PurePosixPath(path.replace("\\", "/")).parts
    if (urllib.parse.urlparse(uri).scheme or ":" in path or path.startswith(("/", "\\")) or ".." in parts
            or not parts):
        raise PointCloudError(f"'{name}' refers to '{uri}' outside its own folder; only files next to it are read, "
                              "export it as one .glb file.")
    target = folder.joinpath(*parts)
    real, root = target.resolve(), folder.resolve()
    if not real.is_relative_to(root):  # a symlink that leads out
        raise PointCloudError(f"'{name}' refers to '{uri}' outside its own folder; only files next to it are read, "
                              "export it as one .glb file.")
    if not real.is_file():
        raise PointCloudError(f"'{name}' needs the buffer file '{uri}' next to it, which is missing; upload a .glb "
                              "(one file) instead.")
    size = real.stat().st_size
    if size > budget:
        raise PointCloudError(f"'{name}' and its buffer '{uri}' are over the {lim['max_bytes'] / 2**20:g} MiB "
                              "limit together; simplify it first.")
    return real.read_bytes()


# --- a read with a deadline and a memory cap ---------------------------------------------------------------------
# Each such read runs in a child forked from a reader server: a small process started once per parent (`python -c`
# importing only this module, numpy and trimesh), single-threaded, so a fork of it is safe and costs milliseconds.
# Not multiprocessing: its children import the parent's main module before anything else, and for the app that is
# gradio and the whole UI, seconds per upload. Per read, the server hands the request to a reader it forked ahead,
# kills it at the deadline and reports how it ended; the reader sends its answer straight to the caller. Answers are length-prefixed frames, the
# points as raw float32, never pickles: the reader has parsed a stranger's file. Linux: the server waits on pidfds.
_SERVER, _SERVER_LOCK = None, threading.Lock()
_FRAME = struct.Struct("<Q")


def _server():
    """(process, request socket) of this process's reader server, started on first use (again if it died)."""
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None or _SERVER[0].poll() is not None:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            root = str(Path(__file__).resolve().parents[1])
            env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",  # no threads: forks stay safe
                       PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
            proc = subprocess.Popen([sys.executable, "-c", "import sys; from zoo.files import _serve; "
                                     "_serve(int(sys.argv[1]))", str(theirs.fileno())],
                                    pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL)
            theirs.close()
            _SERVER = (proc, ours)
        return _SERVER


def _serve(fd):
    """The reader server's loop. A spare reader is forked ahead of each request (the fork is off the upload's
    path); each request (JSON + the caller's end of an answer socket) goes to it. The loop kills readers at their
    deadline and, once one has ended, sends how it ended on its answer socket (the caller has stopped listening if
    the reader answered first)."""
    sock = socket.socket(fileno=fd)
    try:
        import trimesh  # noqa: F401  imported once here: every read forks with it loaded
    except ImportError:
        pass
    readers = {}  # pidfd -> [pid, deadline or None, answer socket, timed out]
    spare = _spare(sock)
    while True:
        deadlines = [r[1] for r in readers.values() if r[1] is not None and not r[3]]
        wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        ready = select.select([sock, *readers], [], [], wait)[0]
        for pidfd, r in readers.items():
            if r[1] is not None and not r[3] and time.monotonic() >= r[1]:
                os.kill(r[0], signal.SIGKILL)
                r[3] = True
        for pidfd in [f for f in ready if f in readers]:
            pid, _, conn, timed_out = readers.pop(pidfd)
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            _send(conn, b"S" + json.dumps(dict(timed_out=timed_out, code=code)).encode())
            conn.close()
            os.close(pidfd)
        if sock not in ready:
            continue
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, 1)
        except OSError:
            return
        if not msg:  # the parent has gone
            return
        while True:
            pid, pidfd, job = spare
            try:
                socket.send_fds(job, [msg], fds)
                # the spare says it holds the request: a spare killed from outside can still accept the send
                # while it dies, and the request would then be reported as the file's crash
                job.settimeout(5)
                if job.recv(1) == b"A":
                    break
            except OSError:
                pass
            finally:
                job.close()
            os.kill(pid, signal.SIGKILL)  # the spare died waiting (or hangs): make sure, reap it, fork another
            os.waitpid(pid, 0)  # (an unreaped child, even a dead one, still takes the signal)
            os.close(pidfd)
            spare = _spare(sock)
        req, conn = json.loads(msg), socket.socket(fileno=fds[0])
        deadline = None if req["timeout_s"] is None else time.monotonic() + req["timeout_s"]
        readers[pidfd] = [pid, deadline, conn, False]
        spare = _spare(sock)


def _spare(sock):
    """Fork a reader that waits for its one request -> (pid, pidfd, the socket its request goes to)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        try:
            sock.close()
            ours.close()
            msg, fds, _, _ = socket.recv_fds(theirs, 1 << 16, 1)
            if msg:
                theirs.send(b"A")
                _read_and_answer(socket.socket(fileno=fds[0]), json.loads(msg))
        finally:
            os._exit(0)
    theirs.close()
    return pid, os.pidfd_open(pid), ours


def _read_and_answer(conn, req):
    if req["max_memory_mb"] is not None:
        import resource
        with open("/proc/self/statm") as f:  # what this process already maps (the imports) is not the file's
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        cap = mapped + int(req["max_memory_mb"] * 2**20)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        pts = read_points(req["path"], **req["kw"])
        answer = b"P" + pts.astype("<f4").tobytes()
    except PointCloudError as e:
        answer = b"E" + str(e).encode()
    except MemoryError:  # outside read_points' own handler
        answer = (f"E'{Path(req['path']).name}' needs more than {req['max_memory_mb']:g} MiB of memory to read; "
                  "downsample or simplify it first.").encode()
    _send(conn, answer)


def _send(conn, payload):
    try:
        conn.sendall(_FRAME.pack(len(payload)) + payload)
    except OSError:  # the caller gave up (its own deadline) and closed its end
        pass


def _recv_exact(conn, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _read_isolated(path: Path, kw, timeout_s, max_memory_mb):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    req = json.dumps(dict(path=str(path), kw=kw, timeout_s=timeout_s, max_memory_mb=max_memory_mb)).encode()
    try:
        for attempt in (0, 1):  # a server that has died meanwhile is started again, once
            try:
                socket.send_fds(_server()[1], [req], [theirs.fileno()])
                break
            except OSError:
                if attempt:
                    raise PointCloudError(f"'{path.name}' could not be read: the reader process could not be "
                                          "started.") from None
                proc = _server()[0]
                proc.kill()
                proc.wait(10)
        theirs.close()
        ours.settimeout(None if timeout_s is None else timeout_s + 30)  # the server keeps the deadline
        try:
            payload = _recv_exact(ours, _recv_size(ours))
        except (EOFError, TimeoutError, OSError):
            raise PointCloudError(f"'{path.name}' could not be read: the reader process stopped without an "
                                  "answer.") from None
    finally:
        ours.close()
        if theirs.fileno() >= 0:
            theirs.close()
    if payload[:1] == b"P":
        return np.frombuffer(payload, dtype="<f4", offset=1).reshape(-1, 3).astype(np.float32)
    if payload[:1] == b"E":
        raise PointCloudError(payload[1:].decode())
    raise PointCloudError(_ended(path.name, json.loads(payload[1:]), timeout_s, max_memory_mb))


def _recv_size(conn):
    return _FRAME.unpack(_recv_exact(conn, _FRAME.size))[0]


def _ended(name, status, timeout_s, max_memory_mb):
    """The sentence for a reader that ended without an answer: what happened to it."""
    if status["timed_out"]:
        return f"'{name}' took more than {timeout_s:g} s to read; downsample or simplify it first."
    code = status["code"]
    if code >= 0:
        return f"'{name}' could not be read: the reader exited with status {code} without an answer."
    sig = signal.Signals(-code)
    if sig == signal.SIGKILL:  # not the deadline: the system's out-of-memory killer, or an operator
        limit = f" ({max_memory_mb:g} MiB)" if max_memory_mb else ""
        return (f"'{name}' could not be read: the reader was killed (SIGKILL), most likely by the system for lack of "
                f"memory{limit}; downsample or simplify it first.")
    return (f"'{name}' could not be read: the reader crashed ({sig.name}, {signal.strsignal(sig).lower()}); the file "
            "may be corrupt or not in its format.")


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
