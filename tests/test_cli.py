"""`python -m zoo predict` and `python -m zoo export`: rows, exit status, formats; the ONNX export against torch."""
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.__main__ import export_onnx, main
from zoo.files import read_points
from zoo.registry import DEFAULTS, load_model, save_model

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "chair.ply"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_entry(tmp_path_factory):
    """A small saved entry (seeded scratch 1D backbone, 3 labels) to pass as --model: loads in well under a second."""
    from core import Any2Point
    from zoo import build_backbone
    backbone, info = build_backbone("scratch:1d")
    torch.manual_seed(2)
    model = Any2Point(backbone, 3, labels=["ball", "box", "rod"], num_points=256, num_tokens=32, k=8).eval()
    with torch.no_grad():  # non-trivial heads, so the labels' order depends on the cloud
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    return save_model(model, tmp_path_factory.mktemp("tiny") / "tiny-entry", name="tiny-entry", info=info)


def clouds(folder):
    """Good files (one in a sub-folder), a corrupt one, an empty one: {name: path}."""
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    ball = rng.normal(size=(300, 3))
    np.savetxt(folder / "ball.xyz", ball / np.linalg.norm(ball, axis=1, keepdims=True), fmt="%.5f")
    np.save(folder / "sub" / "box.npy", rng.uniform(-1, 1, size=(400, 3)).astype(np.float32))
    (folder / "broken.ply").write_bytes(bytes(range(256)) * 8)
    (folder / "empty.xyz").write_bytes(b"")
    (folder / "notes.md").write_text("not a cloud, not a supported extension: skipped in folders")
    return {p.name: p for p in folder.rglob("*") if p.is_file()}


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_predict_mixed_inputs_json_rows_and_exit_status(tiny_entry, tmp_path, capsys):
    files = clouds(tmp_path / "data")
    missing = tmp_path / "nope.obj"
    code, out, _ = run(["predict", tmp_path / "data", missing, "--model", tiny_entry, "--format", "json",
                        "--top-k", "0"], capsys)
    assert code == 1  # some files failed
    rows = json.loads(out)
    by_file = {Path(r["file"]).name: r for r in rows}
    assert set(by_file) == {"ball.xyz", "box.npy", "broken.ply", "empty.xyz", "nope.obj"}  # notes.md skipped
    for name in ("ball.xyz", "box.npy"):
        r = by_file[name]
        assert set(r) == {"file", "model", "up", "labels"} and r["model"] == "tiny-entry" and r["up"] == "y"
        assert list(r["labels"]) != [] and set(r["labels"]) == {"ball", "box", "rod"}
        assert abs(sum(r["labels"].values()) - 1) < 1e-5
        probs = list(r["labels"].values())
        assert probs == sorted(probs, reverse=True)
    for name, phrase in (("broken.ply", "corrupt"), ("empty.xyz", "empty"), ("nope.obj", "not found")):
        r = by_file[name]
        assert set(r) == {"file", "error"} and phrase in r["error"].lower() and "\n" not in r["error"]
    # the same prediction as the library's
    model = load_model(str(tiny_entry))
    expected = model.predict(read_points(files["ball.xyz"], num_points=2048))
    assert by_file["ball.xyz"]["labels"] == pytest.approx(expected, abs=1e-5)


def test_predict_all_good_is_exit_zero_and_globs_expand(tiny_entry, tmp_path, capsys):
    clouds(tmp_path)
    code, out, _ = run(["predict", tmp_path / "**" / "*.npy", tmp_path / "ball.xyz", "--model", tiny_entry,
                        "--format", "json", "--top-k", "2"], capsys)
    rows = json.loads(out)
    assert code == 0 and [Path(r["file"]).name for r in rows] == ["box.npy", "ball.xyz"]
    assert all(len(r["labels"]) == 2 for r in rows)
    code, out, _ = run(["predict", tmp_path / "*.stl", "--model", tiny_entry, "--format", "json"], capsys)
    assert code == 1 and "no file matches" in json.loads(out)[0]["error"]


