"""End-to-end training on tiny files in the official formats, on CPU, into zoo entries."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.tiny import sphere_cube_clouds, write_scanobjectnn
from train import run
from train.augment import augment, vote_logits
from train.engine import cosine_with_warmup
from train.record import RunRecord
from zoo import hub

ROOT = Path(__file__).resolve().parents[1]

QUICK = ["--backbone", "scratch:2d", "--epochs", "2", "--batch-size", "4", "--points", "128", "--votes", "2"]


shapes = sphere_cube_clouds


@pytest.fixture
def scanobjectnn(tmp_path):
    return write_scanobjectnn(tmp_path / "sonn")


@pytest.fixture
def modelnet(tmp_path):
    root = tmp_path / "mn40" / "modelnet40_normal_resampled"
    names = ["airplane", "bathtub"]
    (root / "modelnet40_shape_names.txt").parent.mkdir(parents=True)
    (root / "modelnet40_shape_names.txt").write_text("\n".join(names) + "\n")
    ids = {"train": [], "test": []}
    pts, labels = shapes(24, 200)
    for i, (p, y) in enumerate(zip(pts, labels)):
        shape_id = f"{names[y]}_{i + 1:04d}"
        (root / names[y]).mkdir(exist_ok=True)
        np.savetxt(root / names[y] / f"{shape_id}.txt", np.hstack([p, p]), delimiter=",", fmt="%.6f")
        ids["train" if i < 18 else "test"].append(shape_id)
    for split, lst in ids.items():
        (root / f"modelnet40_{split}.txt").write_text("\n".join(lst) + "\n")
    return root.parent


def train(tmp_path, *extra, name="run"):
    out = tmp_path / name
    result = run.main([*QUICK, "--output-dir", str(out), *extra])
    return out, result


@pytest.mark.parametrize("dataset", ["scanobjectnn", "modelnet40", "folder"])
def test_train_two_epochs_into_a_loadable_entry(tmp_path, dataset, scanobjectnn, modelnet, meshes):
    root = {"scanobjectnn": scanobjectnn, "modelnet40": modelnet, "folder": meshes}[dataset]
    out, result = train(tmp_path, "--dataset", dataset, "--data-root", str(root))
    log = (out / "log.csv").read_text().splitlines()
    assert len(log) == 3 and log[0].startswith("epoch,train_loss")
    assert 0 <= result["test_acc"] <= 1 and result["best_epoch"] in (1, 2)
    config = json.loads((out / "entry/config.json").read_text())
    assert config["metrics"]["test_acc"] == result["test_acc"]
    assert len(config["labels"]) == {"scanobjectnn": 15}.get(dataset, 2)  # ScanObjectNN: its 15 official names
    assert config["training"]["dataset"] == dataset
    card = (out / "entry/README.md").read_text()
    assert "test_acc" in card or "accuracy" in card.lower()

    from zoo import load_model
    model = load_model(str(out / "entry"))
    probs = model.predict(shapes(1, 300)[0][0])
    assert set(probs) == set(config["labels"]) and abs(sum(probs.values()) - 1) < 1e-5
    # the artifact holds only the trainable part
    state = load_file(out / "entry/adapter.safetensors")
    assert not any(k.startswith("backbone.") for k in state)


def test_kill_and_resume_matches_uninterrupted_run(tmp_path, scanobjectnn, monkeypatch):
    args = ["--dataset", "scanobjectnn", "--data-root", str(scanobjectnn), "--epochs", "3"]
    full_dir, full = train(tmp_path, *args, name="full")

    import train.engine as engine
    real_save, saves = engine._atomic_save, []

    def dying_save(obj, path):
        real_save(obj, path)
        saves.append(path.name)
        if path.name == "last.pt":
            raise KeyboardInterrupt  # "killed" right after the epoch-1 checkpoint
    monkeypatch.setattr(engine, "_atomic_save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, *args, name="killed")
    monkeypatch.setattr(engine, "_atomic_save", real_save)
    assert "last.pt" in saves
    with pytest.raises(SystemExit, match="--resume"):  # refuses to overwrite a run silently
        train(tmp_path, *args, name="killed")
    killed_dir, resumed = train(tmp_path, *args, "--resume", name="killed")

    for key in ("test_acc", "test_acc_vote", "val_acc", "best_epoch"):
        assert resumed[key] == full[key], key
    a, b = load_file(full_dir / "entry/adapter.safetensors"), load_file(killed_dir / "entry/adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (full_dir / "log.csv").read_text().splitlines()[1:] != []
    assert len((killed_dir / "log.csv").read_text().splitlines()) == 4  # header + 3 epochs, no duplicate


def test_resume_with_other_labels_is_refused(tmp_path, scanobjectnn, meshes):
    out, _ = train(tmp_path, "--dataset", "scanobjectnn", "--data-root", str(scanobjectnn), "--epochs", "1")
    # ScanObjectNN has 15 class names; the mesh folder has 2
    with pytest.raises(SystemExit, match="classes"):
        train(tmp_path, "--dataset", "folder", "--data-root", str(meshes), "--epochs", "2", "--resume")


def test_missing_dataset_is_one_clear_line(tmp_path):
    with pytest.raises(SystemExit) as err:
        train(tmp_path, "--dataset", "scanobjectnn", "--data-root", str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert msg.startswith("error:") and "\n" not in msg and "nowhere" in msg


def test_bad_config_file(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('epochz = 3\n')
    with pytest.raises(SystemExit, match="unknown key 'epochz'"):
        run.main(["--config", str(cfg)])
    cfg.write_text('epochs = "ten"\n')
    with pytest.raises(SystemExit, match="epochs must be an integer, got 'ten'"):
        run.main(["--config", str(cfg)])
    cfg.write_text('epochs = = 3\n')
    with pytest.raises(SystemExit, match="not valid TOML"):
        run.main(["--config", str(cfg)])


def test_set_overrides_any_key_in_toml_syntax():
    """--set KEY=VALUE reaches every recipe key and every model setting, is applied last, and is checked like
    the recipe file (a typo or a wrong type is one line)."""
    cfg = run.resolve(run.parse_args([
        "--dataset", "folder", "--epochs", "4", "--set", "epochs=7", "--set", "resample=true",
        "--set", "model.tokenizer=pointpn", "--set", "model.pointpn_stages=[256, 128]", "--set", "model.k=24",
        "--set", "model.guided_scale=0.7", "--set", 'name="my-run"']))
    assert (cfg.epochs, cfg.resample, cfg.name) == (7, True, "my-run")
    assert (cfg.model.tokenizer, cfg.model.pointpn_stages, cfg.model.k, cfg.model.guided_scale) == \
        ("pointpn", (256, 128), 24, 0.7)
    for bad, message in ((["model.tokenizr=pointpn"], "unknown Any2Point setting key 'tokenizr'"),
                         (["epochs=ten"], "epochs must be an integer, got 'ten'"),
                         (["model.tokenizer=threestage"], "tokenizer must be one of"),
                         (["resample"], "--set needs KEY=VALUE"), (["bogus=1"], "unknown key 'bogus'")):
        with pytest.raises(SystemExit, match=message):
            run.resolve(run.parse_args(["--dataset", "folder", *[x for kv in bad for x in ("--set", kv)]]))


@pytest.mark.parametrize("model_table,message", [
    ("guided_scael = 0.5", "unknown [model] key 'guided_scael' (known: num_points,"),
    ("guided_scale = \"big\"", "guided_scale must be a number, got 'big'"),
    ("pe = \"3d\"", "pe must be one of 'auto', 'none', '1d', '2d', got '3d'"),
    ("adapter = 1", "adapter must be a bool, got 1"),
])
def test_bad_model_setting_fails_before_anything_is_built(tmp_path, model_table, message):
    """The whole recipe is checked first: the data root does not exist, so reaching the dataset would say so."""
    cfg = tmp_path / "r.toml"
    cfg.write_text(f'dataset = "folder"\ndata_root = "{tmp_path / "nowhere"}"\n[model]\n{model_table}\n')
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "train/run.py"), "--config", str(cfg)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    elapsed = time.perf_counter() - t
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr and "nowhere" not in proc.stderr, proc.stderr
    assert elapsed < 20, f"took {elapsed:.1f} s"
    print(f"{model_table!r}: exit {proc.returncode} in {elapsed:.2f} s: {proc.stderr.strip()[:90]}")


@pytest.mark.parametrize("variant,extra", [("linear_probe", []), ("from_scratch", []), ("any2point", ["--pe", "none"]),
                                           ("any2point", ["--no-guided"]), ("random_backbone", ["--seed", "3"])])
def test_baselines_and_ablations(tmp_path, meshes, variant, extra):
    out, result = train(tmp_path, "--dataset", "folder", "--data-root", str(meshes), "--epochs", "1",
                        "--variant", variant, *extra)
    config = json.loads((out / "entry/config.json").read_text())
    assert config["variant"] == variant
    m = config["model"]
    if variant == "linear_probe":
        assert not m["adapter"] and not m["guided"]
    if variant == "from_scratch":
        assert not m["freeze_backbone"] and config["backbone"]["spec"] == "scratch:2d"
        state = load_file(out / "entry/adapter.safetensors")
        assert any(k.startswith("backbone.") for k in state)  # the scratch transformer is trained, so it ships
    if "--no-guided" in extra:
        assert not m["guided"]
    from zoo.registry import build_backbone, load_artifact
    from zoo.serving import ZooModel
    loaded = ZooModel(load_artifact(out / "entry"))  # checks the backbone's fingerprint (a control's: random)
    assert set(loaded.predict(shapes(1, 200)[0][0])) == set(config["labels"])
    if variant == "random_backbone":
        bb = config["backbone"]
        pretrained, info = build_backbone(bb["spec"])
        assert bb["random_init"] == 3 and bb["sha256"] != info["sha256"] and m["freeze_backbone"]
        assert "random weights (seed 3)" in (out / "entry/README.md").read_text()
        new = dict(loaded.backbone.model.named_parameters())
        for name, p in pretrained.model.named_parameters():
            assert not new[name].requires_grad
            if p.dim() >= 2:
                assert not torch.equal(new[name], p) and abs(new[name].std().item() - 0.02) < 0.005


def test_augment_is_seeded_and_keeps_up_axis():
    x = torch.randn(4, 50, 3)
    a = augment(x, torch.Generator().manual_seed(1), scale=(1.0, 1.0))
    b = augment(x, torch.Generator().manual_seed(1), scale=(1.0, 1.0))
    assert torch.equal(a, b)
    assert torch.allclose(a[..., 1], x[..., 1], atol=1e-6)  # rotation about y leaves y alone
    assert torch.allclose(a.norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_voting_averages_logits():
    class Sum(torch.nn.Module):
        def forward(self, p):
            return p.sum(dim=(1, 2)).unsqueeze(-1)
    x = torch.ones(2, 10, 3)
    assert torch.allclose(vote_logits(Sum(), x, votes=1), Sum()(x))
    v = vote_logits(Sum(), x, votes=50)
    assert not torch.allclose(v, Sum()(x)) and torch.allclose(v, Sum()(x), rtol=0.1)


def test_cosine_schedule_warms_up_then_decays():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = cosine_with_warmup(opt, 5, 20)
    lrs = []
    for _ in range(20):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.2) and lrs[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:])) and lrs[-1] < 0.05


def test_compare_runs_reevaluates_best_and_last_checkpoints(tmp_path, meshes):
    """train.evaluate reloads a run's entry (best on val: must reproduce result.json) or its last epoch."""
    from train import evaluate as compare_runs
    out, result = train(tmp_path, "--dataset", "folder", "--data-root", str(meshes), "--epochs", "3")
    best, recorded, model, groups = compare_runs.test_correct(out)
    assert model.num_trainable() == result["trainable_parameters"]
    assert best.shape == (4,) and recorded == result["test_acc"] and abs(best.mean() - recorded) < 1e-6
    assert groups == ["0", "1", "2", "3"]  # a folder dataset has no families: each test model is its own group
    from train.record import RunRecord  # the run's record: its key as fields, the same test models right
    rec = RunRecord.load(out / "record.json")
    assert rec.done and (rec.benchmark, rec.method, rec.ablation, rec.seed, rec.fold) == ("folder", "any2point", None, 0, None)
    assert rec.test_correct == [int(v) for v in best] and rec.result["test_acc"] == result["test_acc"]
    last, _, _, _ = compare_runs.test_correct(out, checkpoint="last")
    assert last.shape == (4,) and set(np.unique(last).tolist()) <= {0.0, 1.0}
    (out / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):
        compare_runs.test_correct(out, checkpoint="last")


