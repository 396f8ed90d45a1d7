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


def user_options(fn: Callable[..., Any], positional: int) -> tuple[str, ...] | None:
    """The options a user's own function takes after its first ``positional``
    arguments: every parameter that can be passed by keyword (None: any, when it
    takes ``**kwargs``). Unlike the built-in builders, a user's function need not
    make its options keyword-only."""
    params = list(inspect.signature(fn).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in params[positional:] if p.kind in keyword)


def call_user_function(
    fn: Callable[..., _T], kind: str, path: str, options: Mapping[str, Any], /, *args: Any
) -> _T:
    """Call a user's function ``fn(*args, **options)`` named by import path ``path``,
    refusing arguments it cannot take with a message instead of a ``TypeError``.

    Raises:
        UserInputError: ``fn`` is not callable, or cannot be called with ``args``
            and ``options`` (naming what it takes).
    """
    if not callable(fn):
        raise UserInputError(f"{kind} {path!r} is a {type(fn).__name__}, not a function")
    try:
        inspect.signature(fn).bind(*args, **options)
    except TypeError as exc:
        allowed = user_options(fn, len(args))
        takes = "any keyword" if allowed is None else ", ".join(allowed) or "none"
        raise UserInputError(
            f"{kind} {path!r} cannot be called with {len(args)} positional argument(s) and "
            f"options {sorted(options)} ({exc}); options it takes: {takes}"
        ) from None
    except ValueError:  # no signature to check (a builtin); let the call say
        pass
    return fn(*args, **options)


def _fail(owner: str, arg: str, expected: str, value: object) -> UserInputError:
    return UserInputError(f"{owner}: {arg} must be {expected}, got {value!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def boolean(owner: str, arg: str, value: object) -> bool:
    """``value`` if it is a bool, else an error naming ``owner`` and ``arg``."""
    if not isinstance(value, bool):
        raise _fail(owner, arg, "true or false", value)
    return value


def positive_int(owner: str, arg: str, value: object, *, minimum: int = 1) -> int:
    """``value`` if it is an int >= ``minimum``, else an error naming ``arg``."""
    if not _is_int(value) or value < minimum:
        raise _fail(owner, arg, f"an integer >= {minimum}", value)
    return value


def positive_ints(owner: str, arg: str, value: object, *, allow_empty: bool) -> list[int]:
    """``value`` as a list of positive ints, else an error naming ``arg``."""
    ok = isinstance(value, (list, tuple)) and all(_is_int(v) and v > 0 for v in value)
    if not ok or (not allow_empty and len(value) == 0):
        expected = "a list" if allow_empty else "a non-empty list"
        raise _fail(owner, arg, f"{expected} of positive integers", value)
    return list(value)


def number_in(
    owner: str, arg: str, value: object, low: float, high: float, *, closed_low: bool = False
) -> float:
    """``value`` as a float in (low, high), or [low, high) with ``closed_low``."""
    ok = _is_number(value) and (low <= value if closed_low else low < value) and value < high
    if not ok:
        interval = f"{'[' if closed_low else '('}{low}, {high})"
        raise _fail(owner, arg, f"a number in {interval}", value)
    return float(value)
