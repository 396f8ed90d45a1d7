"""NovoGrad: the paper's Algorithm 1 (docs/algorithms.md), both execution paths."""

from __future__ import annotations

import io

import pytest
import torch
import torch_optimizer

from robustness.errors import UserInputError
from robustness.optim import NovoGrad, _multi_tensor

PATHS = pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "single"])


def _params(seed: int, dtype=torch.float64) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(5, 3), (3,), (2, 3, 3, 3), (7,), ()]
    return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]


def _random_grads(params, gen: torch.Generator) -> None:
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype) * (
            1 + torch.rand((), generator=gen, dtype=p.dtype) * 3
        )


def _step_side_by_side(params, opt, twins, twin_opt, gen: torch.Generator, steps: int) -> None:
    """``steps`` steps of ``opt`` and ``twin_opt`` on the same random gradients (copied)."""
    for _ in range(steps):
        _random_grads(params, gen)
        for p, q in zip(params, twins, strict=True):
            q.grad = p.grad.clone()
        opt.step()
        twin_opt.step()


@PATHS
def test_first_step_reproduces_the_algorithms_check_value(foreach):
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = NovoGrad([w], lr=0.1, foreach=foreach)
    w.grad = torch.tensor([3.0, 4.0])
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([0.94, 1.92]), rtol=0, atol=1e-6)
    assert opt.state[w]["exp_avg_sq"].item() == pytest.approx(25.0)


@PATHS
def test_second_step_follows_the_moment_recursions(foreach):
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    b1, b2, lr, wd = 0.9, 0.5, 0.1, 0.01
    opt = NovoGrad([w], lr=lr, betas=(b1, b2), weight_decay=wd, foreach=foreach)
    g1, g2 = (
        torch.tensor([3.0, 4.0], dtype=torch.float64),
        torch.tensor([0.0, 1.0], dtype=torch.float64),
    )
    w0 = w.detach().clone()
    v1 = 25.0
    m1 = g1 / (v1**0.5 + 1e-8) + wd * w0
    w1 = w0 - lr * m1
    v2 = b2 * v1 + (1 - b2) * 1.0
    m2 = b1 * m1 + g2 / (v2**0.5 + 1e-8) + wd * w1
    w2 = w1 - lr * m2
    w.grad = g1
    opt.step()
    w.grad = g2
    opt.step()
    torch.testing.assert_close(w.detach(), w2, rtol=1e-14, atol=0)
    assert opt.state[w]["exp_avg_sq"].item() == pytest.approx(v2, rel=1e-14)


