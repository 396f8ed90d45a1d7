"""The multi-tensor paths keep state in flat buffers (``FlatState``): the state the
user sees and edits stays the optimizer's state, whatever happens to it."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustness.optim import INSGD, NovoGrad, _multi_tensor
from robustness.optim.insgd import _reference_scale, reference_scales


def _params(seed: int) -> list[nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(5, 3), (3,), (2, 3, 3, 3), (7,)]
    return [nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64)) for s in shapes]


def _grads(params, seed: int, skip: int | None = None) -> None:
    gen = torch.Generator().manual_seed(seed)
    for i, p in enumerate(params):
        g = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        p.grad = None if i == skip else g


def _novograd_pair(**kwargs):
    fast, simple = _params(0), _params(0)
    return (
        fast,
        NovoGrad(fast, foreach=True, **kwargs),
        simple,
        NovoGrad(simple, foreach=False, **kwargs),
    )


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def test_novograd_state_entries_are_views_of_one_buffer_per_name():
    params = _params(0)
    opt = NovoGrad(params, lr=0.1)
    _grads(params, 1)
    opt.step()
    for name in ("exp_avg", "exp_avg_sq"):
        assert len({_storage(opt.state[p][name]) for p in params}) == 1
    assert opt.state[params[0]]["exp_avg"].shape == params[0].shape
    assert opt.state[params[0]]["exp_avg_sq"].dim() == 0


def test_a_state_entry_replaced_by_hand_is_the_one_the_next_step_uses():
    fast, opt_fast, simple, opt_simple = _novograd_pair(lr=0.05, weight_decay=0.01)
    for seed in (1, 2):
        _grads(fast, seed)
        _grads(simple, seed)
        opt_fast.step()
        opt_simple.step()
    for params, opt in ((fast, opt_fast), (simple, opt_simple)):
        opt.state[params[2]]["exp_avg"] = torch.full_like(params[2], 0.5)
        opt.state[params[1]]["exp_avg_sq"] = torch.tensor(7.0, dtype=torch.float64)
    for seed in (3, 4):
        _grads(fast, seed)
        _grads(simple, seed)
        opt_fast.step()
        opt_simple.step()
    for p, q in zip(fast, simple, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
    moved = opt_fast.state[fast[2]]["exp_avg"]
    assert moved.abs().min() > 0  # the edited moment was carried on, not dropped


def test_a_parameter_without_a_gradient_for_a_while_keeps_its_state():
    fast, opt_fast, simple, opt_simple = _novograd_pair(lr=0.05)
    for seed, skip in ((1, None), (2, 1), (3, 1), (4, None), (5, 3)):
        _grads(fast, seed, skip)
        _grads(simple, seed, skip)
        before = fast[1].detach().clone()
        opt_fast.step()
        opt_simple.step()
        if skip == 1:
            assert torch.equal(fast[1], before)
    for p, q in zip(fast, simple, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


def test_loading_a_state_dict_into_an_optimizer_that_has_stepped_replaces_its_state():
    params = _params(0)
    opt = NovoGrad(params, lr=0.05)
    for seed in (1, 2, 3):
        _grads(params, seed)
        opt.step()
    saved_params = [p.detach().clone() for p in params]
    saved = io.BytesIO()
    torch.save(opt.state_dict(), saved)
    for seed in (4, 5):
        _grads(params, seed)
        opt.step()

    other = _params(9)
    other_opt = NovoGrad(other, lr=0.05)
    for seed in (7, 8):  # its flat buffers exist and hold other values
        _grads(other, seed)
        other_opt.step()
    with torch.no_grad():
        for q, saved_p in zip(other, saved_params, strict=True):
            q.copy_(saved_p)
    saved.seek(0)
    other_opt.load_state_dict(torch.load(saved))
    for seed in (4, 5):
        _grads(other, seed)
        other_opt.step()
    for p, q in zip(params, other, strict=True):
        assert torch.equal(p, q)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, groups=2),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 3),
    ).double()


@pytest.mark.parametrize("spread", [False, True], ids=["cpu-path", "cuda-path"])
@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_insgd_paths_agree_when_a_layer_is_frozen_for_a_while(mode, spread, monkeypatch):
    monkeypatch.setattr(_multi_tensor, "SPREAD_ON_CPU", spread)
    models = {foreach: _net() for foreach in (True, False)}
    opts = {
        f: INSGD(m, lr=0.05, mode=mode, weight_decay=1e-3, foreach=f) for f, m in models.items()
    }
    gen = torch.Generator().manual_seed(0)
    for step in range(6):
        x = torch.randn(5, 2, 5, 5, generator=gen, dtype=torch.float64)
        y = torch.randint(0, 3, (5,), generator=gen)
        for foreach, model in models.items():
            model[2].weight.requires_grad_(step not in (2, 3))
            opts[foreach].zero_grad()
            F.cross_entropy(model(x), y).backward()
            opts[foreach].step()
    fast, simple = models[True], models[False]
    for (name, p), q in zip(fast.named_parameters(), simple.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=name)
    assert len({_storage(opts[True].state[p]["momentum_buffer"]) for p in fast.parameters()}) == 1


@pytest.mark.parametrize(
    "layer",
    [nn.Conv2d(3, 4, 3), nn.Conv2d(4, 6, (3, 2), groups=2), nn.Conv2d(2, 2, 1), nn.Linear(5, 2)],
    ids=["conv3x3", "grouped3x2", "conv1x1", "linear"],
)
def test_reference_factors_repeated_over_the_kernel_equal_the_broadcast_ones(layer):
    from robustness.optim._input_stats import standardized_input_statistic

    x = (
        torch.randn(8, 5)
        if isinstance(layer, nn.Linear)
        else torch.randn(8, layer.in_channels, 6, 6)
    )
    other = nn.Conv2d(3, 5, 3)  # a second layer, so the factors are split back apart
    stats = [
        standardized_input_statistic(layer, x, "l2"),
        standardized_input_statistic(other, torch.randn(8, 3, 6, 6) * 4, "l1"),
    ]
    shapes = [layer.weight.shape, other.weight.shape]
    expanded = reference_scales(stats, momentum=0.9, eps=0.01, shapes=shapes)
    for factor, stat, shape in zip(expanded, stats, shapes, strict=True):
        (broadcast,) = _reference_scale(stat, momentum=0.9, eps=0.01)
        assert factor.is_contiguous()
        assert torch.equal(factor, broadcast.expand_as(factor))
        assert torch.broadcast_shapes(factor.shape, shape) == shape
        if stat.dim() == 4:
            assert factor.shape[2:] == shape[2:]
