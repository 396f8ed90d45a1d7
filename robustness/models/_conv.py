"""``cnn``: a small convolutional net for image datasets, with optional BatchNorm."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from robustness._options import boolean, positive_ints
from robustness.models._checks import image_shape
from robustness.models._dense import make_activation


def cnn(
    input_shape: tuple[int, ...],
    num_outputs: int,
    *,
    channels: Sequence[int] = (32, 64),
    batchnorm: bool = False,
    activation: str = "relu",
) -> nn.Module:
    """Stages of 3x3 conv (padding 1) [+ BatchNorm] + activation + 2x2 max-pool.

    One stage per entry of ``channels``. A stage pools only while the feature map
    is at least 2x2, so the net fits any image size (8x8 digits to 32x32 CIFAR).
    Global average pooling and a Linear head follow. With ``batchnorm`` the convs
    have no bias (BatchNorm's shift replaces it).
    """
    c, h, w = image_shape("cnn", input_shape)
    channels = positive_ints("model 'cnn'", "channels", channels, allow_empty=False)
    batchnorm = boolean("model 'cnn'", "batchnorm", batchnorm)
    layers: list[nn.Module] = []
    for out in channels:
        layers.append(nn.Conv2d(c, out, 3, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(make_activation("cnn", activation))
        if h >= 2 and w >= 2:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_outputs)]
    return nn.Sequential(*layers)
