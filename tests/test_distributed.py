"""The distributed path: `accelerate launch` of train/run.py on two CPU processes (gloo), as CI can run it.

Two processes train a tiny model on a tiny folder dataset, write exactly one entry (the main process), evaluate each
test cloud exactly once (7 clouds, batches of 4 per process: DistributedSampler pads with a repeat that
gather_for_metrics must drop) and --resume continues from last.pt.

Note the launcher flags: with accelerate 1.x, `accelerate launch --cpu --num_processes 2` starts ONE process (--cpu
selects the simple launcher, which only goes multi-process through mpirun). Two local CPU processes take the
multi-process launcher (torchrun) with the CPU forced: `--multi_gpu` plus ACCELERATE_USE_CPU=true, no CUDA device
visible. The test checks the run really had two processes.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("accelerate")

from tests.tiny import sphere_cube_clouds  # noqa: E402
from benchmarks.app_load import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"train": 12, "val": 4, "test": 7}  # 7 = 2 processes x 4 per batch - 1: one padded repeat


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist") / "data"
    for split, n in SIZES.items():
        pts, labels = sphere_cube_clouds(n, 160, seed=n)
        for i, (p, y) in enumerate(zip(pts, labels)):
            d = root / split / ["sphere", "cube"][y]
            d.mkdir(parents=True, exist_ok=True)
            np.save(d / f"{split}{i}.npy", p)
    return root


def launch(data, out, *extra):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port()),
           str(ROOT / "train/run.py"), "--dataset", "folder", "--data-root", str(data), "--backbone", "scratch:2d",
           "--batch-size", "4", "--points", "128", "--votes", "2", "--output-dir", str(out), *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               ACCELERATE_USE_CPU="true", CUDA_VISIBLE_DEVICES="", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_two_processes_train_once_evaluate_once_and_resume(folder, tmp_path):
    out = tmp_path / "run"
    stdout = launch(folder, out, "--epochs", "2")
    result = json.loads((out / "result.json").read_text())
    assert result["processes"] == 2, result  # a launcher that fell back to one process would pass the rest
    assert result["test_n"] == SIZES["test"], result  # the padded repeat was dropped, nothing was lost
    assert stdout.count("entry written to") == 1, stdout
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["entry", "tb"]
    config = json.loads((out / "entry/config.json").read_text())
    assert config["metrics"]["test_acc"] == result["test_acc"]
    assert not list(out.rglob("*.tmp"))

    # every test cloud once: one process re-evaluating the entry cloud by cloud finds the same accuracy
    from train import evaluate as compare_runs
    correct, recorded = compare_runs.test_correct(out)[:2]
    from train.record import RunRecord  # the run's record lists the same test clouds as right, in dataset order
    record = RunRecord.load(out / "record.json")
    assert record.done and record.test_correct == [int(v) for v in correct], record.test_correct
    assert correct.shape == (SIZES["test"],) and recorded == result["test_acc"]
    assert abs(correct.mean() - result["test_acc"]) < 1e-6

    log = (out / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in log] == ["epoch", "1", "2"]
    stdout = launch(folder, out, "--epochs", "3", "--resume")
    assert "resumed from" in stdout and "after epoch 2" in stdout, stdout
    log = (out / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in log] == ["epoch", "1", "2", "3"]  # one header, no repeated epoch
    resumed = json.loads((out / "result.json").read_text())
    assert resumed["epochs"] == 3 and resumed["test_n"] == SIZES["test"] and resumed["processes"] == 2
    import torch
    assert torch.load(out / "last.pt", weights_only=True)["state"]["epoch"] == 3
