"""Models: shapes, gradients, parameter counts and refused combinations."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from robustness.data import load_dataset
from robustness.errors import UserInputError
from robustness.models import MODELS, build_model

# per-sample shapes of the datasets: digits, mnist1d, mnist, cifar (small batch)
IMAGE_SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
FLAT_SHAPES = [(40,), (64,), (7, 3)]
IMAGE_MODELS = {
    "cnn",
    "resnet20",
    "wrn16_4",
    "resnet18",
    "wrn18",
    "resnet50",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "vit_tiny",
}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _forward_backward(model: nn.Module, shape: tuple[int, ...], num_outputs: int) -> None:
    x = torch.randn(3, *shape)
    out = model(x)
    assert out.shape == (3, num_outputs)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("shape", IMAGE_SHAPES + FLAT_SHAPES)
@pytest.mark.parametrize("name", ["linear", "mlp"])
def test_flat_models_run_forward_and_backward_on_any_shape(name, shape):
    _forward_backward(build_model(name, shape, 5), shape, 5)


@pytest.mark.parametrize("shape", IMAGE_SHAPES)
@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("cnn", {}),
        ("cnn", {"batchnorm": True, "channels": [4, 8, 8]}),
        ("resnet20", {}),
        ("resnet20", {"shortcut": "B"}),
        ("wrn16_4", {"dropout": 0.3}),
    ],
)
def test_conv_models_run_forward_and_backward_on_image_shapes(name, args, shape):
    _forward_backward(build_model(name, shape, 10, **args), shape, 10)


DATASETS = {
    "digits": {},
    "mnist1d": {"num_samples": 100},
    "blobs": {"n_samples": 50},
    "linreg": {"n_samples": 50, "dim": 3},
}


@functools.cache
def _dataset(name: str):
    return load_dataset(name, **DATASETS[name])


# the models from the papers train, and refuse flat input, in tests/test_models_zoo.py
PAPER_MODELS = {"resnet18", "wrn18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large"}


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("name", sorted(set(MODELS) - PAPER_MODELS - {"vit_tiny"}))
def test_each_model_trains_on_each_dataset_it_supports(name, dataset):
    data = _dataset(dataset)
    if name == "transformer":  # token ids only (tests/test_language.py)
        return
    if name in IMAGE_MODELS and len(data.input_shape) != 3:
        with pytest.raises(UserInputError, match=name):
            build_model(name, data.input_shape, data.num_outputs)
        return
    model = build_model(name, data.input_shape, data.num_outputs)
    out = model(data.x_train[:4])
    assert out.shape == (4, data.num_outputs)
    if data.task == "classification":
        loss = torch.nn.functional.cross_entropy(out, data.y_train[:4])
    else:
        loss = torch.nn.functional.mse_loss(out, data.y_train[:4])
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_resnet20_has_the_published_parameter_count():
    # He et al. 2016, table 6: 0.27M. Option A: 269,722 exactly (3 x 32 x 32, 10 classes).
    assert _n_params(build_model("resnet20", (3, 32, 32), 10)) == 269_722
    # option B adds 1x1 conv + BN projections at the two downsampling blocks
    b_extra = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert _n_params(build_model("resnet20", (3, 32, 32), 10, shortcut="B")) == 269_722 + b_extra


def test_wrn16_4_has_about_2_7m_parameters():
    # Zagoruyko & Komodakis 2016 list 2.7M for WRN-16-4 (10 classes).
    assert _n_params(build_model("wrn16_4", (3, 32, 32), 10)) == 2_748_890


def test_option_a_shortcut_is_parameter_free_subsample_and_zero_pad():
    model = build_model("resnet20", (3, 32, 32), 10)
    block = model.stages[3]  # first block of stage 2: 16 -> 32 channels, stride 2
    x = torch.randn(2, 16, 8, 8)
    out = block.shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0
    assert _n_params(block.shortcut) == 0


def test_linear_model_is_one_affine_map_of_the_flattened_input():
    model = build_model("linear", (2, 3), 4)
    assert _n_params(model) == 6 * 4 + 4
    assert _n_params(build_model("linear", (2, 3), 4, bias=False)) == 24
    x = torch.randn(5, 2, 3)
    affine = model[1]
    assert torch.allclose(model(x), x.reshape(5, 6) @ affine.weight.T + affine.bias)


def test_mlp_widths_and_activation_are_applied():
    model = build_model("mlp", (10,), 3, widths=[7, 5], activation="tanh")
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(10, 7), (7, 5), (5, 3)]
    assert sum(isinstance(m, nn.Tanh) for m in model) == 2
    assert (
        len([m for m in build_model("mlp", (10,), 3, widths=[]) if isinstance(m, nn.Linear)]) == 1
    )


def test_cnn_batchnorm_switch_adds_norm_layers_and_drops_conv_bias():
    plain = build_model("cnn", (1, 8, 8), 10, channels=[4, 6])
    normed = build_model("cnn", (1, 8, 8), 10, channels=[4, 6], batchnorm=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in normed.modules()) == 2
    convs = [m for m in normed.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 6] and all(c.bias is None for c in convs)


@pytest.mark.parametrize("name", ["cnn", "resnet20", "wrn16_4"])
def test_conv_model_on_a_1d_dataset_is_refused_with_a_clear_message(name):
    with pytest.raises(UserInputError) as err:
        build_model(name, (40,), 10)
    message = str(err.value)
    assert name in message and "(40,)" in message and "(C, H, W)" in message and "mlp" in message


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("mlp", {"depth": 3}, "'depth'"),
        ("mlp", {"widths": [0, 4]}, "widths"),
        ("mlp", {"widths": "128"}, "widths"),
        ("mlp", {"activation": "swish"}, "gelu, relu, silu, tanh"),
        ("cnn", {"channels": []}, "channels"),
        ("cnn", {"batchnorm": "yes"}, "batchnorm"),
        ("resnet20", {"shortcut": "C"}, "A, B"),
        ("wrn16_4", {"dropout": 1.0}, "dropout"),
        ("linear", {"bias": 1}, "bias"),
    ],
)
def test_bad_model_args_name_the_argument(name, args, expected):
    shape = (1, 8, 8)
    with pytest.raises(UserInputError, match=expected):
        build_model(name, shape, 10, **args)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UserInputError) as err:
        build_model("vgg16", (3, 32, 32), 10)
    assert all(name in str(err.value) for name in MODELS)
