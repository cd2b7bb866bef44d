"""Serving around the module: order-invariant subsampling (library, CLI, app), the guided adapters' reference path
on the shipped entries, and the reader's worker process (what it imports, what it says when it dies)."""
import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.model import Trace
from core.points import canonical_sample
from zoo.files import PointCloudError, read_points, write_points

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.name for p in (ROOT / "zoo" / "checkpoints").iterdir() if (p / "config.json").is_file())


def capsule_cloud(n=3000, seed=0):
    """n surface points of a capsule (an object with symmetric, tied distances), float32."""
    import trimesh
    mesh = trimesh.creation.capsule(height=1.0, radius=0.3, count=[12, 12])
    return trimesh.sample.sample_surface(mesh, n, seed=seed)[0].astype(np.float32)


def permutations(cloud, k=5):
    rng = np.random.default_rng(1)
    return [cloud[rng.permutation(len(cloud))] for _ in range(k)]


# --- the sampling rule ---------------------------------------------------------------------------------------------
def test_canonical_sample_ignores_the_order_even_with_ties_and_duplicates():
    corners = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T.astype(np.float32)
    cloud = np.concatenate([corners, corners, np.zeros((5, 3), np.float32), -np.zeros((3, 3), np.float32),
                            np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32) * 0.3])
    want = canonical_sample(cloud, 64)
    assert want.shape == (64, 3) and want.dtype == np.float32
    for p in permutations(cloud, 10):
        got = canonical_sample(p, 64)
        assert got.tobytes() == want.tobytes()  # bit for bit, signed zeros included
    assert np.array_equal(canonical_sample(want, 64), want)  # a reduced cloud stays as it is
    assert len(np.unique(canonical_sample(corners, 8), axis=0)) == 8  # every corner, none twice


def test_stable_subset_ignores_the_order():
    from zoo.files import stable_subset
    cloud = np.random.default_rng(0).normal(size=(5000, 3)).astype(np.float32)
    want = stable_subset(cloud, 700)
    assert want.shape == (700, 3) and len(np.unique(want, axis=0)) == 700
    for p in permutations(cloud, 3):
        assert np.array_equal(stable_subset(p, 700), want)


# --- library, CLI and app: a 3,000-point cloud and 5 permutations of it ---------------------------------------------
@pytest.fixture(scope="module")
def clouds():
    cloud = capsule_cloud()
    return [cloud, *permutations(cloud)]


@pytest.mark.parametrize("name", SHIPPED)
def test_library_is_order_invariant_for_every_shipped_entry(name, clouds):
    from zoo import load_model
    m = load_model(name)
    with torch.no_grad():
        logits = [m(m.cloud(c)[None])[0] for c in clouds]
    embeds = [m.embed(c) for c in clouds]
    probs = [m.predict(c) for c in clouds]
    for lg, e, p in zip(logits[1:], embeds[1:], probs[1:]):
        assert (lg - logits[0]).abs().max() <= 1e-5
        assert np.abs(e - embeds[0]).max() <= 1e-5
        assert list(p) == list(probs[0]) and max(abs(p[k] - probs[0][k]) for k in p) <= 1e-5
    batch = m.predict_batch(clouds, up="auto")
    assert all(b == pytest.approx(batch[0], abs=1e-5) for b in batch[1:])


