"""Build an optimizer by name: the one place that maps the study axes to arguments.

Every optimizer is described by the same data (:class:`OptimizerEntry`): its
class, which constructor argument each swept axis sets (``axes``), whether it
takes the model or its parameters, and the toolkit's defaults where they differ
from the class's. The built-ins (the three under study, plus Adam and AdamW from
``torch.optim``):

| name       | ``beta`` (first moment)   | ``beta2`` (second coefficient) |
| ---------- | ------------------------- | ------------------------------ |
| ``sgd``      | ``momentum`` (default 0.9) | does not apply                 |
| ``insgd``    | ``momentum`` (default 0.9) | ``beta``, input power (0.99)   |
| ``novograd`` | ``betas[0]`` (0.95)        | ``betas[1]`` (0.98)            |
| ``adam``     | ``betas[0]`` (0.9)         | ``betas[1]`` (0.999)           |
| ``adamw``    | ``betas[0]`` (0.9)         | ``betas[1]`` (0.999)           |

``None`` means that default. ``sgd``, ``adam`` and ``adamw`` are the
``torch.optim`` classes themselves; ``sgd``'s default momentum here is 0.9
(``torch.optim.SGD``'s own default, 0, is plain SGD). An axis path ``betas.0``
sets one element of a sequence argument, the others keeping their defaults.

Any other ``torch.optim.Optimizer`` subclass is named by import path
(``package.module:Class``) with the user's own ``axes`` mapping and becomes an
entry of the same kind (:func:`optimizer_entry`): its fixed arguments are the
constructor's keywords; it takes the model when its class attribute
``takes_model`` is true (as INSGD's) or the user says so. An axis the mapping
leaves out is refused when given a value, never silently ignored.
"""

from __future__ import annotations

import inspect
import numbers
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from robustness._import_path import is_import_path, resolve_import_path
from robustness.errors import UserInputError, unknown_choice
from robustness.optim._validation import (
    check_coefficient,
    check_flag,
    check_non_negative,
    check_positive,
)
from robustness.optim.insgd import INSGD
from robustness.optim.novograd import NovoGrad

__all__ = [
    "AXES",
    "OPTIMIZERS",
    "OptimizerEntry",
    "build_optimizer",
    "is_builtin",
    "optimizer_axes",
    "optimizer_entry",
    "unmapped_axis_message",
]

_AXIS_PATH = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\.(\d+))?")
AXES = ("lr", "beta", "beta2")
"""The swept axes an optimizer maps to its constructor arguments."""


@dataclass(frozen=True)
class OptimizerEntry:
    """How to build one optimizer class from a point of the study's axes.

    Attributes:
        name: how the toolkit names it: a registered name, or the import path of
            a user's class.
        cls: a ``torch.optim.Optimizer`` subclass.
        axes: swept axis (``lr``, ``beta``, ``beta2``) -> the constructor argument it
            sets: a keyword (``momentum``) or one element of a sequence keyword
            (``betas.0``). ``lr`` sets ``lr`` unless mapped elsewhere.
        takes_model: the constructor's first argument is the model (INSGD hooks
            its layers), not ``model.parameters()``.
        defaults: constructor arguments whose toolkit default differs from the class's.
        kwargs: the fixed keyword arguments a spec may pass (None: any, for a
            class whose constructor takes ``**kwargs``).
        check: extra checks of the final constructor arguments (``UserInputError``).
    """

    name: str
    cls: type[torch.optim.Optimizer]
    axes: Mapping[str, str]
    takes_model: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    kwargs: tuple[str, ...] | None = ()
    check: Callable[[Mapping[str, Any]], None] | None = None

    def swept_axes(self) -> tuple[str, ...]:
        """The axes besides ``lr`` that this optimizer maps (``beta``, ``beta2``)."""
        return tuple(axis for axis in self.axes if axis != "lr")

    def describe(self) -> str:
        """One line: the class, whether it takes the model, and its axes mapping."""
        cls = public_name(self.cls)
        takes = " (takes the model)" if self.takes_model else ""
        mapped = self.describe_axes()
        return f"{cls}{takes}; swept axes: lr, init" + (f", {mapped}" if mapped else "")

    def describe_axes(self) -> str:
        """``beta -> momentum (default 0.9), beta2 -> ...``: each axis, its argument
        and the default it falls back to when the axis is not swept."""
        parts = []
        for axis, path in self.axes.items():
            if axis == "lr":  # always swept, so its default never applies
                parts += [] if path == "lr" else [f"lr -> {path}"]
                continue
            default = _default_of(self, path)
            parts.append(f"{axis} -> {path}" + ("" if default is None else f" ({default!r})"))
        return ", ".join(parts)


