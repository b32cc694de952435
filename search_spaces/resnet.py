"""ResNet family: elastic depth / width with per-layer bits."""
from hao.space import register_space
from hao.space.resnet import ResNetSpace


@register_space("resnet-cifar", family="resnet",
                description="Basic-block ResNet for 32x32x3: depth {1,2,3} x3 stages, width {50,75,100}%, "
                            "per-layer W{2,4,8}/A{4,8}")
def resnet_cifar(**kw) -> ResNetSpace:
    return ResNetSpace("resnet-cifar", **({"input_shape": (3, 32, 32)} | kw))


@register_space("resnet-fmnist", family="resnet",
                description="Basic-block ResNet for 28x28x1 (Fashion-MNIST), same choices as resnet-cifar")
def resnet_fmnist(**kw) -> ResNetSpace:
    return ResNetSpace("resnet-fmnist", **({"input_shape": (1, 28, 28)} | kw))
