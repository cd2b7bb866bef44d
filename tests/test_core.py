import math

import pytest
import torch

from core.adapter import GuidedAdapter
from core.backbones import wrap
from zoo.specs import build_backbone
from core.points import fps_steps, farthest_point_sample, knn, normalize
from core.projection import (VirtualProjection, cell_ids_1d, project_1d, project_2d, rotate_views, sample_1d,
                             sample_2d, view_rotations, voxel_ids)
from core.model import Trace
from tests.tiny import TINY, shape_cloud, tiny_model
from zoo.serving import ZooModel

FAMILIES = list(TINY)


def clouds(b=3, n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, 3, generator=g) * torch.tensor([1.0, 0.5, 2.0])


# --- points ----------------------------------------------------------------------------------------------------
def test_normalize_unit_sphere_per_sample():
    x = clouds() * torch.tensor([1.0, 10.0, 100.0])[:, None, None] + 5
    y = normalize(x)
    assert torch.allclose(y.mean(1), torch.zeros(3, 3), atol=1e-5)
    assert torch.allclose(y.norm(dim=-1).amax(1), torch.ones(3), atol=1e-6)


def test_fps_spreads_points_and_is_order_independent():
    x = clouds(2, 500)
    idx = farthest_point_sample(x, 16)
    assert idx.shape == (2, 16) and all(len(set(r.tolist())) == 16 for r in idx)
    perm = torch.randperm(500)
    idx_p = farthest_point_sample(x[:, perm], 16)
    assert torch.equal(x[torch.arange(2)[:, None], idx], x[:, perm][torch.arange(2)[:, None], idx_p])
    # the first pick is the point farthest from the centroid
    far = (x - x.mean(1, keepdim=True)).norm(dim=-1).argmax(1)
    assert torch.equal(idx[:, 0], far)


def test_fps_numpy_and_torch_loops_pick_the_same_points():
    """CPU runs the FPS loop in numpy (cheaper per step), other devices in torch: the picks must not differ."""
    dup = torch.zeros(1, 12, 3)
    dup[0, 7] = 1.0  # mostly duplicates: every pick after the second is among points at distance 0
    for x in (normalize(clouds(3, 300)), normalize(clouds(1, 2048)), dup):
        n = min(64, x.shape[1])
        got = farthest_point_sample(x, n)
        ref = fps_steps(torch, x.transpose(1, 2).contiguous(), n)
        assert torch.equal(got, ref)
        assert all(len(set(r.tolist())) == n for r in got)  # never a point twice


def test_knn_matches_bruteforce():
    x = clouds(2, 100)
    q = x[:, :5]
    idx = knn(q, x, 4)
    d = ((q[:, :, None] - x[:, None]) ** 2).sum(-1)
    assert torch.equal(idx, d.argsort(-1)[..., :4])
    assert torch.equal(idx[..., 0], torch.arange(5).expand(2, 5))  # each query's nearest is itself


# --- projection --------------------------------------------------------------------------------------------------
def test_views_are_rotations():
    r = view_rotations()
    assert r.shape == (6, 3, 3)
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(6, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(r), torch.ones(6), atol=1e-6)


@pytest.mark.parametrize("distance", [1.4, 1.8, 3.0])
def test_unit_sphere_fills_the_image_plane(distance):
    # points on the sphere's silhouette land on the plane's edge, the centre on the centre
    theta = math.asin(1 / distance)
    edge = torch.tensor([[math.cos(theta), 0.0, -math.sin(theta)]])  # tangent point seen from the camera
    uv = project_2d(edge.reshape(1, 1, 1, 3), distance)
    assert abs(abs(uv[0, 0, 0, 0].item()) - 1) < 1e-5
    assert torch.equal(project_2d(torch.zeros(1, 1, 1, 3), distance), torch.zeros(1, 1, 1, 2))
    pts = normalize(clouds(2, 400))
    uv = project_2d(rotate_views(pts), distance)
    assert uv.abs().max() <= 1


