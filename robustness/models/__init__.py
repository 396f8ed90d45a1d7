"""Models by name, shaped to a dataset: ``build_model`` and the ``MODELS`` registry.

Every model maps a batch of shape ``(N, *input_shape)`` to ``(N, num_outputs)``
(logits for classification, predictions for regression). ``linear`` and ``mlp``
flatten any input; the convolutional nets and ``vit_tiny`` need image input
``(C, H, W)`` and refuse anything else with a ``UserInputError`` (a 1-D dataset
such as mnist1d's ``(40,)`` is never reshaped into an image).

The models from the papers follow torchvision's definitions layer for layer and
have its published parameter counts (each module says how it adapts to 32x32):
``resnet18``, ``wrn18`` and ``resnet50`` (``_tv_resnet``), ``mobilenet_v3_small``
and ``mobilenet_v3_large`` (``_mobilenet``), ``vit_tiny`` (``_vit``).

``transformer`` is the exception to the shape rule: it takes (N, T) token ids
from a language dataset (``grammar``, ``text``) and returns (N, T, num_outputs)
next-token logits, one prediction per position.

Models are built with PyTorch's default initialization; the run's init scheme
(``robustness.init_schemes.apply_init``) is applied afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from robustness._import_path import is_import_path, resolve_import_path
from robustness._options import call_user_function, call_with_options
from robustness.errors import UserInputError, unknown_choice
from robustness.models._conv import cnn
from robustness.models._dense import linear, mlp
from robustness.models._mobilenet import mobilenet_v3_large, mobilenet_v3_small
from robustness.models._resnet import resnet20, wrn16_4
from robustness.models._transformer import transformer
from robustness.models._tv_resnet import resnet18, resnet50, wrn18
from robustness.models._vit import vit_tiny

__all__ = ["MODELS", "TOKEN_MODELS", "build_model", "check_input_kind"]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "linear": linear,
    "mlp": mlp,
    "cnn": cnn,
    "resnet20": resnet20,
    "wrn16_4": wrn16_4,
    "resnet18": resnet18,
    "wrn18": wrn18,
    "resnet50": resnet50,
    "mobilenet_v3_small": mobilenet_v3_small,
    "mobilenet_v3_large": mobilenet_v3_large,
    "vit_tiny": vit_tiny,
    "transformer": transformer,
}


#: the models that take token ids (int64) rather than float features
TOKEN_MODELS = frozenset({"transformer"})


def check_input_kind(name: str, tokens: bool) -> None:
    """Refuse token ids for a model that takes features, and features for one that
    takes token ids (the input shape alone cannot tell: mnist1d's (40,) and a
    language dataset's (context,) look alike).

    Raises:
        UserInputError: naming the model and the datasets or models that fit.
    """
    if is_import_path(name):  # a factory of the user's takes whatever it was written for
        return
    if tokens and name not in TOKEN_MODELS:
        raise UserInputError(
            f"model {name!r} takes float features, but the dataset gives token ids; "
            f"use a token model ({', '.join(sorted(TOKEN_MODELS))})"
        )
    if not tokens and name in TOKEN_MODELS:
        raise UserInputError(
            f"model {name!r} takes token ids, but the dataset gives float features; "
            "use a language dataset (grammar, text)"
        )


def build_model(
    name: str, input_shape: tuple[int, ...], num_outputs: int, **model_args: Any
) -> nn.Module:
    """Build model ``name`` for per-sample ``input_shape`` and ``num_outputs`` outputs.

    Args:
        name: one of ``MODELS``, or a model factory of the user's by import path
            (``package.module:build``): ``build(input_shape, num_classes,
            **model_args) -> nn.Module``.
        input_shape: the dataset's per-sample shape, e.g. ``(64,)`` or ``(3, 32, 32)``.
        num_outputs: classes, or regression targets.
        model_args: the model's options (see each builder's docstring), e.g.
            ``widths=[256, 256], activation="tanh"`` for ``mlp``.

    Raises:
        UserInputError: unknown model or option, a bad option value, an input
            shape the model cannot take, an import path that does not resolve, or a
            factory that returns something other than an ``nn.Module``.
    """
    if name not in MODELS and not is_import_path(name):
        raise unknown_choice("model", name, MODELS)
    if num_outputs < 1:
        raise UserInputError(f"model {name!r}: num_outputs must be >= 1, got {num_outputs}")
    shape = tuple(int(d) for d in input_shape)
    if name in MODELS:
        return call_with_options(MODELS[name], "model", name, model_args, shape, num_outputs)
    factory = resolve_import_path(name, "model factory")
    model = call_user_function(factory, "model factory", name, model_args, shape, num_outputs)
    if not isinstance(model, nn.Module):
        raise UserInputError(
            f"model factory {name!r} returned a {type(model).__name__}, not a torch.nn.Module; "
            "a model factory is (input_shape, num_classes, **model_args) -> nn.Module"
        )
    return model
