"""timm Vision Transformers (ViT, DINOv2, DeiT, ...): 2D positional grid."""
from core.backbones.base import Backbone


class TimmViT(Backbone):
    pos_kind = "2d"
    modality = "vision"

    def __init__(self, model):
        super().__init__(model)
        self.grid = tuple(model.patch_embed.grid_size)
        self.num_prefix = model.num_prefix_tokens
        # prefix entries in pos_embed: 0 for no_embed_class models, else the cls/dist tokens
        self.table_prefix = model.pos_embed.shape[1] - self.grid[0] * self.grid[1]

    @property
    def width(self):
        return self.model.embed_dim

    @property
    def blocks(self):
        return list(self.model.blocks)

    def pos_table(self):
        h, w = self.grid
        return self.model.pos_embed[0, self.table_prefix:].reshape(h, w, -1)

    def ffn_output(self, i):
        return self.model.blocks[i].ls2  # after layer scale; Identity when the model has none

    def embed(self, x):
        return self.model.norm_pre(x)

    def final_norm(self, x):
        return self.model.norm(x)

    def cls_init(self):
        if getattr(self.model, "cls_token", None) is None:
            return None
        pos = self.model.pos_embed[0, 0] if self.table_prefix > 0 else 0
        return (self.model.cls_token[0, 0] + pos).detach().clone()


def tiny():
    """A tiny random model of this family (no download), for the tests."""
    import timm
    # DINOv2-style: layer scale on, cls token, non-trivial 4x4 grid
    return timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=56, embed_dim=32,
                             depth=2, num_heads=2, num_classes=0)
