"""Hugging Face text encoders: the BERT family (BERT, RoBERTa, MiniLM, ...) and the CLIP text tower. 1D positions."""
from core.backbones.base import Backbone, call_layer


class HFBert(Backbone):
    modality = "language"

    def __init__(self, model):
        super().__init__(model)
        self.emb = model.embeddings

    @property
    def width(self):
        return self.model.config.hidden_size

    @property
    def blocks(self):
        return [call_layer(layer) for layer in self.model.encoder.layer]

    def pos_table(self):
        table = self.emb.position_embeddings.weight
        # RoBERTa-style tables reserve the first padding_idx + 1 rows
        start = getattr(self.emb, "padding_idx", None)
        return table[start + 1:] if isinstance(start, int) else table

    def ffn_output(self, i):
        return self.model.encoder.layer[i].output.dense

    def post_norm(self, i):
        return self.model.encoder.layer[i].output.LayerNorm

    def embed(self, x):
        if hasattr(self.emb, "token_type_embeddings"):
            x = x + self.emb.token_type_embeddings.weight[0]
        return self.emb.LayerNorm(x)


class HFCLIPText(Backbone):
    """CLIP text tower; run without its causal mask (point tokens have no order)."""
    modality = "language"

    def __init__(self, model):
        super().__init__(model)
        self.text = getattr(model, "text_model", model)

    @property
    def width(self):
        return self.text.config.hidden_size

    @property
    def blocks(self):
        return [call_layer(layer) for layer in self.text.encoder.layers]

    def pos_table(self):
        return self.text.embeddings.position_embedding.weight

    def ffn_output(self, i):
        return self.text.encoder.layers[i].mlp

    def final_norm(self, x):
        return self.text.final_layer_norm(x)


def tiny_bert():
    """A tiny random model of this family (no download), for the tests."""
    from transformers import BertConfig, BertModel
    return BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=40, vocab_size=50),
                     add_pooling_layer=False)


def tiny_clip_text():
    """A tiny random model of this family (no download), for the tests."""
    from transformers import CLIPTextConfig, CLIPTextModel
    return CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, max_position_embeddings=30, vocab_size=50))
