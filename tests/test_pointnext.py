"""The PointNeXt-S baseline: pyg-lib stand-ins held to brute force, the few-shot draw, a tiny run into an entry."""
import json

import numpy as np
import pytest
import torch

from zoo import pointnext as pn


def packed(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(sum(sizes), 3, generator=g) * 2 - 1
    batch = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    return x, batch


def brute_fps(x, batch, ratio):
    """pyg-lib's rule, one point at a time: from each sample's first point, the farthest from those picked."""
    out = []
    for b in batch.unique().tolist():
        idx = (batch == b).nonzero().flatten()
        pts = x[idx].double()
        picks, dist = [0], ((pts - pts[0]) ** 2).sum(1)
        for _ in range(int(np.ceil(len(idx) * ratio)) - 1):
            nxt = int(dist.argmax())
            picks.append(nxt)
            dist = torch.minimum(dist, ((pts - pts[nxt]) ** 2).sum(1))
        out += idx[picks].tolist()
    return out


def brute_neighbours(x, y, bx, by, keep):
    """{y index: [x indices]}: every x of y's sample sorted by distance, then `keep(sorted_distances)` of them."""
    out = {}
    for j in range(len(y)):
        cand = (bx == by[j]).nonzero().flatten().tolist()
        d = {i: float(((x[i].double() - y[j].double()) ** 2).sum()) for i in cand}
        order = sorted(cand, key=d.get)
        out[j] = order[:keep([d[i] for i in order])]
    return out


def as_lists(edges, n):
    out = {j: [] for j in range(n)}
    for j, i in edges.t().tolist():
        out[j].append(i)
    return out


@pytest.mark.parametrize("sizes", [[64, 64, 64], [50, 80, 33]])  # equal sizes run vectorised, unequal per sample
def test_fps_standin_matches_brute_force(sizes):
    x, batch = packed(sizes)
    got = pn.fps(x, batch, ratio=0.25, random_start=False)
    assert got.tolist() == brute_fps(x, batch, 0.25)
    assert len(got) == sum(int(np.ceil(n * 0.25)) for n in sizes)


def test_fps_random_start_is_seeded_and_stays_in_its_sample():
    x, batch = packed([40, 40])
    torch.manual_seed(3)
    a = pn.fps(x, batch, ratio=0.5, random_start=True)
    torch.manual_seed(3)
    assert torch.equal(a, pn.fps(x, batch, ratio=0.5, random_start=True))
    assert (batch[a[:20]] == 0).all() and (batch[a[20:]] == 1).all()


@pytest.mark.parametrize("sizes", [[60, 60], [45, 70]])
def test_knn_standin_matches_brute_force(sizes):
    x, bx = packed(sizes, seed=1)
    y, by = packed([s // 3 for s in sizes], seed=2)
    got = as_lists(pn.knn(x, y, 5, bx, by), len(y))
    assert got == brute_neighbours(x, y, bx, by, lambda d: 5)


@pytest.mark.parametrize("sizes", [[60, 60], [45, 70]])
def test_radius_standin_matches_brute_force(sizes):
    x, bx = packed(sizes, seed=1)
    y, by = packed([s // 3 for s in sizes], seed=2)
    r = 0.5
    # under the cap: exactly the points within r (pyg-lib gives the same set); over it: the nearest `cap` of them
    for cap in (1000, 4):
        got = as_lists(pn.radius(x, y, r, bx, by, max_num_neighbors=cap), len(y))
        want = brute_neighbours(x, y, bx, by, lambda d: min(cap, sum(v <= r * r for v in d)))
        assert got == want
    assert any(len(v) > 4 for v in as_lists(pn.radius(x, y, r, bx, by, max_num_neighbors=1000), len(y)).values())


def test_standins_replace_the_missing_pyg_lib_ops():
    import importlib.util

    import torch_geometric.nn.pool as pool
    installed = pn.use_standins()
    assert installed == (importlib.util.find_spec("pyg_lib") is None)
    if installed:
        assert pool.fps is pn.fps and pool.knn is pn.knn and pool.radius is pn.radius


def test_pointnext_forward_and_eval_determinism():
    torch.manual_seed(0)
    m = pn.PointNeXt(5, labels=list("abcde")).eval()
    x = torch.rand(3, 256, 3) * 2 - 1
    out = m(x)
    assert out.shape == (3, 5) and torch.isfinite(out).all()
    torch.testing.assert_close(m(x), out, rtol=0, atol=0)
    # every parameter trains; the state a checkpoint keeps carries the BN statistics too
    assert m.num_trainable() == sum(p.numel() for p in m.parameters()) > 1e6
    assert any("running_mean" in k for k in m.trainable_state_dict())
    with pytest.raises(ValueError, match="unknown PointNeXt architecture"):
        pn.PointNeXt(5, arch="pointnext-huge")


def test_few_shot_draws_k_per_class_from_distinct_groups(tmp_path):
    from train.data.built import BuiltDataset, few_shot
    n = 60
    np.save(tmp_path / "points.npy", np.random.default_rng(0).random((n, 16, 3), dtype=np.float32))
    targets = np.repeat([0, 1, 2], 20)
    np.save(tmp_path / "labels.npy", targets)
    rows = [{"family": f"c{t}-f{i % 4}" if t < 2 else f"c2-f{i % 2}"} for i, t in enumerate(targets)]
    ds = BuiltDataset(tmp_path, list(range(n)), labels=["a", "b", "c"], rows=rows, group_of=lambda r: r["family"])
    few = few_shot(ds, 3, seed=0)
    assert len(few) == 9 and np.bincount(few.targets).tolist() == [3, 3, 3]
    for c in (0, 1):  # four families each: three distinct ones
        assert len({g for g, t in zip(few.groups, few.targets) if t == c}) == 3
    assert len({g for g, t in zip(few.groups, few.targets) if t == 2}) == 2  # only two: both, then another model
    again, other = few_shot(ds, 3, seed=0), few_shot(ds, 3, seed=1)
    assert [r["family"] for r in again.manifest] == [r["family"] for r in few.manifest]
    assert np.array_equal(again.points, few.points) and not np.array_equal(other.points, few.points)
    assert len(few_shot(ds, 50, seed=0)) == n  # fewer than k: the class keeps all
    with pytest.raises(ValueError, match="shots must be at least 1"):
        few_shot(ds, 0, seed=0)


def test_variant_pointnext_trains_and_exports_offline(tmp_path, meshes):
    from train import run
    root = meshes
    out = tmp_path / "pn"
    result = run.main(["--dataset", "folder", "--data-root", str(root), "--variant", "pointnext", "--points", "128",
                       "--epochs", "1", "--batch-size", "4", "--votes", "1", "--output-dir", str(out)])
    assert 0.0 <= result["test_acc"] <= 1.0 and result["trainable_parameters"] > 1e6
    record = json.loads((out / "record.json").read_text())
    assert (record["method"], record["backbone"], record["status"]) == ("pointnext", "pointnext-sm", "done")
    config = json.loads((out / "entry" / "config.json").read_text())
    assert config["variant"] == "pointnext" and config["labels"] == ["ball", "box"]
    model = pn.load_pointnext(out / "entry")
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    ref = pn.PointNeXt(2, labels=["ball", "box"])
    ref.load_trainable_state_dict(best)
    x = torch.rand(2, 128, 3) * 2 - 1
    torch.testing.assert_close(model(x), ref.eval()(x), rtol=0, atol=0)


def test_shots_needs_a_built_benchmark(tmp_path, meshes):
    from train import run
    with pytest.raises(SystemExit, match="--shots needs a built benchmark"):
        run.main(["--dataset", "folder", "--data-root", str(meshes), "--variant", "pointnext", "--points", "64",
                  "--epochs", "1", "--shots", "2", "--output-dir", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="shots must be at least 1"):
        run.main(["--dataset", "folder", "--data-root", str(meshes), "--shots", "0", "--output-dir", str(tmp_path)])