def test_official_recipe_items_resample_and_no_decay_groups(tmp_path, meshes):
    """resample: each step a fresh subset of an FPS pool (official 1,200 of 2,048 -> 1,024), eval a fixed FPS;
    decay_all=False: no weight decay on biases, norm weights and the cls token."""
    from train.augment import resample
    from train.engine import param_groups
    pts = torch.rand(2, 300, 3, generator=torch.Generator().manual_seed(0))
    a = resample(pts, 64, torch.Generator().manual_seed(1))
    b = resample(pts, 64, torch.Generator().manual_seed(2))
    assert a.shape == (2, 64, 3) and not torch.equal(a, b)
    member = (a[0][:, None, :] == pts[0][None]).all(-1).any(-1)
    assert member.all()  # every resampled point is a point of the cloud
    assert torch.equal(resample(pts, 64, train=False), resample(pts, 64, train=False))
    from tests.tiny import tiny_model
    m = tiny_model()
    groups = param_groups(m, 0.05, decay_all=False)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert all(p.dim() >= 2 for p in groups[0]["params"]) and any(p is m.cls_token for p in groups[1]["params"])
    assert sum(p.numel() for g in groups for p in g["params"]) == m.num_trainable()
    cfg = tmp_path / "r.toml"
    cfg.write_text("resample = true\ndecay_all = false\n")
    out, result = train(tmp_path, "--config", str(cfg), "--dataset", "folder", "--data-root", str(meshes),
                        "--points", "64", "--epochs", "1")
    training = json.loads((out / "entry/config.json").read_text())["training"]
    assert training["resample"] is True and training["decay_all"] is False and result["test_n"] == 4


