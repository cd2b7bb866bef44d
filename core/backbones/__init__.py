"""Backbone families behind one protocol (see base.py). Adding a family = one file + one row in FAMILIES.

Spec strings ("timm:...", "hf-text:...", "packaged:...") are not parsed here: zoo/specs.py builds library models
from them; core only wraps a built model into its family.
"""
from dataclasses import dataclass
from typing import Callable

import torch

from core.backbones import hf_audio, hf_text, timm_vit
from core.backbones.base import Backbone


@dataclass(frozen=True)
class Family:
    key: str  # short name, also the tests' parameter id
    cls: type  # the Backbone subclass
    model_classes: tuple  # class names of library models it wraps, matched on the model's class hierarchy
    tiny: Callable | None  # () -> a tiny random library model of this family; every family needs one (tests)


FAMILIES = [
    Family("timm-dinov2", timm_vit.TimmViT, ("VisionTransformer",), timm_vit.tiny),
    Family("bert", hf_text.HFBert, ("BertModel", "RobertaModel", "XLMRobertaModel"), hf_text.tiny_bert),
    Family("clip-text", hf_text.HFCLIPText, ("CLIPTextModel", "CLIPTextTransformer", "CLIPTextModelWithProjection"),
           hf_text.tiny_clip_text),
    Family("whisper", hf_audio.HFWhisperEncoder, ("WhisperEncoder", "WhisperModel"), hf_audio.tiny_whisper),
    Family("ast", hf_audio.HFAST, ("ASTModel",), hf_audio.tiny_ast),
]


def wrap(model):
    """A library model (timm / transformers nn.Module) or a Backbone -> its Backbone, frozen and in eval mode."""
    if isinstance(model, str):
        raise TypeError(f"{model!r} is a spec string: build it with zoo.build_backbone({model!r})")
    if not isinstance(model, Backbone):
        names = {cls.__name__ for cls in type(model).__mro__}
        family = next((f for f in FAMILIES if names & set(f.model_classes)), None)
        if family is None:
            known = ", ".join(n for f in FAMILIES for n in f.model_classes)
            raise ValueError(f"no backbone family for {type(model).__name__}; add one in core/backbones/ "
                             f"(supported: {known})")
        model = family.cls(model)
    model.requires_grad_(False)
    return model.eval()


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
