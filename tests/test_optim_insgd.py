"""INSGD: paper and reference mode (docs/algorithms.md), hooks, state, both paths."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustness.errors import UserInputError
from robustness.optim import INSGD, _multi_tensor

PATHS = pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "single"])


def _check_layer() -> nn.Linear:
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    return layer


def _net(seed: int = 0, dtype=torch.float64) -> nn.Module:
    """Conv (plain, grouped, depthwise) + BatchNorm + Linear: every kind of parameter."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, groups=2, bias=False),
        nn.Conv2d(4, 4, 3, padding=1, groups=4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 3),
    ).to(dtype)


def _batches(n: int, seed: int = 1, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(8, 2, 7, 7, generator=gen, dtype=dtype),
            torch.randint(0, 3, (8,), generator=gen),
        )
        for _ in range(n)
    ]


def _train(model: nn.Module, opt: torch.optim.Optimizer, batches) -> None:
    model.train()
    for x, y in batches:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


@PATHS
def test_paper_mode_first_step_reproduces_the_algorithms_check_value(foreach):
    layer = _check_layer()
    opt = INSGD(layer, lr=0.1, momentum=0.9, foreach=foreach)
    y = layer(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    (0.5 * y.square().sum()).backward()
    opt.step()
    assert opt.state[layer.weight]["input_power"].item() == pytest.approx(30.0)
    expected = torch.tensor([[0.0117958, 0.0235915, 0.0353873, 0.0471831]])
    torch.testing.assert_close(layer.weight.detach(), expected, rtol=0, atol=5e-7)
    # and exactly w − lr·g/ln 30 with g = y·x = 3·x
    exact = torch.tensor([[0.1, 0.2, 0.3, 0.4]]) - 0.1 * 3.0 * torch.tensor(
        [[1.0, 2, 3, 4]]
    ) / math.log(30)
    torch.testing.assert_close(layer.weight.detach(), exact)


@PATHS
def test_paper_mode_input_power_momentum_and_momentum_buffer_follow_the_recursions(foreach):
    torch.manual_seed(0)
    layer = nn.Linear(3, 2, bias=False).double()
    beta, mu, lr = 0.8, 0.5, 0.05
    opt = INSGD(layer, lr=lr, momentum=mu, beta=beta, foreach=foreach)
    x1, x2 = torch.randn(5, 3, dtype=torch.float64) * 4, torch.randn(5, 3, dtype=torch.float64) * 2
    p1 = x1.square().sum(1).mean()
    p2 = x2.square().sum(1).mean()
    grads = []
    w = layer.weight.detach().clone()
    for x in (x1, x2):
        opt.zero_grad()
        layer(x).sum().backward()
        grads.append(layer.weight.grad.clone())
        opt.step()
    P1, P2 = p1, beta * p1 + (1 - beta) * p2
    d1 = grads[0] / math.log(P1)
    buf = mu * d1 + grads[1] / math.log(P2)
    expected = w - lr * d1 - lr * buf
    assert opt.state[layer.weight]["input_power"].item() == pytest.approx(P2.item(), rel=1e-12)
    torch.testing.assert_close(layer.weight.detach(), expected, rtol=1e-12, atol=1e-14)


@PATHS
def test_reference_mode_update_is_the_momentum_step_times_a_per_layer_factor(foreach):
    torch.manual_seed(0)
    layer = nn.Linear(6, 2).double()
    mu, lr = 0.9, 0.1
    opt = INSGD(layer, lr=lr, momentum=mu, mode="reference", foreach=foreach)
    w, b = layer.weight.detach().clone(), layer.bias.detach().clone()
    layer(torch.randn(5, 6, dtype=torch.float64) * 7).sum().backward()
    g_w, g_b = layer.weight.grad.clone(), layer.bias.grad.clone()
    opt.step()
    factor = math.sqrt(1 + 1e-6) / (math.log(5.1) * (math.sqrt(1 - mu) + 1e-6))  # S = 6 − 1 + 0.1
    torch.testing.assert_close(layer.weight.detach(), w - lr * factor * g_w, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(
        layer.bias.detach(), b - lr * g_b, rtol=1e-12, atol=1e-14
    )  # plain SGD


def _update_for_input(mode: str, layer: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    """The first-step update of ``layer.weight`` for input ``x``, with a fixed gradient."""
    start = layer.weight.detach().clone()
    opt = INSGD(layer, lr=0.1, mode=mode)
    layer(x)  # the forward pass is measured; the gradient is pinned to isolate the scale
    layer.weight.grad = grad.clone()
    opt.step()
    opt.close()
    update = layer.weight.detach() - start
    with torch.no_grad():
        layer.weight.copy_(start)
    return update


@pytest.mark.parametrize(
    "make_layer",
    [
        lambda: nn.Linear(8, 3, bias=False),
        lambda: nn.Conv2d(3, 4, 3, padding=1, bias=False),
        lambda: nn.Conv2d(4, 4, 3, groups=4, bias=False),
    ],
    ids=["linear", "conv", "depthwise"],
)
@pytest.mark.parametrize("c", [1e-2, 0.5, 3.0, 250.0])
def test_reference_mode_update_is_invariant_to_scaling_the_layer_input(make_layer, c):
    torch.manual_seed(0)
    layer = make_layer().double()
    shape = (6, 8) if isinstance(layer, nn.Linear) else (6, layer.in_channels, 8, 8)
    x = torch.randn(shape, dtype=torch.float64) * 5
    grad = torch.randn_like(layer.weight)
    base = _update_for_input("reference", layer, x, grad)
    scaled = _update_for_input("reference", layer, c * x, grad)
    assert base.abs().max() > 0
    torch.testing.assert_close(scaled, base, rtol=1e-9, atol=0)


@pytest.mark.parametrize("c", [0.5, 3.0, 250.0])
def test_paper_mode_update_changes_with_input_scale_as_the_formula_says(c):
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 4, 3, padding=1, bias=False).double()
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64) * 5
    grad = torch.randn_like(layer.weight)
    base = _update_for_input("paper", layer, x, grad)
    scaled = _update_for_input("paper", layer, c * x, grad)
    # s = 1/ln P and P scales by c²: the update ratio is ln P / (ln P + 2 ln c)
    from robustness.optim._input_stats import input_power

    log_p = math.log(input_power(layer, x, "l2").item())
    torch.testing.assert_close(
        scaled / base, torch.full_like(base, log_p / (log_p + 2 * math.log(c)))
    )


@pytest.mark.parametrize("mode", ["paper", "reference"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"weight_decay": 0.01, "dampening": 0.3},
        {"nesterov": True, "weight_decay": 0.05},
        {"momentum": 0.0, "norm": "l1"},
    ],
    ids=["defaults", "wd-dampening", "nesterov", "no-momentum-l1"],
)
@pytest.mark.parametrize("spread", [False, True], ids=["cpu-path", "cuda-path"])
def test_fast_and_simple_paths_agree(mode, options, spread, monkeypatch):
    """Float64, so the paths must agree to 1e-10 (CUDA-path: the factors spread over
    parameter-shaped buffers, run on the CPU)."""
    monkeypatch.setattr(_multi_tensor, "SPREAD_ON_CPU", spread)
    fast_model, simple_model = _net(), _net()
    fast = INSGD(fast_model, lr=0.05, mode=mode, foreach=True, **options)
    simple = INSGD(simple_model, lr=0.05, mode=mode, foreach=False, **options)
    batches = _batches(4)
    _train(fast_model, fast, batches)
    _train(simple_model, simple, batches)
    start = _net()
    for (name, p), q, p0 in zip(
        fast_model.named_parameters(), simple_model.parameters(), start.parameters(), strict=True
    ):
        assert (p - p0).abs().max() > 0, name
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=name)


