"""Backbone families behind one protocol (see base.py). Adding a backbone = one file + one line in `wrap`."""
import torch

from core.backbones.base import Backbone
from core.backbones.hf_audio import HFAST, HFWhisperEncoder
from core.backbones.hf_text import HFBert, HFCLIPText
from core.backbones.timm_vit import TimmViT

# (class name of the library model, family); matched on the model's class hierarchy
FAMILIES = [
    ("VisionTransformer", TimmViT),
    ("BertModel", HFBert), ("RobertaModel", HFBert), ("XLMRobertaModel", HFBert),
    ("CLIPTextModel", HFCLIPText), ("CLIPTextTransformer", HFCLIPText), ("CLIPTextModelWithProjection", HFCLIPText),
    ("WhisperEncoder", HFWhisperEncoder), ("WhisperModel", HFWhisperEncoder),
    ("ASTModel", HFAST),
]


def wrap(model):
    """A library model (timm / transformers nn.Module) -> its Backbone family."""
    if isinstance(model, Backbone):
        return model
    names = [cls.__name__ for cls in type(model).__mro__]
    for name, family in FAMILIES:
        if name in names:
            return family(model)
    raise ValueError(f"no backbone family for {type(model).__name__}; add one in core/backbones/ "
                     f"(supported: {', '.join(n for n, _ in FAMILIES)})")


def build_backbone(spec, *, pretrained=True, revision=None, **kwargs):
    """A spec string or a model -> Backbone, frozen and in eval mode.

    Specs: "timm:<model name>" (kwargs go to timm.create_model, e.g. pretrained=False, img_size=..., depth=...),
    "hf-text:<repo id>" and "hf-audio:<repo id>" (transformers from_pretrained at `revision`),
    "scratch:1d" / "scratch:2d" (a small randomly initialised transformer, for the from-scratch baseline).
    "packaged:<name>" specs are offline PyPI backbones; zoo.build_backbone resolves them.
    """
    if not isinstance(spec, str):
        model = spec
    else:
        kind, _, name = spec.partition(":")
        if kind == "timm":
            import timm
            model = timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
        elif kind in ("hf-text", "hf-audio"):
            model = _from_transformers(name, revision, pretrained, **kwargs)
        elif kind == "scratch":
            model = scratch_transformer(name, **kwargs)
        elif kind == "packaged":
            raise ValueError(f"{spec!r} is a packaged backbone: build it with zoo.build_backbone({spec!r})")
        else:
            raise ValueError(f"unknown backbone spec {spec!r}: expected timm:, hf-text:, hf-audio: or packaged:")
    backbone = wrap(model)
    backbone.requires_grad_(False)
    return backbone.eval()


def randomize_(backbone, seed=0, std=0.02):
    """In place: the same architecture with random weights, for the control "does the pretraining matter?".

    Seeded on a CPU generator, so (spec, seed) always names the same weights. Matrices and tables N(0, std) (BERT
    and ViT init), 1-D norm / layer-scale weights 1, every other vector 0. Buffers (fixed ids) are kept.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in backbone.model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
            elif name.endswith(("weight", "gamma")):
                p.fill_(1.0)
            else:
                p.zero_()
    return backbone


def _from_transformers(repo, revision, pretrained, **kwargs):
    import transformers
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
        return cls._from_config(config) if hasattr(cls, "_from_config") else cls(config)
    return cls.from_pretrained(repo, revision=revision, config=config)


def scratch_transformer(kind="2d", *, width=128, depth=4, heads=4):
    """A small random transformer with a 1D (BERT) or 2D (ViT, 16 x 16 grid) positional table: the from-scratch
    baseline trains it whole, with the same tokenizer and projection as Any2Point. Seeded, so a spec always
    names the same weights (and fingerprint)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return _scratch(kind, width, depth, heads)


def _scratch(kind, width, depth, heads):
    if kind == "2d":
        import timm
        return timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=14 * 16, embed_dim=width,
                                 depth=depth, num_heads=heads, num_classes=0)
    if kind == "1d":  # the lite BERT: transformers' keys and (seeded) init, without its import time
        from core.backbones.lite import BertConfig, BertModel
        return BertModel(BertConfig(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads,
                                    intermediate_size=4 * width, max_position_embeddings=256, vocab_size=8),
                         add_pooling_layer=False)
    raise ValueError(f"scratch backbone kind must be 1d or 2d, got {kind!r}")
