"""Hugging Face audio encoders: Whisper encoder (1D, sinusoidal table) and AST (2D frequency x time grid)."""
import torch

from core.backbones.base import Backbone, call_layer


class HFWhisperEncoder(Backbone):
    modality = "audio"

    def __init__(self, model):
        super().__init__(getattr(model, "encoder", model))  # WhisperModel or WhisperEncoder

    @property
    def width(self):
        return self.model.config.d_model

    @property
    def blocks(self):
        return [call_layer(layer) for layer in self.model.layers]

    def pos_table(self):
        return self.model.embed_positions.weight

    def ffn_output(self, i):
        return self.model.layers[i].fc2

    def final_norm(self, x):
        return self.model.layer_norm(x)


class HFAST(Backbone):
    """Audio Spectrogram Transformer: patches of a (mel x frames) spectrogram, a non-square grid (12 x 101)."""
    pos_kind = "2d"
    modality = "audio"
    default_distance = 1.4
    num_prefix = 2  # cls + distillation

    def __init__(self, model):
        super().__init__(getattr(model, "audio_spectrogram_transformer", model))
        self.grid = tuple(self.model.embeddings.get_shape(self.model.config))

    @property
    def width(self):
        return self.model.config.hidden_size

    @property
    def layers(self):  # transformers 5 keeps them on the model, 4.x under .encoder.layer
        return self.model.layers if hasattr(self.model, "layers") else self.model.encoder.layer

    @property
    def blocks(self):
        return [call_layer(layer) for layer in self.layers]

    def pos_table(self):
        h, w = self.grid
        return self.model.embeddings.position_embeddings[0, self.num_prefix:].reshape(h, w, -1)

    def ffn_output(self, i):
        layer = self.layers[i]
        return layer.mlp if hasattr(layer, "mlp") else layer.output.dense

    def final_norm(self, x):
        return self.model.layernorm(x)

    def cls_init(self):
        emb = self.model.embeddings
        return (emb.cls_token[0, 0] + emb.position_embeddings[0, 0]).detach().clone()


def tiny_whisper():
    """A tiny random model of this family (no download), for the tests."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder
    enc = WhisperEncoder(WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                                       max_source_positions=50, num_mel_bins=8))
    with torch.no_grad():  # a non-degenerate table, as in the real (sinusoidal) model
        enc.embed_positions.weight.normal_()
    return enc


def tiny_ast():
    """A tiny random model of this family (no download), for the tests."""
    from transformers import ASTConfig, ASTModel
    # 2 x 5 patch grid: non-square on purpose
    return ASTModel(ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                              num_mel_bins=32, max_length=64, patch_size=16, frequency_stride=10, time_stride=10))
