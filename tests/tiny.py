"""Tiny random backbones, one per family, built from configs (no downloads). Shared by the tests."""
import torch


def tiny_timm():
    import timm
    # DINOv2-style: layer scale on, cls token, non-trivial 4x4 grid
    return timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=56, embed_dim=32,
                             depth=2, num_heads=2, num_classes=0)


def tiny_bert():
    from transformers import BertConfig, BertModel
    return BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=40, vocab_size=50),
                     add_pooling_layer=False)


def tiny_clip_text():
    from transformers import CLIPTextConfig, CLIPTextModel
    return CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, max_position_embeddings=30, vocab_size=50))


def tiny_whisper():
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder
    enc = WhisperEncoder(WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                                       max_source_positions=50, num_mel_bins=8))
    with torch.no_grad():  # a non-degenerate table, as in the real (sinusoidal) model
        enc.embed_positions.weight.normal_()
    return enc


def tiny_ast():
    from transformers import ASTConfig, ASTModel
    # 2 x 5 patch grid: non-square on purpose
    return ASTModel(ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                              num_mel_bins=32, max_length=64, patch_size=16, frequency_stride=10, time_stride=10))


TINY = {"timm-dinov2": tiny_timm, "bert": tiny_bert, "clip-text": tiny_clip_text, "whisper": tiny_whisper,
        "ast": tiny_ast}


def tiny_model(family="timm-dinov2", num_classes=3, **kw):
    from core import Any2Point
    torch.manual_seed(0)
    kw = {"num_tokens": 32, "k": 8, "num_points": 256, **kw}
    return Any2Point(TINY[family](), num_classes, **kw)


def shape_cloud(kind, n=256, generator=None):
    """Surface samples of a unit sphere or cube, (n, 3)."""
    p = torch.randn(n, 3, generator=generator)
    if kind == "sphere":
        return p / p.norm(dim=-1, keepdim=True)
    return p / p.abs().amax(dim=-1, keepdim=True)


def sphere_cube_clouds(n, points, seed=0):
    """n clouds alternating sphere / cube surfaces (an easy 2-class problem): float32 (n, points, 3), labels (n,)."""
    import numpy as np
    g = np.random.default_rng(seed)
    p = g.normal(size=(n, points, 3)).astype(np.float32)
    labels = np.arange(n) % 2
    p[labels == 0] /= np.linalg.norm(p[labels == 0], axis=-1, keepdims=True)
    p[labels == 1] /= np.abs(p[labels == 1]).max(axis=-1, keepdims=True)
    return p, labels


def write_scanobjectnn(root, sizes=(("training", 24), ("test", 8)), points=256):
    """A tiny ScanObjectNN PB_T50_RS in the official h5 layout under root/main_split/."""
    import h5py
    import numpy as np
    (root / "main_split").mkdir(parents=True)
    for name, n in sizes:
        pts, labels = sphere_cube_clouds(n, points, seed=n)
        with h5py.File(root / f"main_split/{name}_objectdataset_augmentedrot_scale75.h5", "w") as f:
            f["data"], f["label"] = pts, labels.astype(np.int64)
    return root
