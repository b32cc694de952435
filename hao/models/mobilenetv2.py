"""MobileNetV2 (ImageNet, 224x224) with the flat module layout HAQ's latency table is indexed by:
``features.0.0`` stem, ``features.k.conv.{0,3,6}`` (expand, depthwise, project; ``{0,3}`` for the t=1 block),
``features.18.0`` last 1x1, ``classifier``. Seeded random weights; no download."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["mobilenet_v2", "MOBILENETV2_SETTINGS"]

#: (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper.
MOBILENETV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                        (6, 160, 3, 2), (6, 320, 1, 1))


def _cbr(cin: int, cout: int, k: int, s: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int) -> None:
        super().__init__()
        mid = cin * t
        layers: list[nn.Module] = [] if t == 1 else _cbr(cin, mid, 1, 1)
        layers += _cbr(mid, mid, 3, stride, groups=mid)
        layers += [nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, seed: int = 0) -> None:
        super().__init__()
        feats: list[nn.Module] = [nn.Sequential(*_cbr(3, 32, 3, 2))]
        c = 32
        for t, cout, n, s in MOBILENETV2_SETTINGS:
            for i in range(n):
                feats.append(InvertedResidual(c, cout, s if i == 0 else 1, t))
                c = cout
        feats.append(nn.Sequential(*_cbr(c, 1280, 1, 1)))
        self.features = nn.Sequential(*feats)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1280, num_classes)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5)
                    if m.bias is not None:
                        m.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def mobilenet_v2(num_classes: int = 1000, seed: int = 0) -> MobileNetV2:
    return MobileNetV2(num_classes, seed)
