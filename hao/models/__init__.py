"""Reference models built in-repo (no downloads): torchvision-layout ResNets."""
from hao.models.resnet import resnet18, resnet50

__all__ = ["resnet18", "resnet50"]