@PATHS
def test_parameters_that_are_not_normalized_follow_torch_sgd_exactly(foreach):
    model = nn.Sequential(nn.BatchNorm1d(5), nn.Linear(5, 2))
    twin = nn.Sequential(nn.BatchNorm1d(5), nn.Linear(5, 2))
    twin.load_state_dict(model.state_dict())
    kwargs = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "dampening": 0.1}
    opt = INSGD(model, foreach=foreach, **kwargs)
    sgd = torch.optim.SGD([p for n, p in twin.named_parameters() if n != "1.weight"], **kwargs)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        x = torch.randn(6, 5, generator=gen)
        for m, o in ((model, opt), (twin, sgd)):
            o.zero_grad()
            m(x).square().sum().backward()
            o.step()
        twin[1].weight.data.copy_(model[1].weight.data)  # only the normalized weight differs
    for (name, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)


def test_state_dict_round_trip_mid_training_continues_identically():
    model = _net(3, torch.float32)
    opt = INSGD(model, lr=0.05, weight_decay=1e-3)
    batches = _batches(6, dtype=torch.float32)
    _train(model, opt, batches[:3])
    saved_model, saved_opt = io.BytesIO(), io.BytesIO()
    torch.save(model.state_dict(), saved_model)
    torch.save(opt.state_dict(), saved_opt)
    assert all(
        "input_power" in opt.state[m.weight] for m in (model[0], model[3], model[4], model[7])
    )

    _train(model, opt, batches[3:])
    resumed = _net(99, torch.float32)
    saved_model.seek(0)
    saved_opt.seek(0)
    resumed.load_state_dict(torch.load(saved_model))
    resumed_opt = INSGD(resumed, lr=0.05, weight_decay=1e-3)
    resumed_opt.load_state_dict(torch.load(saved_opt))
    _train(resumed, resumed_opt, batches[3:])
    for p, q in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)


def test_step_before_any_forward_pass_is_a_clear_error():
    model = _net()
    opt = INSGD(model, lr=0.1)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    with pytest.raises(RuntimeError, match=r"layer '0'.*no input was measured"):
        opt.step()