def _check_flags(kwargs: Mapping[str, Any], flags: tuple[str, ...]) -> None:
    for flag in flags:
        if kwargs.get(flag) is not None:
            check_flag(flag, kwargs[flag])
    if kwargs.get("foreach") and kwargs.get("fused"):
        raise UserInputError("foreach and fused cannot both be true")


def _check_sgd(kwargs: Mapping[str, Any]) -> None:
    check_non_negative("weight_decay", kwargs.get("weight_decay", 0.0))
    check_coefficient("dampening", kwargs.get("dampening", 0.0), closed=True)
    _check_flags(kwargs, ("nesterov", "foreach", "fused"))
    if kwargs.get("nesterov") and (kwargs["momentum"] <= 0 or kwargs.get("dampening", 0.0) != 0):
        raise UserInputError("nesterov needs momentum (beta) > 0 and dampening 0")


def _check_adam(kwargs: Mapping[str, Any]) -> None:
    check_non_negative("weight_decay", kwargs.get("weight_decay", 0.0))
    check_non_negative("eps", kwargs.get("eps", 0.0))
    _check_flags(kwargs, ("amsgrad", "foreach", "fused"))


_BETAS = {"beta": "betas.0", "beta2": "betas.1"}
_ADAM_KWARGS = ("eps", "weight_decay", "amsgrad", "foreach", "fused")

_REGISTRY: dict[str, OptimizerEntry] = {
    entry.name: entry
    for entry in (
        OptimizerEntry(
            "sgd",
            torch.optim.SGD,
            {"lr": "lr", "beta": "momentum"},
            defaults={"momentum": 0.9},
            kwargs=("weight_decay", "dampening", "nesterov", "foreach", "fused"),
            check=_check_sgd,
        ),
        OptimizerEntry(
            "insgd",
            INSGD,
            {"lr": "lr", "beta": "momentum", "beta2": "beta"},
            takes_model=INSGD.takes_model,
            kwargs=("eps", "weight_decay", "dampening", "nesterov", "mode", "norm", "foreach"),
        ),
        OptimizerEntry(
            "novograd",
            NovoGrad,
            {"lr": "lr", **_BETAS},
            kwargs=("eps", "weight_decay", "grad_averaging", "foreach"),
        ),
        OptimizerEntry(
            "adam", torch.optim.Adam, {"lr": "lr", **_BETAS}, kwargs=_ADAM_KWARGS, check=_check_adam
        ),
        OptimizerEntry(
            "adamw",
            torch.optim.AdamW,
            {"lr": "lr", **_BETAS},
            kwargs=_ADAM_KWARGS,
            check=_check_adam,
        ),
    )
}

OPTIMIZERS: tuple[str, ...] = tuple(_REGISTRY)


