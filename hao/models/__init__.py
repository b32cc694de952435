"""Reference models built in-repo (no downloads): torchvision-layout ResNets."""
from hao.models.mobilenetv2 import mobilenet_v2
from hao.models.resnet import resnet18, resnet50

__all__ = ["mobilenet_v2", "resnet18", "resnet50"]
