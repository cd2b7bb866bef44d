"""Rebuild a finished run's test data and model, and say which test models it gets right (one pass, as the run
evaluated them). Used to check a run against its record and to measure a trained entry in new conditions."""
import dataclasses
import json
from pathlib import Path

import torch


def test_setup(run_dir=None, entry=None, cfg=None):
    """-> (RunConfig, test dataset, bootstrap groups, the entry's model) of a run folder, or of an entry folder
    `entry` trained with the run config dict `cfg`."""
    from train.run import RunConfig, build_datasets, check_run_config
    from zoo.registry import load_artifact
    cfg = cfg or json.loads((Path(run_dir) / "run_config.json").read_text())
    known = {f.name for f in dataclasses.fields(RunConfig)}
    cfg = RunConfig(**check_run_config({k: v for k, v in cfg.items() if k in known}))
    test = build_datasets(cfg)[0]["test"]
    groups = [str(g) for g in getattr(test, "groups", range(len(test)))]
    return cfg, test, groups, load_artifact(entry or Path(run_dir) / "entry")


@torch.no_grad()
def correct_on(model, test, cfg, batch=16):
    """Per-test-model correctness (0/1 floats) of `model` on the dataset `test`, one pass, as the run evaluated it."""
    from train.augment import resample
    correct = []
    for i in range(0, len(test), batch):
        pts, y = zip(*(test[j] for j in range(i, min(i + batch, len(test)))))
        pts = torch.stack([torch.as_tensor(p) for p in pts]).float()
        pred = model(resample(pts, cfg.points, train=False) if cfg.resample else pts).argmax(-1)
        correct.append((pred == torch.tensor(y)).float())
    return torch.cat(correct).numpy()


@torch.no_grad()
def test_correct(run_dir, batch=16, checkpoint="best"):
    """-> (per-test-model correctness, the test accuracy result.json records, the model, the bootstrap groups) of a
    run folder. checkpoint: "best" (its entry, best on val) or "last" (the last epoch's trainable state)."""
    run_dir = Path(run_dir)
    cfg, test, groups, model = test_setup(run_dir)
    if checkpoint == "last":
        model.load_trainable_state_dict(torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["model"])
    recorded = json.loads((run_dir / "result.json").read_text())["test_acc"]
    return correct_on(model, test, cfg, batch), recorded, model, groups
