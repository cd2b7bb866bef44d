"""core.backbones.lite against transformers and timm: same keys, same outputs; the packaged load path never imports
transformers or timm."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.backbones import lite, wrap
from core.backbones.hf_audio import HFWhisperEncoder
from core.backbones.hf_text import HFBert
from core.backbones.timm_vit import TimmViT
from zoo.fingerprint import state_fingerprint
from zoo.registry import CHECKPOINTS, DEFAULTS, get_entry
from zoo.sources import PACKAGED, load_packaged
from zoo.specs import build_backbone, parse

transformers = pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[1]


def _twins(hf, ours):
    """Load transformers' random weights into the lite module (strict) and check the state dicts are the same."""
    ours.load_state_dict(hf.state_dict(), strict=True)
    hs, ls = hf.state_dict(), ours.state_dict()
    assert hs.keys() == ls.keys()
    assert all(hs[k].shape == ls[k].shape for k in hs)
    assert state_fingerprint(hf) == state_fingerprint(ours)
    return hf.eval(), ours.eval()


def _close(a, b):
    assert a.shape == b.shape and (a - b).abs().max().item() <= 1e-5


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
def test_bert_matches_transformers(act):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=24, hidden_act=act)
    hf, ours = _twins(transformers.BertModel(cfg), lite.BertModel(lite.BertConfig.from_dict(cfg.to_dict())))
    ids = torch.randint(0, 50, (3, 16))
    types = torch.randint(0, 2, (3, 16))
    mask = torch.ones(3, 16, dtype=torch.long)
    mask[1, 10:] = 0
    with torch.no_grad():
        a, b = hf(input_ids=ids, token_type_ids=types), ours(input_ids=ids, token_type_ids=types)
        _close(a.last_hidden_state, b.last_hidden_state)
        _close(a.pooler_output, b.pooler_output)
        a, b = hf(input_ids=ids, attention_mask=mask).last_hidden_state, ours(input_ids=ids, attention_mask=mask)[0]
        _close(a[mask.bool()], b[mask.bool()])  # padded positions' own outputs are not meaningful
        # the path Any2Point takes: the family wrapper around each model, on ready-made tokens
        bh, bl = wrap(hf), wrap(ours)
        assert type(bl) is HFBert and bl.width == 32 and bl.pos_table().shape == (24, 32)
        assert bl.ffn_output(1) is ours.encoder.layer[1].output.dense
        x = torch.randn(2, 20, 32)
        _close(bh(x), bl(x))


def test_whisper_encoder_matches_transformers():
    from transformers.models.whisper.modeling_whisper import WhisperEncoder
    torch.manual_seed(0)
    cfg = transformers.WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
                                     num_mel_bins=8, max_source_positions=12)
    hf, ours = _twins(WhisperEncoder(cfg), lite.WhisperEncoder(lite.WhisperConfig.from_dict(cfg.to_dict())))
    assert not ours.layers[0].self_attn.k_proj.bias  # Whisper's keys have no bias
    feats = torch.randn(2, 8, 24)
    with torch.no_grad():
        _close(hf(feats).last_hidden_state, ours(feats).last_hidden_state)
        bh, bl = wrap(hf), wrap(ours)
        assert type(bl) is HFWhisperEncoder and bl.width == 32 and bl.pos_table().shape == (12, 32)
        x = torch.randn(2, 12, 32)
        _close(bh(x), bl(x))
    with pytest.raises(ValueError, match="mel frames"):
        ours(torch.randn(1, 8, 20))


def test_vit_matches_timm():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ref = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=56, embed_dim=64, depth=2,
                            num_heads=2, num_classes=0)
    with torch.no_grad():  # timm's layer scale starts at 1e-5: make the blocks matter
        for blk in ref.blocks:
            blk.ls1.gamma.uniform_(0.5, 1.5), blk.ls2.gamma.uniform_(0.5, 1.5)
    hf, ours = _twins(ref, lite.VisionTransformer(img_size=56, patch_size=14, embed_dim=64, depth=2, num_heads=2))
    assert ours.blocks[0].attn.num_heads == ref.blocks[0].attn.num_heads == 2
    assert lite.VisionTransformer(img_size=28, patch_size=14, embed_dim=384, depth=1).blocks[0].attn.num_heads == 6  # ViT-S/14
    images = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        _close(hf.forward_features(images), ours.forward_features(images))
        _close(hf(images), ours(images))
        bh, bl = wrap(hf), wrap(ours)
        assert type(bl) is TimmViT and bl.width == 64 and bl.pos_table().shape == (4, 4, 64)
        assert bl.grid == bh.grid and bl.table_prefix == bh.table_prefix == 1 and bl.num_prefix == 1
        assert bl.ffn_output(1) is ours.blocks[1].ls2
        _close(bh.cls_init(), bl.cls_init())
        x = torch.randn(2, 20, 64)
        _close(bh(x), bl(x))


