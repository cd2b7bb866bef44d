"""The registry and the adapter-only artifacts, with the real packaged backbones (offline)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.serving import ZooModel
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
        load_model("any2point-vision-dinov2b-scanobjectnn", allow_untrained=True)
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
    assert "recipe" in out.stdout and "python -m train.run --config train/configs/scanobjectnn_ast.toml" in out.stdout
    info = subprocess.run([sys.executable, "-m", "zoo", "info", DEFAULTS["vision"]], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    assert info.returncode == 0 and json.loads(info.stdout)["backbone"] == "packaged:dinov2-s14"
    bad = subprocess.run([sys.executable, "-m", "zoo", "info", "nope"], capture_output=True, text=True, env=env,
                         cwd=ROOT)
    assert bad.returncode == 2 and "no zoo entry" in bad.stderr


REFERENCE_LOGITS = json.loads((ROOT / "tests/data/entry_logits.json").read_text())


@pytest.mark.parametrize("name", sorted(REFERENCE_LOGITS))
def test_committed_entries_keep_their_logits(name):
    """tests/data/entry_logits.json: each committed entry's logits on its task's example clouds, computed (one thread)
    when the entry was shipped (tests/data/entry_logits.py). A change that moves them is a change of the shipped
    models."""
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
    # fp32 kernels differ across CPU generations (AVX2 / AVX-512 / AMX machines disagree by up to ~5e-6 on these
    # logits, which are O(1-10)); a change of the model or its maths moves them by orders of magnitude more
    assert worst <= 2e-5, f"{name}: logits moved by {worst:.2e}"


def test_untrained_recipe_labels_come_from_the_dataset_loader():
    from train.data.scanobjectnn import CLASSES
    from zoo.registry import entry_labels, get_entry
    assert entry_labels(get_entry("any2point-audio-ast-scanobjectnn")) == tuple(CLASSES)
    from train.data.sh3d import CLASSES as SH3D_CLASSES
    for name in DEFAULTS.values():  # the shipped entries' artifacts and the SweetHome3D loader agree
        assert entry_labels(get_entry(name)) == SH3D_CLASSES and "kitchen appliance" in SH3D_CLASSES


# --- recipes are not models ----------------------------------------------------------------------------------------
def test_a_recipe_is_listed_with_its_command_and_refused_by_load_model():
    rows = {r["name"]: r for r in zoo.list_models()}
    for name in DEFAULTS.values():
        assert rows[name]["trained"] and not rows[name]["recipe"] and rows[name]["train_command"] is None
    ast = rows["any2point-audio-ast-scanobjectnn"]
    assert ast["recipe"] and ast["train_command"] == "python -m train.run --config train/configs/scanobjectnn_ast.toml"
    # no config file names this one: the command is built from its dataset and backbone
    clipb = rows["any2point-language-clipb-scanobjectnn"]["train_command"]
    assert "--backbone hf-text:openai/clip-vit-base-patch32" in clipb and "--dataset scanobjectnn" in clipb
    with pytest.raises(ModelUnavailable) as err:
        load_model("any2point-audio-ast-scanobjectnn")
    message = str(err.value)
    assert message.startswith("any2point-audio-ast-scanobjectnn is a recipe, not a trained model: train it with "
                              "python -m train.run --config train/configs/scanobjectnn_ast.toml")
    assert "\n" not in message


def test_a_recipe_whose_backbone_is_here_still_is_not_a_model(monkeypatch):
    """The case the app got wrong: an untrained entry over a backbone that builds here."""
    from dataclasses import replace
    from zoo import registry
    recipe = replace(registry.BY_NAME[DEFAULTS["language"]], name="recipe-minilm", artifact=None)
    monkeypatch.setitem(registry.BY_NAME, recipe.name, recipe)
    monkeypatch.setattr(registry, "ENTRIES", [*registry.ENTRIES, recipe])
    row = {r["name"]: r for r in registry.list_models()}[recipe.name]
    assert row["available"] and row["recipe"] and "train it with python -m train.run" in row["reason"]
    with pytest.raises(ModelUnavailable, match="recipe-minilm is a recipe, not a trained model"):
        load_model(recipe.name)
    m = load_model(recipe.name, allow_untrained=True)
    assert not m.trained and m.labels and m.up == "y"
    with pytest.raises(ModelUnavailable, match="is a recipe"):  # the cached model is not handed out either
        load_model(recipe.name)
    import app
    monkeypatch.setattr(app, "list_models", registry.list_models)
    assert recipe.name not in app.choices("language") and DEFAULTS["language"] in app.choices("language")
    assert recipe.name in app.zoo_table()


# --- the up axis ---------------------------------------------------------------------------------------------------
def test_up_rotation_is_the_kicad_builders():
    from core.points import UP_AXES, reorient, up_rotation
    from train.data.kicad import Z_UP_TO_Y_UP
    assert np.array_equal(up_rotation("z"), Z_UP_TO_Y_UP)
    p = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    assert np.array_equal(reorient(p, "z"), np.stack([p[:, 0], p[:, 2], -p[:, 1]], 1))  # (x, y, z) -> (x, z, -y)
    for up in UP_AXES:
        r = up_rotation(up)
        assert np.isclose(np.linalg.det(r), 1) and np.array_equal(reorient(p, up), (p @ r.T).astype(np.float32))
        assert np.array_equal(reorient(reorient(p, "y", to=up), up), p)  # exact both ways
        assert torch.equal(reorient(torch.from_numpy(p), up), torch.from_numpy(reorient(p, up)))
    with pytest.raises(ValueError, match="unknown up axis 'w'"):
        reorient(p, "w")


def test_upright_prior_prefers_an_object_standing_on_its_base():
    """A cone on its base (wide bottom, narrow top) scores highest upright: above lying on its side, above upside
    down. The quarter turn that "auto" averages over is exact and turns about y."""
    import math
    from core.points import UP_AXES, quarter_turn, reorient, upright_prior
    g = torch.Generator().manual_seed(0)
    h, a = torch.rand(2000, generator=g) * 2, torch.rand(2000, generator=g) * 2 * math.pi
    side = torch.stack([(1 - h / 2) * a.cos(), h, (1 - h / 2) * a.sin()], 1)
    r, b = torch.rand(500, generator=g).sqrt(), torch.rand(500, generator=g) * 2 * math.pi
    cone = torch.cat([side, torch.stack([r * b.cos(), torch.zeros(500), r * b.sin()], 1)])
    score = {up: upright_prior(reorient(cone, up)[None]).item() for up in UP_AXES}
    assert max(score, key=score.get) == "y" and score["-y"] == min(score.values())
    assert torch.equal(quarter_turn(cone, 4), cone) and torch.equal(quarter_turn(cone)[:, 1], cone[:, 1])
    assert torch.allclose(upright_prior(quarter_turn(cone)[None]), upright_prior(cone[None]))


def test_an_entrys_up_prior_decides_what_auto_keeps_when_the_model_cannot_tell():
    """The prior's weight comes from the entry (components lie flat: negative), else zoo.serving.AUTO_PRIOR."""
    from types import SimpleNamespace
    from core.points import reorient, upright_prior
    from tiny import tiny_model
    m = ZooModel(tiny_model(num_points=256).eval())
    g = np.random.default_rng(2)
    tall = (g.normal(size=(256, 3)) * [0.3, 2.0, 0.3]).astype(np.float32)  # a post: tall and narrow read y up
    readings = {u: upright_prior(torch.as_tensor(reorient(tall, u))[None]).item() for u in ("y", "z")}
    standing, lying = max(readings, key=readings.get), min(readings, key=readings.get)
    for weight, expect in ((1e4, standing), (-1e4, lying)):  # the prior outweighs any confidence
        m.info = SimpleNamespace(up="y", trained=True, up_prior=weight)
        assert m.detect_up(tall) == expect
    m.info = SimpleNamespace(up="y", trained=True)  # none declared: the default weight
    import zoo.serving
    saved, zoo.serving.AUTO_PRIOR = zoo.serving.AUTO_PRIOR, 1e4
    try:
        assert m.detect_up(tall) == standing
    finally:
        zoo.serving.AUTO_PRIOR = saved