def optimizer_entry(
    name: str, *, axes: Mapping[str, str] | None = None, takes: str | None = None
) -> OptimizerEntry:
    """The registered optimizer ``name``, or the class ``name`` names by import path.

    Args:
        name: a registered name (``OPTIMIZERS``) or ``package.module:Class``, a
            ``torch.optim.Optimizer`` subclass.
        axes: for a class, which constructor argument each swept axis sets, e.g.
            ``{"beta": "betas.0", "beta2": "betas.1"}`` (``lr`` sets ``lr`` unless
            mapped elsewhere). An axis not mapped is refused when given a value.
        takes: for a class, ``"model"`` (the constructor's first argument is the
            model) or ``"params"`` (its parameters); default: the class attribute
            ``takes_model`` if it has one, else ``"params"``.

    Raises:
        UserInputError: an unknown name; an import path that does not resolve or
            names no ``torch.optim.Optimizer`` subclass; a bad axes mapping; ``axes``
            or ``takes`` given for a registered name (its mapping is fixed).
    """
    if not is_import_path(name):
        if name not in _REGISTRY:
            raise unknown_choice("optimizer", name, _REGISTRY)
        entry = _REGISTRY[name]
        if axes is not None or takes is not None:
            given = "axes" if axes is not None else "takes"
            raise UserInputError(
                f"{given} is for an optimizer class given by import path; the built-in "
                f"{name!r} is fixed: {entry.describe_axes()}"
            )
        return entry
    cls = resolve_import_path(name, "optimizer class")
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        what = f"the class {cls.__qualname__}" if isinstance(cls, type) else type(cls).__name__
        raise UserInputError(
            f"optimizer class {name!r} is {what}, not a torch.optim.Optimizer subclass"
        )
    if takes not in (None, "model", "params"):
        raise UserInputError(
            f"optimizer class {name!r}: takes must be 'model' or 'params', got {takes!r}"
        )
    mapping = {"lr": "lr", **dict(axes or {})}
    parameters = _constructor_parameters(cls)
    arguments = [p.name for p in parameters[1:]]  # the first is params (or the model)
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    for axis, path in mapping.items():
        if axis not in AXES:
            raise UserInputError(
                f"optimizer class {name!r}: axes maps {axis!r}, which is not a swept axis "
                f"with a constructor argument; allowed: {', '.join(AXES)} (any other axis "
                "is passed as the keyword argument of its own name)"
            )
        match = _AXIS_PATH.fullmatch(path) if isinstance(path, str) else None
        if match is None:
            raise UserInputError(
                f"optimizer class {name!r}: axes.{axis} is {path!r}, not an argument name "
                "or 'name.index' (e.g. 'momentum', 'betas.0')"
            )
        if match.group(1) not in arguments and not open_ended:
            raise UserInputError(
                f"optimizer class {name!r}: axes.{axis} sets {path!r}, but {cls.__qualname__} "
                f"takes no argument {match.group(1)!r}; its arguments: {', '.join(arguments)}"
            )
    set_by_axes = {_AXIS_PATH.fullmatch(path).group(1) for path in mapping.values()}
    return OptimizerEntry(
        name=name,
        cls=cls,
        axes=mapping,
        takes_model=takes == "model" or (takes is None and getattr(cls, "takes_model", False)),
        kwargs=None if open_ended else tuple(a for a in arguments if a not in set_by_axes),
    )


def optimizer_axes(name: str) -> tuple[str, ...]:
    """Which of the spec axes ``("beta", "beta2")`` apply to optimizer ``name``."""
    return optimizer_entry(name).swept_axes()