def test_close_removes_the_hooks_and_a_later_step_is_an_error():
    model = _net()
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with INSGD(model, lr=0.1) as opt:
        assert all(len(m._forward_pre_hooks) == 1 for m in layers)
        _train(model, opt, _batches(1))
    assert all(len(m._forward_pre_hooks) == 0 for m in layers)
    opt.close()  # idempotent
    x, y = _batches(1)[0]
    F.cross_entropy(model(x), y).backward()
    with pytest.raises(RuntimeError, match="close"):
        opt.step()


def test_evaluation_passes_do_not_disturb_the_input_power():
    layer = _check_layer()
    opt = INSGD(layer, lr=0.1)
    y = layer(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    with torch.no_grad():
        layer(torch.full((3, 4), 100.0))
    layer.eval()
    layer(torch.full((3, 4), 100.0))  # eval mode with grad enabled: not measured either
    layer.train()
    (0.5 * y.square().sum()).backward()
    opt.step()
    assert opt.state[layer.weight]["input_power"].item() == pytest.approx(30.0)


def test_several_forward_passes_before_a_step_are_averaged():
    layer = _check_layer()
    opt = INSGD(layer, lr=0.1)
    loss = layer(torch.tensor([[1.0, 2.0, 3.0, 4.0]])).sum() + layer(torch.ones(2, 4)).sum()
    loss.backward()
    opt.step()
    assert opt.state[layer.weight]["input_power"].item() == pytest.approx((30.0 + 4.0) / 2)


@PATHS
@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_step_never_modifies_the_gradient(foreach, mode):
    model = _net()
    opt = INSGD(model, lr=0.1, weight_decay=0.1, mode=mode, foreach=foreach)
    for x, y in _batches(2):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        before = [p.grad.clone() for p in model.parameters()]
        opt.step()
        for p, g in zip(model.parameters(), before, strict=True):
            assert torch.equal(p.grad, g)


def test_frozen_layers_are_neither_hooked_nor_stepped():
    model = _net()
    model[0].weight.requires_grad_(False)
    opt = INSGD(model, lr=0.1)
    assert len(model[0]._forward_pre_hooks) == 0
    before = model[0].weight.detach().clone()
    _train(model, opt, _batches(2))
    assert torch.equal(model[0].weight, before)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": 0.1, "momentum": 1.0}, "momentum"),
        ({"lr": 0.1, "beta": -0.5}, "beta"),
        ({"lr": 0.1, "mode": "authors"}, "paper, reference"),
        ({"lr": 0.1, "norm": "linf"}, "l1, l2"),
        ({"lr": 0.1, "nesterov": True, "momentum": 0.0}, "nesterov"),
        ({"lr": 0.1, "weight_decay": -1e-4}, "weight_decay"),
    ],
)
def test_invalid_hyperparameters_are_refused_with_what_is_allowed(kwargs, needle):
    with pytest.raises(UserInputError, match=needle):
        INSGD(_net(), **kwargs)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_a_cuda_step_makes_no_host_sync(mode):
    from robustness.optim import NovoGrad

    model = _net(0, torch.float32).cuda()
    insgd = INSGD(model, lr=0.05, mode=mode, weight_decay=1e-4)
    twin = _net(0, torch.float32).cuda()
    novograd = NovoGrad(twin.parameters(), lr=0.05, weight_decay=1e-4)
    x, y = (t.cuda() for t in _batches(1, dtype=torch.float32)[0])
    for m, opt in ((model, insgd), (twin, novograd)):
        for _ in range(3):  # first steps allocate state; later ones must not sync
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                opt.step()
            finally:
                torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("nesterov", [False, True])
def test_update_function_paths_agree_on_mixed_dtypes_and_first_steps(nesterov):
    from robustness.optim.insgd import insgd

    gen = torch.Generator().manual_seed(0)
    shapes = [((3, 2, 3, 3), torch.float32), ((4,), torch.float64), ((2, 5), torch.float32)]
    fast = [torch.randn(s, generator=gen, dtype=d) for s, d in shapes]
    simple = [p.clone() for p in fast]
    buffers = {"fast": [None] * 3, "simple": [None] * 3}
    for _ in range(3):  # the first call creates the buffers, later ones update them
        grads = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in fast]
        scales = [torch.rand((), generator=gen, dtype=p.dtype) + 0.5 for p in fast]
        update = [  # per-channel (reference conv), and 0-dim factors
            torch.rand((1, 2, 1, 1), generator=gen),
            torch.rand((), generator=gen, dtype=torch.float64),
            torch.rand((), generator=gen),
        ]
        hyper = {"lr": 0.1, "weight_decay": 0.01, "momentum": 0.9, "dampening": 0.0}
        for ps, key, foreach in ((fast, "fast", True), (simple, "simple", False)):
            insgd(
                ps,
                grads,
                buffers[key],
                grad_scales=scales,
                update_scales=update,
                nesterov=nesterov,
                foreach=foreach,
                **hyper,
            )
    for p, q in zip(fast, simple, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert all(b is not None for b in buffers["fast"])
