"""Plain-torch copies of the three encoders behind the packaged backbones: BERT (MiniLM-L6), the Whisper encoder
(tiny.en) and timm's DINOv2 ViT (ViT-S/14).

Why: importing transformers' modeling files costs 1-2 s (torch._dynamo, torch.distributed, generation utils), and
importing timm about 2.4 s (its layers import torchvision's model zoo, which imports torch._dynamo): more than the
rest of a cold zoo load. These are the same maths in plain torch.

Contract: state_dict keys, shapes and module attribute paths are exactly transformers' `BertModel` and
`WhisperEncoder` and timm's `VisionTransformer`, and so are the class names, so the converted weights load strict,
the weights fingerprint does not change and the backbone wrappers (hf_text.HFBert, hf_audio.HFWhisperEncoder,
timm_vit.TimmViT, matched on the class name) work on either. Encoder inference only: no decoder, cross-attention, KV
cache or relative positions (from_dict refuses configs that need them); the ViT at its native grid only (no position
interpolation, no registers). tests/test_lite.py checks all three against their libraries.
"""
import dataclasses
import math
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

_tanh_gelu = partial(F.gelu, approximate="tanh")
ACT = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu, "swish": F.silu, "gelu_new": _tanh_gelu,
       "gelu_pytorch_tanh": _tanh_gelu}


def _embedding(n, dim, **kw):
    # The loader builds on the meta device and assigns the cached weights, so init there is wasted, and normal_ (or
    # sin) on a meta tensor loads torch's python meta kernels (sympy, mpmath: ~0.8 s once per process): skip it
    meta = torch.get_default_device().type == "meta"
    return nn.Embedding(n, dim, _weight=torch.empty(n, dim) if meta else None, **kw)


class Output(NamedTuple):
    """The part of transformers' model output we read (`.last_hidden_state`, or `[0]`)."""
    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None = None


class _Config:
    ONLY = {}  # transformers settings that change the maths: only these values are implemented here

    @classmethod
    def from_dict(cls, d):
        """From a transformers `config.to_dict()` (dozens of keys, most irrelevant to an encoder forward)."""
        bad = {k: d[k] for k, v in cls.ONLY.items() if d.get(k, v) != v}
        if bad:
            raise ValueError(f"lite {cls.__name__} does not implement {bad}; use the transformers model")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclasses.dataclass
class BertConfig(_Config):  # defaults are transformers.BertConfig's
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    ONLY = {"position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False}


@dataclasses.dataclass
class WhisperConfig(_Config):  # defaults are transformers.WhisperConfig's (tiny)
    d_model: int = 384
    encoder_layers: int = 4
    encoder_attention_heads: int = 6
    encoder_ffn_dim: int = 1536
    num_mel_bins: int = 80
    max_source_positions: int = 1500
    activation_function: str = "gelu"
    # Whisper's dropouts all default to 0; none is implemented, so a config that sets one is refused
    ONLY = {"dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0, "encoder_layerdrop": 0.0,
            "scale_embedding": False}


# --- BERT: post-LN blocks, learned absolute positions -------------------------------------------------------------

class BertEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = _embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = _embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = _embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)
        # no position_ids / token_type_ids buffers: transformers' are non-persistent (not in the state dict), and a
        # module without buffers can be built on the meta device and take the cached weights by assignment

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None):
        x = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if position_ids is None:
            position_ids = torch.arange(x.shape[1], device=x.device)
        types = self.token_type_embeddings.weight[0] if token_type_ids is None else self.token_type_embeddings(
            token_type_ids)
        return self.dropout(self.LayerNorm(x + types + self.position_embeddings(position_ids)))  # their sum order


class BertSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.num_attention_heads = c.num_attention_heads
        self.attention_head_size = c.hidden_size // c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout_p = c.attention_probs_dropout_prob

    def forward(self, x, mask=None):
        B, T, _ = x.shape
        q, k, v = (f(x).view(B, T, -1, self.attention_head_size).transpose(1, 2)
                   for f in (self.query, self.key, self.value))
        # transformers passes scale=head**-0.5 explicitly; SDPA's default 1/sqrt(head) may round differently
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0,
                                           scale=self.attention_head_size ** -0.5)
        return o.transpose(1, 2).reshape(B, T, -1)


