"""kicad33 builder on tiny synthetic VRML files (never the real package), the shared fold rule, SweetHome3D folds."""

import json
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
import trimesh

from train.data import DATASETS, SH3D, DatasetError, Kicad33, folds, kicad, sh3d
from tests.test_datasets import check_items, fake_catalog

HEADER = "#VRML V2.0 utf8\n# a comment [ { with brackets\n"


def shape(vertices, faces, sep=" "):
    """One flat StepUp-style Shape; faces may be polygons of any size."""
    index = ",".join(",".join(map(str, f)) + ",-1" for f in faces)
    points = ",".join(sep.join(f"{x:.6g}" for x in v) for v in np.asarray(vertices, dtype=float))
    return (f"Shape {{ geometry IndexedFaceSet\n{{ creaseAngle 0.50 coordIndex [{index}]\n"
            f"coord Coordinate {{ point [{points}]\n}}}}\nappearance Appearance{{material USE MAT }}\n}}\n")


def wrl(*shapes):
    mat = "Shape { appearance Appearance {material DEF MAT Material { diffuseColor 0.8 0.8 0.8 }}}\n"
    return HEADER + mat + "".join(shapes)


def box(extents=(1.0, 1.0, 1.0), offset=(0.0, 0.0, 0.0)):
    m = trimesh.creation.box(extents)
    return m.vertices + offset, m.faces


def read(text, tmp_path, name="m.wrl"):
    (tmp_path / name).write_text(text)
    return kicad.read_vrml(tmp_path / name)


# ---------------------------------------------------------------- reader
def test_reader_triangles(tmp_path):
    v, f = read(wrl(shape([[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5]], [[0, 1, 2], [1, 3, 2]])), tmp_path)
    np.testing.assert_array_equal(v[f[1]], [[1, 0, 0], [5, 5, 5], [0, 1, 0]])
    np.testing.assert_array_equal(v[f[0]], [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    assert f.shape == (2, 3) and v.dtype == np.float64


def test_reader_polygons_fan_and_missing_last_separator(tmp_path):
    square = [[0, 0, 0], [2, 0, 0], [2, 2, 0], [0, 2, 0], [1, 3, 0]]
    text = wrl(shape(square, [[0, 1, 2, 3], [0, 1, 2, 4, 3]])).replace(",-1]", "]")  # the last -1 is optional
    v, f = read(text, tmp_path)
    assert len(f) == 2 + 3  # a quad: 2 triangles, a pentagon: 3
    np.testing.assert_array_equal(v[f].reshape(-1, 3)[:6], np.array(square)[[0, 1, 2, 0, 2, 3]])  # fan from vertex 0
    area = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum() / 2
    assert area == pytest.approx(4 + 4 + 1)


def test_reader_several_shapes_and_separators(tmp_path):
    a, b = box(), box((1, 2, 3), (10, 0, 0))
    v, f = read(wrl(shape(*a), shape(*b, sep=", ")), tmp_path)  # commas inside a triple are legal too
    assert len(f) == 24 and len(v) == 16
    np.testing.assert_allclose(v[f[12:]].reshape(-1, 3).min(axis=0), [9.5, -1, -1.5])
    np.testing.assert_allclose(v[f[:12]].reshape(-1, 3).max(axis=0), [0.5, 0.5, 0.5])


def test_reader_transform_switch_def_use(tmp_path):
    """Nested Transforms (T*C*R*S order), a Switch drawing only its chosen child, DEF/USE of a Coordinate."""
    text = HEADER + """
    Group { children [
      Transform { translation 10 0 0  rotation 0 0 1 1.5707963  scale 2 2 2
        children Switch { whichChoice 1 choice [
          Shape { geometry IndexedFaceSet { coord DEF C Coordinate { point [ 0 0 0, 1 0 0, 0 1 0 ] }
                  coordIndex [ 0 1 2 -1 ] } }
          Transform { translation 0 0 1 children [
            Shape { geometry IndexedFaceSet { coord USE C coordIndex [ 0 1 2 -1 ] } }
            Shape { geometry IndexedLineSet { coord USE C coordIndex [ 0 1 -1 ] } } ] } ] } }
      Shape { geometry IndexedFaceSet { coord USE C coordIndex [ 0, 2, 1, -1 ] } } ] }
    """
    v, f = read(text, tmp_path)
    assert len(f) == 2  # choice 0 is not drawn, the line set has no faces
    # (1, 0, 0) -> +z 1 -> scale 2 -> rotate 90 deg about z -> +x 10
    np.testing.assert_allclose(v[f[0]], [[10, 0, 2], [10, 2, 2], [8, 0, 2]], atol=1e-6)
    np.testing.assert_allclose(v[f[1]], [[0, 0, 0], [0, 1, 0], [1, 0, 0]])  # the untransformed USE

    center = wrl("Transform { center 1 0 0 rotation 0 0 1 3.14159265 children "
                 + shape([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]]) + "}")
    v, f = read(center, tmp_path)  # rotation about the center point (1, 0, 0)
    np.testing.assert_allclose(v[f[0]], [[2, 0, 0], [1, 0, 0], [2, -1, 0]], atol=1e-6)


@pytest.mark.parametrize("text, why", [
    (HEADER, "no geometry"),
    (wrl(shape([[0, 0, 0], [1, 0, 0]], [])), "no geometry"),
    ("solid cube\nfacet normal 0 0 1\n", r"not a VRML 2\.0 file"),
    (wrl(shape([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])).replace("point [0", "point [zz 0"), "unmatched data"),
    (wrl(shape([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 7]])), "coordIndex 7 out of range for 3 points"),
    (wrl(shape([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]]))[:-3], "unexpected end of file"),
    (HEADER + "Shape { geometry IndexedFaceSet { coord USE NOPE coordIndex [0 1 2] } }", "undefined name 'NOPE'"),
    (HEADER + "Shape { geometry Box { size 1 1 1 } }", "Box geometry is not supported"),
    (wrl(shape([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])).replace("0 1 0]", "0 1]"), "not a multiple of 3"),
])
def test_reader_errors_name_the_file(tmp_path, text, why):
    with pytest.raises(DatasetError, match=why) as e:
        read(text, tmp_path, "Bad_1.wrl")
    assert "Bad_1.wrl: " in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- classes, families, selection
