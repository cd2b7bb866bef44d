"""Datasets on tiny files written in the official formats, and the SweetHome3D builder on a fake catalog."""

import csv
import json
import shutil
import subprocess
import tempfile
import zipfile

import h5py
import numpy as np
import pytest
import torch
import trimesh

from train.data import DATASETS, SH3D, DatasetError, MeshFolder, ModelNet40, ScanObjectNN, sh3d
from zoo.files import write_points
from train.data.folder import hash_split


def h5(path, data=None, label=None, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in {"data": data, "label": label, **extra}.items():
            if v is not None:
                f[k] = v
    return path


def check_items(ds, n_points):
    pts, label = ds[0]
    assert isinstance(pts, torch.Tensor) and pts.dtype == torch.float32 and pts.shape == (n_points, 3)
    assert isinstance(label, int) and 0 <= label < len(ds.labels)
    assert isinstance(ds.targets, np.ndarray) and len(ds.targets) == len(ds)
    pts.add_(1)  # in-place augmentation must not leak into the dataset
    assert not torch.equal(pts, ds[0][0])


# ---------------------------------------------------------------- ScanObjectNN
@pytest.fixture
def sonn(tmp_path):
    rng = np.random.default_rng(0)
    data = {s: rng.random((n, 2048, 3), dtype=np.float32) for s, n in (("training", 4), ("test", 3))}
    for s, d in data.items():
        h5(tmp_path / "h5_files/main_split" / f"{s}_objectdataset_augmentedrot_scale75.h5", d,
           np.arange(len(d))[:, None].astype(np.uint8) + 10)
        h5(tmp_path / "h5_files/main_split_nobg" / f"{s}_objectdataset.h5", d[:2], np.zeros(2, np.int64))
    return tmp_path, data


def test_scanobjectnn(sonn):
    root, data = sonn
    ds = ScanObjectNN(root, "train", num_points=1024)  # the parent of the unzipped h5_files/ works too
    assert len(ds) == 4 and ds.labels[:3] == ["bag", "bin", "box"] and len(ds.labels) == 15
    assert ds.labels[14] == "toilet" and ds.targets.tolist() == [10, 11, 12, 13]
    np.testing.assert_array_equal(ds[1][0].numpy(), data["training"][1, :1024])
    check_items(ds, 1024)
    test = ScanObjectNN(root / "h5_files", "test", variant="PB_T50_RS")
    assert len(test) == 3 and test[2][1] == 12
    assert len(ScanObjectNN(root, "test", variant="OBJ_ONLY")) == 2


def test_scanobjectnn_errors(sonn):
    root, _ = sonn
    with pytest.raises(DatasetError, match=r"Missing .*training_objectdataset\.h5; download h5_files\.zip"):
        ScanObjectNN(root, "train", variant="OBJ_BG")
    h5(root / "h5_files/main_split/training_objectdataset.h5", label=np.zeros(2), points=np.zeros((2, 3, 3)))
    with pytest.raises(DatasetError, match=r"has keys \['label', 'points'\], expected 'data' and 'label'"):
        ScanObjectNN(root, "train", variant="OBJ_BG")
    (root / "h5_files/main_split/training_objectdataset.h5").write_text("not h5")
    with pytest.raises(DatasetError, match="is not a readable h5 file"):
        ScanObjectNN(root, "train", variant="OBJ_BG")


# ---------------------------------------------------------------- ModelNet40
def test_modelnet40_resampled(tmp_path):
    d = tmp_path / "modelnet40_normal_resampled"
    d.mkdir()
    (d / "modelnet40_shape_names.txt").write_text("airplane\nflower_pot\n")
    (d / "modelnet40_train.txt").write_text("airplane_0001\nflower_pot_0002\n")
    (d / "modelnet40_test.txt").write_text("flower_pot_0003\n")
    clouds = {}
    for sid in ("airplane_0001", "flower_pot_0002", "flower_pot_0003"):
        (d / sid.rsplit("_", 1)[0]).mkdir(exist_ok=True)
        clouds[sid] = np.random.default_rng(len(clouds)).random((40, 6)).astype(np.float32)
        np.savetxt(d / sid.rsplit("_", 1)[0] / f"{sid}.txt", clouds[sid], fmt="%.6f", delimiter=",")
    ds = ModelNet40(tmp_path, "train", num_points=32)
    assert ds.format == "resampled" and ds.labels == ["airplane", "flower_pot"] and ds.targets.tolist() == [0, 1]
    np.testing.assert_allclose(ds[1][0].numpy(), clouds["flower_pot_0002"][:32, :3], atol=1e-6)
    check_items(ds, 32)
    assert len(ModelNet40(d, "test", num_points=32, format="resampled")) == 1
    with pytest.raises(DatasetError, match="has 40 points, fewer than num_points=64"):
        ModelNet40(d, "test", num_points=64)[0]
    (d / "flower_pot/flower_pot_0003.txt").unlink()
    with pytest.raises(DatasetError, match=r"1 of 1 test files are missing .*flower_pot_0003\.txt"):
        ModelNet40(d, "test", num_points=32)


def test_modelnet40_hdf5(tmp_path):
    d = tmp_path / "modelnet40_ply_hdf5_2048"
    rng = np.random.default_rng(0)
    parts = [rng.random((n, 2048, 3), dtype=np.float32) for n in (3, 2)]
    for i, p in enumerate(parts):
        h5(d / f"ply_data_train{i}.h5", p, np.full((len(p), 1), i, np.uint8), normal=np.zeros_like(p))
    h5(d / "ply_data_test0.h5", parts[1], np.array([[1], [0]]))
    (d / "shape_names.txt").write_text("airplane\nbathtub\n")
    ds = ModelNet40(tmp_path, "train", num_points=1024)
    assert ds.format == "hdf5" and len(ds) == 5 and ds.targets.tolist() == [0, 0, 0, 1, 1]
    np.testing.assert_array_equal(ds[3][0].numpy(), parts[1][0, :1024])
    check_items(ds, 1024)
    (d / "test_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_train1.h5\n")  # listing wins over glob
    assert ModelNet40(d, "test", format="hdf5").targets.tolist() == [1, 1]


def test_modelnet40_missing(tmp_path):
    with pytest.raises(DatasetError, match="No ModelNet40 under .*download modelnet40_normal_resampled.zip"):
        ModelNet40(tmp_path)
    with pytest.raises(DatasetError, match="Missing .*shape_names.txt"):
        ModelNet40(tmp_path, format="hdf5")


# ---------------------------------------------------------------- folder of meshes
def make_folder(root, n_per_class=6):
    shapes = {"box": trimesh.creation.box(), "cone": trimesh.creation.cone(0.5, 1.0, sections=8)}
    exts = [".obj", ".stl", ".ply", ".off", ".glb"]
    for cls, mesh in shapes.items():
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            if i < len(exts):
                mesh.export(root / cls / f"m{i}{exts[i]}")
            else:
                write_points(root / cls / f"c{i}.xyz", mesh.sample(50, seed=i))
        (root / cls / "notes.md").write_text("not a model")
    return shapes


def test_mesh_folder(tmp_path):
    make_folder(tmp_path)
    ds = MeshFolder(tmp_path, num_points=64)
    assert ds.labels == ["box", "cone"] and len(ds) == 12 and ds.targets.tolist() == [0] * 6 + [1] * 6
    check_items(ds, 64)
    assert all(ds[i][0].shape == (64, 3) for i in range(len(ds)))  # clouds of other sizes are resampled
    np.testing.assert_array_equal(np.abs(ds[0][0].numpy()).max(axis=1), 0.5)  # box mesh: surface samples
    np.testing.assert_array_equal(ds[0][0], MeshFolder(tmp_path, num_points=64)[0][0])  # same seed, same cloud
    parts = {}
    for s in ("train", "val", "test"):
        try:
            parts[s] = [f.relative_to(tmp_path).as_posix() for f in MeshFolder(tmp_path, s, num_points=64).files]
        except DatasetError:  # a split can be empty with this few files
            parts[s] = []
    assert sorted(sum(parts.values(), [])) == sorted(f.relative_to(tmp_path).as_posix() for f in ds.files)
    assert all(hash_split(f) == s for s, files in parts.items() for f in files)


def test_hash_split_fractions_and_determinism():
    keys = [f"class/{i}.obj" for i in range(2000)]
    counts = {s: [hash_split(k) for k in keys].count(s) for s in ("train", "val", "test")}
    assert abs(counts["train"] - 1600) < 80 and abs(counts["val"] - 200) < 50
    assert [hash_split(k) for k in keys] == [hash_split(k) for k in keys]


def test_mesh_folder_split_dirs_and_errors(tmp_path):
    for split in ("train", "test"):
        make_folder(tmp_path / split, 2)
    (tmp_path / "test/sphere").mkdir()
    trimesh.creation.icosphere(1).export(tmp_path / "test/sphere/s.stl")
    train = MeshFolder(tmp_path, "train", num_points=32)
    assert train.labels == ["box", "cone", "sphere"] and len(train) == 4  # labels agree across split folders
    assert MeshFolder(tmp_path, "test", num_points=32).targets.tolist() == [0, 0, 1, 1, 2]
    assert len(MeshFolder(tmp_path, None, num_points=32)) == 9
    with pytest.raises(DatasetError, match="no val/"):
        MeshFolder(tmp_path, "val")
    with pytest.raises(DatasetError, match="Folder not found"):
        MeshFolder(tmp_path / "nope")
    (tmp_path / "empty/a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="No model files under"):
        MeshFolder(tmp_path / "empty")


# ---------------------------------------------------------------- SweetHome3D
CUBE_OBJ = "mtllib cube.mtl\n" + trimesh.creation.box().export(file_type="obj")
TALL_OBJ = trimesh.creation.box((0.1, 0.1, 1.0)).export(file_type="obj")  # long along z


def fake_catalog(path, n_chairs=16, n_tables=15):
    """A .sh3f with two real classes, one too small, one unmatched model and one broken model."""
    items = ([("Chair", "Living room", "cube")] * n_chairs + [("Table", "Kitchen", "cube")] * n_tables
             + [("Desk lamp", "Lights", "cube"), ("Rock", "Exterior", "cube"), ("Stool", "Kitchen", "broken"),
                ("Caf\\u00e9 \\\n    table \\: round", "Kitchen", "tall")])
    lines = ["# test catalog", "id=Test#Catalog", "version=9.9", "license=CC0 \xa9 tester", ""]
    files = {"LICENSE.TXT": "CC0"}
    for n, (name, cat, kind) in enumerate(items, 1):
        lines += [f"id#{n}=Test#m{n}", f"name#{n}={name}", f"category#{n}: {cat}", f"model#{n}=/m{n}/m{n}.obj",
                  f"creator#{n} Somebody", f"tags#{n}=", ""]
        if kind == "tall":
            lines.insert(-1, f"modelRotation#{n}=1 0 0 0 0 1 0 -1 0")  # z -> y, as Sweet Home 3D applies it
        files[f"m{n}/m{n}.obj"] = {"cube": CUBE_OBJ, "tall": TALL_OBJ, "broken": "f 1 2 3\n"}[kind]
        files[f"m{n}/cube.mtl"] = "newmtl a\nKd 1 0 0\n"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("PluginFurnitureCatalog.properties", "\n".join(lines).encode("latin-1"))
        for name, text in files.items():
            z.writestr(name, text)
    return path


def test_parse_properties():
    text = "# c\n! c\nk1=a\\u00e9\\:b\nk2 : x \\\n   y\\\\\nk\\ 3 v\\tw\nempty=\n  spaced =  1 \n"
    assert sh3d.parse_properties(text) == {"k1": "a\u00e9:b", "k2": "x y\\", "k 3": "v\tw", "empty": "",
                                           "spaced": "1 "}


def test_sh3d_build_and_dataset(tmp_path):
    cats = tmp_path / "cats"
    cats.mkdir()
    fake_catalog(cats / "Test.sh3f")
    out, logs = tmp_path / "out", []
    report = sh3d.build(out, points=64, seed=1, catalogs=cats, log=logs.append)
    classes = json.loads((out / "classes.json").read_text())
    assert classes == ["chair", "table"] and report["models"] == 32
    assert report["unmatched"] == 1 and report["dropped_classes"] == {"lamp": 1}
    assert [mid for mid, _ in report["failed"]] == ["Test#m34"] and "failed Test#m34" in logs[-1]
    pts, labels = np.load(out / "points.npy"), np.load(out / "labels.npy")
    assert pts.shape == (32, 64, 3) and pts.dtype == np.float32 and labels.tolist() == [0] * 16 + [1] * 16
    np.testing.assert_allclose(np.linalg.norm(pts, axis=2).max(axis=1), 1, rtol=1e-6)  # unit sphere
    tall = pts[-1]  # the rotated model: long along y (up) now
    assert np.ptp(tall, axis=0).argmax() == 1
    rows = list(csv.DictReader(open(out / "manifest.csv", encoding="utf-8")))
    assert rows[-1]["name"] == "Caf\u00e9 table : round" and rows[-1]["licence"] == "CC0 \xa9 tester"
    assert rows[0]["creator"] == "Somebody" and rows[0]["category"] == "Living room"
    splits = json.loads((out / "splits.json").read_text())
    idx = sum(splits.values(), [])
    assert sorted(idx) == list(range(32)) and len(set(idx)) == 32
    assert [len(splits[s]) for s in ("train", "val", "test")] == [22, 6, 4]  # per class of 16: 11/3/2
    assert all(rows[i]["split"] == s for s, ii in splits.items() for i in ii)

    stamp = (out / "points.npy").stat().st_mtime_ns
    sh3d.build(out, points=64, seed=1, catalogs=cats, log=logs.append)  # same settings: nothing to do
    assert "nothing to do" in logs[-1] and (out / "points.npy").stat().st_mtime_ns == stamp
    sh3d.build(out, points=64, seed=1, catalogs=cats, force=True, log=logs.append)
    np.testing.assert_array_equal(np.load(out / "points.npy"), pts)  # deterministic
    assert json.loads((out / "splits.json").read_text()) == splits

    ds = SH3D(out, "train", num_points=32)
    assert ds.labels == classes and len(ds) == 22 and ds.manifest[0]["split"] == "train"
    check_items(ds, 32)
    assert len(SH3D(out, None)) == 32 and SH3D(out, "val")[0][0].shape == (64, 3)
    assert DATASETS["sh3d"] is SH3D


@pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="needs dpkg-deb")
def test_sh3d_build_from_deb(tmp_path, monkeypatch):
    """Not installed: the builder reads the catalogs out of the package's .deb (downloaded once, nothing installed)
    and removes what it extracted; the build equals the one from the catalog folder."""
    pkg = tmp_path / "pkg"
    (pkg / sh3d.CATALOGS_IN_DEB).mkdir(parents=True)
    fake_catalog(pkg / sh3d.CATALOGS_IN_DEB / "Test.sh3f")
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN/control").write_text(f"Package: {sh3d.PACKAGE}\nVersion: 1.8-1\nArchitecture: all\n"
                                        "Maintainer: test <t@example.org>\nDescription: test\n")
    deb = tmp_path / "cache" / f"{sh3d.PACKAGE}_1.8-1_all.deb"
    deb.parent.mkdir()
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-b", str(pkg), str(deb)], check=True,
                   capture_output=True)
    monkeypatch.setattr(sh3d, "CATALOG_DIRS", (str(tmp_path / "nowhere"),))  # not installed
    downloads = []
    monkeypatch.setattr(sh3d.debs, "download", lambda package, hint: downloads.append(package) or deb)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    report = sh3d.build(tmp_path / "out", points=32, seed=1, log=lambda s: None)
    assert downloads == [sh3d.PACKAGE] and report["models"] == 32
    assert report["settings"]["package_version"] == "1.8-1" and list(report["settings"]["catalogs"]) == ["Test.sh3f"]
    assert not list((tmp_path / "tmp").iterdir())  # the extraction is removed
    ref = sh3d.build(tmp_path / "ref", points=32, seed=1, catalogs=pkg / sh3d.CATALOGS_IN_DEB, log=lambda s: None)
    np.testing.assert_array_equal(np.load(tmp_path / "out/points.npy"), np.load(tmp_path / "ref/points.npy"))
    assert ref["settings"]["catalogs"] == report["settings"]["catalogs"]
    with pytest.raises(DatasetError, match="is not a sweethome3d-furniture .deb"):
        sh3d.build(tmp_path / "o2", deb=tmp_path / "out/points.npy", log=lambda s: None)