def test_1d_positions_are_per_sample():
    a, b = normalize(clouds(1, 64, seed=1)), normalize(clouds(1, 64, seed=2)) * 0.1
    alone = project_1d(rotate_views(a))
    together = project_1d(rotate_views(torch.cat([a, b])))
    assert torch.equal(alone[:, 0], together[:, 0])
    assert alone.amin() == 0 and alone.amax() == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_pe_sampling_reproduces_pretrained_table(family):
    bb = wrap(TINY[family]())
    table = bb.pos_table()
    if bb.pos_kind == "2d":
        h, w, c = table.shape
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        uv = torch.stack([(2 * cols + 1) / w - 1, (2 * rows + 1) / h - 1], dim=-1).float()  # patch centres
        got = sample_2d(table, uv)
    else:
        got = sample_1d(table, torch.arange(table.shape[0]).float())
    assert (got - table).abs().max().item() <= 1e-6
    # and the table really is the model's own weights, not a copy
    assert table.data_ptr() in {p.data_ptr() for p in bb.parameters()} or table._base is not None


def test_pe_1d_interpolates_linearly():
    table = torch.randn(10, 4)
    assert torch.allclose(sample_1d(table, torch.tensor([2.25])), 0.75 * table[2] + 0.25 * table[3], atol=1e-6)


def test_groups_voxels_and_cells():
    centres = torch.tensor([[[0.0, 0, 0], [0.05, 0, 0], [0.9, 0, 0]]])
    vox, n = voxel_ids(centres, voxel=0.12)
    assert n == 2 and vox[0, 0] == vox[0, 1] != vox[0, 2]
    # two samples never share a voxel id
    vox2, n2 = voxel_ids(torch.cat([centres, centres]), voxel=0.12)
    assert n2 == 4 and set(vox2[0].tolist()).isdisjoint(vox2[1].tolist())
    t = torch.tensor([0.0, 0.01, 0.5, 1.0]).reshape(1, 1, 4)
    cells, n = cell_ids_1d(t, num_cells=10)
    assert n == 3 and cells[0, 0, 0] == cells[0, 0, 1] and cells[0, 0, 2] != cells[0, 0, 3]


def test_projection_masks_match_cells():
    proj = VirtualProjection("2d")
    table = torch.randn(6, 8, 16)
    pe, groups = proj(normalize(clouds(2, 32)), table)
    assert pe.shape == (2, 32, 16)
    cells, mask = groups["cells"], groups["mask"]
    assert mask.shape == (6, 2, 32, 32)
    assert torch.equal(mask, cells[..., :, None] == cells[..., None, :])
    assert mask.diagonal(dim1=-2, dim2=-1).all()


def test_guided_pooling_matches_loop():
    """Each token gets its voxel mean (3D guide) and, per view, its cell mean + the softmax-weighted pool of its
    cell's values: checked against a per-group loop."""
    torch.manual_seed(0)
    b, g, c, v, d = 2, 10, 16, 2, 4
    ga = GuidedAdapter(c, 1, num_views=v, inner=d).train()  # in eval the BN is folded away: no input to hook
    vox = torch.randint(0, 3, (b, g))
    cells = torch.randint(0, 3, (v, b, g))
    groups = ga.prepare(dict(voxels=vox, mask=cells[..., :, None] == cells[..., None, :]))
    x = torch.randn(b, 1 + g, c)
    feats = {}
    ga.bn[0].register_forward_hook(lambda mod, args, out: feats.setdefault("in", args[0]))
    with torch.no_grad():
        out = ga(x, groups, 0)
        h = ga.down[0](torch.nn.functional.layer_norm(x, (c,)))[:, 1:]
    got = feats["in"].reshape(b, g, 1 + v, d)
    for i in range(b):
        for t in range(g):
            mates = vox[i] == vox[i, t]
            assert torch.allclose(got[i, t, 0], h[i, mates].mean(0), atol=1e-5)
            for k in range(v):
                mates = cells[k, i] == cells[k, i, t]
                a = torch.softmax(h[i, mates] @ ga.query[:, k], dim=0)
                val = h[i, mates] @ ga.value_w[k, 0] + ga.value_b[k, 0, 0]
                assert torch.allclose(got[i, t, 1 + k], h[i, mates].mean(0) + a @ val, atol=1e-5)
    assert torch.equal(out[:, 0], x[:, 0])  # the prefix token passes by


def _guided_case(b=2, g=24, c=16, v=3, d=4, depth=2):
    torch.manual_seed(0)
    ga = GuidedAdapter(c, depth, num_views=v, inner=d)
    with torch.no_grad():  # non-trivial BN statistics and affine, and a visible update
        for bn in ga.bn:
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.3, 3.0)
            bn.weight.normal_(1.0, 0.3)
            bn.bias.normal_(0.0, 0.3)
        for up in ga.up:
            up.normal_(0.0, 0.5)
    cells = torch.randint(0, 4, (v, b, g))
    groups = dict(voxels=torch.randint(0, 5, (b, g)), mask=cells[..., :, None] == cells[..., None, :])
    return ga, groups, torch.randn(b, 1 + g, c)