def test_init_from_an_entry_starts_from_its_weights_with_a_fresh_classifier(tmp_path, meshes):
    """--init-from: the entry's backbone, structure and points start the run, every trained tensor is the entry's
    except the classifier layer (fresh when the classes differ, the entry's when they are the same), the flags still
    change the recipe, and what cannot fit is one line."""
    src, _ = train(tmp_path, "--dataset", "folder", "--data-root", str(meshes), "--epochs", "1",
                   "--set", "model.tokenizer_dim=24", name="src")
    credits = dict(attribution=["2 models by A. Maker (CC-BY-3.0)"], data_licence="CC-BY-3.0", license="cc-by-sa-4.0")
    hub.rewrite_card(src / "entry", **credits)  # as a built benchmark's entry carries them
    entry = json.loads((src / "entry/config.json").read_text())
    saved = load_file(src / "entry/adapter.safetensors")
    relabelled = tmp_path / "relabelled"  # the same clouds under other class names: another task
    for split in ("train", "val", "test"):
        for old, new in (("box", "crate"), ("ball", "orb")):
            (relabelled / split).mkdir(parents=True, exist_ok=True)
            (meshes / split / old).rename(relabelled / split / new)

    base = ["--dataset", "folder", "--data-root", str(relabelled), "--init-from", str(src / "entry")]
    cfg = run.resolve(run.parse_args([*base, "--epochs", "3"]))
    assert (cfg.backbone, cfg.points, cfg.epochs) == ("scratch:2d", 128, 3)
    assert cfg.model.to_dict() == entry["model"]  # tokenizer_dim 24 came from the entry, not the defaults
    model, _ = run.build_model(cfg, ["crate", "orb"])
    last = f"head.{len(model.head) - 1}."
    for key, value in model.trainable_state_dict().items():
        assert torch.equal(value, saved[key]) != key.startswith(last), key  # the classifier alone starts fresh
    same = run.build_model(cfg, entry["labels"])[0]
    assert all(torch.equal(v, saved[k]) for k, v in same.trainable_state_dict().items())  # same task: all of it

    for extra, message in ((["--set", "model.tokenizer_dim=32"], "do not fit this model"),
                           (["--backbone", "packaged:minilm-l6"], "was trained on backbone scratch:2d"),
                           (["--variant", "linear_probe"], "starts an Any2Point run")):
        with pytest.raises(SystemExit, match=message):
            cfg = run.resolve(run.parse_args([*base, *extra]))
            run.build_model(cfg, ["crate", "orb"])
    with pytest.raises(SystemExit, match="--init-from .*nowhere"):
        run.resolve(run.parse_args([*base[:5], str(tmp_path / "nowhere")]))

    out = tmp_path / "tuned"
    result = run.main([*QUICK, *base, "--epochs", "1", "--output-dir", str(out), "--record", str(tmp_path / "r.json")])
    tuned = json.loads((out / "entry/config.json").read_text())
    assert tuned["labels"] == ["crate", "orb"] and tuned["training"]["init_from"] == str(src / "entry")
    # the start's version, not only its name: an entry is retrained under the same name
    assert tuned["training"]["init_from_sha256"] == entry["adapter"]["sha256"]
    assert RunRecord.load(tmp_path / "r.json").entry["init_from_sha256"] == entry["adapter"]["sha256"]
    assert tuned["metrics"]["test_acc"] == result["test_acc"]
    card = (out / "entry/README.md").read_text()
    assert "- init_from: " in card  # the card says where it started, and credits the data the start learnt from
    assert tuned["card"]["attribution"] == [f"2 models by A. Maker (CC-BY-3.0), through {src / 'entry'}"]
    assert tuned["card"]["data_licence"] == f"started from {src / 'entry'}, whose data: CC-BY-3.0"
    assert tuned["card"]["license"] == "cc-by-sa-4.0" and "A. Maker" in card and "license: cc-by-sa-4.0" in card

    # every card shows the command; it must stay one train.run understands
    line = next(x for x in (src / "entry/README.md").read_text().splitlines() if "--init-from" in x)
    args = run.parse_args(line.split()[3:])
    assert line.startswith("python -m train.run ") and (args.init_from, args.dataset) == ("src", "folder")


