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


@register_space("mbconv-apq224", family="mbconv",
                description="OFA/APQ-style MobileNet space at 224x224x3 (ImageNet): depth {2,3,4} x6 stages, "
                            "k {3,5,7}, ratio {4,6}, W/A {4,6,8}; maps onto the APQ BitFusion table")
def mbconv_apq224(**kw) -> MBConvSpace:
    cfg = dict(input_shape=(3, 224, 224), num_classes=1000, stem_channels=16, stem_stride=2,
               stages=((24, 2), (40, 2), (80, 2), (96, 1), (192, 2), (320, 1)), depths=(2, 3, 4),
               kernel_sizes=(3, 5, 7), ratios=(4, 6), w_bits=(4, 6, 8), a_bits=(4, 6, 8), head_channels=1280)
    return MBConvSpace("mbconv-apq224", **(cfg | kw))


@register_space("mbv3-fmnist", family="mbconv",
                description="MobileNetV3-style MBConv supernet for 28x28x1 (Fashion-MNIST): h-swish stem, a fixed "
                            "ratio-1 first block, squeeze-excite in stages 1 and 3, h-swish in stages 2-3, a "
                            "feature-mix head; depth {2,3,4} x4, k {3,5,7}, ratio {3,4,6}, per-layer W{4,8}/A{8}")
def mbv3_fmnist(**kw) -> MBConvSpace:
    cfg = dict(input_shape=(1, 28, 28), stem_channels=16, stem_act="hswish", first_block=16,
               stages=((24, 2), (40, 2), (64, 1), (96, 2)), se_stages=(False, True, False, True),
               hswish_stages=(False, False, True, True), head_channels=192, feature_mix=256,
               w_bits=(4, 8), a_bits=(8,))
    return MBConvSpace("mbv3-fmnist", **(cfg | kw))


def _ofa_mbv3(name: str, stem: int, widths: tuple[int, ...], head: int, mix: int, kw: dict) -> MBConvSpace:
    """Once-for-All's MobileNetV3 space at one width: h-swish stem (stride 2), a ratio-1 first block as wide as the
    stem, five stages with OFA's squeeze-excite and h-swish placement, final expand ``head``, feature mix ``mix``."""
    cfg = dict(input_shape=(3, 224, 224), num_classes=1000, stem_channels=stem, stem_stride=2, stem_act="hswish",
               first_block=stem, stages=tuple(zip(widths, (2, 2, 2, 1, 2))),
               se_stages=(False, True, False, True, True), hswish_stages=(False, False, True, True, True),
               depths=(2, 3, 4), kernel_sizes=(3, 5, 7), ratios=(3, 4, 6), head_channels=head, feature_mix=mix,
               w_bits=(32,), a_bits=(32,), pin_bits=32)
    return MBConvSpace(name, **(cfg | kw))


@register_space("ofa-mbv3-224", family="mbconv",
                description="Once-for-All MobileNetV3 (w1.0) at 224x224x3, float32: h-swish stem 16 (stride 2), "
                            "ratio-1 first block, stages 24/40/80/112/160 with OFA's squeeze-excite and h-swish, "
                            "depth {2,3,4}, k {3,5,7}, ratio {3,4,6}, final expand 960, feature mix 1280; priced by "
                            "OFA block-level latency tables (`hao latency import ofa`)")
def ofa_mbv3_224(**kw) -> MBConvSpace:
    return _ofa_mbv3("ofa-mbv3-224", 16, (24, 40, 80, 112, 160), 960, 1280, kw)


@register_space("ofa-mbv3-w12-224", family="mbconv",
                description="Once-for-All MobileNetV3 at width 1.2 and 224x224x3, float32 (stem 24, first block 24, "
                            "stages 32/48/96/136/192, final expand 1152, feature mix 1536): the network OFA's "
                            "published per-device latency lookup tables time")
def ofa_mbv3_w12_224(**kw) -> MBConvSpace:
    return _ofa_mbv3("ofa-mbv3-w12-224", 24, (32, 48, 96, 136, 192), 1152, 1536, kw)


@register_space("mbconv-fmnist-res", family="mbconv",
                description="mbconv-fmnist with the input resolution searched as well: {20, 24, 28} pixels (the "
                            "network subsamples the 28x28 images), sharing mbconv-fmnist's trained weights")
def mbconv_fmnist_res(**kw) -> MBConvSpace:
    return MBConvSpace("mbconv-fmnist-res", **({"input_shape": (1, 28, 28), "resolutions": (20, 24, 28),
                                                "checkpoint_name": "mbconv-fmnist"} | kw))
