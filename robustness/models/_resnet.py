"""Residual nets for CIFAR-sized images: ``resnet20`` and ``wrn16_4``.

``resnet20`` is the CIFAR ResNet of He et al. 2016 (arXiv 1512.03385, section 4.2)
with n = 3: a 3x3 conv to 16 channels, three stages of three basic blocks with
16, 32 and 64 channels (stride 2 at the first block of stages 2 and 3), global
average pooling and a Linear head. The default shortcut is option A, the
parameter-free one the paper uses on CIFAR: identity, or when a block halves the
resolution and doubles the channels, the input subsampled by 2 and zero-padded
in channels. That gives the published 0.27M parameters: exactly 269,722 for
(3, 32, 32) input and 10 classes. Option B (a 1x1 conv + BatchNorm projection
where the shape changes) is available with ``shortcut="B"``.

``wrn16_4`` is the Wide ResNet WRN-16-4 of Zagoruyko & Komodakis 2016
(arXiv 1605.07146): pre-activation basic blocks (BN-ReLU-conv3x3, twice), two
blocks per group, widths 64/128/256, a 1x1 conv shortcut where the shape
changes, optional dropout between the two convs, then BN-ReLU, global average
pooling and a Linear head: 2,748,890 parameters for (3, 32, 32) and 10 classes.

Both take any (C, H, W) input: the stem conv takes C channels and the pooling is
global, so MNIST's (1, 28, 28) works as well.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustness._options import number_in
from robustness.errors import unknown_choice
from robustness.models._checks import image_shape

SHORTCUTS = ("A", "B")


class _ZeroPadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad the new channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = out_channels - in_channels
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, *self.pad))


class _BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus shortcut, then ReLU (He et al. 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            if shortcut == "A":
                self.shortcut = _ZeroPadShortcut(in_channels, out_channels, stride)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                    nn.BatchNorm2d(out_channels),
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _PreActBlock(nn.Module):
    """BN-ReLU-conv-BN-ReLU-[dropout]-conv plus shortcut (Zagoruyko & Komodakis 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.projection: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.projection = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        # As in the reference code, a projection shortcut sees the pre-activated input.
        return out + (x if self.projection is None else self.projection(pre))


class _ResNet(nn.Module):
    """Stem conv, stages of blocks, optional final BN-ReLU, global pool, Linear head."""

    def __init__(
        self,
        stem: nn.Module,
        stages: nn.Sequential,
        final: nn.Module,
        features: int,
        num_outputs: int,
    ) -> None:
        super().__init__()
        self.stem = stem
        self.stages = stages
        self.final = final
        self.head = nn.Linear(features, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final(self.stages(self.stem(x)))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _stages(widths: tuple[int, ...], blocks: int, in_channels: int, make_block) -> nn.Sequential:
    layers = []
    for i, width in enumerate(widths):
        for j in range(blocks):
            stride = 2 if i > 0 and j == 0 else 1
            layers.append(make_block(in_channels, width, stride))
            in_channels = width
    return nn.Sequential(*layers)


def resnet20(input_shape: tuple[int, ...], num_outputs: int, *, shortcut: str = "A") -> nn.Module:
    """CIFAR ResNet-20 (He et al. 2016), 0.27M parameters; shortcut "A" (default) or "B"."""
    c, _, _ = image_shape("resnet20", input_shape)
    if shortcut not in SHORTCUTS:
        raise unknown_choice("shortcut for model 'resnet20'", shortcut, SHORTCUTS)
    stem = nn.Sequential(nn.Conv2d(c, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
    stages = _stages((16, 32, 64), 3, 16, lambda i, o, s: _BasicBlock(i, o, s, shortcut))
    return _ResNet(stem, stages, nn.Identity(), 64, num_outputs)


def wrn16_4(input_shape: tuple[int, ...], num_outputs: int, *, dropout: float = 0.0) -> nn.Module:
    """Wide ResNet 16-4 (Zagoruyko & Komodakis 2016), 2.7M parameters; dropout in [0, 1)."""
    c, _, _ = image_shape("wrn16_4", input_shape)
    dropout = number_in("model 'wrn16_4'", "dropout", dropout, 0.0, 1.0, closed_low=True)
    stem = nn.Conv2d(c, 16, 3, 1, 1, bias=False)
    stages = _stages((64, 128, 256), 2, 16, lambda i, o, s: _PreActBlock(i, o, s, dropout))
    final = nn.Sequential(nn.BatchNorm2d(256), nn.ReLU())
    return _ResNet(stem, stages, final, 256, num_outputs)
