"""The backbone protocol: what Any2Point needs from a frozen transformer, whatever its modality.

A family wraps a library model (timm, transformers) and exposes:
  width          C, the token width
  blocks         list of callables (B, T, C) -> (B, T, C), in order
  pos_kind       "1d" or "2d": the shape of the pretrained positional space
  pos_table()    (L, C) or (H, W, C), read from the model's own weights (a view, never a copy)
  num_prefix     prefix tokens the model itself has (cls, distillation, registers); informational
  ffn_output(i)  the module whose output is block i's FFN branch, after any layer scale (adapter hook point)
  post_norm(i)   post-LN families (BERT): the LayerNorm that ends block i, so the guided adapter adds its update
                 before it and the residual stream stays normalised; None (default) for pre-LN blocks
  embed(x)       whatever the family applies before block 0 (BERT: token-type + LayerNorm); identity by default
  final_norm(x)  the norm after the last block; identity if the model has none
  cls_init()     (C,) a good start for our class token (the model's own cls + its position), or None
  modality       "vision" | "language" | "audio"; default_distance: the virtual camera distance for 2D
The wrapped module is `self.model`, so its state dict (and fingerprint) is the library model's own.
"""
from torch import nn


class Backbone(nn.Module):
    pos_kind = "1d"
    modality = "vision"
    default_distance = 1.8
    num_prefix = 0

    def __init__(self, model):
        super().__init__()
        self.model = model

    @property
    def width(self):
        raise NotImplementedError

    @property
    def blocks(self):
        raise NotImplementedError

    def pos_table(self):
        raise NotImplementedError

    def ffn_output(self, i):
        raise NotImplementedError

    def post_norm(self, i):
        return None

    def embed(self, x):
        return x

    def final_norm(self, x):
        return x

    def cls_init(self):
        return None

    def forward(self, tokens):
        """The bare frozen path on ready-made tokens (B, T, C): embed, every block, final norm (for baselines)."""
        x = self.embed(tokens)
        for blk in self.blocks:
            x = blk(x)
        return self.final_norm(x)


def call_layer(layer):
    """transformers layers take (hidden, attention_mask) and may return a tuple; no mask: points have no order."""
    def run(x):
        out = layer(x, None)
        return out[0] if isinstance(out, tuple) else out
    return run
