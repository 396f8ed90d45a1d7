"""The optimizer factory: names, the beta/beta2 mapping, pass-through and refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustness.errors import UserInputError
from robustness.optim import INSGD, OPTIMIZERS, NovoGrad, build_optimizer, optimizer_axes


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


def test_the_built_in_optimizers_are_registered_with_their_axes():
    assert set(OPTIMIZERS) == {"sgd", "insgd", "novograd", "adam", "adamw"}
    assert optimizer_axes("sgd") == ("beta",)
    for name in ("insgd", "novograd", "adam", "adamw"):
        assert optimizer_axes(name) == ("beta", "beta2")


def _same_trajectory(ours, opt, theirs, ref, steps=5):
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(4, 5, generator=gen), torch.randint(0, 3, (4,), generator=gen)
        for m, o in ((ours, opt), (theirs, ref)):
            o.zero_grad()
            F.cross_entropy(m(x), y).backward()
            o.step()
    initial = _model().parameters()
    moved = any(not torch.equal(p, q) for p, q in zip(ours.parameters(), initial, strict=True))
    assert moved  # the comparison below compares trained weights, not two initial ones
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    "kwargs", [{}, {"weight_decay": 0.01, "nesterov": True}, {"foreach": True}]
)
def test_sgd_from_the_registry_has_the_trajectory_of_torch_sgd(kwargs):
    ours, theirs = _model(), _model()
    opt = build_optimizer("sgd", ours, lr=0.1, beta=0.8, **kwargs)
    ref = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.8, **kwargs)
    assert type(opt) is torch.optim.SGD
    _same_trajectory(ours, opt, theirs, ref)


@pytest.mark.parametrize(
    ("name", "cls", "kwargs"),
    [
        ("adam", torch.optim.Adam, {}),
        ("adam", torch.optim.Adam, {"weight_decay": 0.01, "amsgrad": True, "eps": 1e-6}),
        ("adamw", torch.optim.AdamW, {}),
        ("adamw", torch.optim.AdamW, {"weight_decay": 0.1, "foreach": False}),
    ],
)
def test_adam_and_adamw_have_the_trajectory_of_torch_with_beta_as_betas(name, cls, kwargs):
    ours, theirs = _model(), _model()
    opt = build_optimizer(name, ours, lr=0.01, beta=0.8, beta2=0.95, **kwargs)
    ref = cls(theirs.parameters(), lr=0.01, betas=(0.8, 0.95), **kwargs)
    assert type(opt) is cls
    assert opt.param_groups[0]["betas"] == (0.8, 0.95)
    _same_trajectory(ours, opt, theirs, ref)


def test_adam_keeps_torchs_default_for_the_axis_not_given():
    assert build_optimizer("adam", _model(), lr=0.1).param_groups[0]["betas"] == (0.9, 0.999)
    assert build_optimizer("adamw", _model(), lr=0.1, beta2=0.9).param_groups[0]["betas"] == (
        0.9,
        0.9,
    )
    assert build_optimizer("adam", _model(), lr=0.1, beta=0.5).param_groups[0]["betas"] == (
        0.5,
        0.999,
    )
    # AdamW's own weight-decay default (0.01), not Adam's (0)
    assert build_optimizer("adamw", _model(), lr=0.1).param_groups[0]["weight_decay"] == 0.01


def test_beta_and_beta2_map_to_each_optimizers_own_arguments():
    sgd = build_optimizer("sgd", _model(), lr=0.1, beta=0.7)
    assert sgd.param_groups[0]["momentum"] == 0.7
    insgd = build_optimizer("insgd", _model(), lr=0.1, beta=0.6, beta2=0.95)
    assert isinstance(insgd, INSGD)
    assert (insgd.param_groups[0]["momentum"], insgd.param_groups[0]["beta"]) == (0.6, 0.95)
    insgd.close()
    novograd = build_optimizer("novograd", _model(), lr=0.1, beta=0.9, beta2=0.5)
    assert isinstance(novograd, NovoGrad)
    assert novograd.param_groups[0]["betas"] == (0.9, 0.5)


def test_none_means_each_optimizers_default():
    assert build_optimizer("sgd", _model(), lr=0.1).param_groups[0]["momentum"] == 0.9
    insgd = build_optimizer("insgd", _model(), lr=0.1)
    assert (insgd.param_groups[0]["momentum"], insgd.param_groups[0]["beta"]) == (0.9, 0.99)
    insgd.close()
    novograd = build_optimizer("novograd", _model(), lr=0.1, beta=0.5)
    assert novograd.param_groups[0]["betas"] == (0.5, 0.98)


def test_fixed_arguments_pass_through():
    insgd = build_optimizer(
        "insgd", _model(), lr=0.1, mode="reference", norm="l1", eps=0.05, weight_decay=0.01
    )
    assert (insgd.mode, insgd.norm) == ("reference", "l1")
    assert (insgd.param_groups[0]["eps"], insgd.param_groups[0]["weight_decay"]) == (0.05, 0.01)
    insgd.close()
    novograd = build_optimizer("novograd", _model(), lr=0.1, grad_averaging=True, eps=1e-6)
    assert novograd.param_groups[0]["grad_averaging"] is True
    assert novograd.param_groups[0]["eps"] == 1e-6


@pytest.mark.parametrize(
    ("name", "kwargs", "needle"),
    [
        (
            "lion",
            {"lr": 0.1},
            "unknown optimizer 'lion'; allowed: adam, adamw, insgd, novograd, sgd",
        ),
        ("adam", {"lr": 0.1, "weight_decay": -0.5}, "weight_decay must be"),
        ("adamw", {"lr": 0.1, "amsgrad": "yes"}, "amsgrad must be true or false"),
        ("adamw", {"lr": 0.1, "foreach": True, "fused": True}, "cannot both be true"),
        ("adam", {"lr": 0.1, "momentum": 0.9}, r"unknown argument\(s\) 'momentum'.*amsgrad"),
        ("sgd", {"lr": -0.1}, "lr must be"),
        ("sgd", {"lr": float("nan")}, "lr must be"),
        ("insgd", {"lr": 0.1, "beta": 1.0}, r"beta must be in \[0, 1\)"),
        ("novograd", {"lr": 0.1, "beta2": -0.2}, r"beta2 must be in \[0, 1\)"),
        ("sgd", {"lr": 0.1, "beta2": 0.9}, "no beta2 axis"),
        ("insgd", {"lr": 0.1, "mode": "fast"}, "unknown mode 'fast'; allowed: paper, reference"),
        ("insgd", {"lr": 0.1, "norm": "l3"}, "allowed: l1, l2"),
        (
            "novograd",
            {"lr": 0.1, "momentum": 0.9},
            r"unknown argument\(s\) 'momentum'.*allowed: eps",
        ),
        ("sgd", {"lr": 0.1, "weight_decay": -1}, "weight_decay"),
        ("sgd", {"lr": 0.1, "beta": 0.0, "nesterov": True}, "nesterov"),
    ],
)
def test_bad_input_is_a_user_input_error_saying_what_is_allowed(name, kwargs, needle):
    with pytest.raises(UserInputError, match=needle):
        build_optimizer(name, _model(), **kwargs)


def test_numpy_hyperparameters_are_stored_as_plain_floats():
    np = pytest.importorskip("numpy")
    opt = build_optimizer(
        "novograd", _model(), lr=np.float32(0.5), beta=np.float64(0.5), eps=np.float32(1e-3)
    )
    group = opt.param_groups[0]
    assert type(group["lr"]) is float and group["lr"] == 0.5
    assert type(group["betas"][0]) is float and type(group["eps"]) is float
