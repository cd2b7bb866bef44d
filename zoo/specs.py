"""Backbone spec strings, `scheme:name`: the one parser, and a table of what each scheme is.

    timm:vit_base_patch14_dinov2.lvd142m        timm model (pretrained from the Hub, pinned by revision)
    hf-text:openai/clip-vit-large-patch14        transformers text encoder (BERT family, CLIP text tower)
    hf-audio:MIT/ast-finetuned-audioset-10-10-0.4593   transformers audio encoder (AST, Whisper)
    packaged:minilm-l6                           an offline backbone carried by a PyPI package (zoo/sources/)
    scratch:1d | scratch:2d                      a small seeded random transformer (the from-scratch baseline)

Adding a scheme = one row in SCHEMES. Nothing else in the project splits a spec string.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Scheme:
    build: Callable  # (name, revision, pretrained, **kwargs) -> (library nn.Module, info dict or None)
    hub_repo: Callable  # name -> the Hub repo id of the weights (for cache checks and model cards), or None
    available: Callable  # (name, revision) -> (ok, reason): can it be built here without downloading?
    help: str


def parse(spec: str) -> tuple[str, str]:
    """'timm:vit_small' -> ('timm', 'vit_small'); a ValueError naming the known schemes otherwise."""
    if not isinstance(spec, str):
        raise TypeError(f"a backbone spec is a string such as 'packaged:minilm-l6', got {type(spec).__name__}")
    scheme, sep, name = spec.partition(":")
    if not sep or scheme not in SCHEMES or not name:
        raise ValueError(f"unknown backbone spec {spec!r}: expected one of "
                         f"{', '.join(s + ':<name>' for s in SCHEMES)}")
    return scheme, name


def short_name(spec: str) -> str:
    """What a table or the app shows: the name for packaged/scratch/timm backbones, the repo for Hub ones."""
    scheme, name = parse(spec)
    return name if scheme in ("packaged", "timm") else spec


def hub_repo(spec: str) -> str | None:
    scheme, name = parse(spec)
    return SCHEMES[scheme].hub_repo(name)


def availability(spec: str, revision: str | None = None) -> tuple[bool, str]:
    scheme, name = parse(spec)
    return SCHEMES[scheme].available(name, revision)


def build_module(spec: str, revision: str | None = None, *, pretrained: bool = True, **kwargs):
    """Spec -> (library nn.Module, info or None). kwargs go to the library (timm.create_model, config overrides).
    pretrained=False: the architecture with random weights, nothing downloaded for timm names and the ARCHITECTURES
    repos (the random-backbone control, the GPU check); packaged backbones still load their local weights."""
    scheme, name = parse(spec)
    return SCHEMES[scheme].build(name, revision, pretrained, **kwargs)


def build_backbone(spec: str, revision: str | None = None, *, pretrained: bool = True, **kwargs):
    """Spec -> (Backbone frozen in eval mode, info). info: spec, revision, sha256 fingerprint of the weights, plus
    the package facts for packaged backbones; an entry records it and refuses other weights."""
    from core.backbones import wrap
    from zoo.fingerprint import state_fingerprint
    module, info = build_module(spec, revision, pretrained=pretrained, **kwargs)
    backbone = wrap(module)
    return backbone, info or dict(spec=spec, revision=revision, sha256=state_fingerprint(backbone.model))


# --- the schemes ---------------------------------------------------------------------------------------------
def _timm(name, revision, pretrained, **kwargs):
    import timm
    if revision and pretrained:  # pinned: the Hub repo at a commit
        return timm.create_model(f"hf-hub:timm/{name}@{revision}", pretrained=True, num_classes=0, **kwargs), None
    return timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs), None


# The architectures of the paper recipes' Hub backbones, written out (sizes as in each repo's config.json), so that
# pretrained=False builds them with random weights where the Hub is unreachable (a GPU check on an offline machine).
ARCHITECTURES = {
    "openai/clip-vit-large-patch14": lambda t: t.CLIPConfig(projection_dim=768, text_config=dict(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
        bos_token_id=0, eos_token_id=2, pad_token_id=1)),
    "MIT/ast-finetuned-audioset-10-10-0.4593": lambda t: t.ASTConfig(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
        layer_norm_eps=1e-12, patch_size=16, qkv_bias=True, frequency_stride=10, time_stride=10, max_length=1024,
        num_mel_bins=128),
}


def _transformers(repo, revision, pretrained, **kwargs):
    import transformers
    if not pretrained and repo in ARCHITECTURES:
        config = ARCHITECTURES[repo](transformers)
    else:
        config = transformers.AutoConfig.from_pretrained(repo, revision=revision)
    for key, value in kwargs.items():
        setattr(config, key, value)
    if config.model_type == "clip":  # the text tower only
        cls, config = transformers.CLIPTextModel, config.text_config
    elif config.model_type == "whisper":
        cls = transformers.WhisperModel
    else:
        cls = transformers.AutoModel
    if not pretrained:
        # AutoModel picks the class from the config (its from_config); a concrete class builds itself
        return (cls.from_config(config) if cls is transformers.AutoModel else cls._from_config(config)), None
    return cls.from_pretrained(repo, revision=revision, config=config), None


def _packaged(name, revision, pretrained, **kwargs):
    from zoo.sources import load_packaged
    # its weights are local, so pretrained=False (random weights wanted, nothing to download) loads them too
    if kwargs:
        raise ValueError(f"packaged:{name} is a fixed pretrained backbone; it takes no build options")
    return load_packaged(name)


def _scratch(name, revision, pretrained, **kwargs):
    from core.backbones import scratch_transformer
    return scratch_transformer(name, **kwargs), None


def _hub_cached(repo, revision):
    if not revision:
        return False, "no pinned backbone revision recorded yet (the zoo pins every Hub download)"
    from huggingface_hub import try_to_load_from_cache
    if isinstance(try_to_load_from_cache(repo, "config.json", revision=revision), str):
        return True, "in the local Hugging Face cache"
    return False, (f"backbone {repo}@{revision[:8]} is not in the local Hugging Face cache; it downloads on first "
                   "load when the Hub is reachable")


def _packaged_available(name, revision):
    from zoo.sources import PACKAGED
    if name not in PACKAGED:
        return False, f"unknown packaged backbone {name!r}; known: {', '.join(PACKAGED)}"
    return PACKAGED[name].available()


def _packaged_hub(name):
    from zoo.sources import PACKAGED
    return PACKAGED[name].hub_id if name in PACKAGED else None


SCHEMES = {
    "timm": Scheme(_timm, lambda name: f"timm/{name}", lambda name, rev: _hub_cached(f"timm/{name}", rev),
                   "a timm model name; pretrained weights from the Hub repo timm/<name>"),
    "hf-text": Scheme(_transformers, lambda name: name, _hub_cached,
                      "a transformers text encoder repo id (BERT family, CLIP)"),
    "hf-audio": Scheme(_transformers, lambda name: name, _hub_cached,
                       "a transformers audio encoder repo id (AST, Whisper)"),
    "packaged": Scheme(_packaged, _packaged_hub, _packaged_available,
                       "an offline pretrained backbone from a PyPI package (zoo/sources/)"),
    "scratch": Scheme(_scratch, lambda name: None, lambda name, rev: (True, "built locally"),
                      "1d or 2d: a small seeded random transformer (the from-scratch baseline)"),
}
