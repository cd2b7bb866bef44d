"""A real kill: `python train/run.py` as a subprocess, SIGKILLed in the middle of epoch 2, then `--resume`d.

The resumed run must end exactly where an uninterrupted run ends: same metrics, bit-identical adapter, one log row
per epoch and a loadable last.pt. (tests/test_train.py covers the in-process variant; this one is the OS-level
kill that leaves whatever was half-written on disk.)
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.tiny import write_scanobjectnn

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3
METRICS = ("best_epoch", "val_acc", "test_acc", "test_mean_class_acc", "test_acc_vote", "test_mean_class_acc_vote",
           "test_n", "epochs", "votes", "trainable_parameters")


@pytest.fixture
def scanobjectnn(tmp_path):
    # 160 training clouds: 144 train + 16 val, 36 steps of 4 per epoch, long enough to be killed inside one
    return write_scanobjectnn(tmp_path / "sonn", sizes=(("training", 160), ("test", 16)))


def command(root, out, *extra):
    return [sys.executable, str(ROOT / "train/run.py"), "--dataset", "scanobjectnn", "--data-root", str(root),
            "--backbone", "scratch:2d", "--epochs", str(EPOCHS), "--batch-size", "4", "--points", "128",
            "--votes", "1", "--output-dir", str(out), *extra]


def environment():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TQDM_MININTERVAL="0",
               ANY2POINT_PROGRESS="1")  # the progress bar in the log file: the kill watches its steps
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env["CUDA_VISIBLE_DEVICES"] = ""  # the same device (CPU) for all three runs: results must match exactly
    return env


def run(cmd, log, timeout=600):  # generous: a loaded 2-core machine may be several times slower
    with open(log, "w") as err:
        proc = subprocess.run(cmd, env=environment(), stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout,
                              cwd=ROOT)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{Path(log).read_text()[-3000:]}"
    return proc.stdout


PROGRESS = re.compile(r"epoch 2/%d:[^\r\n]*?\|\s*(\d+)/(\d+)" % EPOCHS)


def kill_in_epoch_2(cmd, out, log, timeout=600):
    """Start the run, wait until epoch 1 is checkpointed and epoch 2 has done a few steps, then SIGKILL it.
    -> the number of epoch-2 steps seen done before the kill."""
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, env=environment(), stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before it could be killed in epoch 2:\n"
                            f"{Path(log).read_text()[-3000:]}")
            done = [(int(a), int(b)) for a, b in PROGRESS.findall(Path(log).read_text(errors="replace"))]
            if (out / "last.pt").exists() and done and 2 <= done[-1][0] < done[-1][1] - 4:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                assert proc.returncode == -signal.SIGKILL
                return done[-1][0]
            time.sleep(0.02)
        pytest.fail(f"epoch 2 never started within {timeout} s:\n{Path(log).read_text()[-3000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path, scanobjectnn):
    full, killed = tmp_path / "full", tmp_path / "killed"
    run(command(scanobjectnn, full), tmp_path / "full.log")

    steps = kill_in_epoch_2(command(scanobjectnn, killed), killed, tmp_path / "killed.log")
    assert steps >= 2
    print(f"killed after {steps} steps of epoch 2")
    # killed inside epoch 2: the checkpoint and the log still say "after epoch 1", nothing of the final outputs
    ck = torch.load(killed / "last.pt", map_location="cpu", weights_only=True)
    assert ck["state"]["epoch"] == 1
    assert len((killed / "log.csv").read_text().splitlines()) == 2  # header + epoch 1
    assert not (killed / "result.json").exists() and not (killed / "entry").exists()

    stdout = run(command(scanobjectnn, killed, "--resume"), tmp_path / "resumed.log")
    assert "resumed from" in stdout and "after epoch 1" in stdout

    a, b = json.loads((full / "result.json").read_text()), json.loads((killed / "result.json").read_text())
    assert {k: a[k] for k in METRICS} == {k: b[k] for k in METRICS}

    sa, sb = load_file(full / "entry/adapter.safetensors"), load_file(killed / "entry/adapter.safetensors")
    assert sa.keys() == sb.keys() and len(sa) > 0
    assert all(torch.equal(sa[k], sb[k]) for k in sa), [k for k in sa if not torch.equal(sa[k], sb[k])][:5]

    rows = (killed / "log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    full_rows = (full / "log.csv").read_text().splitlines()
    col = rows[0].split(",")
    for r, f in zip(rows[1:], full_rows[1:]):  # same training curve (timings aside)
        r, f = dict(zip(col, r.split(","))), dict(zip(col, f.split(",")))
        assert all(r[k] == f[k] for k in ("epoch", "train_loss", "train_acc", "val_acc", "val_mean_class_acc", "lr"))

    last = torch.load(killed / "last.pt", map_location="cpu", weights_only=True)
    assert last["state"]["epoch"] == EPOCHS and set(last) >= {"model", "optimizer", "scheduler", "rng", "state"}
    full_last = torch.load(full / "last.pt", map_location="cpu", weights_only=True)
    assert all(torch.equal(last["model"][k], full_last["model"][k]) for k in full_last["model"])