def test_classes_and_rules():
    assert len(kicad.CLASSES) == 33 and list(kicad.CLASSES) == sorted(kicad.CLASSES)
    expect = {"Connector_PinHeader_2.54mm": "pin_header", "Package_SO": "ic_so", "Package_SON": "ic_qfn_dfn",
              "Package_SOT": None, "Connector_Phoenix_MC_HighVoltage": "terminal_block",
              "TerminalBlock_Altech": "terminal_block", "Display_7Segment": "display", "Display": "display",
              "Varistor": None, "TestPoint": None, "Oscillator": "crystal", "Converter_DCDC": "power_module",
              "Capacitor_Tantalum_SMD": "tantalum_smd", "Capacitor_SMD": "chip_smd", "Connector_FFC-FPC":
              "ribbon_connector", "Relay_SMD": "relay", "Connector_Stocko": "wire_connector"}
    assert {lib: kicad.library_class(lib) for lib in expect} == expect


def test_family_of():
    assert kicad.family_of("Resistor_SMD", "R_0402_1005Metric") == "Resistor_SMD/R_#_#Metric"
    assert (kicad.family_of("Capacitor_THT", "CP_Axial_L10.0mm_D4.5mm_P15.00mm_Horizontal")
            == "Capacitor_THT/CP_Axial_L#mm_D#mm_P#mm_Horizontal")
    assert kicad.family_of("Package_DFN_QFN", "QFN-20-1EP_3x4mm_P0.5mm") == "Package_DFN_QFN/QFN-#-#EP_#x#mm_P#mm"
    # pitch variants live in libraries of their own: one design, one family
    assert (kicad.family_of("Connector_PinHeader_1.00mm", "PinHeader_1x03_P1.00mm_Vertical")
            == kicad.family_of("Connector_PinHeader_2.54mm", "PinHeader_1x12_P2.54mm_Vertical")
            == "Connector_PinHeader_#mm/PinHeader_#x#_P#mm_Vertical")


def item(name, cls, family, h):
    return {"name": name, "class": cls, "family": family, "hash": h}