class BertSelfOutput(nn.Module):  # dense -> dropout -> LN(x + residual): post-LN
    def __init__(self, c, d_in=None):
        super().__init__()
        self.dense = nn.Linear(d_in or c.hidden_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertSelfOutput(c)

    def forward(self, x, mask=None):
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.intermediate_act_fn = ACT[c.hidden_act]

    def forward(self, x):
        return self.intermediate_act_fn(self.dense(x))


class BertOutput(BertSelfOutput):  # the FFN's second half
    def __init__(self, c):
        super().__init__(c, c.intermediate_size)


class BertLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertOutput(c)

    def forward(self, x, attention_mask=None):  # called as layer(x, None) by the wrappers, like transformers'
        x = self.attention(x, attention_mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(c) for _ in range(c.num_hidden_layers))


class BertPooler(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x):
        return torch.tanh(self.dense(x[:, 0]))


class BertModel(nn.Module):
    def __init__(self, config, add_pooling_layer=True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        # transformers' BERT init over the same modules in the same order, so a seeded build draws the same numbers
        std = self.config.initializer_range
        if self.embeddings.word_embeddings.weight.is_meta:  # see _embedding
            return
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.normal_(0.0, std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.zero_()
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                m.weight[m.padding_idx].zero_()
            if isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None):
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        # (B, T) 1 = keep, 0 = padding -> a boolean key mask; none at all when nothing is padded (the fast kernels)
        mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask[:, None, None].bool()
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return Output(x, self.pooler(x) if self.pooler is not None else None)


# --- Whisper encoder: conv stem, pre-LN blocks, sinusoidal positions -----------------------------------------------

def sinusoids(length, channels, max_timescale=10000):
    """Whisper's fixed position table (its weights also carry it, so this only matters for a fresh build)."""
    inv = torch.exp(-math.log(max_timescale) / (channels // 2 - 1) * torch.arange(channels // 2))
    t = torch.arange(length).view(-1, 1) * inv.view(1, -1)
    return torch.cat([t.sin(), t.cos()], dim=1)


class WhisperAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.scaling = self.head_dim ** -0.5
        self.k_proj = nn.Linear(dim, dim, bias=False)  # Whisper's keys have no bias
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        B, T, _ = x.shape
        heads = lambda t: t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        # transformers scales q before the product and attends with scale 1; the same order rounds the same
        q = heads(self.q_proj(x) * self.scaling)
        o = F.scaled_dot_product_attention(q, heads(self.k_proj(x)), heads(self.v_proj(x)), attn_mask=mask, scale=1.0)
        return self.out_proj(o.transpose(1, 2).reshape(B, T, -1))


class WhisperEncoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = WhisperAttention(c.d_model, c.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(c.d_model)
        self.activation_fn = ACT[c.activation_function]
        self.fc1 = nn.Linear(c.d_model, c.encoder_ffn_dim)
        self.fc2 = nn.Linear(c.encoder_ffn_dim, c.d_model)
        self.final_layer_norm = nn.LayerNorm(c.d_model)

    def forward(self, x, attention_mask=None):  # called as layer(x, None) by the wrappers, like transformers'
        x = x + self.self_attn(self.self_attn_layer_norm(x), attention_mask)
        x = x + self.fc2(self.activation_fn(self.fc1(self.final_layer_norm(x))))
        if x.dtype == torch.float16:  # as transformers: keep fp16 activations finite
            big = torch.finfo(x.dtype).max - 1000
            x = x.clamp(-big, big)
        return x


class WhisperEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = c = config
        self.conv1 = nn.Conv1d(c.num_mel_bins, c.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(c.d_model, c.d_model, kernel_size=3, stride=2, padding=1)
        self.embed_positions = _embedding(c.max_source_positions, c.d_model)
        self.embed_positions.requires_grad_(False)
        self.layers = nn.ModuleList(WhisperEncoderLayer(c) for _ in range(c.encoder_layers))
        self.layer_norm = nn.LayerNorm(c.d_model)
        if not self.embed_positions.weight.is_meta:  # see _embedding
            with torch.no_grad():
                self.embed_positions.weight.copy_(sinusoids(c.max_source_positions, c.d_model))

    def forward(self, input_features):
        """(B, mel bins, 2 * max_source_positions) log-mel features -> Output((B, max_source_positions, d_model))."""
        frames = 2 * self.config.max_source_positions
        if input_features.shape[-1] != frames:
            raise ValueError(f"Whisper expects {frames} mel frames, got {input_features.shape[-1]}")
        x = F.gelu(self.conv2(F.gelu(self.conv1(input_features)))).permute(0, 2, 1)
        x = x + self.embed_positions.weight
        for layer in self.layers:
            x = layer(x)
        return Output(self.layer_norm(x))


# --- DINOv2 ViT (timm's VisionTransformer keys): patch conv, cls token, pre-LN blocks with layer scale ---------------
class PatchEmbed(nn.Module):
    def __init__(self, img_size, patch_size, dim):
        super().__init__()
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.proj = nn.Conv2d(3, dim, patch_size, stride=patch_size)

    def forward(self, images):  # (B, 3, H, W) -> (B, H/p * W/p, C)
        return self.proj(images).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, C))


class LayerScale(nn.Module):
    def __init__(self, dim, init=1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x):
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4.0, eps=1e-6):
        super().__init__()
        self.norm1, self.attn, self.ls1 = nn.LayerNorm(dim, eps=eps), Attention(dim, heads), LayerScale(dim)
        self.norm2, self.mlp, self.ls2 = nn.LayerNorm(dim, eps=eps), Mlp(dim, int(dim * mlp_ratio)), LayerScale(dim)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """timm's `vit_*_patch14_dinov2` with num_classes=0: a cls token, its position in the table, no registers."""
    num_prefix_tokens = 1

    def __init__(self, *, img_size, patch_size, embed_dim, depth, num_heads=None):  # sizes: the converted config
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(img_size, patch_size, embed_dim)
        grid = self.patch_embed.grid_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid[0] * grid[1], embed_dim))
        self.norm_pre = nn.Identity()
        heads = num_heads or embed_dim // 64  # DINOv2: 64-dim heads at every size
        self.blocks = nn.Sequential(*[Block(embed_dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward_features(self, images):  # (B, 3, H, W) at the native size -> (B, 1 + grid, C)
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.blocks(self.norm_pre(x)))

    def forward(self, images):  # the pooled cls feature, as timm's num_classes=0 model
        return self.forward_features(images)[:, 0]
