"""Any2PointConfig: every model setting in one typed dataclass (the PEFT `LoraConfig` pattern).

The same object builds the model (`Any2Point(backbone, k, config=cfg)`), is `model.config`, is stored in an entry's
`config.json` under "model" (`cfg.to_dict()`), and is read back strictly (`Any2PointConfig.from_dict`): an unknown key
or a wrong type is a one-line `ConfigError` naming the key, before anything is built.

    cfg = Any2PointConfig(guided_scale=0.7)
    cfg = cfg.replace(adapter=False)            # a copy with overrides, checked the same way
    cfg = PRESETS["linear_probe"].apply(cfg)    # the run variants are named presets over the config
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Literal


class ConfigError(ValueError):
    """A setting that does not exist or has the wrong type; the message is one line naming it."""


def _opt(default, help, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class Any2PointConfig:
    # --- input and tokenizer
    num_points: int = _opt(2048, "points per cloud the model expects; larger clouds are subsampled by predict()")
    num_tokens: int = _opt(128, "point tokens (FPS centres) fed to the backbone (pointpn: its last stage)")
    tokenizer: Literal["onestage", "pointpn"] = _opt(
        "onestage", "onestage: one FPS + kNN stage (CPU-cheap); pointpn: the official hierarchical Point-PN")
    k: int = _opt(16, "neighbours per centre (pointpn: at every stage; official 64)")
    tokenizer_dim: int = _opt(64, "hidden width of the one-stage tokenizer")
    pointpn_stages: tuple[int, ...] = _opt((512, 256), "pointpn: centres of the stages before the last (num_tokens)")
    pointpn_embed_dim: int = _opt(96, "pointpn: per-point embedding width")
    pointpn_widths: tuple[int, ...] = _opt((192, 384, 768), "pointpn: output width of every stage (last: mapped to C)")
    pointpn_hidden: tuple[int, ...] = _opt((96, 192, 32), "pointpn: bottleneck width of every stage's blocks")
    pointpn_blocks: tuple[int, ...] = _opt((2, 1, 1), "pointpn: residual blocks per stage")
    # --- 3D-to-any virtual projection
    pe: Literal["auto", "none", "1d", "2d"] = _opt(
        "auto", "positional projection: auto (the backbone's own kind), 1d, 2d, or none (ablation: no PE)")
    num_views: int = _opt(6, "virtual views (four quarter turns about the up axis, then the two poles)")
    distance: float | None = _opt(None, "2D camera distance (unit-sphere cloud); None = the backbone's default")
    direction: tuple[float, float, float] = _opt((-1.0, 0.0, 1.0), "1D projection direction")
    voxel: float = _opt(0.12, "3D voxel size of the guided adapter's 3D guide (unit-sphere units)")
    cell_patches: float = _opt(2.0, "2D guided-adapter cell size, in backbone patches")
    cells_1d: int = _opt(38, "1D guided-adapter cells along the line")
    views_1d: Literal["legacy", "tilted"] = _opt(
        "legacy", "1D view rotations: legacy (mirror pairs on the line) or tilted (six distinct lines; new recipes)")
    # --- adapters on the frozen blocks
    adapter: bool = _opt(True, "bottleneck adapter on every block's FFN output")
    adapter_dim: int = _opt(8, "bottleneck adapter width")
    adapter_scale: float = _opt(0.3, "bottleneck adapter output scale")
    adapter_dropout: float = _opt(0.0, "dropout inside the bottleneck adapter (official 0.1)")
    guided: bool = _opt(True, "any-to-3D guided adapter after every block (point tokens only)")
    guided_mode: Literal["bottleneck", "full"] = _opt(
        "bottleneck", "bottleneck: pooled in guided_dim dims (CPU-cheap); full: the official full-width adapter")
    guided_dim: int = _opt(12, "guided adapter inner width (full: the masked attention's width)")
    guided_heads: int = _opt(6, "full guided adapter: attention heads")
    guided_cell_max: bool = _opt(False, "full guided adapter: cell max + mean (official ModelNet40), else mean")
    guided_scale: float = _opt(0.5, "guided adapter update scale")
    # --- head and training switches
    final_affine: bool = _opt(False, "trainable per-channel scale and shift after the frozen final norm, from "
                              "identity (official: the final norm is trained; the same family of maps)")
    head_hidden: int = _opt(256, "hidden width of the classification MLP")
    dropout: float = _opt(0.5, "head dropout")
    freeze_backbone: bool = _opt(True, "keep the backbone frozen (False: the from-scratch baseline trains it)")

    def __post_init__(self):
        hints = type_hints(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, check_value(f.name, getattr(self, f.name), hints[f.name]))
        stages = len(self.pointpn_stages) + 1
        for name in ("pointpn_widths", "pointpn_hidden", "pointpn_blocks"):
            if len(getattr(self, name)) != stages:
                raise ConfigError(f"{name} needs one value per Point-PN stage ({stages}: pointpn_stages + the last, "
                                  f"num_tokens), got {list(getattr(self, name))}")

    # --- the saved form -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready: tuples become lists."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "model config") -> Any2PointConfig:
        """Strict: an unknown key or a wrong type raises ConfigError naming the key (and listing the known ones)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a table of settings, got {type(data).__name__}")
        check_keys(data, [f.name for f in dataclasses.fields(cls)], what=where)
        return cls(**data)

    def replace(self, **overrides) -> Any2PointConfig:
        return Any2PointConfig.from_dict({**self.to_dict(), **overrides}, where="Any2Point setting")

    @classmethod
    def help(cls) -> dict[str, str]:
        """{setting: one help line}, for --help texts and docs."""
        return {f.name: f.metadata["help"] for f in dataclasses.fields(cls)}


