"""torchvision's ResNets: ``resnet18``, ``resnet50`` and the INSGD paper's ``wrn18``.

Layer for layer ``torchvision.models.resnet`` (He et al. 2016, arXiv 1512.03385,
with torchvision's "v1.5" bottleneck that strides in the 3x3 conv): a stem, four
stages of 64/128/256/512 planes, global average pooling and a Linear head. A
block whose shape changes gets torchvision's ``downsample`` shortcut, a 1x1 conv
(with the block's stride) + BatchNorm. ``resnet18`` has two basic blocks
(3x3-BN-ReLU-3x3-BN) per stage; ``resnet50`` has 3, 4, 6, 3 bottleneck blocks
(1x1-BN-ReLU-3x3-BN-ReLU-1x1-BN, 4x expansion).

Two stems (``stem``):

- ``"imagenet"``: torchvision's, a 7x7 stride-2 conv to 64 channels, BN, ReLU
  and a 3x3 stride-2 max-pool, for 224x224 inputs. With 1000 classes this gives
  torchvision's published counts exactly: 11,689,512 (resnet18) and 25,557,032
  (resnet50).
- ``"cifar"``: a 3x3 stride-1 conv to 64 channels, BN, ReLU and no pooling, the
  usual adaptation to 32x32 inputs (the image keeps its resolution through the
  first stage): 11,173,962 parameters for resnet18 with 10 classes.

``wrn18`` is the model the INSGD paper (Atici, Pan & Cetin) calls WResNet-18 and
trains on CIFAR-100. Its depth 18 is not a Wide ResNet WRN-d-k depth (d = 6n + 4:
16, 22, 28, ...), and the authors' code (``Wide_ResNet18_Flat``, the default
model of their ``main_cifar100.py``) shows what it is: ResNet-18 with the CIFAR
stem, i.e. 64-512 planes ("wide" next to ResNet-20's 16-64), two basic blocks
per stage and 1x1 conv + BN projections. So ``wrn18`` is ``resnet18`` with
``stem="cifar"``: 11,220,132 parameters for 100 classes. (The nearest *standard*
wide ResNet, WRN-16-k, is ``wrn16_4``.)

Both stems take any (C, H, W) input (the pooling is global).
"""

from __future__ import annotations

import torch
from torch import nn

from robustness.errors import unknown_choice
from robustness.models._checks import image_shape

STEMS = ("cifar", "imagenet")


class BasicBlock(nn.Module):
    """3x3 conv-BN-ReLU-3x3 conv-BN, plus the shortcut, then ReLU (torchvision's)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1-BN-ReLU-3x3 (strided)-BN-ReLU-1x1 (4x planes)-BN, plus the shortcut, then ReLU."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _downsample(in_planes: int, out_planes: int, stride: int) -> nn.Module | None:
    """torchvision's projection shortcut where the block changes the shape, else None."""
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class TorchvisionResNet(nn.Module):
    """Stem, ``layer1``-``layer4``, global average pooling, ``fc`` (torchvision's names)."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        in_channels: int,
        num_outputs: int,
        stem: str,
    ) -> None:
        super().__init__()
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        in_planes = 64
        stages = []
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stage = []
            for j in range(blocks):
                stage.append(block(in_planes, planes, 2 if i > 0 and j == 0 else 1))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _build(
    name: str,
    block: type[BasicBlock | Bottleneck],
    layers: tuple[int, int, int, int],
    input_shape: tuple[int, ...],
    num_outputs: int,
    stem: str,
) -> nn.Module:
    c, _, _ = image_shape(name, input_shape)
    if stem not in STEMS:
        raise unknown_choice(f"stem for model {name!r}", stem, STEMS)
    return TorchvisionResNet(block, layers, c, num_outputs, stem)


def resnet18(input_shape: tuple[int, ...], num_outputs: int, *, stem: str = "cifar") -> nn.Module:
    """torchvision's ResNet-18, CIFAR stem by default (11.2M); stem "cifar" or "imagenet"."""
    return _build("resnet18", BasicBlock, (2, 2, 2, 2), input_shape, num_outputs, stem)


def wrn18(input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """The INSGD paper's WResNet-18: ResNet-18 with the CIFAR stem, as in the authors' code."""
    return _build("wrn18", BasicBlock, (2, 2, 2, 2), input_shape, num_outputs, "cifar")


def resnet50(
    input_shape: tuple[int, ...], num_outputs: int, *, stem: str = "imagenet"
) -> nn.Module:
    """torchvision's ResNet-50 (v1.5) for 224x224 inputs (25.6M); stem "imagenet" or "cifar"."""
    return _build("resnet50", Bottleneck, (3, 4, 6, 3), input_shape, num_outputs, stem)
