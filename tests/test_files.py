"""read_points / write_points on tiny files in every supported format, and every error a user can hit."""

import struct

import numpy as np
import pytest
import trimesh

from zoo.files import SUPPORTED_EXTENSIONS, PointCloudError, lzf_decompress, read_points, write_points

CLOUD = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)


def lzf_compress(data: bytes) -> bytes:
    """Greedy LZF encoder (test-only), so the decoder is checked on real back-references, overlapping ones too."""
    out, lit, table, i = bytearray(), bytearray(), {}, 0

    def flush():
        while lit:
            out.append(len(lit[:32]) - 1)
            out.extend(lit[:32])
            del lit[:32]

    while i < len(data):
        key, ref = data[i:i + 3], table.get(data[i:i + 3])
        table[key] = i
        if len(key) == 3 and ref is not None and i - ref - 1 < 8192:
            n = 3
            while i + n < len(data) and n < 264 and data[ref + n] == data[i + n]:
                n += 1
            flush()
            off, ln = i - ref - 1, n - 2
            out += bytes([(min(ln, 7) << 5) | (off >> 8)] + ([ln - 7] if ln >= 7 else []) + [off & 0xFF])
            i += n
        else:
            lit.append(data[i])
            i += 1
    flush()
    return bytes(out)


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


@pytest.mark.parametrize("ext", [".ply", ".npy", ".xyz"])
def test_write_read_round_trip(tmp_path, ext):
    pts = read_points(write_points(tmp_path / f"c{ext}", CLOUD))
    assert pts.dtype == np.float32 and pts.flags.c_contiguous
    np.testing.assert_array_equal(pts, CLOUD)


@pytest.mark.parametrize("ext", [".obj", ".stl", ".ply", ".off", ".glb", ".gltf"])
def test_mesh_sampled_on_surface_deterministic(tmp_path, ext):
    path = tmp_path / f"cube{ext}"
    data = trimesh.creation.box().export(file_type=ext[1:])
    if isinstance(data, dict):  # .gltf: the json plus its buffer files
        for name, blob in data.items():
            (tmp_path / name).write_bytes(blob)
        path = tmp_path / "model.gltf"
    else:
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    pts = read_points(path, num_points=300, seed=3)
    assert pts.shape == (300, 3) and pts.dtype == np.float32
    np.testing.assert_array_equal(np.abs(pts).max(axis=1), 0.5)  # every point on a face of the unit cube
    np.testing.assert_array_equal(pts, read_points(path, num_points=300, seed=3))
    assert not np.array_equal(pts, read_points(path, num_points=300, seed=4))


def test_vertex_only_files_are_points(tmp_path):
    (tmp_path / "v.obj").write_text("# cloud\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 0 0\n")
    np.testing.assert_array_equal(read_points(tmp_path / "v.obj"), [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 0, 0]])
    trimesh.PointCloud(CLOUD).export(tmp_path / "p.ply")
    np.testing.assert_allclose(read_points(tmp_path / "p.ply", num_points=7), CLOUD)