def test_cli_is_order_invariant_for_every_shipped_entry(tmp_path, clouds):
    files = [str(write_points(tmp_path / f"cloud{i}.npy", c)) for i, c in enumerate(clouds)]
    out = subprocess.run([sys.executable, "-m", "zoo", "predict", *files, "--model", *SHIPPED, "--top-k", "0",
                          "--format", "json", "--no-progress"], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == len(files) * len(SHIPPED) and all(r.get("error") is None for r in rows)
    for name in SHIPPED:
        mine = [r["labels"] for r in rows if r["model"] == name]
        for probs in mine[1:]:
            assert list(probs) == list(mine[0]) and max(abs(probs[k] - mine[0][k]) for k in probs) <= 1e-5


def test_app_is_order_invariant_for_every_shipped_entry(tmp_path, clouds):
    import app
    files = [str(write_points(tmp_path / f"cloud{i}.npy", c)) for i, c in enumerate(clouds)]
    for task in app.TASKS:
        picked = [app.TASK_DEFAULTS[task][m] for m in app.MODALITIES]
        assert set(picked) <= set(SHIPPED)
        results = [app.predict(f, *picked) for f in files]
        for res in results[1:]:
            for name in picked:
                assert max(abs(res[name][k] - results[0][name][k]) for k in res[name]) <= 1e-5
        # the UI's pass: labels and views from one forward per model, the same for every order
        seen = [app.classify(app.read_upload(f), picked, "y", explain=True) for f in files[:2]]
        for name in picked:
            assert seen[0][name][0] == pytest.approx(seen[1][name][0], abs=1e-5)
            assert seen[0][name][0] == pytest.approx(results[0][name], abs=1e-5)  # /predict's answer, same pass
            assert torch.equal(seen[0][name][3]["cells"], seen[1][name][3]["cells"])


# --- the guided adapters' reference path ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", SHIPPED)
def test_guided_fast_path_equals_the_reference_on_shipped_entries(name):
    from zoo import load_model
    m = load_model(name)
    folder = ROOT / "examples" / ("components" if name.endswith("kicad33") else "")
    paths = sorted(folder.glob("*.ply"))[:3]
    assert paths and m.guided is not None
    pts = torch.stack([m.cloud(read_points(p)) for p in paths])
    calls = []  # every block's (x, context, block) of one forward: the entry's real inputs to the adapter
    hook = m.guided.register_forward_pre_hook(lambda mod, args: calls.append(args))
    try:
        with torch.no_grad():
            fast, ref = Trace(), Trace(reference=True)
            a = m(pts, fast)
            hook.remove()
            b = m(pts, ref)
    finally:
        hook.remove()
    # whole model in fp32: the two paths round differently, logits of magnitude ~10 agree to fp32's resolution
    assert (a - b).abs().max() <= 1e-5
    assert len(fast.view_weights) == len(ref.view_weights) == len(m.backbone.blocks) == len(calls)
    assert max((w - v).abs().max() for w, v in zip(fast.view_weights, ref.view_weights)) <= 2e-6
    # the algebra itself, block by block on those inputs, in fp64: the fast path is the reference
    guided = copy.deepcopy(m.guided).double().eval()
    with torch.no_grad():
        for x, ctx, block in calls:
            got = guided.forward_fast(x.double(), guided.prepare(ctx.groups), block)
            want = guided.forward_reference(x.double(), guided.prepare(ctx.groups, reference=True), block)
            assert (got - want).abs().max() <= 2e-6


# --- the reader's worker process -------------------------------------------------------------------------------------
MAIN = """
import os, sys
with open(os.environ["MARKER"], "a") as f:
    f.write(f"main {os.getpid()}\\n")
import gradio  # the fake one below: it writes its importer's pid too
if __name__ == "__main__":
    from zoo.files import read_points
    for _ in range(2):
        pts = read_points(sys.argv[1], timeout_s=60, max_memory_mb=1000)
    print(os.getpid(), pts.shape)
"""


def test_the_reader_worker_imports_neither_gradio_nor_the_app(tmp_path):
    """A main module standing in for the app (it imports 'gradio'): the worker that reads the upload must not run
    it again, nor import gradio (the fake package on the path records every process that imports it)."""
    fake = tmp_path / "fake" / "gradio"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("import os\nwith open(os.environ['MARKER'], 'a') as f:\n"
                                      "    f.write(f'gradio {os.getpid()}\\n')\n")
    (tmp_path / "server_app.py").write_text(MAIN)
    mesh = tmp_path / "m.stl"
    import trimesh
    trimesh.creation.box().export(mesh)
    marker = tmp_path / "marker.txt"
    env = dict(os.environ, MARKER=str(marker), PYTHONPATH=os.pathsep.join([str(tmp_path / "fake"), str(ROOT)]))
    out = subprocess.run([sys.executable, str(tmp_path / "server_app.py"), str(mesh)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    parent = out.stdout.split()[0]
    lines = marker.read_text().split()
    assert lines == ["main", parent, "gradio", parent], f"imported elsewhere: {lines}"


def _children(pid):
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def test_a_reader_that_dies_says_how(tmp_path):
    import zoo.files
    slow = tmp_path / "slow.xyz"
    np.savetxt(slow, np.random.default_rng(0).normal(size=(400_000, 3)), fmt="%.6f")  # seconds of parsing
    errors = []

    def read():
        try:
            read_points(slow, timeout_s=60)
        except PointCloudError as err:
            errors.append(str(err))

    worker = threading.Thread(target=read)
    worker.start()
    server = zoo.files._server()[0].pid
    deadline = time.time() + 30
    while len(_children(server)) < 2 and time.time() < deadline:  # the reader at work, and the next spare
        time.sleep(0.01)
    for pid in _children(server):
        os.kill(pid, signal.SIGSEGV)
    worker.join(60)
    assert len(errors) == 1 and "SIGSEGV" in errors[0] and "memory" not in errors[0], errors
    small = tmp_path / "small.npy"
    np.save(small, np.ones((10, 3), np.float32) * np.arange(10)[:, None])
    assert read_points(small, timeout_s=60).shape == (10, 3)  # the server goes on (its spare reader died too)


def test_a_spare_that_cannot_take_the_request_is_replaced(tmp_path):
    # A spare that is dying (or stopped) when the request comes can still accept the send; without its receipt the
    # request would wait out its deadline there (stopped) or be reported as the file's crash (dying).
    import zoo.files
    small = tmp_path / "small.npy"
    np.save(small, np.ones((10, 3), np.float32) * np.arange(10)[:, None])
    assert read_points(small, timeout_s=60).shape == (10, 3)  # the server is up, its next spare forked
    server = zoo.files._server()[0].pid
    # the last reader reaped: only the spare. Seen twice a second apart: on a loaded machine the lone child can be
    # the reader that has just answered, before the server has forked the next spare
    deadline, seen = time.time() + 30, None
    while time.time() < deadline:
        now = _children(server)
        if len(now) == 1 and now == seen:
            break
        seen = now if len(now) == 1 else None
        time.sleep(1.0 if seen else 0.01)
    (spare,) = _children(server)
    os.kill(spare, signal.SIGSTOP)
    start = time.time()
    assert read_points(small, timeout_s=30).shape == (10, 3)
    assert time.time() - start < 15  # the server gave up on the stopped spare (5 s), not the read's deadline
    assert spare not in _children(server)  # killed and reaped
