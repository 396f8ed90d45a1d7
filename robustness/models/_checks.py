"""The input-shape check shared by the convolutional model builders."""

from __future__ import annotations

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