def test_sh3d_errors(tmp_path, capsys):
    with pytest.raises(DatasetError, match=r"run: python -m train\.data\.sh3d --out"):
        SH3D(tmp_path, "train")
    with pytest.raises(DatasetError, match="apt-get install -y sweethome3d-furniture"):
        sh3d.find_catalogs(tmp_path)
    assert sh3d.main(["--out", str(tmp_path / "o"), "--catalogs", str(tmp_path)]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_build_report_table_sums_each_class_and_split_in_aligned_columns():
    from train.data.built import split_table
    table = {"chair": {"train": 7, "val": 2, "test": 3}, "lamp": {"train": 4, "val": 1, "test": 0}}
    plain = split_table(table, 17)
    assert plain[0].split() == ["class", "train", "val", "test", "total"]
    assert plain[1].split() == ["chair", "7", "2", "3", "12"] and plain[2].split() == ["lamp", "4", "1", "0", "5"]
    assert plain[-1].split() == ["all", "11", "3", "3", "17"]
    assert len({len(line) for line in plain}) == 1  # right-aligned columns: every row is as wide as the header
    extra = split_table(table, 17, ("families", {"chair": 5, "lamp": 2}, 7))
    assert extra[0].split()[-1] == "families" and [line.split()[-1] for line in extra[1:]] == ["5", "2", "7"]
    assert len({len(line) for line in extra}) == 1
