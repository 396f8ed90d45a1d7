"""Checking user-given keyword options against the function that takes them.

Models, init schemes and datasets are registries of builder functions whose
options are keyword-only parameters. A spec passes those options as a plain
mapping (``model_args``, ``init_args``, ``dataset_args``); an option the builder
does not take must be refused with a message that lists the ones it does take,
instead of a bare ``TypeError``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from robustness.errors import UserInputError

_T = TypeVar("_T")


def keyword_options(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The keyword-only parameter names of ``fn``: the options a user may set."""
    params = inspect.signature(fn).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def call_with_options(
    fn: Callable[..., _T], kind: str, name: str, options: Mapping[str, Any], /, *args: Any
) -> _T:
    """Call ``fn(*args, **options)``, refusing options ``fn`` does not take.

    Args:
        fn: the builder; its keyword-only parameters are the allowed options.
        kind: what the options are for, e.g. ``"model"`` (used in the message).
        name: the registry name of ``fn``, e.g. ``"mlp"`` (used in the message).
        options: the user's options.
        args: positional arguments of ``fn`` supplied by the caller, not the user.

    Raises:
        UserInputError: an option ``fn`` does not take, naming it and the allowed ones.
    """
    allowed = keyword_options(fn)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        names = ", ".join(repr(u) for u in unknown)
        raise UserInputError(
            f"unknown {kind} argument(s) {names} for {kind} {name!r}; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    return fn(*args, **options)