def test_kicad33_entries_carry_the_components_up_prior():
    from train.data.kicad import UP_PRIOR
    from zoo.registry import TASK_DEFAULTS
    assert UP_PRIOR < 0
    for name in TASK_DEFAULTS["kicad33"].values():
        assert load_model(name).info.up_prior == UP_PRIOR
    assert all(load_model(n).info.up_prior is None for n in TASK_DEFAULTS["sh3d"].values())


def test_committed_entries_declare_y_up():
    from zoo.registry import TASK_DEFAULTS
    for name in [n for task in TASK_DEFAULTS.values() for n in task.values()]:
        m = load_model(name)
        assert m.info.artifact["up"] == "y" and m.up == "y"


def test_up_z_on_a_z_up_cloud_is_the_y_up_prediction_exactly(bunny):
    from core.points import reorient
    m = load_model(DEFAULTS["audio"])
    z_up = reorient(bunny, "y", to="z")
    assert m.predict(z_up, up="z") == m.predict(bunny)
    assert m.predict(z_up) != m.predict(bunny)  # read as y up it is another cloud
    assert np.array_equal(m.embed(z_up, up="z"), m.embed(bunny))
    both = m.predict_batch([bunny, z_up], up="auto", with_up=True)
    import zoo.serving
    from core.points import quarter_turn
    for (probs, up), cloud in zip(both, (bunny, z_up)):
        # the kept orientation's prediction, averaged over the quarter turns it was scored under
        turns = [m.predict(quarter_turn(reorient(cloud, up), k)) for k in range(zoo.serving.AUTO_TURNS)]
        mean = {c: sum(t[c] for t in turns) / len(turns) for c in m.labels}
        assert up in ("y", "z") and probs == pytest.approx(mean, abs=1e-5)
        assert m.detect_up(cloud) == up


