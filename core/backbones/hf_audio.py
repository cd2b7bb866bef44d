"""Hugging Face audio encoders: Whisper encoder (1D, sinusoidal table) and AST (2D frequency x time grid)."""
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
