"""Init schemes: the statistics each promises, bias and norm handling, determinism."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustness.errors import UserInputError
from robustness.init_schemes import INIT_SCHEMES, apply_init
from robustness.models import build_model


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _init(layer: nn.Module, scheme: str, gain: float = 1.0, seed: int = 0, **args) -> torch.Tensor:
    apply_init(layer, scheme, generator=_gen(seed), gain=gain, **args)
    return layer.weight.detach()


# a large layer so the sample std is within ~0.3% of the true one
FAN_IN, FAN_OUT = 600, 400


@pytest.mark.parametrize("gain", [1.0, 0.5, 3.0])
@pytest.mark.parametrize(
    ("scheme", "args", "expected_std"),
    [
        ("kaiming_normal", {}, math.sqrt(2 / FAN_IN)),
        ("kaiming_normal", {"mode": "fan_out"}, math.sqrt(2 / FAN_OUT)),
        ("kaiming_normal", {"nonlinearity": "tanh"}, 5 / 3 / math.sqrt(FAN_IN)),
        ("kaiming_uniform", {}, math.sqrt(2 / FAN_IN)),
        ("xavier_normal", {}, math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ("xavier_uniform", {}, math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ("lecun_normal", {}, 1 / math.sqrt(FAN_IN)),
        ("normal", {"std": 0.05}, 0.05),
    ],
)
def test_scheme_std_is_gain_times_its_formula(scheme, args, expected_std, gain):
    weight = _init(nn.Linear(FAN_IN, FAN_OUT), scheme, gain=gain, **args)
    assert weight.mean().abs() < 0.05 * gain * expected_std
    assert weight.std().item() == pytest.approx(gain * expected_std, rel=0.01)


@pytest.mark.parametrize(
    ("scheme", "bound"),
    [
        ("kaiming_uniform", math.sqrt(2) * math.sqrt(3 / FAN_IN)),
        ("xavier_uniform", math.sqrt(6 / (FAN_IN + FAN_OUT))),
    ],
)
def test_uniform_schemes_stay_within_gain_times_their_bound(scheme, bound):
    weight = _init(nn.Linear(FAN_IN, FAN_OUT), scheme, gain=2.0)
    assert weight.abs().max() <= 2.0 * bound
    assert weight.abs().max() > 0.99 * 2.0 * bound


def test_conv_fan_in_counts_input_channels_times_kernel():
    conv = nn.Conv2d(32, 64, kernel_size=5)  # fan_in 32 * 25 = 800
    weight = _init(conv, "lecun_normal", gain=1.5)
    assert weight.std().item() == pytest.approx(1.5 / math.sqrt(800), rel=0.02)


@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal_gives_gain_squared_identity(gain):
    tall = _init(nn.Linear(64, 128), "orthogonal", gain=gain)  # weight 128 x 64
    assert torch.allclose(tall.T @ tall, gain**2 * torch.eye(64), atol=1e-4 * gain**2)
    conv = _init(nn.Conv2d(8, 4, 3), "orthogonal", gain=gain).reshape(4, -1)  # 4 x 72, wide
    assert torch.allclose(conv @ conv.T, gain**2 * torch.eye(4), atol=1e-4 * gain**2)


@pytest.mark.parametrize("scheme", sorted(set(INIT_SCHEMES) - {"default"}))
def test_non_default_schemes_zero_the_biases(scheme):
    model = build_model("cnn", (1, 8, 8), 10, channels=[4])
    apply_init(model, scheme, generator=_gen())
    biases = [m.bias for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert len(biases) == 2 and all(torch.equal(b, torch.zeros_like(b)) for b in biases)


def test_bias_default_keeps_pytorch_default_bias():
    layer = nn.Linear(100, 50)
    apply_init(layer, "kaiming_normal", generator=_gen(), bias="default")
    assert layer.bias.abs().max() <= 1 / math.sqrt(100)
    assert layer.bias.abs().min() > 0


def test_default_scheme_is_pytorch_init_scaled_by_gain_and_keeps_bias():
    one, two = nn.Linear(100, 50), nn.Linear(100, 50)
    apply_init(one, "default", generator=_gen(3))
    apply_init(two, "default", generator=_gen(3), gain=2.0)
    assert torch.equal(two.weight, 2.0 * one.weight)
    assert torch.equal(two.bias, one.bias)
    # PyTorch's Linear default is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
    assert one.weight.abs().max() <= 1 / math.sqrt(100)
    assert one.weight.std().item() == pytest.approx(1 / math.sqrt(3 * 100), rel=0.05)
    assert one.bias.abs().min() > 0
    layer = nn.Linear(10, 10)
    apply_init(layer, "default", generator=_gen(), bias="zeros")
    assert torch.equal(layer.bias, torch.zeros(10))


@pytest.mark.parametrize("scheme", sorted(INIT_SCHEMES))
def test_norm_layers_get_weight_one_bias_zero_and_fresh_stats(scheme):
    model = build_model("resnet20", (3, 8, 8), 10)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model(torch.randn(4, 3, 8, 8))  # moves the running statistics
    apply_init(model, scheme, generator=_gen(), gain=2.0)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms
    for bn in norms:
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))


@pytest.mark.parametrize("scheme", sorted(INIT_SCHEMES))
def test_same_seed_same_weights_different_seed_different_weights(scheme):
    def weights(seed: int) -> list[torch.Tensor]:
        model = build_model("mlp", (20,), 5, widths=[16])
        apply_init(model, scheme, generator=_gen(seed), bias="default")
        return [p.detach().clone() for p in model.parameters()]

    first, again, other = weights(1), weights(1), weights(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert all(not torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_apply_init_leaves_the_global_rng_untouched():
    model = build_model("mlp", (20,), 5)  # construction itself uses the global RNG
    state = torch.get_rng_state()
    apply_init(model, "default", generator=_gen())
    apply_init(model, "orthogonal", generator=_gen())
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    ("scheme", "kwargs", "expected"),
    [
        ("he", {}, "kaiming_normal"),
        ("kaiming_normal", {"mode": "fan_avg"}, "fan_in, fan_out"),
        ("kaiming_normal", {"nonlinearity": "swish"}, "relu"),
        ("kaiming_normal", {"std": 0.1}, "allowed: mode, nonlinearity"),
        ("xavier_normal", {"mode": "fan_in"}, "allowed: none"),
        ("normal", {"std": -1.0}, "std"),
        ("normal", {"gain": 0.0}, "gain"),
        ("normal", {"gain": float("nan")}, "gain"),
        ("normal", {"bias": "ones"}, "default, zeros"),
    ],
)
def test_bad_init_arguments_are_refused_naming_what_is_allowed(scheme, kwargs, expected):
    with pytest.raises(UserInputError, match=expected):
        apply_init(nn.Linear(3, 3), scheme, generator=_gen(), **kwargs)


@pytest.mark.gpu
@pytest.mark.parametrize("scheme", sorted(INIT_SCHEMES))
def test_same_generator_gives_the_same_weights_on_cuda_and_cpu(scheme):
    cpu = build_model("cnn", (1, 8, 8), 10, batchnorm=True)
    cuda = build_model("cnn", (1, 8, 8), 10, batchnorm=True).cuda()
    apply_init(cpu, scheme, generator=_gen(7))
    apply_init(cuda, scheme, generator=_gen(7))
    for a, b in zip(cpu.parameters(), cuda.parameters(), strict=True):
        assert b.is_cuda
        if scheme == "default":  # PyTorch's own init draws from the CUDA RNG there
            assert torch.isfinite(b).all()
        else:
            assert torch.equal(a, b.cpu())