def test_predict_table_and_csv(tiny_entry, tmp_path, capsys):
    files = clouds(tmp_path)
    code, out, _ = run(["predict", files["ball.xyz"], files["broken.ply"], "--model", tiny_entry], capsys)
    lines = out.splitlines()
    assert code == 1 and lines[0].split() == ["file", "model", "up", "labels"] and len(lines) == 3
    assert "tiny-entry" in lines[1] and "error:" not in lines[1] and "error: " in lines[2]
    code, out, _ = run(["predict", files["ball.xyz"], files["broken.ply"], "--model", tiny_entry, "--format",
                        "csv", "--top-k", "3"], capsys)
    table = list(csv.DictReader(io.StringIO(out)))
    good = [r for r in table if not r["error"]]
    assert code == 1 and [r["rank"] for r in good] == ["1", "2", "3"] and {r["label"] for r in good} == \
        {"ball", "box", "rod"}
    assert [r["file"] for r in table if r["error"]] == [str(files["broken.ply"])]


def test_predict_z_up_files(tiny_entry, tmp_path, capsys):
    """--up z reads the files as z up: the same rows as the y-up originals (exact rotation)."""
    from core.points import reorient
    pts = np.random.default_rng(3).normal(size=(200, 3)).astype(np.float32) * [1.0, 2.0, 0.5]
    np.save(tmp_path / "y.npy", pts)
    np.save(tmp_path / "z.npy", reorient(pts, "y", to="z"))
    rows = {}
    for name, up in (("y", "y"), ("z", "z"), ("z", "y")):
        code, out, _ = run(["predict", tmp_path / f"{name}.npy", "--model", tiny_entry, "--up", up, "--format",
                            "json", "--top-k", "0"], capsys)
        rows[name, up] = json.loads(out)[0]["labels"]
    assert rows["z", "z"] == rows["y", "y"] and rows["z", "y"] != rows["y", "y"]
    code, out, _ = run(["predict", tmp_path / "z.npy", "--model", tiny_entry, "--up", "auto", "--format", "json"],
                       capsys)
    assert code == 0 and json.loads(out)[0]["up"] in ("y", "z")


def test_progress_bar_on_many_files(tiny_entry, tmp_path, capsys):
    rng = np.random.default_rng(1)
    for i in range(12):
        np.save(tmp_path / f"c{i:02d}.npy", rng.normal(size=(100, 3)).astype(np.float32))
    code, out, err = run(["predict", tmp_path, "--model", tiny_entry, "--format", "json"], capsys)
    assert code == 0 and len(json.loads(out)) == 12 and "12/12" in err
    code, out, err = run(["predict", tmp_path / "c00.npy", "--model", tiny_entry], capsys)
    assert code == 0 and err == ""


def test_predict_defaults_and_unknown_model(capsys):
    code, out, _ = run(["predict", EXAMPLE, "--format", "json"], capsys)
    rows = json.loads(out)
    assert code == 0 and [r["model"] for r in rows] == list(DEFAULTS.values())
    code, _, err = run(["predict", EXAMPLE, "--model", "no-such-entry"], capsys)
    assert code == 2 and "no zoo entry" in err and len(err.strip().splitlines()) == 1