def test_guided_eval_folds_bn_exactly():
    """In eval each block's BN is folded into the fused weights: the result equals running the BN (with its
    running statistics) on the pooled features."""
    ga, groups, x = _guided_case()
    with torch.no_grad():
        ga.eval()
        folded = [ga(x, ga.prepare(dict(groups)), i) for i in range(2)]
        ga.train()
        ga.bn.eval()  # the training code path, but with running statistics
        unfolded = [ga(x, ga.prepare(dict(groups)), i) for i in range(2)]
    for a, b in zip(folded, unfolded):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()
    assert not torch.allclose(folded[0], folded[1])  # blocks differ: each folds its own BN


def test_guided_inference_cache_follows_parameter_changes():
    """The fused weights are cached for inference; changing a parameter or a BN statistic in place (an optimizer
    step, load_state_dict) must be seen by the next forward."""
    ga, groups, x = _guided_case()
    ga.eval()
    with torch.no_grad():
        before = ga(x, ga.prepare(dict(groups)), 0)
        assert torch.equal(before, ga(x, ga.prepare(dict(groups)), 0))
        ga.bn[0].running_var.mul_(4.0)
        after_bn = ga(x, ga.prepare(dict(groups)), 0)
        ga.load_state_dict({**ga.state_dict(), "query": torch.randn_like(ga.query)})
        after_query = ga(x, ga.prepare(dict(groups)), 0)
        fresh = GuidedAdapter(16, 2, num_views=3, inner=4).eval()
        fresh.load_state_dict(ga.state_dict())
        expected = fresh(x, fresh.prepare(dict(groups)), 0)
    assert not torch.allclose(before, after_bn) and not torch.allclose(after_bn, after_query)
    assert torch.equal(after_query, expected)


def test_guided_fp16_stays_finite():
    """fp16 overflows exp sooner: there the scores are shifted and the denominators clamped."""
    ga, groups, x = _guided_case()
    ga.eval()
    with torch.no_grad():
        ref = ga(x, ga.prepare(dict(groups)), 0)
        half = ga.half()(x.half(), ga.prepare(dict(groups)), 0)
        assert (half.float() - ref).abs().max() < 0.02 * ref.abs().max()
        ga.query.mul_(1000.0)  # scores far outside fp16's exp range
        assert torch.isfinite(ga(x.half(), ga.prepare(dict(groups)), 0)).all()