def test_an_entry_trained_z_up_gets_y_up_clouds_turned():
    from types import SimpleNamespace
    from core.points import reorient
    from tiny import tiny_model
    m = ZooModel(tiny_model(num_points=256))
    m.info = SimpleNamespace(up="z", trained=True)
    p = np.random.default_rng(1).normal(size=(200, 3)).astype(np.float32) * [1, 3, 0.3]
    assert m.predict(p, up="y") == m.predict(reorient(p, "y", to="z"))  # its own convention: no rotation


# --- embeddings and batches ----------------------------------------------------------------------------------------
def test_embed_is_what_the_head_sees_deterministic_order_invariant_and_discriminative():
    from tiny import shape_cloud, tiny_model
    m = ZooModel(tiny_model(num_points=256))
    g = torch.Generator().manual_seed(0)
    sphere, cube = shape_cloud("sphere", 200, g), shape_cloud("cube", 200, g)
    e = m.embed(sphere)
    assert isinstance(e, np.ndarray) and e.dtype == np.float32 and e.shape == (2 * m.backbone.width,)
    assert np.array_equal(m.embed(sphere), e)
    assert np.allclose(m.embed(sphere[torch.randperm(200, generator=g)]), e, atol=1e-5)
    assert not np.allclose(m.embed(cube), e, atol=1e-2)
    with torch.no_grad():  # the head on the embedding is the model's logits: one features() for both
        assert torch.allclose(m.head(torch.from_numpy(e)[None]), m(sphere[None]), atol=1e-5)


