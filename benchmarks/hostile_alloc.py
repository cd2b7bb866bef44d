"""The most memory a hostile upload of at most 50 MiB can make `zoo.read_points` allocate, per format.

    python benchmarks/hostile_alloc.py [--mib 50] [--only ply stl ...] [--keep DIR]

For every supported format it builds the worst files it can think of (declared counts far above the content,
decompression bombs, the most points or tokens the size allows, glTF instancing and JSON floods, ...), each at most
--mib MiB, and reads each in a fresh process with the app's size limit: peak Python-level allocation (tracemalloc,
numpy included), peak RSS growth over the imports (ru_maxrss), the wall time and what came out (refused with which
message, or the cloud's shape). Each read runs under a 6 GiB address-space cap and a 300 s timeout so a bad case
cannot take the machine down with it. Prints a markdown table: every case, then the worst case per format.
"""
import argparse
import base64
import io
import json
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20

CHILD = r"""
import json, resource, sys, time, tracemalloc  # run with cwd = the repository: `-c` imports from there
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
import numpy, trimesh  # imported before measuring: their own memory is not the file's
from zoo.files import PointCloudError, read_points
path, limit, trace = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if trace:
    tracemalloc.start()
t = time.perf_counter()
try:
    out = f"read {read_points(path, max_bytes=limit).shape}"
except PointCloudError as err:
    out = f"refused: {err}"
except MemoryError:
    out = "MemoryError (over the 6 GiB cap)"
seconds = time.perf_counter() - t
peak = tracemalloc.get_traced_memory()[1] if trace else 0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(json.dumps(dict(out=out, seconds=seconds, peak_mib=peak / 2**20, rss_mib=rss / 1024)))
"""


