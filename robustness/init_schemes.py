"""Initialization schemes by name: ``apply_init`` and the ``INIT_SCHEMES`` registry.

``apply_init(model, scheme, generator=g, gain=..., bias=..., **scheme_args)``
re-initializes a freshly built model in place, deterministically from ``g``:

1. Every module with ``reset_parameters()`` is reset to PyTorch's own default
   under a private RNG seeded from ``g`` (the global RNG is left as it was). So
   normalization layers have weight 1 and bias 0 (and fresh running stats), and
   any layer a scheme does not cover still gets a seed-determined default.
   (PyTorch draws these on the parameters' device, so on a GPU they differ from
   the CPU values, though they are still fixed by the seed.)
2. The weight of every ``nn.Linear`` and ``nn.Conv{1,2,3}d`` (and transposed
   conv) layer is then drawn by the scheme, on ``g``'s device, and copied in, so
   the same generator seed gives the same weights on any device.
3. Those layers' biases are zeroed (``bias="zeros"``) or keep PyTorch's default
   ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` from step 1 (``bias="default"``). The
   default is ``"zeros"`` for every scheme except ``default``, where it is
   ``"default"``.

``gain`` multiplies the weights the scheme draws, so it scales the scheme's
standard deviation (and, for uniform schemes, its bound) by ``gain``. With
``fan_in`` = in_features (Linear) or in_channels/groups x kernel size (Conv):

| scheme | weights | options |
| --- | --- | --- |
| ``default`` | PyTorch's own init, times gain | |
| ``kaiming_normal`` | N(0, std²), std = gain·c/sqrt(fan) | ``mode``, ``nonlinearity`` |
| ``kaiming_uniform`` | U(-b, b), b = gain·c·sqrt(3/fan) | ``mode``, ``nonlinearity`` |
| ``xavier_normal`` | N(0, std²), std = gain·sqrt(2/(fan_in+fan_out)) | |
| ``xavier_uniform`` | U(-b, b), b = gain·sqrt(6/(fan_in+fan_out)) | |
| ``orthogonal`` | gain·Q, Q (semi-)orthogonal over the flattened weight | |
| ``lecun_normal`` | N(0, std²), std = gain/sqrt(fan_in) (untruncated) | |
| ``normal`` | N(0, std²), std = gain·``std`` | ``std`` (default 0.01) |

For the kaiming schemes ``c`` is ``torch.nn.init.calculate_gain(nonlinearity)``
(sqrt(2) for the default ``"relu"``, 1 for ``"linear"``, 5/3 for ``"tanh"``) and
``fan`` is fan_in (default) or fan_out by ``mode``. So ``kaiming_normal`` with
gain g has std g·sqrt(2/fan_in). For ``orthogonal``, a weight flattened to
``rows x cols`` has ``Q Qᵀ = I`` if rows <= cols, else ``Qᵀ Q = I``; with gain g
that becomes g²·I.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from robustness._options import call_with_options, number_in
from robustness.errors import unknown_choice

__all__ = ["BIAS_MODES", "INIT_SCHEMES", "apply_init"]

BIAS_MODES = ("zeros", "default")
FAN_MODES = ("fan_in", "fan_out")
NONLINEARITIES = ("relu", "linear", "tanh", "sigmoid", "selu")

# A sampler fills a fresh tensor (shaped like a weight) with unit-gain samples.
_Sampler = Callable[[torch.Tensor, torch.Generator], None]


def _kaiming_args(scheme: str, mode: str, nonlinearity: str) -> None:
    if mode not in FAN_MODES:
        raise unknown_choice(f"mode for init {scheme!r}", mode, FAN_MODES)
    if nonlinearity not in NONLINEARITIES:
        raise unknown_choice(f"nonlinearity for init {scheme!r}", nonlinearity, NONLINEARITIES)


def _kaiming_normal(*, mode: str = "fan_in", nonlinearity: str = "relu") -> _Sampler:
    """N(0, std²), std = gain·c/sqrt(fan) (He et al. 2015)."""
    _kaiming_args("kaiming_normal", mode, nonlinearity)
    return lambda w, g: nn.init.kaiming_normal_(
        w, mode=mode, nonlinearity=nonlinearity, generator=g
    )


def _kaiming_uniform(*, mode: str = "fan_in", nonlinearity: str = "relu") -> _Sampler:
    """U(-b, b), b = gain·c·sqrt(3/fan) (He et al. 2015)."""
    _kaiming_args("kaiming_uniform", mode, nonlinearity)
    return lambda w, g: nn.init.kaiming_uniform_(
        w, mode=mode, nonlinearity=nonlinearity, generator=g
    )


def _xavier_normal() -> _Sampler:
    """N(0, std²), std = gain·sqrt(2/(fan_in+fan_out)) (Glorot & Bengio 2010)."""
    return lambda w, g: nn.init.xavier_normal_(w, generator=g)


def _xavier_uniform() -> _Sampler:
    """U(-b, b), b = gain·sqrt(6/(fan_in+fan_out)) (Glorot & Bengio 2010)."""
    return lambda w, g: nn.init.xavier_uniform_(w, generator=g)


def _orthogonal() -> _Sampler:
    """gain times a random (semi-)orthogonal matrix (Saxe et al. 2014)."""
    return lambda w, g: nn.init.orthogonal_(w, generator=g)


def _lecun_normal() -> _Sampler:
    """N(0, std²), std = gain/sqrt(fan_in), untruncated (LeCun et al. 1998)."""
    return lambda w, g: nn.init.kaiming_normal_(w, nonlinearity="linear", generator=g)


def _normal(*, std: float = 0.01) -> _Sampler:
    """N(0, (gain·std)²)."""
    std = number_in("init 'normal'", "std", std, 0.0, math.inf)
    return lambda w, g: nn.init.normal_(w, 0.0, std, generator=g)


def _default() -> None:
    """PyTorch's own initialization, weights times gain, biases kept (no sampler needed)."""
    return None


