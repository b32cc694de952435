"""MBConv family: joint architecture + per-layer bits, weight-sharing supernets."""
from hao.space import register_space
from hao.space.mbconv import MBConvSpace


@register_space("mbconv-fmnist", family="mbconv",
                description="MBConv supernet for 28x28x1 (Fashion-MNIST): depth {2,3,4} x4 stages, k {3,5,7}, "
                            "ratio {3,4,6}, per-layer W{2,4,8}/A{4,8}")
def mbconv_fmnist(**kw) -> MBConvSpace:
    return MBConvSpace("mbconv-fmnist", **({"input_shape": (1, 28, 28)} | kw))


@register_space("mbconv-cifar", family="mbconv",
                description="MBConv supernet for 32x32x3 inputs, same choices as mbconv-fmnist")
def mbconv_cifar(**kw) -> MBConvSpace:
    return MBConvSpace("mbconv-cifar", **({"input_shape": (3, 32, 32)} | kw))
