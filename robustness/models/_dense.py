"""Flat models: ``linear`` and ``mlp``. Any input shape is flattened per sample."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from robustness._options import boolean, positive_ints
from robustness.errors import unknown_choice

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def make_activation(model: str, name: object) -> nn.Module:
    """A fresh activation module by name, or an error listing the known ones."""
    if name not in ACTIVATIONS:
        raise unknown_choice(f"activation for model {model!r}", name, ACTIVATIONS)
    return ACTIVATIONS[name]()


def linear(input_shape: tuple[int, ...], num_outputs: int, *, bias: bool = True) -> nn.Module:
    """One affine layer on the flattened input (linear regression / linear classifier)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(
            math.prod(input_shape), num_outputs, bias=boolean("model 'linear'", "bias", bias)
        ),
    )


def mlp(
    input_shape: tuple[int, ...],
    num_outputs: int,
    *,
    widths: Sequence[int] = (128, 128),
    activation: str = "relu",
) -> nn.Module:
    """Fully connected net: Linear + activation per hidden width, then a Linear head.

    ``widths`` lists the hidden layer sizes (empty means a linear model);
    ``activation`` is one of relu, tanh, gelu, silu.
    """
    widths = positive_ints("model 'mlp'", "widths", widths, allow_empty=True)
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = math.prod(input_shape)
    for width in widths:
        layers += [nn.Linear(fan_in, width), make_activation("mlp", activation)]
        fan_in = width
    layers.append(nn.Linear(fan_in, num_outputs))
    return nn.Sequential(*layers)
