"""The faithful building blocks (issue #14): hierarchical Point-PN tokenizer, full-width guided adapter, six distinct
1D views. Fast paths against plain loops; invariances; budgets. Tiny sizes: the file runs in seconds."""
import copy
import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from core.adapter import FullGuidedAdapter
from core.points import farthest_point_sample, gather, normalize
from core.projection import VirtualProjection, project_1d, rotate_views
from core.tokenizer import PNStage, PointPNTokenizer, geometry_encode
from zoo.serving import ZooModel

# a tiny tokenizer that still has every kind of layer: stage 0 doubles by concatenation (the official form),
# stage 1 needs Point-PN's expansion layer (2 * 16 != 24), and 24 != out_dim adds the final projection
TINY_PN = dict(stages=(48, 16), k=8, embed_dim=8, widths=(16, 24), hidden=(8, 6), blocks=(2, 1))
CPU_PN = dict(stages=(256, 128), k=24, embed_dim=32, widths=(64, 128), hidden=(32, 32), blocks=(1, 1))


def clouds(b=2, n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    return normalize(torch.randn(b, n, 3, generator=g) * torch.tensor([1.0, 0.6, 1.4]))


def num_params(m):
    return sum(p.numel() for p in m.parameters())


def randomise_bn(module, seed=0):
    """Non-trivial BN statistics and affine, so eval-mode checks see every BN."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm1d)):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.3)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=g) * 2 + 0.3)
            bn.weight.copy_(1 + 0.3 * torch.randn(bn.num_features, generator=g))
            bn.bias.copy_(0.3 * torch.randn(bn.num_features, generator=g))
    return module


def assert_every_param_learns(module):
    missing = [n for n, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"


# --- hierarchical Point-PN tokenizer --------------------------------------------------------------------------
def test_pointpn_parameter_budgets():
    """Official sizes at C = 768: 274,720 parameters (the official 276,672 less its 1,952 biases in front of a BN,
    which never train); C = 384 adds the official Linear(768, C) after the tokenizer."""
    counts = {(name, c): num_params(PointPNTokenizer(c, **kw))
              for name, kw in (("official", {}), ("cpu", CPU_PN)) for c in (384, 768)}
    print("PointPNTokenizer parameters:", counts)
    assert counts["official", 768] == 274_720 >= 200_000
    assert counts["official", 384] == 274_720 + 768 * 384 + 384
    assert isinstance(PointPNTokenizer(768).proj, torch.nn.Identity)  # the official widths end at 768


def test_pointpn_shapes_and_tiny_clouds():
    tok = PointPNTokenizer(20, **TINY_PN).eval()
    with torch.no_grad():
        tokens, centres = tok(clouds(2, 200))
        assert tokens.shape == (2, 16, 20) and centres.shape == (2, 16, 3)
        tiny, tiny_centres = tok(clouds(1, 5))  # fewer points than centres: repeated, still defined
    assert tiny.shape == (1, 16, 20) and torch.isfinite(tiny).all()
    with pytest.raises(ValueError):
        PointPNTokenizer(20, stages=(48, 4, 16), k=8, embed_dim=8, widths=(16, 24, 24), hidden=(8, 6, 6),
                         blocks=(1, 1, 1))


def test_geometry_encoding_matches_the_official_layout():
    """The official PosE_Geo, channels first: (B, 3, G, K) -> (B, 3 * 2F, G, K), axis-major, sin then cos."""
    rel = torch.rand(2, 5, 7, 3) * 2 - 1
    width, alpha, beta = 24, 1000.0, 100.0
    knn_xyz = rel.permute(0, 3, 1, 2)  # (B, 3, G, K)
    feat_dim = width // 6
    div = beta * knn_xyz.unsqueeze(-1) / torch.pow(alpha, torch.arange(feat_dim).float() / feat_dim)
    official = torch.cat([div.sin(), div.cos()], -1).permute(0, 1, 4, 2, 3).reshape(2, width, 5, 7)
    assert torch.allclose(geometry_encode(rel, width, alpha, beta), official.permute(0, 2, 3, 1), atol=1e-6)
    assert torch.equal(geometry_encode(rel, width + 2)[..., width:], torch.zeros(2, 5, 7, 2))  # 26 = 6 * 4 + 2


def _stage_loop(stage, xyz, feat):
    """One Point-PN stage, one centre at a time, with every BN run as a BN (not folded)."""
    def linear_bn(m, x):
        y = F.batch_norm(m.linear(x), m.bn.running_mean, m.bn.running_var, m.bn.weight, m.bn.bias, False, 0.0,
                         m.bn.eps)
        return y.relu() if m.act else y

    idx = farthest_point_sample(xyz, stage.num_centres)
    out = []
    for b in range(xyz.shape[0]):
        rows = []
        for i in idx[b]:
            near = ((xyz[b] - xyz[b, i]) ** 2).sum(-1).argsort()[: stage.k]
            rel = xyz[b, near] - xyz[b, i]
            rel = rel / rel.abs().amax(0).clamp_min(1e-8)  # per axis, over this group
            x = torch.cat([feat[b, near], feat[b, i].expand(stage.k, -1)], dim=-1)
            if not isinstance(stage.expand, torch.nn.Identity):
                x = linear_bn(stage.expand, x)
            x = x + geometry_encode(rel, stage.width, stage.alpha, stage.beta)
            for blk in stage.blocks:
                x = (linear_bn(blk.net[1], linear_bn(blk.net[0], x)) + x).relu()
            rows.append(x.amax(0))
        out.append(torch.stack(rows))
    return gather(xyz, idx), torch.stack(out)


@pytest.mark.parametrize("in_dim, width", [(8, 16), (16, 24)])  # concatenation only / with the expansion layer
def test_pointpn_stage_matches_loop(in_dim, width):
    torch.manual_seed(0)
    stage = randomise_bn(PNStage(12, 6, in_dim, width, 8, 2, 1000.0, 100.0)).eval()
    xyz, feat = clouds(2, 40), torch.randn(2, 40, in_dim)
    with torch.no_grad():
        centres, got = stage(xyz, feat)
        ref_centres, ref = _stage_loop(stage, xyz, feat)
    assert torch.equal(centres, ref_centres)
    assert (got - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_pointpn_order_invariant_and_batch_independent():
    torch.manual_seed(0)
    tok = randomise_bn(PointPNTokenizer(20, **TINY_PN)).eval()
    x = clouds(3, 200)
    with torch.no_grad():
        tokens, centres = tok(x)
        perm = torch.randperm(200)
        tokens_p, centres_p = tok(x[:, perm])
        single = [tok(x[i:i + 1])[0] for i in range(3)]
    assert torch.equal(centres, centres_p)  # FPS starts at the point farthest from the centroid
    assert torch.allclose(tokens, tokens_p, atol=1e-5)
    assert torch.allclose(torch.cat(single), tokens, atol=1e-5)


def test_pointpn_gradients_reach_every_parameter():
    torch.manual_seed(0)
    tok = PointPNTokenizer(20, **TINY_PN).train()
    tokens, _ = tok(clouds(2, 200))
    (tokens * torch.randn_like(tokens)).sum().backward()
    assert_every_param_learns(tok)


@pytest.mark.parametrize("duplicated", [False, True])  # duplicated points: ties in the neighbour max
@pytest.mark.parametrize("tokenizer", ["pointpn", "onestage"])
def test_neighbour_max_matches_amax_values_and_gradients(tokenizer, duplicated, monkeypatch):
    """The tokenizers' neighbour max is max(), whose backward is cheap; amax (the reference) splits a tie's gradient
    among its equal entries: the values and every parameter's gradient must be the same."""
    import core.tokenizer as tk
    x = clouds(2, 100)
    if duplicated:
        x = torch.cat([x, x[:, :60]], dim=1)  # each of 60 points twice: equal neighbours, equal features
    grads = []
    for fn in (tk.neighbour_max, tk.neighbour_max_reference):
        monkeypatch.setattr(tk, "neighbour_max", fn)
        torch.manual_seed(0)
        tok = (PointPNTokenizer(20, **TINY_PN) if tokenizer == "pointpn" else tk.PointTokenizer(20, num_tokens=16, k=8,
                                                                                               dim=16)).train()
        tokens, _ = tok(x)
        (tokens * torch.linspace(-1, 1, tokens.numel()).view_as(tokens)).sum().backward()
        grads.append((tokens.detach(), {n: q.grad for n, q in tok.named_parameters()}))
    (fast, g_fast), (ref, g_ref) = grads
    assert torch.equal(fast, ref)
    for name, g in g_ref.items():
        # equal up to float rounding: the two backward passes add the same terms in another order (a BN bias's
        # gradient is a sum of many terms that nearly cancel: 1e-5 of its largest entry failed on two threads)
        assert (g_fast[name] - g).abs().max() <= 1e-4 * g.abs().max(), name


# --- full-width guided adapter ---------------------------------------------------------------------------------
def _random_groups(b, g, v, seed=0):
    """Labels compared within one sample (and view), few groups so cells hold several tokens."""
    gen = torch.Generator().manual_seed(seed)
    vox = torch.randint(0, 4, (b, g), generator=gen)
    cells = torch.randint(0, 3, (v, b, g), generator=gen)
    return dict(voxels=vox, cells=cells, mask=cells[..., :, None] == cells[..., None, :])


@pytest.mark.parametrize("cell_max", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_full_guided_matches_loop(cell_max, training):
    torch.manual_seed(0)
    b, g, c, v, depth = 2, 24, 16, 3, 2
    ga = randomise_bn(FullGuidedAdapter(c, depth, num_views=v, inner=6, heads=3, scale=0.7, cell_max=cell_max))
    ga.train(training)
    ref_ga = copy.deepcopy(ga)  # training-mode BN updates its statistics: one copy per path
    raw = _random_groups(b, g, v)
    x = torch.randn(b, 1 + g, c)
    record, ref_record = [], []
    groups = ga.prepare(raw, record=record)
    plain = ref_ga.prepare(raw, record=ref_record, reference=True)  # the official structure, a group at a time
    with torch.no_grad():
        for block in range(depth):
            got = ga(x, groups, block)
            ref = ref_ga(x, plain, block)
            assert (got - ref).abs().max() <= 1e-5 * ref.abs().max()
            assert torch.allclose(record[block], ref_record[block], atol=1e-6) and record[block].shape == (b, g, v)
    assert torch.equal(got[:, 0], x[:, 0])  # the cls token passes by
    assert not torch.allclose(got, x, atol=1e-2)  # a large update from step 0
    for bn, ref_bn in zip(ga.modules(), ref_ga.modules()):
        if isinstance(bn, torch.nn.BatchNorm1d):
            assert torch.allclose(bn.running_mean, ref_bn.running_mean, atol=1e-6)
            assert torch.allclose(bn.running_var, ref_bn.running_var, atol=1e-6)


def test_full_guided_gradients_reach_every_parameter():
    torch.manual_seed(0)
    b, g, c, v, depth = 2, 24, 16, 3, 2
    ga = FullGuidedAdapter(c, depth, num_views=v, inner=6, heads=3).train()
    groups = ga.prepare(_random_groups(b, g, v))
    x = torch.randn(b, 1 + g, c)
    for block in range(depth):
        x = ga(x, groups, block)
    (x * torch.randn_like(x)).sum().backward()
    assert_every_param_learns(ga)


@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_full_guided_order_invariant_and_batch_independent(kind):
    """Groups from the real projection: permuting the point tokens permutes the result; each sample alone gives
    what it gets in a batch (eval)."""
    torch.manual_seed(0)
    b, g, c, v = 3, 40, 16, 6
    table = torch.randn(8, 8, c) if kind == "2d" else torch.randn(20, c)
    proj = VirtualProjection(kind, num_views=v, voxel=0.5, cell_patches=3.0, cells_1d=6, views_1d="tilted")
    ga = randomise_bn(FullGuidedAdapter(c, 1, num_views=v, inner=6, heads=3, cell_max=True)).eval()
    centres, x = clouds(b, g), torch.randn(b, 1 + g, c)

    def run(centres, x):
        return ga(x, ga.prepare(proj(centres, table)[1]), 0)

    with torch.no_grad():
        out = run(centres, x)
        perm = torch.randperm(g)
        out_p = run(centres[:, perm], torch.cat([x[:, :1], x[:, 1:][:, perm]], dim=1))
        single = torch.cat([run(centres[i:i + 1], x[i:i + 1]) for i in range(b)])
    assert torch.allclose(out_p[:, 1:], out[:, 1:][:, perm], atol=1e-5)
    assert torch.allclose(single, out, atol=1e-5)


def test_full_guided_and_pointpn_swap_into_the_model():
    """The config layer swaps them in with one line each: same interfaces as PointTokenizer / GuidedAdapter."""
    from tests.tiny import tiny_model
    m = tiny_model("timm-dinov2", num_points=256)  # pre-LN blocks: the update runs after each block
    c, depth = m.backbone.width, len(m.backbone.blocks)
    m.tokenizer = PointPNTokenizer(c, **TINY_PN)
    m.guided = FullGuidedAdapter(c, depth, num_views=m.projection.num_views, inner=6, heads=3)
    m.train()
    logits = m(clouds(2, 256))
    logits.sum().backward()
    assert_every_param_learns(m.tokenizer)
    assert_every_param_learns(m.guided)
    m.eval()
    info = ZooModel(m).explain(clouds(1, 256)[0])
    assert info["view_weights"].shape == (depth, 16, m.projection.num_views)
    assert torch.allclose(info["view_weights"].sum(-1), torch.ones(depth, 16), atol=1e-5)


def test_faithful_blocks_run_under_bf16_autocast():
    """Training recipes may run under autocast: both blocks stay finite and near their fp32 result."""
    torch.manual_seed(0)
    tok = randomise_bn(PointPNTokenizer(20, **TINY_PN)).eval()
    ga = randomise_bn(FullGuidedAdapter(16, 1, num_views=3, inner=6, heads=3, cell_max=True)).eval()
    groups, x, pts = ga.prepare(_random_groups(2, 24, 3)), torch.randn(2, 25, 16), clouds(2, 200)
    with torch.no_grad():
        ref_tok, ref_ga = tok(pts)[0], ga(x, groups, 0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low_tok, low_ga = tok(pts)[0], ga(x, groups, 0)
    for low, ref in ((low_tok, ref_tok), (low_ga, ref_ga)):
        assert torch.isfinite(low).all() and (low.float() - ref).abs().max() < 0.05 * ref.abs().max()


# --- six distinct 1D views -------------------------------------------------------------------------------------
def _pairs_apart(t, tol=0.05):
    """t (V, B, G) 1D positions -> for every view pair: differs from the other view both as t and as 1 - t
    (for every sample)."""
    v = t.shape[0]
    return {(i, j): bool(((t[i] - t[j]).abs().amax(-1) > tol).all() and
                         ((t[i] - (1 - t[j])).abs().amax(-1) > tol).all())
            for i in range(v) for j in range(i + 1, v)}


def test_tilted_1d_views_are_six_distinct_lines():
    x = clouds(4, 128, seed=3)
    tilted = project_1d(rotate_views(x, 6, "tilted"))
    assert all(_pairs_apart(tilted).values())
    legacy = _pairs_apart(project_1d(rotate_views(x, 6, "legacy")))
    assert not legacy[0, 2] and not legacy[1, 3]  # the mirror pairs the tilted views fix
    # the lines: four face diagonals tilted by the up axis (y), then the two horizontal ones
    lines = rotate_views(torch.eye(3).unsqueeze(0), 6, "tilted")[:, 0] @ torch.tensor([-1.0, 0.0, 1.0])
    expected = torch.tensor([[0, 1, 1], [1, 1, 0], [0, 1, -1], [-1, 1, 0], [1, 0, -1], [1, 0, 1]], dtype=torch.float)
    assert torch.allclose(lines, expected, atol=1e-6)


def test_views_1d_option_defaults_to_legacy():
    """Saved models were trained on the legacy views: the default must stay, the config layer picks "tilted"."""
    assert inspect.signature(VirtualProjection).parameters["views_1d"].default == "legacy"
    c = clouds(2, 32)
    table_1d, table_2d = torch.randn(20, 8), torch.randn(6, 6, 8)
    pe_l, groups_l = VirtualProjection("1d")(c, table_1d)
    pe_d, groups_d = VirtualProjection("1d", views_1d="legacy")(c, table_1d)
    pe_t, groups_t = VirtualProjection("1d", views_1d="tilted")(c, table_1d)
    assert torch.equal(pe_l, pe_d) and not torch.allclose(pe_l, pe_t)
    assert all(_pairs_apart(groups_t["coords"]).values())
    # 2D views are not touched by the option
    pe_2d = VirtualProjection("2d")(c, table_2d)[0]
    assert torch.equal(VirtualProjection("2d", views_1d="tilted")(c, table_2d)[0], pe_2d)
    with pytest.raises(ValueError):
        VirtualProjection("1d", views_1d="mirrored")
    assert math.isclose(float(groups_t["coords"].amax()), 1.0) and float(groups_t["coords"].amin()) == 0.0