def test_a_run_record_reruns_as_it_ran(tmp_path, meshes, capsys):
    """--config RECORD.json: the settings the run trained with (its --set changes included), not the recipe of today
    or the start entry's structure; a start retrained since is said, a file that is no record is one line."""
    src, _ = train(tmp_path, "--dataset", "folder", "--data-root", str(meshes), "--epochs", "1", name="src")
    record = tmp_path / "r.json"
    run.main([*QUICK, "--dataset", "folder", "--data-root", str(meshes), "--init-from", str(src / "entry"),
              "--epochs", "1", "--set", "lr=3e-4", "--set", "model.adapter_dropout=0.2", "--output-dir",
              str(tmp_path / "tuned"), "--record", str(record)])
    ran = RunRecord.load(record)
    again = run.run_config_dict(run.resolve(run.parse_args(["--config", str(record)])))
    assert again == {**ran.run_config, "output_dir": f"runs/rerun/{ran.name}"}
    assert (again["lr"], again["model"]["adapter_dropout"]) == (3e-4, 0.2)  # the entry's own 0.0 does not win
    assert "retrained" not in capsys.readouterr().err

    moved = json.loads(record.read_text())
    moved["entry"]["init_from_sha256"] = "0" * 64  # as if the start entry had been retrained since the run
    (tmp_path / "old.json").write_text(json.dumps(moved))
    run.resolve(run.parse_args(["--config", str(tmp_path / "old.json")]))
    assert "has been retrained since" in capsys.readouterr().err
    (tmp_path / "other.json").write_text('{"name": "x"}')
    with pytest.raises(SystemExit, match="not a run record"):
        run.resolve(run.parse_args(["--config", str(tmp_path / "other.json")]))
