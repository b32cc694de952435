"""ViT family: joint depth / heads / MLP ratio, per-matrix bits and Q-BERT quantization groups."""
from hao.space import register_space
from hao.space.vit import ViTSpace


@register_space("vit-fmnist", family="vit",
                description="Vision transformer for 28x28x1 (Fashion-MNIST): 4x4 patches (49 tokens), width 64, "
                            "depth {2,3,4}, heads {1,2,4} of 16, MLP ratio {1,2,4}, per-matrix W{2,4,8}/A{4,8}, "
                            "Q/K/V and output-projection ranges per matrix, per head or two per head")
def vit_fmnist(**kw) -> ViTSpace:
    return ViTSpace("vit-fmnist", **({"input_shape": (1, 28, 28)} | kw))
