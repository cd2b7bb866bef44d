"""The registry and the adapter-only artifacts, with the real packaged backbones (offline)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo.files import read_points
from zoo.hub import EntryError
from zoo.registry import DEFAULTS, ENTRIES, ModelUnavailable, load_artifact, load_model, save_model
from zoo.specs import parse

ROOT = Path(__file__).resolve().parents[1]
BUNNY = ROOT / "examples" / "bunny.ply"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def bunny():
    return read_points(BUNNY, num_points=2048)


def test_list_models_reports_every_entry_and_why():
    rows = zoo.list_models()
    assert [r["name"] for r in rows] == [e.name for e in ENTRIES]
    by = {r["name"]: r for r in rows}
    for modality, name in DEFAULTS.items():
        assert by[name]["available"] and by[name]["default"] and by[name]["modality"] == modality
    hub = [r for r in rows if parse(r["backbone"])[0] != "packaged"]
    assert hub and all(not r["available"] and r["reason"] for r in hub)  # offline here: listed, with the reason
    assert {r["modality"] for r in zoo.list_models("audio")} == {"audio"}


def test_unavailable_entry_is_a_clear_error():
    with pytest.raises(ModelUnavailable, match="unavailable: .*revision|unavailable: .*cache"):
        load_model("any2point-vision-dinov2b-scanobjectnn")
    with pytest.raises(KeyError, match="no zoo entry"):
        load_model("no-such-model")


@pytest.mark.parametrize("modality", ["vision", "language", "audio"])
def test_packaged_entries_predict_offline(modality, bunny):
    m = load_model(DEFAULTS[modality])
    assert load_model(DEFAULTS[modality]) is m  # cached
    assert not m.training and next(m.parameters()).device.type == "cpu"
    probs = m.predict(bunny)
    assert set(probs) == set(m.labels) and abs(sum(probs.values()) - 1) < 1e-5
    logits = m(torch.as_tensor(bunny)[None, :1024])
    assert logits.shape == (1, len(m.labels)) and torch.isfinite(logits).all()
    assert m.info.backbone["sha256"] and m.info.backbone["package"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A packaged-backbone model with non-trivial adapter weights, saved as an entry."""
    from zoo import build_backbone
    from core import Any2Point
    backbone, info = build_backbone("packaged:minilm-l6")
    torch.manual_seed(1)
    model = Any2Point(backbone, 4, labels=["a", "b", "c", "d"], num_points=512).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.01)
    folder = save_model(model, tmp_path_factory.mktemp("entry") / "e", name="test-entry", info=info,
                        metrics={"test_acc": 0.5})
    return model, folder


def test_save_load_round_trip_identical_logits(saved, bunny):
    model, folder = saved
    size = (folder / "adapter.safetensors").stat().st_size
    print(f"\nadapter.safetensors at width 384: {size / 2**20:.2f} MB, {model.num_trainable():,} trainable")
    assert size <= 5 * 2**20
    loaded = load_artifact(folder)
    x = torch.as_tensor(bunny)[None, :512]
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    config = json.loads((folder / "config.json").read_text())
    assert config["backbone"]["spec"] == "packaged:minilm-l6" and config["backbone"]["package"]
    assert config["adapter"]["num_parameters"] >= model.num_trainable()
    card = (folder / "README.md").read_text()
    assert card.startswith("---") and "license:" in card and "load_model" in card


def copy_entry(folder, dest):
    dest.mkdir()
    for f in folder.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    return dest


def test_tampered_artifact_is_refused(saved, tmp_path):
    bad = copy_entry(saved[1], tmp_path / "bad")
    blob = bytearray((bad / "adapter.safetensors").read_bytes())
    blob[-10] ^= 0xFF
    (bad / "adapter.safetensors").write_bytes(bytes(blob))
    with pytest.raises(EntryError, match="does not match"):
        load_artifact(bad)


def test_other_backbone_weights_are_refused(saved, tmp_path):
    bad = copy_entry(saved[1], tmp_path / "other")
    config = json.loads((bad / "config.json").read_text())
    config["backbone"]["sha256"] = "0" * 64
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(EntryError, match="backbone weights differ"):
        load_artifact(bad)


def test_mismatched_adapter_keys_are_refused(saved, tmp_path):
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config["model"]["adapter_dim"] = 4  # the stored tensors were trained with another bottleneck
    from safetensors.torch import load_file
    from zoo.hub import save_entry
    bad = save_entry(tmp_path / "keys", config=config, state=load_file(folder / "adapter.safetensors"))
    with pytest.raises(EntryError, match="adapters.0.down.weight"):
        load_artifact(bad)


def test_cli_list_and_info():
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "zoo", "list"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0 and all(e.name in out.stdout for e in ENTRIES)
    assert "unavailable" in out.stdout
    info = subprocess.run([sys.executable, "-m", "zoo", "info", DEFAULTS["vision"]], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    assert info.returncode == 0 and json.loads(info.stdout)["backbone"] == "packaged:dinov2-s14"
    bad = subprocess.run([sys.executable, "-m", "zoo", "info", "nope"], capture_output=True, text=True, env=env,
                         cwd=ROOT)
    assert bad.returncode == 2 and "no zoo entry" in bad.stderr


REFERENCE_LOGITS = json.loads((ROOT / "tests/data/entry_logits.json").read_text())


@pytest.mark.parametrize("name", sorted(REFERENCE_LOGITS))
def test_committed_entries_keep_their_logits(name):
    """tests/data/entry_logits.json: each committed entry's logits on the example clouds, computed (one thread) with
    the code before the typed-config refactor. A change that moves them is a change of the shipped models."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = load_model(name)
        worst = 0.0
        for example, ref in REFERENCE_LOGITS[name].items():
            pts = torch.as_tensor(read_points(ROOT / "examples" / example, num_points=2048))[None]
            with torch.no_grad():
                worst = max(worst, (m(pts)[0] - torch.tensor(ref)).abs().max().item())
    finally:
        torch.set_num_threads(threads)
    assert worst <= 1e-6, f"{name}: logits moved by {worst:.2e}"


def test_untrained_recipe_labels_come_from_the_dataset_loader():
    from train.data.scanobjectnn import CLASSES
    from zoo.registry import entry_labels, get_entry
    assert entry_labels(get_entry("any2point-audio-ast-scanobjectnn")) == tuple(CLASSES)
    from train.data.sh3d import CLASSES as SH3D_CLASSES
    for name in DEFAULTS.values():  # the shipped entries' artifacts and the SweetHome3D loader agree
        assert entry_labels(get_entry(name)) == SH3D_CLASSES and "kitchen appliance" in SH3D_CLASSES