@pytest.mark.parametrize("name,text", [
    ("a.txt", "x,y,z,nx\n# comment\n0,0,0,9\n1,2,3,9\n"),
    ("a.xyz", "0 0 0\n1 2 3\n"),
    ("a.pts", "2\n0 0 0 5 255 0 0\n1\t2  3 5 255 0 0\n"),
    ("a.txt", "// exported\nX Y Z\n0;0;0 junk\n0 0 0 extra\n1 2 3\n"),
])
def test_text_clouds(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    np.testing.assert_array_equal(read_points(tmp_path / name), [[0, 0, 0], [1, 2, 3]])


def test_numpy_clouds(tmp_path):
    six = np.hstack([CLOUD, CLOUD])
    np.savez(tmp_path / "k.npz", colors=CLOUD, xyz=six)
    np.savez(tmp_path / "one.npz", whatever=CLOUD)
    np.save(tmp_path / "six.npy", six.astype(np.float64))
    for f in ("k.npz", "one.npz", "six.npy"):
        np.testing.assert_array_equal(read_points(tmp_path / f), CLOUD)
    np.savez(tmp_path / "bad.npz", a=CLOUD, b=CLOUD)
    with pytest.raises(PointCloudError, match="rename the point array to 'points'"):
        read_points(tmp_path / "bad.npz")


def _pcd(fields, n, data_kind, body: bytes, types="F F F F", sizes="4 4 4 4") -> bytes:
    head = (f"# .PCD v0.7\nVERSION 0.7\nFIELDS {fields}\nSIZE {sizes}\nTYPE {types}\nCOUNT 1 1 1 1\n"
            f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data_kind}\n")
    return head.encode() + body


def test_pcd_ascii_binary_compressed(tmp_path):
    n, rgb = len(CLOUD), np.zeros(len(CLOUD), np.float32)  # constant field: long runs -> overlapping LZF copies
    ascii_body = "".join(f"{r:.9g} {x:.9g} {y:.9g} {z:.9g}\n" for (x, y, z), r in zip(CLOUD, rgb)).encode()
    (tmp_path / "a.pcd").write_bytes(_pcd("rgb x y z", n, "ascii", ascii_body))
    rows = np.rec.fromarrays([CLOUD[:, 0], CLOUD[:, 1], CLOUD[:, 2], rgb.astype(np.uint32)])
    (tmp_path / "b.pcd").write_bytes(_pcd("x y z rgb", n, "binary", rows.tobytes(), "F F F U"))
    cols = np.concatenate([CLOUD[:, 0], CLOUD[:, 1], CLOUD[:, 2], rgb]).tobytes()
    packed = lzf_compress(cols)
    assert len(packed) < len(cols) and lzf_decompress(packed, len(cols)) == cols
    (tmp_path / "c.pcd").write_bytes(_pcd("x y z rgb", n, "binary_compressed",
                                          struct.pack("<II", len(packed), len(cols)) + packed))
    for f in ("a.pcd", "b.pcd", "c.pcd"):
        np.testing.assert_array_equal(read_points(tmp_path / f), CLOUD)


def test_lzf_round_trip_and_corruption():
    data = bytes(range(40)) * 20 + b"\0" * 600 + b"abcabcabd" * 30
    assert lzf_decompress(lzf_compress(data), len(data)) == data
    with pytest.raises(ValueError):
        lzf_decompress(b"\x20\x05", 10)  # back-reference before the start


def test_large_cloud_downsampled_deterministically(tmp_path):
    big = np.random.default_rng(1).random((1000, 3)).astype(np.float32)
    path = write_points(tmp_path / "big.npy", big)
    pts = read_points(path, max_points=100)
    assert pts.shape == (100, 3)
    assert {tuple(p) for p in pts} <= {tuple(p) for p in big}
    np.testing.assert_array_equal(pts, read_points(path, max_points=100))


@pytest.mark.parametrize("name,content,expected", [
    ("nothere.ply", None, "File not found"),
    ("a.fbx", b"x", "Unsupported file type '.fbx'; use one of: .ply, .obj"),
    ("empty.xyz", b"", "is empty"),
    ("bad.glb", b"glTF garbage that is not a binary gltf", "Could not parse 'bad.glb' as GLB"),
    ("bad.npy", b"\x93NUMPY nonsense", "Could not parse 'bad.npy' as NPY"),
    ("nogeom.obj", b"# only a comment\nmtllib x.mtl\n", "contains no geometry"),
    ("words.txt", b"hello world\nno numbers here\n", "has no numeric lines"),
    ("two.xyz", b"1 2\n3 4\n", "shape (2, 2); expected N x 3"),
    ("two.txt", b"x y\n1 2\n3 4\n", "fewer than 3 columns"),
    ("nan.xyz", b"0 0 0\nnan 1 1\n1 inf 2\n", "2 points with NaN or infinite"),
    ("one.xyz", b"1 2 3\n", "only 1 point(s)"),
    ("same.xyz", b"1 2 3\n1 2 3\n1 2 3\n", "all 3 points are identical"),
    ("s.pcd", b"FIELDS a b c\nSIZE 4 4 4\nTYPE F F F\nPOINTS 1\nDATA ascii\n1 2 3\n", "no x, y, z"),
])
def test_errors_are_one_clear_sentence(tmp_path, name, content, expected):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(PointCloudError) as err:
        read_points(tmp_path / name)
    assert expected in one_line(err)


def test_wrong_shape_and_size_limit(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((10, 2)))
    with pytest.raises(PointCloudError) as err:
        read_points(tmp_path / "flat.npy")
    assert "has data of shape (10, 2); expected N x 3" in one_line(err)
    path = write_points(tmp_path / "c.ply", CLOUD)
    with pytest.raises(PointCloudError) as err:
        read_points(path, max_bytes=100)
    assert "limit" in one_line(err)
    with pytest.raises(PointCloudError, match="Cannot write"):
        write_points(tmp_path / "c.stl", CLOUD)
    assert ".pcd" in SUPPORTED_EXTENSIONS and all(e.startswith(".") for e in SUPPORTED_EXTENSIONS)
