"""Build an optimizer by name: the one place that maps the study axes to arguments.

The spec's two swept coefficients mean, per optimizer (DESIGN.md):

| name       | ``beta`` (first moment)   | ``beta2`` (second coefficient) |
| ---------- | ------------------------- | ------------------------------ |
| ``sgd``      | momentum (default 0.9)    | does not apply                 |
| ``insgd``    | momentum (default 0.9)    | input-power β (default 0.99)   |
| ``novograd`` | β1 (default 0.95)         | β2 (default 0.98)              |

``None`` means that default. ``sgd`` is ``torch.optim.SGD`` itself; its default
momentum here is 0.9 (``torch.optim.SGD``'s own default, 0, is plain SGD).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustness.errors import UserInputError, unknown_choice
from robustness.optim._validation import (
    check_coefficient,
    check_flag,
    check_non_negative,
    check_positive,
)
from robustness.optim.insgd import INSGD
from robustness.optim.novograd import DEFAULT_BETAS, NovoGrad

__all__ = ["OPTIMIZERS", "build_optimizer", "optimizer_axes"]


@dataclass(frozen=True)
class _Entry:
    axes: tuple[str, ...]
    kwargs: tuple[str, ...]  # the fixed keyword arguments a spec may pass through
    build: Callable[..., torch.optim.Optimizer]


def _build_sgd(model: nn.Module, lr: float, beta: float | None, beta2: float | None, **kwargs):
    momentum = 0.9 if beta is None else beta  # lr and beta: checked by build_optimizer
    check_non_negative("weight_decay", kwargs.get("weight_decay", 0.0))
    check_coefficient("dampening", kwargs.get("dampening", 0.0), closed=True)
    for flag in ("nesterov", "foreach", "fused"):
        if kwargs.get(flag) is not None:
            check_flag(flag, kwargs[flag])
    if kwargs.get("nesterov") and (momentum <= 0 or kwargs.get("dampening", 0.0) != 0):
        raise UserInputError("nesterov needs momentum (beta) > 0 and dampening 0")
    if kwargs.get("foreach") and kwargs.get("fused"):
        raise UserInputError("foreach and fused cannot both be true for sgd")
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, **kwargs)


def _build_insgd(model: nn.Module, lr: float, beta: float | None, beta2: float | None, **kwargs):
    coefficients = {"momentum": beta, "beta": beta2}
    return INSGD(model, lr, **{k: v for k, v in coefficients.items() if v is not None}, **kwargs)


def _build_novograd(model: nn.Module, lr: float, beta: float | None, beta2: float | None, **kwargs):
    default1, default2 = DEFAULT_BETAS
    betas = (default1 if beta is None else beta, default2 if beta2 is None else beta2)
    return NovoGrad(model.parameters(), lr, betas=betas, **kwargs)


_REGISTRY: dict[str, _Entry] = {
    "sgd": _Entry(
        ("beta",), ("weight_decay", "dampening", "nesterov", "foreach", "fused"), _build_sgd
    ),
    "insgd": _Entry(
        ("beta", "beta2"),
        ("eps", "weight_decay", "dampening", "nesterov", "mode", "norm", "foreach"),
        _build_insgd,
    ),
    "novograd": _Entry(
        ("beta", "beta2"), ("eps", "weight_decay", "grad_averaging", "foreach"), _build_novograd
    ),
}

OPTIMIZERS: tuple[str, ...] = tuple(_REGISTRY)


def optimizer_axes(name: str) -> tuple[str, ...]:
    """Which of the spec axes ``("beta", "beta2")`` apply to optimizer ``name``."""
    return _entry(name).axes


def build_optimizer(
    name: str,
    model: nn.Module,
    *,
    lr: float,
    beta: float | None = None,
    beta2: float | None = None,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``model``'s parameters.

    ``beta``/``beta2`` map to each optimizer's own arguments (module docstring);
    ``None`` keeps its default. ``kwargs`` are the optimizer's fixed arguments
    (e.g. ``weight_decay``, ``nesterov``, ``mode``, ``norm``, ``eps``,
    ``grad_averaging``). INSGD hooks the model: call ``getattr(opt, "close", None)``
    when done. Raises ``UserInputError`` for an unknown name, a ``beta2`` given
    to an optimizer without that axis, an unknown keyword, or an invalid value.
    """
    entry = _entry(name)
    if beta2 is not None and "beta2" not in entry.axes:
        raise UserInputError(
            f"optimizer {name!r} has no beta2 axis; its axes: {', '.join(entry.axes)}"
        )
    unknown = sorted(set(kwargs) - set(entry.kwargs))
    if unknown:
        raise UserInputError(
            f"unknown argument(s) {', '.join(map(repr, unknown))} for optimizer {name!r}; "
            f"allowed: {', '.join(sorted(entry.kwargs))}"
        )
    check_positive("lr", lr)
    for axis, value in (("beta", beta), ("beta2", beta2)):
        if value is not None:
            check_coefficient(axis, value)
    # plain floats, so that state_dict() holds no numpy scalars (weights_only loading)
    kwargs = {k: _plain(v) for k, v in kwargs.items()}
    return entry.build(model, float(lr), _plain(beta), _plain(beta2), **kwargs)


def _plain(value: Any) -> Any:
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, int)):
        return float(value)
    return value


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise unknown_choice("optimizer", name, _REGISTRY)
    return _REGISTRY[name]