# name -> factory taking the scheme's options and returning its sampler
INIT_SCHEMES: dict[str, Callable[..., _Sampler | None]] = {
    "default": _default,
    "kaiming_normal": _kaiming_normal,
    "kaiming_uniform": _kaiming_uniform,
    "xavier_normal": _xavier_normal,
    "xavier_uniform": _xavier_uniform,
    "orthogonal": _orthogonal,
    "lecun_normal": _lecun_normal,
    "normal": _normal,
}

_WEIGHT_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)


def apply_init(
    model: nn.Module,
    scheme: str,
    *,
    generator: torch.Generator,
    gain: float = 1.0,
    bias: str | None = None,
    **scheme_args: Any,
) -> None:
    """Re-initialize ``model`` in place with ``scheme``, deterministically from ``generator``.

    Args:
        model: a freshly built model (its parameters on any device).
        scheme: one of ``INIT_SCHEMES``; see the module docstring for the math.
        generator: the run's generator; it is advanced, so the same generator state
            gives the same weights and a different seed gives different weights.
        gain: positive factor multiplying the weights the scheme draws for Linear
            and Conv layers (so the scheme's std, or uniform bound, times ``gain``).
        bias: ``"zeros"`` or ``"default"`` (PyTorch's default bias init); None means
            the scheme's default (``"default"`` for ``default``, else ``"zeros"``).
        scheme_args: the scheme's options (``mode``, ``nonlinearity``, ``std``).

    Raises:
        UserInputError: unknown scheme, bias mode or option, or a bad value.
    """
    if scheme not in INIT_SCHEMES:
        raise unknown_choice("init scheme", scheme, INIT_SCHEMES)
    gain = number_in(f"init {scheme!r}", "gain", gain, 0.0, math.inf)
    bias = bias if bias is not None else ("default" if scheme == "default" else "zeros")
    if bias not in BIAS_MODES:
        raise unknown_choice("bias mode for init", bias, BIAS_MODES)
    sampler = call_with_options(INIT_SCHEMES[scheme], "init", scheme, scheme_args)

    _reset_to_pytorch_default(model, generator)
    with torch.no_grad():
        for layer in model.modules():
            if not isinstance(layer, _WEIGHT_LAYERS):
                continue
            weight = layer.weight
            if sampler is not None:
                drawn = torch.empty(weight.shape, dtype=weight.dtype, device=generator.device)
                sampler(drawn, generator)
                weight.copy_(drawn)
            weight.mul_(gain)
            if layer.bias is not None and bias == "zeros":
                layer.bias.zero_()


def _reset_to_pytorch_default(model: nn.Module, generator: torch.Generator) -> None:
    """Call every ``reset_parameters()`` under an RNG seeded from ``generator``."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    cuda_devices = sorted(
        {p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"}
    )
    with torch.random.fork_rng(devices=cuda_devices, device_type="cuda"):
        torch.manual_seed(seed)
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