def check_keys(data, known, *, what=""):
    """ConfigError naming the first key of `data` that is not in `known` (and listing those), if there is one: the
    one check of unknown keys, for model settings and run recipes alike."""
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown {what + ' ' if what else ''}key {unknown[0]!r} (known: {', '.join(known)})")


@dataclass(frozen=True)
class Preset:
    """A named run variant: settings over the config, plus what happens to the backbone.

    backbone: "pretrained" (as given), "scratch" (a small random transformer of the same positional kind, trained
    whole) or "random" (the same architecture with seeded random weights, frozen: the "does pretraining matter?"
    control).
    """
    help: str
    overrides: dict = field(default_factory=dict)
    backbone: Literal["pretrained", "scratch", "random"] = "pretrained"

    def apply(self, config: Any2PointConfig) -> Any2PointConfig:
        return config.replace(**self.overrides)


PRESETS = {
    "any2point": Preset("the method: frozen backbone, virtual projection, bottleneck and guided adapters"),
    "linear_probe": Preset("baseline: frozen backbone with the PE sampling, no adapters",
                           dict(adapter=False, guided=False)),
    "from_scratch": Preset("baseline: same tokenizer and projection, a small random transformer trained whole",
                           dict(adapter=False, guided=False, freeze_backbone=False), backbone="scratch"),
    "random_backbone": Preset("control: Any2Point on the backbone's architecture with seeded random frozen weights",
                              backbone="random"),
}


# --- type checking (of the few annotation forms the configs use) -----------------------------------------------
@functools.cache
def type_hints(cls):
    return typing.get_type_hints(cls)


def check_value(name, value, hint):
    """`value` as the type `hint` says (ints accepted for floats, lists for tuples), or a ConfigError naming `name`.

    Shared by Any2PointConfig and the trainer's RunConfig, so a recipe is checked in one way everywhere."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return check_value(name, value, a)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is tuple and args[1:] == (Ellipsis,):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list of values, got {value!r}")
        return tuple(check_value(name, v, args[0]) for v in value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{name} must be a list of {len(args)} values, got {value!r}")
        return tuple(check_value(name, v, a) for v, a in zip(value, args))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if hint in (bool, str, dict):
        if not isinstance(value, hint):
            raise ConfigError(f"{name} must be a {hint.__name__}, got {value!r}")
        return value
    return value
