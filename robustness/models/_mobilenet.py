"""torchvision's MobileNetV3: ``mobilenet_v3_small`` and ``mobilenet_v3_large``.

Layer for layer ``torchvision.models.mobilenetv3`` (Howard et al. 2019, arXiv
1905.02244) at width multiplier 1: a 3x3 conv-BN-Hardswish stem to 16 channels,
the paper's inverted-residual blocks (table 1 for large, table 2 for small: an
optional 1x1 expansion, a depthwise kxk conv, an optional squeeze-excitation, a
1x1 linear projection, and a residual sum where stride is 1 and the channels
match), a 1x1 conv-BN-Hardswish to 6x the last block's channels, global average
pooling, then Linear-Hardswish-Dropout-Linear. BatchNorm has torchvision's
``eps=0.001, momentum=0.01``; squeeze-excitation squeezes to
``make_divisible(channels / 4, 8)`` with a ReLU and a Hardsigmoid gate.

With 1000 classes the parameter counts are torchvision's published ones:
2,542,856 (small) and 5,483,032 (large).

``stem="cifar"`` (the default) gives the stem conv stride 1 instead of 2, the
usual adaptation to 32x32 inputs (as for CIFAR-10 in the INSGD paper): the
network then downsamples 16x, not 32x, so a 32x32 image ends at 2x2 rather than
1x1. The stride changes no parameter count. ``stem="imagenet"`` is torchvision's.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from robustness._options import number_in
from robustness.errors import unknown_choice
from robustness.models._checks import image_shape

STEMS = ("cifar", "imagenet")


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: the nearest multiple of ``divisor``, >= ``divisor``,
    that does not round ``value`` down by more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class _Block(NamedTuple):
    """One inverted-residual block: input, kernel, expanded and output channels,
    squeeze-excitation, Hardswish (else ReLU), stride."""

    cin: int
    kernel: int
    expanded: int
    cout: int
    se: bool
    hardswish: bool
    stride: int


_B = _Block
# torchvision's _mobilenet_v3_conf (width 1, no reduced tail, no dilation)
_LARGE = (
    _B(16, 3, 16, 16, False, False, 1),
    _B(16, 3, 64, 24, False, False, 2),
    _B(24, 3, 72, 24, False, False, 1),
    _B(24, 5, 72, 40, True, False, 2),
    _B(40, 5, 120, 40, True, False, 1),
    _B(40, 5, 120, 40, True, False, 1),
    _B(40, 3, 240, 80, False, True, 2),
    _B(80, 3, 200, 80, False, True, 1),
    _B(80, 3, 184, 80, False, True, 1),
    _B(80, 3, 184, 80, False, True, 1),
    _B(80, 3, 480, 112, True, True, 1),
    _B(112, 3, 672, 112, True, True, 1),
    _B(112, 5, 672, 160, True, True, 2),
    _B(160, 5, 960, 160, True, True, 1),
    _B(160, 5, 960, 160, True, True, 1),
)
_SMALL = (
    _B(16, 3, 16, 16, True, False, 2),
    _B(16, 3, 72, 24, False, False, 2),
    _B(24, 3, 88, 24, False, False, 1),
    _B(24, 5, 96, 40, True, True, 2),
    _B(40, 5, 240, 40, True, True, 1),
    _B(40, 5, 240, 40, True, True, 1),
    _B(40, 5, 120, 48, True, True, 1),
    _B(48, 5, 144, 48, True, True, 1),
    _B(48, 5, 288, 96, True, True, 2),
    _B(96, 5, 576, 96, True, True, 1),
    _B(96, 5, 576, 96, True, True, 1),
)


def _conv_bn_act(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: type | None = None
) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation``: conv (no bias, same padding), BN, activation."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=0.001, momentum=0.01),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Global average pool, 1x1 conv, ReLU, 1x1 conv, Hardsigmoid gate times the input."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(scale) * x


class InvertedResidual(nn.Module):
    """[1x1 expand] - depthwise kxk - [squeeze-excitation] - 1x1 project, [+ input]."""

    def __init__(self, cnf: _Block) -> None:
        super().__init__()
        act = nn.Hardswish if cnf.hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if cnf.expanded != cnf.cin:
            layers.append(_conv_bn_act(cnf.cin, cnf.expanded, 1, act=act))
        layers.append(
            _conv_bn_act(cnf.expanded, cnf.expanded, cnf.kernel, cnf.stride, cnf.expanded, act)
        )
        if cnf.se:
            layers.append(SqueezeExcitation(cnf.expanded, make_divisible(cnf.expanded // 4)))
        layers.append(_conv_bn_act(cnf.expanded, cnf.cout, 1))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = cnf.stride == 1 and cnf.cin == cnf.cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


class MobileNetV3(nn.Module):
    """``features`` (stem, blocks, last conv), ``avgpool``, ``classifier`` (torchvision's names)."""

    def __init__(
        self,
        blocks: tuple[_Block, ...],
        last_channel: int,
        in_channels: int,
        num_outputs: int,
        stem_stride: int,
        dropout: float,
    ) -> None:
        super().__init__()
        last_conv = 6 * blocks[-1].cout
        self.features = nn.Sequential(
            _conv_bn_act(in_channels, blocks[0].cin, 3, stem_stride, act=nn.Hardswish),
            *(InvertedResidual(cnf) for cnf in blocks),
            _conv_bn_act(blocks[-1].cout, last_conv, 1, act=nn.Hardswish),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _build(
    name: str,
    blocks: tuple[_Block, ...],
    last_channel: int,
    input_shape: tuple[int, ...],
    num_outputs: int,
    stem: str,
    dropout: float,
) -> nn.Module:
    c, _, _ = image_shape(name, input_shape)
    if stem not in STEMS:
        raise unknown_choice(f"stem for model {name!r}", stem, STEMS)
    dropout = number_in(f"model {name!r}", "dropout", dropout, 0.0, 1.0, closed_low=True)
    stride = 1 if stem == "cifar" else 2
    return MobileNetV3(blocks, last_channel, c, num_outputs, stride, dropout)


def mobilenet_v3_small(
    input_shape: tuple[int, ...], num_outputs: int, *, stem: str = "cifar", dropout: float = 0.2
) -> nn.Module:
    """torchvision's MobileNetV3-Small (2.5M with 1000 classes); stem "cifar" or "imagenet"."""
    return _build("mobilenet_v3_small", _SMALL, 1024, input_shape, num_outputs, stem, dropout)


def mobilenet_v3_large(
    input_shape: tuple[int, ...], num_outputs: int, *, stem: str = "cifar", dropout: float = 0.2
) -> nn.Module:
    """torchvision's MobileNetV3-Large (5.5M with 1000 classes); stem "cifar" or "imagenet"."""
    return _build("mobilenet_v3_large", _LARGE, 1280, input_shape, num_outputs, stem, dropout)
