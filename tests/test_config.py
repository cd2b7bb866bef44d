"""Any2PointConfig (strict, typed, saved as is), the presets over it, the backbone family table, the spec parser."""
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from core import PRESETS, Any2Point, Any2PointConfig, ConfigError
from core.backbones import FAMILIES, wrap
from tests.tiny import TINY, tiny_model
from zoo import specs


def test_config_round_trips_through_json():
    cfg = Any2PointConfig(guided_scale=0.7, direction=(1, 0, 0), distance=1.4, pe="1d")
    back = Any2PointConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.direction == (1.0, 0.0, 0.0) and isinstance(back.direction[0], float)


@pytest.mark.parametrize("data,message", [
    ({"guided_scael": 0.5}, "unknown model config key 'guided_scael' (known: num_points, num_tokens"),
    ({"num_tokens": 12.5}, "num_tokens must be an integer, got 12.5"),
    ({"num_tokens": True}, "num_tokens must be an integer, got True"),
    ({"adapter": "yes"}, "adapter must be a bool, got 'yes'"),
    ({"direction": [1, 0]}, "direction must be a list of 3 values"),
    ({"pe": "3d"}, "pe must be one of 'auto', 'none', '1d', '2d', got '3d'"),
    ({"distance": "far"}, "distance must be a number, got 'far'"),
])
def test_from_dict_refuses_unknown_keys_and_wrong_types_in_one_line(data, message):
    with pytest.raises(ConfigError) as err:
        Any2PointConfig.from_dict(data)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_every_setting_has_a_help_line_and_a_typed_default():
    helps = Any2PointConfig.help()
    assert list(helps) == [f.name for f in dataclasses.fields(Any2PointConfig)]
    assert all(h and "\n" not in h for h in helps.values())
    Any2PointConfig.from_dict(Any2PointConfig().to_dict())  # the defaults pass their own checks


def test_model_config_is_the_object_and_keyword_overrides_still_work():
    a = tiny_model(adapter_dim=4)
    b = tiny_model(config=Any2PointConfig(num_tokens=32, k=8, num_points=256, adapter_dim=4))
    assert isinstance(a.config, Any2PointConfig) and a.config == b.config and a.config.adapter_dim == 4
    assert a.config.distance == a.backbone.default_distance  # resolved, so a saved config rebuilds the same model
    x = torch.rand(2, 256, 3)
    torch.testing.assert_close(a.eval()(x), b.eval()(x), rtol=0, atol=0)
    with pytest.raises(ConfigError, match="unknown Any2Point setting key 'adaptor_dim'"):
        tiny_model(adaptor_dim=4)
    with pytest.raises(TypeError, match="config must be an Any2PointConfig"):
        Any2Point(TINY["timm-dinov2"](), 3, config={"k": 8})


def test_presets_are_settings_over_the_recipe():
    base = Any2PointConfig(guided_scale=0.7)
    probe = PRESETS["linear_probe"].apply(base)
    assert not probe.adapter and not probe.guided and probe.guided_scale == 0.7 and probe.freeze_backbone
    scratch = PRESETS["from_scratch"]
    assert scratch.backbone == "scratch" and not scratch.apply(base).freeze_backbone
    assert PRESETS["random_backbone"].backbone == "random" and PRESETS["random_backbone"].apply(base) == base
    assert set(PRESETS) == {"any2point", "linear_probe", "from_scratch", "random_backbone"}


def test_every_backbone_family_has_a_tiny_test_config():
    missing = [f.key for f in FAMILIES if f.tiny is None]
    assert not missing, (f"backbone families {missing} have no tiny test config: add a tiny() function returning a "
                         "small random library model to the family's file and name it in its FAMILIES row "
                         "(core/backbones/__init__.py)")
    assert set(TINY) == {f.key for f in FAMILIES}
    for f in FAMILIES:
        assert type(wrap(f.tiny())) is f.cls


def test_wrap_refuses_a_spec_string_with_the_way_to_build_it():
    with pytest.raises(TypeError, match=r"zoo.build_backbone\('timm:vit_small'\)"):
        wrap("timm:vit_small")


@pytest.mark.parametrize("spec,expected", [
    ("timm:vit_small_patch14_dinov2", ("timm", "vit_small_patch14_dinov2")),
    ("hf-text:openai/clip-vit-large-patch14", ("hf-text", "openai/clip-vit-large-patch14")),
    ("hf-audio:MIT/ast", ("hf-audio", "MIT/ast")),
    ("packaged:minilm-l6", ("packaged", "minilm-l6")),
    ("scratch:1d", ("scratch", "1d")),
])
def test_spec_parser(spec, expected):
    assert specs.parse(spec) == expected


@pytest.mark.parametrize("bad", ["vit_small", "torchhub:x", "timm:", ":x"])
def test_spec_parser_refuses_unknown_schemes(bad):
    with pytest.raises(ValueError, match="unknown backbone spec .*timm:<name>, hf-text:<name>"):
        specs.parse(bad)


def test_spec_table_answers_hub_repos_and_availability_offline():
    assert specs.hub_repo("timm:vit_base_patch14_dinov2.lvd142m") == "timm/vit_base_patch14_dinov2.lvd142m"
    assert specs.hub_repo("hf-text:openai/clip-vit-large-patch14") == "openai/clip-vit-large-patch14"
    assert specs.hub_repo("scratch:2d") is None
    assert specs.availability("hf-text:openai/clip-vit-large-patch14")[0] is False  # no pinned revision
    assert specs.availability("scratch:1d") == (True, "built locally")
    assert specs.availability("packaged:nope")[1].startswith("unknown packaged backbone 'nope'")
    assert specs.short_name("packaged:minilm-l6") == "minilm-l6"
    backbone, info = specs.build_backbone("scratch:2d")
    assert backbone.pos_kind == "2d" and len(info["sha256"]) == 64 and not any(
        p.requires_grad for p in backbone.parameters())


@pytest.mark.parametrize("recipe", sorted((Path(__file__).resolve().parents[1] / "train/configs").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_every_shipped_recipe_is_a_valid_config(recipe):
    from train.run import RunConfig, load_config
    cfg = RunConfig(**load_config(recipe))
    assert isinstance(cfg.model, Any2PointConfig) and cfg.name and cfg.name in cfg.output_dir
    if cfg.dataset in ("scanobjectnn", "modelnet40"):  # the paper recipes carry the official structure
        assert cfg.model.tokenizer == "pointpn" and cfg.model.guided_mode == "full" and cfg.resample