def test_select_merges_duplicates_and_caps():
    items = [item("L/a1", "x", "L/a#", "h1"), item("L/a2", "x", "L/a#", "h2"),
             item("L/b1", "x", "L/b#", "h1"),  # same geometry as L/a1: dropped, families a# and b# merge
             item("L/b2", "x", "L/b#", "h3"),
             item("M/c1", "y", "M/c#", "h3"),  # same geometry in another class: dropped, families stay apart
             item("M/c2", "y", "M/c#", "h4")]
    kept, counts = kicad.select_models([dict(r) for r in items], cap=16)
    assert [r["name"] for r in kept] == ["L/a1", "L/a2", "L/b2", "M/c2"]
    assert [r["family"] for r in kept] == ["L/a#", "L/a#", "L/a#", "M/c#"]
    assert counts == {"duplicates": 1, "cross_class_duplicates": [["M/c1", "L/b2"]], "capped": 0}

    many = [item(f"L/v{i}", "x", "L/v#", f"h{i}") for i in range(20)] + [item("L/w1", "x", "L/w#", "w")]
    kept, counts = kicad.select_models([dict(r) for r in many], cap=16, seed=0)
    assert len(kept) == 17 and counts["capped"] == 4 and sum(r["family"] == "L/v#" for r in kept) == 16
    again, _ = kicad.select_models([dict(r) for r in many[::-1]], cap=16, seed=0)
    assert [r["name"] for r in again] == [r["name"] for r in kept]  # seeded, independent of input order
    other, _ = kicad.select_models([dict(r) for r in many], cap=16, seed=1)
    assert {r["name"] for r in other} != {r["name"] for r in kept}


def test_geometry_hash():
    v, f = box()
    v = v - 0.5  # corners at 0 and -1
    w = v.copy()
    w[w == 0] = -0.0
    assert kicad.geometry_hash(v, f) == kicad.geometry_hash(v + 1e-7, f) == kicad.geometry_hash(w, f)
    assert kicad.geometry_hash(v, f) != kicad.geometry_hash(v * 1.01, f)
    assert kicad.geometry_hash(v, f) != kicad.geometry_hash(v, f[:, [0, 2, 1]])