def test_fresh_build_matches_transformers_init():
    """Whisper's sinusoid table and (seeded) BERT init are transformers' own, so scratch:1d kept its weights."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder
    cfg = transformers.WhisperConfig(d_model=32, encoder_layers=1, encoder_attention_heads=4, max_source_positions=12)
    assert torch.equal(WhisperEncoder(cfg).embed_positions.weight,
                       lite.WhisperEncoder(lite.WhisperConfig.from_dict(cfg.to_dict())).embed_positions.weight)
    scratch = build_backbone("scratch:1d")[0]
    assert isinstance(scratch.model, lite.BertModel) and scratch.model.pooler is None
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ref = transformers.BertModel(transformers.BertConfig(
            hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512,
            max_position_embeddings=256, vocab_size=8), add_pooling_layer=False)
    assert state_fingerprint(scratch.model) == state_fingerprint(ref)


def test_meta_build_takes_cached_weights():
    """How zoo.sources.common builds: on meta (no init at all), then the weights by assignment, strict."""
    cfg = lite.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=64, max_position_embeddings=24)
    state = lite.BertModel(cfg).state_dict()
    with torch.device("meta"):
        model = lite.BertModel(cfg)
    assert all(p.is_meta for p in model.parameters()) and not list(model.buffers())
    model.load_state_dict(state, strict=True, assign=True)
    assert state_fingerprint(model) == state_fingerprint(state)


def test_unsupported_configs_are_refused():
    with pytest.raises(ValueError, match="position_embedding_type"):
        lite.BertConfig.from_dict({"hidden_size": 32, "position_embedding_type": "relative_key"})
    with pytest.raises(ValueError, match="is_decoder"):
        lite.BertConfig.from_dict({"is_decoder": True})
    with pytest.raises(ValueError, match="dropout"):
        lite.WhisperConfig.from_dict({"dropout": 0.1})


# --- the packaged backbones of the default entries -----------------------------------------------------------------

ENTRIES = [DEFAULTS["vision"], DEFAULTS["language"], DEFAULTS["audio"]]


def _source(entry):
    src = PACKAGED[parse(get_entry(entry).backbone)[1]]
    ok, why = src.available()
    if not ok:
        pytest.skip(why)
    return src


@pytest.mark.parametrize("entry", ENTRIES)
def test_packaged_lite_fingerprint_is_the_recorded_one(cache, entry):
    src = _source(entry)
    recorded = json.loads((CHECKPOINTS / entry / "config.json").read_text())["backbone"]["sha256"]
    for hit in (False, True):  # converted from the package, then read back from the cache
        model, info = load_packaged(src.name)
        assert info["cache_hit"] == hit and type(model).__module__ == "core.backbones.lite"
        assert info["sha256"] == state_fingerprint(model) == recorded


def test_load_and_predict_never_import_transformers_or_timm(cache):
    for entry in ENTRIES:
        load_packaged(_source(entry).name)  # warm the cache: only the one-time conversion may use transformers/onnx
    child = f"""
import json, sys
import numpy as np
from zoo import load_model
heavy = lambda: sorted(m for m in ("transformers", "timm", "torchvision", "onnx") if m in sys.modules)
imported = heavy()
out, sympy = {{}}, False
for name in {ENTRIES!r}:
    m = load_model(name)
    sympy |= "sympy" in sys.modules
    m.predict(np.random.default_rng(0).normal(size=(512, 3)).astype(np.float32))
    out[name] = m.info.backbone["sha256"]
print(json.dumps(dict(at_import=imported, after=heavy(), sympy=sympy, sha=out)))
"""
    env = dict(os.environ, ANY2POINT_CACHE=str(cache), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    r = json.loads(run.stdout.strip().splitlines()[-1])
    assert r["at_import"] == r["after"] == [], f"imported on the packaged load path: {r['after']}"
    # normal_/sin on a meta tensor load torch's python meta kernels (sympy & co, ~0.8 s): lite skips init on meta
    assert not r["sympy"], "loading imported sympy: an init op ran on the meta-device build"
    for name, sha in r["sha"].items():  # load_artifact already refuses a mismatch; say it here too
        assert sha == json.loads((CHECKPOINTS / name / "config.json").read_text())["backbone"]["sha256"]
