"""The faithful options through the config: the paper recipe's budget, and the model's invariants with them on."""
import pytest
import torch

from core import Any2Point, Any2PointConfig, ConfigError
from tests.tiny import TINY, tiny_model

# tiny sizes of the faithful options (a 2-stage Point-PN, the full-width guided adapter, tilted 1D views)
FAITHFUL = dict(tokenizer="pointpn", k=8, pointpn_stages=(64,), pointpn_embed_dim=8, pointpn_widths=(16, 32),
                pointpn_hidden=(8, 8), pointpn_blocks=(1, 1), guided_mode="full", guided_dim=6, guided_heads=3,
                views_1d="tilted", adapter_dropout=0.1, final_affine=True)


def clouds(b, n=256, seed=0):
    return torch.rand(b, n, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_paper_recipe_budget_at_width_768():
    """The paper's vision recipe (official Point-PN, full-width guided adapter, adapter dim 8) on a 768-wide,
    12-block ViT, 15 classes."""
    import timm
    vit = timm.create_model("vit_base_patch14_dinov2", pretrained=False, img_size=56, num_classes=0)
    m = Any2Point(vit, 15, config=Any2PointConfig(tokenizer="pointpn", k=64, guided_mode="full", adapter_dim=8,
                                                  adapter_dropout=0.1, guided_scale=0.7,
                                                  final_affine=True))
    tok = sum(p.numel() for p in m.tokenizer.parameters())
    total = m.num_trainable()
    print(f"paper recipe at C=768, 12 blocks, 15 classes: tokenizer {tok:,}, trainable {total:,}, "
          f"backbone {m.num_backbone():,}")
    assert tok >= 200_000 and total <= 1_300_000


@pytest.mark.parametrize("family", ["timm-dinov2", "bert", "whisper"])  # 2D pre-LN, 1D post-LN, 1D pre-LN
def test_faithful_model_trains_every_new_part(family):
    m = tiny_model(family, **FAITHFUL).train()
    torch.nn.functional.cross_entropy(m(clouds(3)), torch.tensor([0, 1, 2])).backward()
    dead = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().any())]
    assert not dead, dead
    assert not any(p.requires_grad for p in m.backbone.parameters())


@pytest.mark.parametrize("family", ["timm-dinov2", "bert"])
def test_faithful_model_is_batch_independent_and_order_invariant(family):
    m = tiny_model(family, **FAITHFUL).eval()
    x = clouds(3)
    with torch.no_grad():
        batch = m(x)
        alone = m(x[:1])
        shuffled = m(x[:, torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(1))])
    assert (alone[0] - batch[0]).abs().max().item() <= 1e-4
    assert (shuffled - batch).abs().max().item() <= 1e-4


def test_faithful_model_round_trips_through_its_saved_config():
    m = tiny_model("whisper", **FAITHFUL).eval()
    torch.manual_seed(0)  # the same random tiny backbone tiny_model built
    again = Any2Point(TINY["whisper"](), 3, config=Any2PointConfig.from_dict(m.config.to_dict()))
    again.load_trainable_state_dict(m.trainable_state_dict())
    again.eval()
    x = clouds(2)
    with torch.no_grad():
        assert torch.equal(m(x), again(x))


def test_final_affine_starts_as_identity_and_is_saved_with_the_adapters():
    """The trainable final-norm affine changes nothing until trained, and travels in the adapter-only state."""
    torch.manual_seed(0)
    plain = tiny_model("timm-dinov2").eval()
    torch.manual_seed(0)
    affine = tiny_model("timm-dinov2", final_affine=True).eval()
    x = clouds(2)
    with torch.no_grad():
        assert torch.equal(plain(x), affine(x))
        state = affine.trainable_state_dict()
        assert {"final_scale", "final_shift"} <= set(state) and "final_scale" not in plain.trainable_state_dict()
        affine.final_shift.add_(0.5)
        assert (affine(x) - plain(x)).abs().max().item() > 1e-3
    assert affine.num_trainable() - plain.num_trainable() == 2 * affine.final_scale.numel()


def test_pointpn_stage_lists_must_agree():
    with pytest.raises(ConfigError, match=r"pointpn_widths needs one value per Point-PN stage \(2"):
        Any2PointConfig(pointpn_stages=(64,), pointpn_widths=(16, 32, 64), pointpn_hidden=(8, 8),
                        pointpn_blocks=(1, 1))


@pytest.mark.parametrize("family", ["timm-dinov2", "bert"])  # 2D and 1D positions: both sample_views paths
def test_training_under_bf16_autocast_never_bags_half_tables(monkeypatch, family):
    """CUDA has no bf16 backward for embedding_bag's per_sample_weights (the first GPU check died on it, H100,
    torch 2.11): every weighted bag must run in float32. Here a stand-in refuses half tables as CUDA does."""
    import torch.nn.functional as F
    bag = F.embedding_bag

    def cuda_like_bag(indices, weight, *args, per_sample_weights=None, **kw):
        if per_sample_weights is not None and weight.dtype in (torch.float16, torch.bfloat16):
            raise NotImplementedError(f"embedding_bag per_sample_weights backward for {weight.dtype}")
        return bag(indices, weight, *args, per_sample_weights=per_sample_weights, **kw)

    monkeypatch.setattr(F, "embedding_bag", cuda_like_bag)
    m = tiny_model(family, **FAITHFUL, guided_cell_max=True).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = m(clouds(2))
    logits.float().sum().backward()
    assert torch.isfinite(logits.float()).all()
    dead = [n for n, p in m.guided.named_parameters() if p.grad is None or not p.grad.abs().any()]
    assert not dead, dead


def test_pointpn_weights_fit_any_point_and_centre_count():
    """An entry's Point-PN starts a run on more points (train.run --init-from with --points and pointpn_stages, the
    low-data candidate from-sh3d-entry-e100-lr1e-3-p1024): its weights do not depend on either count."""
    small = tiny_model("whisper", **FAITHFUL)  # 256 points, 64 -> 32 centres
    big = tiny_model("whisper", **{**FAITHFUL, "num_points": 512, "pointpn_stages": (128,)})
    big.load_trainable_state_dict(small.trainable_state_dict())  # raises on any name or shape that differs
    assert all(torch.equal(v, small.trainable_state_dict()[k]) for k, v in big.trainable_state_dict().items())
    assert big.eval()(clouds(2, n=512)).shape == (2, 3)
    with pytest.raises(ValueError, match="does not fit"):  # a width does change the weights
        tiny_model("whisper", **{**FAITHFUL, "pointpn_widths": (16, 48)}).load_trainable_state_dict(
            small.trainable_state_dict())
