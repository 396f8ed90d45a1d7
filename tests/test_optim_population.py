"""Population optimizers == the sequential optimizers, member by member (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustness.models.population import population_model, select_members
from robustness.optim import build_optimizer
from robustness.optim.population import build_population_optimizer

# per member: lr, beta, beta2 and numeric options (all different, incl. momentum 0)
MEMBERS = {
    "sgd": [
        {"lr": 0.1, "beta": 0.9},
        {"lr": 0.05, "beta": 0.0, "weight_decay": 0.01},
        {"lr": 0.2, "beta": 0.5, "dampening": 0.3, "weight_decay": 0.001},
    ],
    "novograd": [
        {"lr": 0.01, "beta": 0.95, "beta2": 0.98},
        {"lr": 0.02, "beta": 0.5, "beta2": 0.9, "weight_decay": 0.01, "eps": 1e-6},
        {"lr": 0.005, "beta": 0.0, "beta2": 0.0},
    ],
    "insgd": [
        {"lr": 0.1, "beta": 0.9, "beta2": 0.99},
        {"lr": 0.05, "beta": 0.0, "beta2": 0.5, "weight_decay": 0.01, "eps": 0.5},
        {"lr": 0.2, "beta": 0.5, "beta2": 0.9, "dampening": 0.2},
    ],
}
SHARED = {
    "sgd": [{}, {"nesterov": True}],
    "novograd": [{}, {"grad_averaging": True}],
    "insgd": [
        {"mode": mode, "norm": norm} for mode in ("paper", "reference") for norm in ("l2", "l1")
    ]
    + [{"nesterov": True}],
}
CASES = [(name, shared) for name, options in SHARED.items() for shared in options]


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: tiny kernels on a busy machine are much faster so."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 3))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, groups=2, bias=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def train_both(name, shared, make, input_shape, steps=6, drop_after=None):
    torch.manual_seed(0)
    models = [make().double() for _ in MEMBERS[name]]
    population = population_model(models).train()
    optimizers = []
    for model, member in zip(models, MEMBERS[name], strict=True):
        if shared.get("nesterov"):  # needs momentum and no dampening
            member = {**member, "beta": member["beta"] or 0.3, "dampening": 0.0}
        optimizers.append(build_optimizer(name, model.train(), **member, **shared))
    pop_optimizer = build_population_optimizer(name, population, optimizers)
    alive = list(range(len(models)))
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        x = torch.randn(len(models), 5, *input_shape, generator=generator, dtype=torch.float64)
        x = x * (1 + step)  # input power changes from step to step
        losses = []
        for k in alive:
            optimizers[k].zero_grad()
            loss = models[k](x[k]).square().mean()
            loss.backward()
            optimizers[k].step()
            losses.append(loss)
        pop_optimizer.zero_grad()
        out = population(x[alive])
        pop_losses = out.square().flatten(1).mean(1)
        pop_losses.sum().backward()
        pop_optimizer.step()
        torch.testing.assert_close(pop_losses, torch.stack(losses), rtol=1e-10, atol=0)
        if drop_after == step:  # the first member leaves; the others go on unchanged
            keep = torch.arange(1, len(alive))  # positions in the population
            pop_optimizer.select_members(keep, select_members(population, keep))
            alive = alive[1:]
    for pop_param, *member_params in zip(
        population.parameters(), *(models[k].parameters() for k in alive), strict=True
    ):
        torch.testing.assert_close(
            pop_param.detach(),
            torch.stack([p.detach() for p in member_params]),
            rtol=1e-10,
            atol=1e-12,
        )
    for opt in (*optimizers, pop_optimizer):
        close = getattr(opt, "close", None)
        if close is not None:
            close()


@pytest.mark.parametrize(("name", "shared"), CASES)
def test_population_optimizer_equals_the_sequential_one_on_an_mlp(name, shared):
    train_both(name, shared, mlp, (12,))


@pytest.mark.parametrize(("name", "shared"), CASES)
def test_population_optimizer_equals_the_sequential_one_on_a_cnn_with_batchnorm(name, shared):
    train_both(name, shared, cnn, (2, 6, 6))


@pytest.mark.parametrize("name", ["sgd", "novograd", "insgd"])
def test_dropping_a_member_keeps_the_others_exact(name):
    train_both(name, {}, mlp, (12,), steps=5, drop_after=2)


def test_population_insgd_step_before_a_forward_pass_is_an_error():
    torch.manual_seed(0)
    models = [mlp().double() for _ in range(2)]
    optimizers = [build_optimizer("insgd", m, lr=0.1) for m in models]
    population = population_model(models)
    optimizer = build_population_optimizer("insgd", population, optimizers)
    for p in population.parameters():
        p.grad = torch.zeros_like(p)
    with pytest.raises(RuntimeError, match="no input was measured"):
        optimizer.step()
    optimizer.close()