# --- the model ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_batch_independence(family):
    m = tiny_model(family).eval()
    x = clouds(4)
    with torch.no_grad():
        alone = m(x[:1])
        batch = m(x)
    assert (alone[0] - batch[0]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_invariances(family):
    m = tiny_model(family).eval()
    x = clouds(2)
    with torch.no_grad():
        ref = m(x)
        moved = m(x * 3.7 + torch.tensor([10.0, -4.0, 2.5]))
        shuffled = m(x[:, torch.randperm(x.shape[1])])
    assert (ref - moved).abs().max().item() <= 1e-4
    assert (ref - shuffled).abs().max().item() <= 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_only_adapters_train(family):
    m = tiny_model(family)
    frozen = {k: v.clone() for k, v in m.backbone.state_dict().items()}
    trainable = {n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("backbone.") for n in trainable)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    m.train()
    loss = torch.nn.functional.cross_entropy(m(clouds(4)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert m.tokenizer.embed.weight.grad is not None and m.tokenizer.embed.weight.grad.abs().sum() > 0
    opt.step()
    for k, v in m.backbone.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    unchanged = [n for n, p in m.named_parameters() if p.requires_grad and torch.equal(p, trainable[n])]
    assert not unchanged


def test_trainable_state_round_trip():
    a, b = tiny_model(), tiny_model()
    with torch.no_grad():
        for p in a.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    sd = a.trainable_state_dict()
    assert not any(k.startswith("backbone.") for k in sd)
    assert any("running_mean" in k for k in sd)  # BN statistics travel with the adapter
    b.load_trainable_state_dict(sd)
    x = clouds(2)
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))
    with pytest.raises(ValueError, match="missing"):
        b.load_trainable_state_dict({k: v for k, v in sd.items() if "head" not in k})


def test_parameter_budget():
    from core import Any2Point
    budget = {}
    for name, width in [("vit_base_patch14_dinov2", 768), ("vit_small_patch14_dinov2", 384)]:
        bb, _ = build_backbone(f"timm:{name}", pretrained=False, img_size=224)
        budget[width] = Any2Point(bb, 15).num_trainable()
        assert len(bb.blocks) == 12 and bb.width == width
    print(f"\ntrainable parameters, 12 blocks, 15 classes: width 768: {budget[768]:,}  width 384: {budget[384]:,}")
    assert budget[768] <= 1_000_000
    assert budget[384] < budget[768]


@pytest.mark.parametrize("pe", ["none", "1d", "2d"])
@pytest.mark.parametrize("family", ["timm-dinov2", "bert"])
def test_ablations_run(family, pe):
    m = tiny_model(family, pe=pe, guided=(pe != "none"))
    assert m.projection.kind == ("2d" if pe == "none" and family == "timm-dinov2" else
                                 "1d" if pe == "none" else pe)
    out = m(clouds(2))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_linear_probe_and_scratch_modes():
    probe = tiny_model(adapter=False, guided=False)
    assert probe.adapters is None and probe.guided is None
    scratch = tiny_model(freeze_backbone=False, adapter=False)
    assert all(p.requires_grad for p in scratch.backbone.parameters())
    assert any(k.startswith("backbone.") for k in scratch.trainable_state_dict())
    scratch.train()
    assert scratch.backbone.training


@pytest.mark.parametrize("family", ["timm-dinov2", "bert"])  # guided update after the block / before its closing norm
def test_bare_context_disables_adapters(family):
    """bare() = the same model with both adapters off: exactly the linear-probe model with the same weights."""
    m = tiny_model(family).eval()
    probe = tiny_model(family, adapter=False, guided=False).eval()
    probe.load_state_dict({k: v for k, v in m.state_dict().items() if k in probe.state_dict()})
    x = clouds(1)
    with torch.no_grad():
        for a in m.adapters:
            a.up.weight.normal_()  # not a constant: the final LayerNorm would cancel it
        for up in m.guided.up:
            up.normal_()
        with_adapters = m(x)
        with m.bare():
            without = m(x)
        assert torch.equal(m(x), with_adapters)  # switched back on
    assert not torch.allclose(with_adapters, without)
    assert torch.allclose(without, probe(x), atol=1e-6)


def test_bf16_autocast_cpu():
    m = tiny_model().eval()
    x = clouds(2)
    with torch.no_grad():
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m(x)
    assert low.shape == ref.shape and torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() < 0.5


@pytest.mark.parametrize("kind, table_shape", [("1d", (512, 8)), ("2d", (37, 37, 8))])
def test_projection_is_fp32_under_bf16_autocast(kind, table_shape):
    # bf16 cannot hold 511 (it rounds to 512): positions computed under autocast indexed past a 512-row table
    centres = normalize(torch.randn(4, 128, 3))
    table = torch.randn(*table_shape)
    proj = VirtualProjection(kind)
    ref, ref_groups = proj(centres, table)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, groups = proj(centres, table)
    assert low.dtype == torch.float32 and torch.equal(low, ref)
    assert torch.equal(groups["cells"], ref_groups["cells"]) and torch.equal(groups["coords"], ref_groups["coords"])


def test_predict_api():
    m = ZooModel(tiny_model(labels=["a", "b", "c"]))
    probs = m.predict(clouds(1, 1000)[0].numpy())
    assert list(probs) and set(probs) == {"a", "b", "c"}
    assert abs(sum(probs.values()) - 1) < 1e-5
    assert list(probs.values()) == sorted(probs.values(), reverse=True)
    assert m.predict(clouds(1, 1000)[0]) == probs  # deterministic subsampling
    assert len(m.predict(clouds(1, 5)[0])) == 3  # fewer points than tokens still works
    with pytest.raises(ValueError, match="NaN"):
        m.predict(torch.full((10, 3), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        m.predict(torch.zeros(10, 2))


def test_learns_sphere_vs_cube():
    torch.manual_seed(0)
    m = tiny_model(num_classes=2, num_points=128, num_tokens=16, k=8, dropout=0.0)
    g = torch.Generator().manual_seed(0)
    x = torch.stack([shape_cloud(k, 128, g) for k in ["sphere", "cube"] * 8])
    y = torch.tensor([0, 1] * 8)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    for step in range(300):
        m.train()
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 19:
            with torch.no_grad():
                acc = (m.eval()(x).argmax(-1) == y).float().mean().item()
            if acc == 1.0:
                break
    assert acc == 1.0, f"train accuracy {acc} after {step + 1} steps"


@pytest.mark.parametrize("family", ["timm-dinov2", "whisper"])
def test_explain_shows_views_cells_and_weights(family):
    m = ZooModel(tiny_model(family, labels=["a", "b", "c"]))
    x = clouds(1, 300)[0]
    e = m.explain(x)
    v, g = 6, 32
    assert e["centres"].shape == (g, 3) and e["cells"].shape == (v, g)
    assert e["coords"].shape == ((v, g, 2) if e["kind"] == "2d" else (v, g))
    w = e["view_weights"]
    assert w.shape == (2, g, v) and torch.allclose(w.sum(-1), torch.ones(2, g), atol=1e-5) and (w >= 0).all()
    assert e["probs"] == m.predict(x)


def test_pe_sampling_matches_grid_sample_and_view_mean():
    import torch.nn.functional as F
    table = torch.randn(5, 7, 8)
    uv = torch.rand(6, 2, 9, 2) * 2.4 - 1.2  # some outside the plane: border padding
    ref = F.grid_sample(table.permute(2, 0, 1)[None], uv.reshape(1, -1, 1, 2), mode="bilinear",
                        padding_mode="border", align_corners=False)[0, :, :, 0].t().reshape(6, 2, 9, 8)
    assert torch.allclose(sample_2d(table, uv), ref, atol=1e-5)
    from core.projection import corners_2d, sample_views
    assert torch.allclose(sample_views(table, *corners_2d(uv.clamp(-1, 1), 5, 7)), ref.mean(0), atol=1e-5)


def test_post_ln_blocks_get_the_guided_update_before_their_norm():
    """BERT-style blocks end in a LayerNorm: the guided update goes in before it, so every block hands on a
    normalised stream; the backbone called on its own (bare) is untouched by the hook."""
    m = tiny_model("bert")
    assert m._post_ln
    outs = []
    for layer in m.backbone.model.encoder.layer:
        layer.register_forward_hook(lambda mod, args, out: outs.append(out[0] if isinstance(out, tuple) else out))
    pts, trace = clouds(2, 256), Trace()
    with torch.no_grad():
        m(pts)
        first = outs[0]
        for up in m.guided.up:
            up.normal_(std=1.0)  # a large update: it must land inside block 0, and not show after the norm
        outs.clear()
        m(pts, trace)
    depth = len(m.backbone.blocks)
    assert len(outs) == depth and len(trace.view_weights) == depth
    assert not torch.allclose(outs[0], first, atol=1e-3)
    for out in outs:  # LayerNorm with its initial affine: zero mean, unit variance per token
        assert torch.allclose(out.mean(-1), torch.zeros(()), atol=1e-4)
        assert torch.allclose(out.var(-1, unbiased=False), torch.ones(()), atol=1e-2)
    tokens = torch.randn(2, 9, m.backbone.width)
    with torch.no_grad():
        a = m.backbone(tokens)
        m.guided.up[0].mul_(2)
        assert torch.equal(a, m.backbone(tokens))


@pytest.mark.parametrize("family", FAMILIES)
def test_deepcopy_and_pickle_keep_working_hooks(family, tmp_path):
    """Hooks are bound to the model's own modules: a deep copy runs its own adapters, and a pickled model loads."""
    import copy
    m = tiny_model(family)
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)  # adapters that do something
    x = clouds(2, 256)
    c = copy.deepcopy(m)
    with torch.no_grad():
        ref = m(x)
        assert torch.allclose(c(x), ref, atol=1e-5)
        for p in c.parameters():
            if p.requires_grad:
                p.zero_()
        assert torch.allclose(m(x), ref, atol=1e-5)  # the original does not run the copy's (zeroed) adapters
    torch.save(m, tmp_path / "m.pt")
    # a whole-model pickle is what this test is about; the file is the one written just above, never a download
    loaded = torch.load(tmp_path / "m.pt", weights_only=False)
    with torch.no_grad():
        assert torch.allclose(loaded(x), ref, atol=1e-5)
