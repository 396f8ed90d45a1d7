"""Validation of model options and input shapes shared by the model builders."""

from __future__ import annotations

from collections.abc import Sequence

from robustness.errors import UserInputError

_FLAT_MODELS = "linear, mlp"
_IMAGE_DATASETS = "digits, mnist, fashion_mnist, cifar10, cifar100"


def image_shape(model: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The (C, H, W) of a per-sample ``input_shape``, or a clear error for conv nets."""
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise UserInputError(
            f"model {model!r} needs image input of shape (C, H, W), but the dataset's "
            f"input shape is {tuple(input_shape)}; use a flat model ({_FLAT_MODELS}) "
            f"or an image dataset ({_IMAGE_DATASETS})"
        )
    c, h, w = input_shape
    return c, h, w


def positive_ints(model: str, arg: str, value: object, *, allow_empty: bool) -> list[int]:
    """``value`` as a list of positive ints, or an error naming ``arg``."""
    ok = isinstance(value, Sequence) and not isinstance(value, str)
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    if not ok or (not allow_empty and len(value) == 0):
        what = "a list" if allow_empty else "a non-empty list"
        raise UserInputError(
            f"model {model!r}: {arg} must be {what} of positive integers, got {value!r}"
        )
    return list(value)


def boolean(model: str, arg: str, value: object) -> bool:
    """``value`` if it is a bool, else an error naming ``arg``."""
    if not isinstance(value, bool):
        raise UserInputError(f"model {model!r}: {arg} must be true or false, got {value!r}")
    return value


def probability(model: str, arg: str, value: object) -> float:
    """``value`` if it is a number in [0, 1), else an error naming ``arg``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise UserInputError(f"model {model!r}: {arg} must be a number in [0, 1), got {value!r}")
    return float(value)