def test_sample_surface_y_up_unit_sphere():
    v, f = box((0.1, 0.2, 1.0), (5, 5, 5))  # tall along KiCad's z (out of the board)
    p = kicad.sample_surface(v, f, 500, seed=3)
    assert p.dtype == np.float32 and p.shape == (500, 3) and np.ptp(p, axis=0).argmax() == 1  # y up now
    assert np.ptp(p[:, 2]) > np.ptp(p[:, 0])  # KiCad's y (0.2) became z, x (0.1) stays x
    np.testing.assert_allclose(np.linalg.norm(p, axis=1).max(), 1, rtol=1e-6)
    np.testing.assert_allclose(p.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_array_equal(p, kicad.sample_surface(v, f, 500, seed=3))
    assert np.allclose(np.abs(p).max(axis=0) / np.abs(p).max(), [0.1, 1, 0.2], atol=0.02)  # on the surface
    with pytest.raises(ValueError, match="zero area"):
        kicad.sample_surface(np.zeros((3, 3)), np.array([[0, 1, 2]]), 10, 0)


# ---------------------------------------------------------------- fold rule
def test_fold_rule_and_select():
    assert [folds.fold_split(f, 2) for f in range(5)] == ["train", "train", "test", "val", "train"]
    assert [folds.fold_split(f, 4) for f in range(5)] == ["val", "train", "train", "train", "test"]
    with pytest.raises(ValueError, match="fold must be in 0..4"):
        folds.fold_split(0, 5)
    fold_of = [i % 5 for i in range(23)]
    tested = []
    for k in range(5):
        parts = {s: set(folds.select(s, folds=fold_of, fold=k).tolist()) for s in folds.SPLITS}
        assert sum(map(len, parts.values())) == 23 and set.union(*parts.values()) == set(range(23))
        assert all(fold_of[i] == k for i in parts["test"]) and all(fold_of[i] == (k + 1) % 5 for i in parts["val"])
        tested += parts["test"]
    assert sorted(tested) == list(range(23))  # every item tested exactly once over the 5 rounds
    assert folds.select("val", splits=["train", "val", "val", "test"]).tolist() == [1, 2]
    with pytest.raises(ValueError, match="split must be"):
        folds.select("dev", splits=["train"])


def test_assign_groups_whole_groups_and_shares():
    classes = ["a"] * 100 + ["b"] * 50
    groups = [f"a{i // 4}" for i in range(100)] + [f"b{i // 2}" for i in range(50)]
    fold_of = folds.assign_folds(classes, groups, seed=0)
    assert all(len({f for f, g in zip(fold_of, groups) if g == key}) == 1 for key in set(groups))
    for cls, n in (("a", 100), ("b", 50)):
        sizes = np.bincount([f for f, c in zip(fold_of, classes) if c == cls], minlength=5)
        assert sizes.sum() == n and sizes.max() - sizes.min() <= 4  # balanced to a group
    split = folds.assign_groups(classes, groups, (0.55, 0.15, 0.30), "0:split")
    assert all(abs(n - t) <= 2 for n, t in zip(np.bincount(split[:100]), (55, 15, 30)))  # groups of 4
    assert folds.assign_folds(classes, groups, seed=0) == fold_of
    assert folds.assign_folds(classes, groups, seed=1) != fold_of


# ---------------------------------------------------------------- a tiny build
COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: kicad-packages3d

Files: *
Copyright: 2018-2022, KiCad Community
License: CC-BY-SA-4.0-with-exception

Files: Capacitor_THT.3dshapes/*
Copyright: 2017, kicad StepUp
License: GPL-3+

Files: Capacitor_THT.3dshapes/C_Disc_D3.0mm.wrl
Copyright: 2019, Someone
License: CC-BY-SA-4.0-with-exception

License: GPL-3+
 On Debian systems...
"""


def make_models(root):
    """Three libraries of 6 families with 1, 2, 3, 4, 5, 1 variants (16 boxes each; one family over a cap of 4),
    a 2-family library of the same class as another, a duplicate, a broken file and an unmatched library."""
    libs = {"Resistor_SMD": ("R_{}_Metric", (1, 0.5, 0.3)), "Capacitor_THT": ("C_Disc_D{}mm", (0.5, 0.5, 1)),
            "Capacitor_SMD": ("C_{}_Metric", (1, 0.4, 0.4)), "Diode_THT": ("D_DO-{}", (2, 0.3, 0.3)),
            "Varistor": ("RV_{}", (1, 1, 1))}
    for lib, (pattern, ext) in libs.items():
        d = root / f"{lib}.3dshapes"
        d.mkdir(parents=True)
        for fam in range(6 if lib != "Capacitor_SMD" else 2):
            for var in range(1 + fam % 5):
                scale = 1 + 0.1 * var + 0.37 * fam
                name = pattern.format("3.0") if fam == 0 else f"{pattern.format(var)}_F{'ABCDEF'[fam]}"
                (d / f"{name}.wrl").write_text(wrl(shape(*box(np.array(ext) * scale))))
    d = root / "Resistor_SMD.3dshapes"
    shutil.copy(d / "R_0_Metric_FB.wrl", d / "R_Copy_Metric.wrl")  # geometry-identical: family R_Copy merges in
    (d / "R_Broken.wrl").write_text(HEADER + "Shape { geometry IndexedFaceSet { coordIndex [0 1 2] ")
    (root / "Capacitor_THT.3dshapes/C_Disc_D3.0mm.step").write_text("not a wrl")
    (root / "copyright").write_text(COPYRIGHT)
    return root


def test_build_and_dataset(tmp_path):
    models, out, logs = make_models(tmp_path / "3dmodels"), tmp_path / "out", []
    report = kicad.build(out, points=64, seed=1, models=models, cap=4, log=logs.append)
    manifest = json.loads((out / "manifest.json").read_text())
    rows = manifest["models"]
    assert manifest["up"] == "y" and manifest["classes"] == list(kicad.CLASSES) and manifest["folds"] == 5
    assert json.loads((out / "classes.json").read_text()) == list(kicad.CLASSES)
    assert report["unmatched_libraries"] == {"Varistor": 16}
    assert [name for name, _ in report["failed"]] == ["Resistor_SMD/R_Broken"] and "R_Broken" in logs[-1]
    assert report["duplicates"] == 1 and not any(r["name"] == "Resistor_SMD/R_Copy_Metric" for r in rows)
    assert report["read"] == 3 * 16 + 1 + 3 and report["capped"] == 3  # the 5-variant family (FE) of 3 libraries
    assert report["models"] == len(rows) == 3 * 15 + 3 and report["families"] == 3 * 6 + 2
    assert report["families_per_class"]["chip_smd"] == 8 and report["table"]["chip_smd"]["train"] > 0
    assert {r["class"] for r in rows} == {"chip_smd", "capacitor_tht", "diode_tht"}
    pts, labels = np.load(out / "points.npy"), np.load(out / "labels.npy")
    assert pts.shape == (len(rows), 64, 3) and pts.dtype == np.float32
    assert labels.tolist() == [kicad.CLASSES.index(r["class"]) for r in rows]
    np.testing.assert_allclose(np.linalg.norm(pts, axis=2).max(axis=1), 1, rtol=1e-5)
    tall = [i for i, r in enumerate(rows) if r["library"] == "Capacitor_THT"]
    assert all(np.ptp(pts[i], axis=0).argmax() == 1 for i in tall)  # z-up 0.5 x 0.5 x 1 boxes: y-up now

    lic = {r["name"]: r["licence"] for r in rows}
    assert lic["Capacitor_THT/C_Disc_D3.0mm"] == kicad.DEFAULT_LICENCE  # the last matching stanza wins
    assert lic["Capacitor_THT/C_Disc_D1mm_FB"] == "GPL-3.0-or-later"
    assert lic["Diode_THT/D_DO-1_FB"] == kicad.DEFAULT_LICENCE
    assert {r["copyright"] for r in rows if r["library"] == "Diode_THT"} == {"2018-2022, KiCad Community"}
    assert report["licences"]["GPL-3.0-or-later"] == sum(r["library"] == "Capacitor_THT" for r in rows) - 1

    fam_folds, fam_splits = {}, {}
    for r in rows:
        fam_folds.setdefault(r["family"], set()).add(r["fold"])
        fam_splits.setdefault(r["family"], set()).add(r["split"])
        assert r["family"].startswith(r["library"] + "/")
    assert all(len(v) == 1 for v in fam_folds.values()) and all(len(v) == 1 for v in fam_splits.values())
    assert "Resistor_SMD/R_#_Metric_FB" in fam_folds and "Resistor_SMD/R_Copy_Metric" not in fam_folds
    for cls in ("capacitor_tht", "diode_tht"):  # 6 families each: every fold holds some
        assert {r["fold"] for r in rows if r["class"] == cls} == set(range(5))
        assert {r["split"] for r in rows if r["class"] == cls} == {"train", "val", "test"}

    ds = Kicad33(out, "train", num_points=32)
    check_items(ds, 32)
    assert ds.labels == list(kicad.CLASSES) and all(r["split"] == "train" for r in ds.manifest)
    assert ds.groups == [r["family"] for r in ds.manifest]
    assert sum(len(Kicad33(out, s)) for s in folds.SPLITS) == len(Kicad33(out, None)) == len(rows)
    for k in range(5):
        parts = {s: Kicad33(out, s, fold=k) for s in folds.SPLITS}
        names = {s: {r["name"] for r in p.manifest} for s, p in parts.items()}
        assert sum(map(len, names.values())) == len(rows) == len(set.union(*names.values()))
        assert {r["fold"] for r in parts["test"].manifest} == {k}
        assert {r["fold"] for r in parts["val"].manifest} == {(k + 1) % 5}
        assert not set(parts["test"].groups) & (set(parts["train"].groups) | set(parts["val"].groups))
    np.testing.assert_array_equal(Kicad33(out, None)[0][0].numpy(), pts[0])
    assert DATASETS["kicad33"] is Kicad33
    with pytest.raises(ValueError, match="rebuild with --points 128"):
        Kicad33(out, "train", num_points=128)

    stamp = (out / "points.npy").stat().st_mtime_ns
    kicad.build(out, points=64, seed=1, models=models, cap=4, log=logs.append)
    assert "nothing to do" in logs[-1] and (out / "points.npy").stat().st_mtime_ns == stamp
    kicad.build(out, points=64, seed=1, models=models, cap=4, force=True, log=logs.append)
    np.testing.assert_array_equal(np.load(out / "points.npy"), pts)  # deterministic
    assert json.loads((out / "manifest.json").read_text())["models"] == rows


@pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="needs dpkg-deb")
def test_build_from_deb(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    make_models(pkg / kicad.MODELS_IN_DEB)
    (pkg / kicad.COPYRIGHT_IN_DEB).parent.mkdir(parents=True)
    shutil.move(pkg / kicad.MODELS_IN_DEB / "copyright", pkg / kicad.COPYRIGHT_IN_DEB)
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN/control").write_text("Package: kicad-packages3d\nVersion: 6.0.10-1\nArchitecture: all\n"
                                        "Maintainer: test <t@example.org>\nDescription: test\n")
    deb = tmp_path / "k.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-b", str(pkg), str(deb)], check=True,
                   capture_output=True)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    report = kicad.build(tmp_path / "out", points=32, deb=deb, cap=4, log=lambda s: None)
    assert report["settings"]["source"]["version"] == "6.0.10-1" and report["copyright_file"]
    assert report["models"] == 48 and report["licences"]["GPL-3.0-or-later"] == 14
    assert not list((tmp_path / "tmp").iterdir())  # the extraction is removed
    (pkg / kicad.COPYRIGHT_IN_DEB).unlink()  # tar fails on the missing file: harmless, every licence is the default
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-b", str(pkg), str(deb)], check=True,
                   capture_output=True)
    report = kicad.build(tmp_path / "out2", points=32, deb=deb, cap=4, log=lambda s: None)
    assert not report["copyright_file"] and report["licences"] == {kicad.DEFAULT_LICENCE: 48}
    with pytest.raises(DatasetError, match="is not a kicad-packages3d .deb"):
        kicad.locate(deb=tmp_path / "out/manifest.json")


def test_errors(tmp_path, capsys):
    with pytest.raises(DatasetError, match=r"run: python -m train\.data\.kicad --out"):
        Kicad33(tmp_path, "train")
    assert kicad.main(["--out", str(tmp_path / "o"), "--deb", str(tmp_path / "nope.deb")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.deb not found" in err
    assert kicad.main(["--out", str(tmp_path / "o"), "--models", str(tmp_path)]) == 1
    assert "no *.3dshapes folders" in capsys.readouterr().err


# ---------------------------------------------------------------- SweetHome3D folds
def test_sh3d_folds(tmp_path):
    cats = tmp_path / "cats"
    cats.mkdir()
    fake_catalog(cats / "Test.sh3f", n_chairs=16, n_tables=15)
    out = tmp_path / "out"
    sh3d.build(out, points=32, seed=0, catalogs=cats, log=lambda s: None)
    default = SH3D(out, "train")
    assert len(default) == 22 and default.fold is None  # the build's split is unchanged
    assert default.groups == [r["model_id"] for r in default.manifest]  # no shared sources in the fake catalog
    tested = []
    for k in range(5):
        parts = {s: SH3D(out, s, fold=k) for s in folds.SPLITS}
        ids = {s: {r["model_id"] for r in p.manifest} for s, p in parts.items()}
        assert sum(map(len, ids.values())) == 32 == len(set.union(*ids.values()))
        counts = [int((parts["test"].targets == c).sum()) for c in range(2)]
        assert counts in ([3, 3], [3, 4], [4, 3], [4, 4])  # stratified: 16 chairs and 16 tables in 5 folds
        tested += ids["test"]
        check_items(parts["train"], 32)
    assert len(tested) == 32 == len(set(tested))
    assert [r["model_id"] for r in SH3D(out, "test", fold=3).manifest] == \
        [r["model_id"] for r in SH3D(out, "test", fold=3).manifest]  # deterministic


def test_sh3d_folds_keep_upstream_models_whole():
    rows = [{"class": "chair", "source": "http://x/1" if i < 6 else "", "model_id": f"m{i}"} for i in range(20)]
    fold_of = sh3d.fold_of(rows)
    assert len({fold_of[i] for i in range(6)}) == 1 and sorted(np.bincount(fold_of).tolist()) == [3, 3, 4, 4, 6]