def build_optimizer(
    name: str | OptimizerEntry,
    model: nn.Module,
    *,
    lr: float,
    beta: float | None = None,
    beta2: float | None = None,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """The optimizer ``name`` (or described by an entry) over ``model``.

    ``lr``/``beta``/``beta2`` set the constructor arguments the entry's ``axes``
    map them to; ``None`` keeps the default. ``kwargs`` are the optimizer's fixed
    arguments (e.g. ``weight_decay``, ``nesterov``, ``mode``, ``norm``, ``eps``,
    ``grad_averaging``). INSGD hooks the model: call ``getattr(opt, "close", None)``
    when done. Raises ``UserInputError`` for an unknown name, an axis value given
    to an optimizer that maps no argument to that axis, an unknown keyword, or an
    invalid value.
    """
    entry = name if isinstance(name, OptimizerEntry) else optimizer_entry(name)
    points = {"lr": lr, "beta": beta, "beta2": beta2}
    for axis, value in points.items():
        if value is not None and axis not in entry.axes:
            raise UserInputError(unmapped_axis_message(entry, axis))
    unknown = [] if entry.kwargs is None else sorted(set(kwargs) - set(entry.kwargs))
    targets = {_AXIS_PATH.fullmatch(path).group(1): axis for axis, path in entry.axes.items()}
    for name_ in unknown:
        if name_ in targets:
            raise UserInputError(
                f"argument {name_!r} of optimizer {entry.name!r} is set by the "
                f"{targets[name_]} axis ({targets[name_]} -> {entry.axes[targets[name_]]}); "
                "give its value as that axis (e.g. `space: {"
                f"{targets[name_]}: [value]}}` under the optimizer), not as a fixed argument"
            )
    if unknown:
        raise UserInputError(
            f"unknown argument(s) {', '.join(map(repr, unknown))} for optimizer {entry.name!r}; "
            f"allowed: {', '.join(sorted(entry.kwargs)) or 'none'}"
        )
    check_positive("lr", lr)
    for axis in ("beta", "beta2"):
        if points[axis] is not None:
            check_coefficient(axis, points[axis])
    # plain floats, so that state_dict() holds no numpy scalars (weights_only loading)
    arguments = {**entry.defaults, **{k: _plain(v) for k, v in kwargs.items()}}
    for axis, value in points.items():
        if value is not None:
            _set_argument(entry, arguments, entry.axes[axis], _plain(value))
    if entry.check is not None:
        entry.check(arguments)
    target = model if entry.takes_model else model.parameters()
    if is_builtin(entry):
        return entry.cls(target, **arguments)
    try:
        return entry.cls(target, **arguments)
    except UserInputError:
        raise
    except (TypeError, ValueError) as exc:  # torch.optim's way of refusing a value
        raise UserInputError(
            f"optimizer class {entry.name!r} refused its arguments: {exc}"
        ) from None


def is_builtin(entry: OptimizerEntry) -> bool:
    """Whether ``entry`` is a registered optimizer (not a class given by import path)."""
    return _REGISTRY.get(entry.name) is entry


def unmapped_axis_message(entry: OptimizerEntry, axis: str) -> str:
    """Why ``axis`` cannot be swept for ``entry``, and how to map it for a class."""
    if is_builtin(entry):
        return (
            f"optimizer {entry.name!r} has no {axis} axis; its axes: "
            f"{', '.join(entry.swept_axes()) or 'lr only'}"
        )
    mapped = ", ".join(f"{a} -> {p}" for a, p in entry.axes.items())
    return (
        f"optimizer class {entry.name!r} maps no constructor argument to the {axis} axis "
        f"(its axes: {mapped}); map it with `axes: {{{axis}: <argument>}}` in the spec "
        f"(`--axis {axis}=<argument>` on the CLI), or do not sweep {axis} for it"
    )


def _set_argument(entry: OptimizerEntry, arguments: dict[str, Any], path: str, value: Any) -> None:
    """``arguments[path] = value``; for ``betas.1``, element 1 of the sequence
    ``betas`` (its default filling the other elements)."""
    match = _AXIS_PATH.fullmatch(path)
    if match is None:
        raise UserInputError(
            f"optimizer {entry.name!r}: axis target {path!r} is not an argument name or "
            "'name.index' (e.g. 'momentum', 'betas.0')"
        )
    argument, index = match.group(1), match.group(2)
    if index is None:
        arguments[argument] = value
        return
    current = arguments.get(argument, _signature_default(entry.cls, argument))
    if not isinstance(current, (tuple, list)) or int(index) >= len(current):
        raise UserInputError(
            f"optimizer {entry.name!r}: axis target {path!r} needs argument {argument!r} to "
            f"default to a sequence of more than {index} elements, but its default is {current!r}"
        )
    items = list(current)
    items[int(index)] = value
    arguments[argument] = tuple(items)


def _default_of(entry: OptimizerEntry, path: str) -> Any:
    """The value an axis target takes when its axis is not swept (None if none)."""
    match = _AXIS_PATH.fullmatch(path)
    if match is None:
        return None
    argument, index = match.group(1), match.group(2)
    value = entry.defaults.get(argument, _signature_default(entry.cls, argument))
    if index is not None:
        ok = isinstance(value, (tuple, list)) and int(index) < len(value)
        return value[int(index)] if ok else None
    return value


def public_name(obj: Any) -> str:
    """``obj``'s dotted name through the shortest module that exports it
    (``torch.optim.SGD`` rather than ``torch.optim.sgd.SGD``)."""
    parts = obj.__module__.split(".")
    for i in range(1, len(parts) + 1):
        module = sys.modules.get(".".join(parts[:i]))
        if getattr(module, obj.__qualname__, None) is obj:
            return f"{'.'.join(parts[:i])}.{obj.__qualname__}"
    return f"{obj.__module__}.{obj.__qualname__}"


def _constructor_parameters(cls: type) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError) as exc:
        raise UserInputError(
            f"optimizer class {cls.__qualname__}: cannot read its constructor's arguments ({exc})"
        ) from None


def _signature_default(cls: type, argument: str) -> Any:
    parameter = inspect.signature(cls).parameters.get(argument)
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return parameter.default


def _plain(value: Any) -> Any:
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, int)):
        return float(value)
    return value