@PATHS
@pytest.mark.parametrize("grad_averaging", [False, True])
def test_matches_torch_optimizer_novograd_over_many_random_steps(foreach, grad_averaging):
    # torch_optimizer.NovoGrad has the same math once betas are explicit (its
    # default beta2 is 0). It divides p.grad in place, so it gets copies, and it
    # keeps v in the default dtype, so that is float64 here for a tight comparison.
    ours, theirs = _params(0), _params(0)
    kwargs = {"lr": 0.05, "betas": (0.9, 0.7), "eps": 1e-8, "weight_decay": 0.01}
    opt = NovoGrad(ours, grad_averaging=grad_averaging, foreach=foreach, **kwargs)
    ref = torch_optimizer.NovoGrad(theirs, grad_averaging=grad_averaging, **kwargs)
    gen = torch.Generator().manual_seed(1)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _step_side_by_side(ours, opt, theirs, ref, gen, 60)
    finally:
        torch.set_default_dtype(default_dtype)
    for p, q, p0 in zip(ours, theirs, _params(0), strict=True):
        assert (p - p0).abs().max() > 0.1  # they really moved
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spread", [False, True], ids=["cpu-path", "cuda-path"])
def test_fast_and_simple_paths_agree(spread, monkeypatch):
    """Float32 over 25 steps: within 1e-6 relative (CUDA-path: the factors spread
    over parameter-shaped buffers, run on the CPU)."""
    monkeypatch.setattr(_multi_tensor, "SPREAD_ON_CPU", spread)
    fast, simple = _params(3, torch.float32), _params(3, torch.float32)
    kwargs = {"lr": 0.02, "betas": (0.95, 0.9), "weight_decay": 0.1, "grad_averaging": True}
    opt_fast = NovoGrad(fast, foreach=True, **kwargs)
    opt_simple = NovoGrad(simple, foreach=False, **kwargs)
    gen = torch.Generator().manual_seed(2)
    _step_side_by_side(fast, opt_fast, simple, opt_simple, gen, 25)
    for p, q in zip(fast, simple, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(
            opt_fast.state[p]["exp_avg_sq"], opt_simple.state[q]["exp_avg_sq"]
        )


@PATHS
def test_all_zero_first_gradient_does_not_start_the_moments(foreach):
    # with weight decay, a started tensor would move even with a zero gradient
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    fresh = torch.nn.Parameter(w.detach().clone())
    kwargs = {"lr": 0.1, "weight_decay": 0.5, "foreach": foreach}
    opt, opt_fresh = NovoGrad([w], **kwargs), NovoGrad([fresh], **kwargs)
    w.grad = torch.zeros(2, dtype=torch.float64)
    opt.step()
    assert torch.equal(w.detach(), torch.tensor([1.0, -2.0], dtype=torch.float64))
    assert opt.state[w]["exp_avg_sq"].item() == 0.0
    assert torch.equal(opt.state[w]["exp_avg"], torch.zeros(2, dtype=torch.float64))
    # its first non-zero gradient starts it exactly like a fresh optimizer: v = n
    for p in (w, fresh):
        p.grad = torch.tensor([0.5, 1.5], dtype=torch.float64)
    opt.step()
    opt_fresh.step()
    torch.testing.assert_close(w, fresh, rtol=0, atol=0)
    assert opt.state[w]["exp_avg_sq"].item() == pytest.approx(2.5)


@PATHS
def test_step_never_modifies_the_gradient(foreach):
    params = _params(4)
    opt = NovoGrad(params, lr=0.1, weight_decay=0.1, grad_averaging=True, foreach=foreach)
    gen = torch.Generator().manual_seed(5)
    for _ in range(2):
        _random_grads(params, gen)
        before = [p.grad.clone() for p in params]
        opt.step()
        for p, g in zip(params, before, strict=True):
            assert torch.equal(p.grad, g)


def test_state_dict_round_trip_continues_identically():
    params = _params(6)
    opt = NovoGrad(params, lr=0.05, weight_decay=0.01)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        _random_grads(params, gen)
        opt.step()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    clones = [torch.nn.Parameter(p.detach().clone()) for p in params]
    restored = NovoGrad(clones, lr=0.05, weight_decay=0.01)
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer))
    gen_a, gen_b = torch.Generator().manual_seed(8), torch.Generator().manual_seed(8)
    for _ in range(3):
        _random_grads(params, gen_a)
        _random_grads(clones, gen_b)
        opt.step()
        restored.step()
    for p, q in zip(params, clones, strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"lr": -0.1}, "lr"),
        ({"lr": 0.1, "betas": (1.0, 0.9)}, "beta1"),
        ({"lr": 0.1, "betas": (0.9, -0.1)}, "beta2"),
        ({"lr": 0.1, "weight_decay": -1.0}, "weight_decay"),
        ({"lr": 0.1, "betas": (0.9,)}, "betas"),
    ],
)
def test_invalid_hyperparameters_are_refused_with_their_name(kwargs, needle):
    with pytest.raises(UserInputError, match=needle):
        NovoGrad(_params(0), **kwargs)


def test_fast_path_handles_parameters_of_mixed_dtypes():
    fast = _params(5, torch.float32) + _params(6, torch.float64)
    simple = [torch.nn.Parameter(p.detach().clone()) for p in fast]
    opt_fast = NovoGrad(fast, lr=0.05, weight_decay=0.01, foreach=True)
    opt_simple = NovoGrad(simple, lr=0.05, weight_decay=0.01, foreach=False)
    gen = torch.Generator().manual_seed(3)
    _step_side_by_side(fast, opt_fast, simple, opt_simple, gen, 5)
    for p, q in zip(fast, simple, strict=True):
        assert p.dtype == q.dtype
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