# --- builders: each returns the file's bytes (at most `size`) ---------------------------------------------------
def rows(size, row=b"0 0 0\n1 1 1\n", head=b""):
    return head + row * ((size - len(head)) // len(row))


def one_line(size):
    return b"0 1 2 " * (size // 6 - 1) + b"\n"


def wide_rows(size, cols=2000):
    line = b"0 " * cols + b"\n"
    return line * (size // len(line))


def npy(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def npy_bytes(shape, dtype="<f4", data=None):
    """An .npy header declaring `shape`, followed by `data` (default: exactly the bytes it declares)."""
    head = np.lib.format.header_data_from_array_1_0(np.zeros((1, 3), dtype))
    head["shape"] = tuple(shape)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, head)
    if data is None:
        data = bytes(int(np.prod(shape)) * np.dtype(dtype).itemsize)
    return buf.getvalue() + data


def zip_bytes(members, method=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, blob in members:
            z.writestr(name, blob)
    return buf.getvalue()


def npz_bomb(gib=1.2):
    """~gib GiB of float32 zeros, deflated, written in pieces so building it needs no gigabytes here."""
    n = int(gib * 2**30) // 12
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("points.npy", "w", force_zip64=True) as f:
            f.write(npy_bytes((n, 3), "<f4", data=b""))
            zeros = bytes(2**24)
            left = n * 12
            while left:
                f.write(zeros[:min(left, len(zeros))])
                left -= min(left, len(zeros))
    return buf.getvalue()


def pcd_bytes(n, kind, body, fields="x y z", size="4 4 4", types="F F F", count="1 1 1", width=None):
    return (f"VERSION .7\nFIELDS {fields}\nSIZE {size}\nTYPE {types}\nCOUNT {count}\nWIDTH {width or n}\nHEIGHT 1\n"
            f"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {kind}\n").encode() + body


def lzf_zeros(n_bytes):
    """An LZF stream of n_bytes zeros: one literal, then maximal overlapping back-references (88x)."""
    out, done = bytearray([0, 0]), 1
    while done < n_bytes:
        ln = min(264, n_bytes - done)
        if ln < 3:
            out += bytes([ln - 1]) + bytes(ln)
        else:
            out += bytes([7 << 5, ln - 9, 0]) if ln >= 9 else bytes([(ln - 2) << 5, 0])
        done += ln
    return bytes(out)


def ply_header(fmt, elements):
    lines = ["ply", f"format {fmt} 1.0"]
    for name, count, props in elements:
        lines.append(f"element {name} {count}")
        lines += [f"property {p}" for p in props]
    return ("\n".join(lines + ["end_header"]) + "\n").encode()


XYZ = ["float x", "float y", "float z"]
FACE = ["list uchar int vertex_indices"]


def stl_binary(tris, declared=None):
    tris = np.asarray(tris, np.float32).reshape(-1, 9)
    rec = np.zeros(len(tris), dtype=[("n", "<f4", 3), ("v", "<f4", 9), ("a", "<u2")])
    rec["v"] = tris
    return b"\0" * 80 + struct.pack("<I", len(tris) if declared is None else declared) + rec.tobytes()


def gltf_parts(nverts=3, nodes=1, extra=None, count=None, buffer_uri=None, zeros_accessor=None):
    """A one-mesh glTF: its JSON and binary buffer (float32 positions + uint32 indices)."""
    g = np.random.default_rng(0)
    verts = g.normal(size=(nverts, 3)).astype("<f4")
    idx = np.arange(nverts - nverts % 3, dtype="<u4")
    blob = verts.tobytes() + idx.tobytes()
    accessors = [dict(bufferView=0, componentType=5126, count=count or nverts, type="VEC3",
                      min=verts.min(0).tolist(), max=verts.max(0).tolist()),
                 dict(bufferView=1, componentType=5125, count=len(idx), type="SCALAR")]
    if zeros_accessor:
        accessors[0] = dict(componentType=5126, count=zeros_accessor, type="VEC3")
    tree = dict(asset=dict(version="2.0"), scene=0, scenes=[dict(nodes=list(range(nodes)))],
                nodes=[dict(mesh=0)] * nodes, meshes=[dict(primitives=[dict(attributes=dict(POSITION=0), indices=1)])],
                accessors=accessors,
                bufferViews=[dict(buffer=0, byteOffset=0, byteLength=verts.nbytes),
                             dict(buffer=0, byteOffset=verts.nbytes, byteLength=idx.nbytes)],
                buffers=[dict(byteLength=len(blob))])
    if buffer_uri is not None:
        tree["buffers"][0]["uri"] = buffer_uri
    if extra is not None:
        tree["extras"] = extra
    return tree, blob


def glb(tree, blob):
    js = json.dumps(tree, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    blob += b"\0" * (-len(blob) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(blob), 0x004E4942) + blob
    return struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body


def gltf_embedded(tree, blob):
    tree["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(blob).decode()
    return json.dumps(tree, separators=(",", ":")).encode()


def flood(size):
    """JSON that parses into as many Python objects as possible per byte."""
    return [{}] * (size // 3)


def cases(size):
    """-> [(format, case, bytes or a callable returning bytes)], largest files built lazily."""
    face_verts = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    n_faces = min((size - 400) // 13, 2_000_000)  # at most read_points' mesh limit: the worst it accepts
    ply_faces = (ply_header("binary_little_endian", [("vertex", 3, XYZ), ("face", n_faces, FACE)])
                 + face_verts.tobytes() + (b"\x03" + struct.pack("<3i", 0, 1, 2)) * n_faces)
    n_tri = (size - 84) // 50
    big_v = min(int(size * 0.7) // 12, 1_999_998) // 3 * 3
    return [
        ("xyz", "8.7M rows '0 0 0'", lambda: rows(size)),
        ("xyz", "one 50 MiB line", lambda: one_line(size)),
        ("xyz", "2000 columns per row", lambda: wide_rows(size)),
        ("xyz", "CR-only line ends", lambda: rows(size, b"0 0 0\r1 1 1\r")),
        ("txt", "8.7M rows '0,0,0'", lambda: rows(size, b"0,0,0\n1,1,1\n")),
        ("pts", "count line 10^9, then rows", lambda: rows(size, head=b"1000000000\n")),
        ("npy", "header declares 10^9 x 3 float64", lambda: npy_bytes((10**9, 3), "<f8", data=bytes(72))),
        ("npy", "17M x 3 int8 (fills the size)", lambda: npy(np.zeros(((size - 128) // 3, 3), np.int8))),
        ("npy", "10M x 3 int8 (the point limit)", lambda: npy(np.arange(30_000_000, dtype=np.int8).reshape(-1, 3))),
        ("npy", "x, y, z uint8 records", lambda: npy(np.zeros((size - 128) // 3, [("x", "u1"), ("y", "u1"),
                                                                              ("z", "u1")]))),
        ("npz", "1.2 GiB of zeros, deflated", lambda: npz_bomb(1.2)),
        ("npz", "member header declares 10^9 x 3", lambda: zip_bytes(
            [("points.npy", npy_bytes((10**9, 3), "<f8", data=bytes(72)))])),
        ("npz", "50 MiB stored float32", lambda: zip_bytes(
            [("points.npy", npy(np.zeros(((size - 400) // 12, 3), np.float32)))], zipfile.ZIP_STORED)),
        ("npz", "200k empty members", lambda: zip_bytes([(f"{i}.npy", b"") for i in range(size // 250)])),
        ("pcd", "ascii, 8.7M rows", lambda: pcd_bytes((size - 200) // 6, "ascii", rows(size - 200, b"0 0 0\n"))),
        ("pcd", "binary, POINTS 10^9, 3 held", lambda: pcd_bytes(10**9, "binary", bytes(36))),
        ("pcd", "binary_compressed LZF bomb (usize = limit)", lambda: pcd_bytes(
            (size // 12), "binary_compressed", struct.pack("<II", len(lzf_zeros(size // 12 * 12)),
                                                           size // 12 * 12) + lzf_zeros(size // 12 * 12))),
        ("pcd", "binary uint8 x, y, z (fills the size)", lambda: pcd_bytes(
            (size - 200) // 3, "binary", bytes((size - 200) // 3 * 3), size="1 1 1", types="U U U")),
        ("pcd", "50 MiB header, no DATA", lambda: rows(size, b"# comment line\n")),
        ("ply", "ascii vertices '0 0 0'", lambda: ply_header("ascii", [("vertex", (size - 200) // 6, XYZ)])
         + rows(size - 200, b"0 0 0\n")),
        ("ply", "ascii faces '3 0 1 2'", lambda: ply_header("ascii", [("vertex", 3, XYZ),
                                                                      ("face", (size - 300) // 8, FACE)])
         + b"0 0 0\n1 0 0\n0 1 0\n" + rows((size - 300) // 8 * 8, b"3 0 1 2\n")),
        ("ply", "binary vertex-only float32 (fills the size)", lambda: ply_header(
            "binary_little_endian", [("vertex", (size - 200) // 12, XYZ)])
         + np.random.default_rng(0).normal(size=((size - 200) // 12, 3)).astype("<f4").tobytes()),
        ("ply", "ascii, 2M faces (the mesh limit)", lambda: ply_header("ascii", [("vertex", 3, XYZ),
                                                                                 ("face", 2_000_000, FACE)])
         + b"0 0 0\n1 0 0\n0 1 0\n" + b"3 0 1 2\n" * 2_000_000),
        ("ply", "binary, vertex 10^9, 3 held", lambda: ply_header("binary_little_endian",
                                                                  [("vertex", 10**9, XYZ)]) + bytes(36)),
        ("ply", "binary, 2M faces (the mesh limit)", lambda: ply_faces),
        ("obj", "6.5M vertex lines", lambda: rows(size, b"v 0 0 0\nv 1 1 1\n")),
        ("obj", "6M face lines", lambda: b"v 0 0 0\nv 1 0 0\nv 0 1 0\n" + rows(size - 30, b"f 1 2 3\n")),
        ("obj", "2M face lines (the mesh limit)", lambda: b"v 0 0 0\nv 1 0 0\nv 0 1 0\n" + b"f 1 2 3\n" * 1_999_999),
        ("obj", "mtllib outside its folder", lambda: b"mtllib ../../../../../etc/passwd\nv 0 0 0\nv 1 0 0\n"
         b"v 0 1 0\nusemtl x\nf 1 2 3\n"),
        ("off", "declares 10^9 vertices, holds 3", lambda: b"OFF\n1000000000 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"),
        ("off", "2M vertex rows + 2M faces (the mesh limit)", lambda: b"OFF\n2000000 2000000 0\n"
         + b"".join(b"%d 0 1\n" % i for i in range(2_000_000)) + b"3 0 1 2\n" * 2_000_000),
        ("off", "8.7M vertex rows", lambda: f"OFF\n{(size - 40) // 6} 0 0\n".encode() + rows(size - 40,
                                                                                            b"0 0 0\n")),
        ("stl", "binary, 1M triangles (fills the size)", lambda: stl_binary(
            np.random.default_rng(0).normal(size=(n_tri, 9)))),
        ("stl", "ascii, 285k facets (the line limit)", lambda: b"solid s\n" + b"".join(
            b"facet normal 0 0 1\nouter loop\nvertex %d 0 0\nvertex 0 %d 0\nvertex 0 0 1\nendloop\nendfacet\n" % (i, i)
            for i in range(285_000)) + b"endsolid s\n"),
        ("stl", "binary, declares 10^9 triangles", lambda: stl_binary(face_verts, declared=10**9)),
        ("stl", "ascii, short vertex lines", lambda: b"solid s\n" + rows(size - 30, b"vertex 0 0 0\n")
         + b"endsolid s\n"),
        ("glb", "one mesh instanced by 100k nodes", lambda: glb(*gltf_parts(30_000, nodes=100_000))),
        ("glb", "JSON flood in extras", lambda: glb(*gltf_parts(3, extra=flood(size - 1000)))),
        ("glb", "accessor count 10^9, no bufferView", lambda: glb(*gltf_parts(3, zeros_accessor=10**9))),
        ("glb", "accessor count 10^9 in a small view", lambda: glb(*gltf_parts(3, count=10**9))),
        ("glb", "2M-vertex mesh (the mesh limit)", lambda: glb(*gltf_parts(big_v))),
        ("gltf", "data: URI buffer (fills the size)", lambda: gltf_embedded(*gltf_parts(int(big_v * 0.7) // 3 * 3))),
        ("gltf", "buffer uri outside its folder", lambda: json.dumps(
            gltf_parts(3, buffer_uri="../../../../../etc/passwd")[0]).encode()),
        ("gltf", "JSON flood in extras", lambda: gltf_embedded(*gltf_parts(3, extra=flood(size - 1000)))),
    ]


def measure(path, limit, trace):
    cmd = [sys.executable, "-c", CHILD, str(path), str(limit), "1" if trace else "0"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return dict(out="timed out after 300 s", seconds=300.0, peak_mib=float("nan"), rss_mib=float("nan"))
    if proc.returncode:
        return dict(out=f"crashed (rc {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}",
                    seconds=float("nan"), peak_mib=float("nan"), rss_mib=float("nan"))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mib", type=float, default=50, help="largest hostile file, and the read limit (the app's)")
    p.add_argument("--only", nargs="*", help="formats to run (default: all)")
    p.add_argument("--keep", help="write the files here and keep them (default: a temporary folder)")
    args = p.parse_args(argv)
    size = int(args.mib * MIB)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="hostile-"))
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for i, (fmt, case, build) in enumerate(cases(size)):
        if args.only and fmt not in args.only:
            continue
        data = build()
        assert len(data) <= size, (case, len(data))
        path = folder / f"case{i:02d}.{fmt}"
        path.write_bytes(data)
        rss = measure(path, size, trace=False)  # time and RSS without tracemalloc's overhead
        peak = measure(path, size, trace=True)["peak_mib"]
        results.append((fmt, case, len(data), peak, rss))
        print(f"{fmt:5} {case:45} {len(data) / MIB:6.1f} MiB  peak {peak:7.1f} MiB  rss +{rss['rss_mib']:7.1f} MiB  "
              f"{rss['seconds']:6.2f} s  {rss['out'][:90]}", file=sys.stderr, flush=True)
        if not args.keep:
            path.unlink()
    print("\n| format | hostile file | size MiB | peak alloc MiB (tracemalloc) | RSS growth MiB | seconds | result |")
    print("|---|---|---:|---:|---:|---:|---|")
    for fmt, case, n, peak, rss in results:
        print(f"| {fmt} | {case} | {n / MIB:.1f} | {peak:.1f} | {rss['rss_mib']:.1f} | {rss['seconds']:.2f} | "
              f"{rss['out'][:80]} |")
    print("\nWorst case per format:\n\n| format | worst hostile file | peak alloc MiB | RSS growth MiB | seconds |")
    print("|---|---|---:|---:|---:|")
    for fmt in dict.fromkeys(r[0] for r in results):
        mine = [r for r in results if r[0] == fmt]
        worst = max(mine, key=lambda r: max(r[3] if r[3] == r[3] else 1e9, r[4]["rss_mib"]))
        print(f"| {fmt} | {worst[1]} | {max(r[3] for r in mine):.1f} | {max(r[4]['rss_mib'] for r in mine):.1f} | "
              f"{max(r[4]['seconds'] for r in mine):.2f} |")


if __name__ == "__main__":
    main()