def test_help_explains_the_command():
    out = subprocess.run([sys.executable, "-m", "zoo", "predict", "--help"], capture_output=True, text=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0
    for phrase in ("--up", "--top-k", "--format", "folder", "glob", "exit status is 1", "auto"):
        assert phrase in out.stdout, phrase


# --- export ------------------------------------------------------------------------------------------------------
def test_fps_torch_path_equals_numpy_and_is_traced():
    from core.points import fps_steps, farthest_point_sample
    g = np.random.default_rng(0)
    xyz = torch.as_tensor(g.normal(size=(3, 500, 3)), dtype=torch.float32)
    xyz[1, 100:140] = xyz[1, 0]  # duplicates: ties at distance 0
    numpy_path = farthest_point_sample(xyz, 64)
    torch_path = fps_steps(torch, xyz.transpose(1, 2).contiguous(), 64)
    assert torch.equal(numpy_path, torch_path)
    # traced, the torch path runs: another input gives its own picks (numpy's would be the example's constant)
    traced = torch.jit.trace(lambda p: farthest_point_sample(p, 16), (xyz,), check_trace=False)
    other = torch.as_tensor(g.normal(size=(2, 300, 3)), dtype=torch.float32)
    assert torch.equal(traced(other), farthest_point_sample(other, 16))


@pytest.mark.parametrize("modality", ["vision", "language", "audio"])
def test_onnx_export_matches_torch(modality, tmp_path):
    import onnxruntime as ort
    model = load_model(DEFAULTS[modality])
    result = export_onnx(model, tmp_path / "m.onnx")
    assert result["max_abs_diff"] <= 1e-4
    # a real cloud and a batch size the export never saw; the labels travel in the metadata
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["labels"]) == model.labels and meta["up"] == "y"
    pts = read_points(EXAMPLE, num_points=model.num_points)[None].repeat(2, 0)
    pts[1] = pts[1, ::-1] * 1.5  # reversed and scaled: the same object
    got = session.run(["logits"], {"points": pts})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(pts)).numpy()
    assert got.shape == (2, len(model.labels)) and np.abs(got - ref).max() <= 1e-4


def test_export_cli_writes_a_checked_file(tiny_entry, tmp_path, capsys):
    code, out, _ = run(["export", tiny_entry, "--onnx", tmp_path / "tiny.onnx"], capsys)
    assert code == 0 and (tmp_path / "tiny.onnx").stat().st_size > 0 and "onnxruntime matches torch" in out
    code, _, err = run(["export", "any2point-audio-ast-scanobjectnn", "--onnx", tmp_path / "x.onnx"], capsys)
    assert code == 2 and "is a recipe, not a trained model" in err


def test_suite_install_that_fails_half_way_keeps_the_shipped_entry(tiny_entry, tmp_path, monkeypatch):
    import shutil

    import benchmarks.suite as suite
    dest = suite.install(tiny_entry, "any2point-audio-tiny-blobs", root=tmp_path)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}

    def copy_then_fail(src, dst, **kw):
        Path(dst).mkdir(parents=True)
        shutil.copy(Path(src) / "config.json", dst)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(suite.shutil, "copytree", copy_then_fail)
    with pytest.raises(OSError, match="No space left"):
        suite.install(tiny_entry, "any2point-audio-tiny-blobs", root=tmp_path)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    monkeypatch.undo()
    assert suite.install(tiny_entry, "any2point-audio-tiny-blobs", root=tmp_path) == dest  # the leftover is cleared
    assert sorted(p.name for p in dest.parent.iterdir()) == ["any2point-audio-tiny-blobs"]
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before


def test_suite_installs_a_candidate_under_the_entry_name(tiny_entry, tmp_path):
    """A recipe candidate that won on val ships under the name of the entry it replaces: same weights, that name in
    its config and card, and it loads."""
    from benchmarks.suite import install
    from zoo.registry import load_artifact
    dest = install(tiny_entry, "any2point-audio-tiny-blobs", root=tmp_path)
    assert dest == tmp_path / "zoo" / "checkpoints" / "any2point-audio-tiny-blobs"
    config = json.loads((dest / "config.json").read_text())
    assert config["name"] == "any2point-audio-tiny-blobs"
    assert "any2point-audio-tiny-blobs" in (dest / "README.md").read_text()
    assert "tiny-entry" not in (dest / "README.md").read_text().replace("any2point-audio-tiny-blobs", "")
    assert (dest / "adapter.safetensors").read_bytes() == (Path(tiny_entry) / "adapter.safetensors").read_bytes()
    model = load_artifact(dest)
    assert model.info.name == "any2point-audio-tiny-blobs"
