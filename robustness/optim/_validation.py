"""Hyperparameter checks shared by the optimizer classes and the registry.

Each check raises :class:`~robustness.errors.UserInputError` (a ``ValueError``, as
``torch.optim`` raises) whose message names the argument, the bad value and what
is allowed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

from robustness.errors import UserInputError, unknown_choice


def check_positive(name: str, value: float) -> None:
    """``value`` must be a finite number > 0 (learning rates)."""
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise UserInputError(f"{name} must be a finite number > 0, got {value!r}")


def check_non_negative(name: str, value: float) -> None:
    """``value`` must be a finite number >= 0 (weight decay, eps)."""
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        raise UserInputError(f"{name} must be a finite number >= 0, got {value!r}")


def check_coefficient(name: str, value: float, *, closed: bool = False) -> None:
    """``value`` must lie in [0, 1) (momentum and averaging coefficients).

    ``closed=True`` allows 1 as well (dampening).
    """
    ok = _is_real(value) and (0 <= value <= 1 if closed else 0 <= value < 1)
    if not ok:
        interval = "[0, 1]" if closed else "[0, 1)"
        raise UserInputError(f"{name} must be in {interval}, got {value!r}")


def check_flag(name: str, value: object) -> None:
    """``value`` must be a bool."""
    if not isinstance(value, bool):
        raise UserInputError(f"{name} must be true or false, got {value!r}")


def check_choice(name: str, value: object, allowed: Iterable[str]) -> None:
    """``value`` must be one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise unknown_choice(name, value, allowed)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
