"""ResNet18/50 with torchvision's module layout (``conv1, bn1, layer1.0.conv1, ..., downsample.0, fc``),
written here so that tests and spaces need no torchvision download. Weights are seeded random."""
from __future__ import annotations

import torch
from torch import nn

from hao.layers import BasicBlock, Bottleneck

__all__ = ["resnet18", "resnet50", "BasicBlock", "Bottleneck", "ResNet"]


class ResNet(nn.Module):
    def __init__(self, block: type, layers: list[int], num_classes: int = 1000, in_channels: int = 3,
                 seed: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=False)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (c, n) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                ds = None
                if j == 0 and (stride != 1 or cin != c * block.expansion):
                    ds = nn.Sequential(nn.Conv2d(cin, c * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(c * block.expansion))
                blocks.append(block(cin, c, stride if j == 0 else 1, ds))
                cin = c * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    fan_in = m.weight[0].numel()
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                    if m.bias is not None:
                        m.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000, in_channels: int = 3, seed: int = 0) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, seed)


def resnet50(num_classes: int = 1000, in_channels: int = 3, seed: int = 0) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, seed)
