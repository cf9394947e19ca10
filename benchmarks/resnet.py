"""A torchvision-free ResNet-18 (BasicBlock, 11.7M parameters with BatchNorm) for conversion
benchmarks and tests.

``resnet18()`` matches torchvision's layer for layer: 7x7 stride-2 stem, 3x3 max pool, four
stages of two BasicBlocks (64, 128, 256, 512 channels, 1x1 stride-2 downsampling), adaptive
average pool and a 1000-way fc. ``norm=False`` drops every BatchNorm2d (and gives the
convolutions biases instead) for converters without normalization support.
"""
from __future__ import annotations

from torch import Tensor, nn


def _norm(channels: int, norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if norm else nn.Identity()


class BasicBlock(nn.Module):
    """``relu(x' + bn(conv(relu(bn(conv(x))))))`` with ``x'`` = x or a 1x1 strided projection."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, norm: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=not norm)
        self.bn1 = _norm(c_out, norm)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=not norm)
        self.bn2 = _norm(c_out, norm)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=not norm), _norm(c_out, norm))

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, H / s, W / s)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), num_classes: int = 1000,
                 in_channels: int = 3, norm: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=not norm)
        self.bn1 = _norm(widths[0], norm)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, c_in = [], widths[0]
        for i, (width, count) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(c_in, width, stride, norm)] + [BasicBlock(width, width, 1, norm) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, num_classes)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H / 4, W / 4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512, H / 32, W / 32)
        x = self.avgpool(x)  # (B, 512, 1, 1)
        return self.fc(x.flatten(1))  # (B, 512) -> (B, num_classes)


def resnet18(num_classes: int = 1000, norm: bool = True) -> ResNet:
    """ResNet-18: 11,689,512 parameters with BatchNorm (like torchvision)."""
    return ResNet(num_classes=num_classes, norm=norm)