def test_predict_batch_equals_predict_cloud_by_cloud():
    from tiny import tiny_model
    m = ZooModel(tiny_model(num_points=256))
    rng = np.random.default_rng(2)
    clouds = [rng.normal(size=(n, 3)).astype(np.float32) for n in (300, 256, 100, 400, 100)]
    batch = m.predict_batch(clouds, batch_size=2, top_k=2)
    assert len(batch) == 5 and all(len(b) == 2 for b in batch)
    for cloud, got in zip(clouds, batch):
        want = m.predict(cloud, top_k=2)
        assert list(got) == list(want) and got == pytest.approx(want, abs=1e-5)
    assert m.predict_batch([]) == []


# --- threads on a busy machine -------------------------------------------------------------------------------------
def test_thread_policy_small_forwards_use_one_thread_and_restore(monkeypatch):
    import zoo.serving
    from tiny import tiny_model
    m = ZooModel(tiny_model(num_points=256))
    seen = []
    m.tokenizer.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))  # every forward's start
    cloud = np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32)
    before = torch.get_num_threads()
    monkeypatch.delenv("ANY2POINT_TORCH_THREADS", raising=False)
    try:
        torch.set_num_threads(3)
        m.predict(cloud)
        m.embed(cloud)
        m.predict_batch([cloud] * 3)
        assert seen == [1, 1, 1] and torch.get_num_threads() == 3
        monkeypatch.setattr(zoo.serving, "SMALL_FORWARD", 512)  # a batch above the threshold: torch's own count
        m.predict_batch([cloud] * 3)
        assert seen[-1] == 3
        monkeypatch.setattr(zoo.serving, "INFERENCE_THREADS", 2)  # the module-level setting pins every size
        m.predict(cloud)
        assert seen[-1] == 2 and torch.get_num_threads() == 3
        monkeypatch.setattr(zoo.serving, "INFERENCE_THREADS", None)
        monkeypatch.setenv("ANY2POINT_TORCH_THREADS", "2")
        m.predict(cloud)
        assert seen[-1] == 2 and torch.get_num_threads() == 3
        monkeypatch.setenv("ANY2POINT_TORCH_THREADS", "many")
        with pytest.raises(ValueError, match="ANY2POINT_TORCH_THREADS must be a whole number"):
            m.predict(cloud)
        monkeypatch.delenv("ANY2POINT_TORCH_THREADS")
        with pytest.raises(ValueError):  # an error inside the forward restores the count too
            m.predict(np.zeros((10, 2), dtype=np.float32))
        m.head.register_forward_hook(lambda *_: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            m.predict(cloud)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("task", ["sh3d", "kicad33"])
def test_every_task_ships_one_trained_entry_per_modality_with_its_dataset_classes(task):
    """The app's tasks: each has a trained default per modality, whose labels are exactly its dataset loader's
    classes, and whose card states the up axis and the training data's licence (share-alike for kicad33)."""
    from train.data import TABLE
    from zoo.registry import CHECKPOINTS, TASK_DEFAULTS, TASKS, get_entry
    assert task in TASKS and set(TASK_DEFAULTS[task]) == {"vision", "language", "audio"}
    classes = TABLE[task].classes
    assert {r["name"] for r in zoo.list_models(task=task) if r["default"]} == set(TASK_DEFAULTS[task].values())
    for modality, name in TASK_DEFAULTS[task].items():
        entry = get_entry(name)
        assert entry.dataset == task and entry.modality == modality
        m = load_model(name)
        assert m.trained and tuple(m.labels) == tuple(classes)
        card = (CHECKPOINTS / entry.artifact / "README.md").read_text()
        assert "Up axis: the entry expects clouds **y up**" in card
        if task == "kicad33":
            assert len(classes) == 33 and "license: cc-by-sa-4.0" in card and entry.license == "cc-by-sa-4.0"
            assert "data licence: CC-BY-SA-4.0 WITH KiCad-libraries-exception" in card
            assert "## Compared with baselines" in card and "| PointNeXt-S (from scratch) |" in card
            for baseline in ("linear probe", "from scratch"):  # a row, or the command that makes it
                assert f"| {baseline} |" in card or (f"Not yet run on this entry's recipe: " in card and
                                                    f"baseline-{baseline.replace(' ', '-')}-" in card)
