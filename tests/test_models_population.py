"""Population models: member k of the population computes exactly what model k does."""

from __future__ import annotations

import pytest
import torch

from robustness.models import build_model
from robustness.models.population import (
    NoPopulationForm,
    has_population_form,
    population_model,
    select_members,
)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: tiny kernels on a busy machine are much faster so."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


CASES = [
    ("linear", (64,), {}),
    ("mlp", (64,), {"widths": [16, 8], "activation": "tanh"}),
    ("cnn", (1, 8, 8), {"channels": [4, 6]}),
    ("cnn", (3, 8, 8), {"channels": [4, 6], "batchnorm": True}),
    ("resnet20", (2, 4, 4), {}),
    ("resnet20", (2, 4, 4), {"shortcut": "B"}),
    pytest.param("wrn16_4", (1, 4, 4), {}, marks=pytest.mark.slow),  # 2.7M parameters
]


def members(name, shape, args, k=2):
    torch.manual_seed(0)
    return [build_model(name, shape, 5, **args).double() for _ in range(k)]


@pytest.mark.parametrize(("name", "shape", "args"), CASES)
def test_population_forward_backward_and_eval_match_each_member(name, shape, args):
    models = members(name, shape, args)
    population = population_model(models).train()
    x = torch.randn(len(models), 3, *shape, dtype=torch.float64)
    out = population(x)
    expected = torch.stack([m.train()(x[k]) for k, m in enumerate(models)])
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    # member k's gradient is the gradient of its own loss alone
    weights = torch.arange(1.0, len(models) + 1, dtype=torch.float64).view(-1, 1, 1)
    (weights * out.square()).sum().backward()
    (weights * expected.square()).sum().backward()
    for pop_param, *member_params in zip(
        population.parameters(), *(m.parameters() for m in models), strict=True
    ):
        torch.testing.assert_close(
            pop_param.grad, torch.stack([p.grad for p in member_params]), rtol=1e-10, atol=1e-12
        )
    # eval mode (BatchNorm's running statistics, updated once above): a shared batch
    shared = torch.randn(2, *shape, dtype=torch.float64)
    population.eval()
    expected = torch.stack([m.eval()(shared) for m in models])
    out = population(shared.expand(len(models), *shared.shape))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    # dropping members keeps the others exactly
    replaced = select_members(population, torch.tensor([1]))
    assert len(replaced) == len(list(population.parameters()))
    out = population(shared.expand(1, *shared.shape))
    torch.testing.assert_close(out, expected[[1]], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("name", "shape", "args"), CASES)
def test_every_built_in_architecture_has_a_population_form(name, shape, args):
    assert has_population_form(name, shape, 5, **args)


def test_dropout_and_mixed_architectures_have_none():
    assert not has_population_form("wrn16_4", (3, 8, 8), 5, dropout=0.3)
    with pytest.raises(NoPopulationForm, match="Dropout"):
        population_model(members("wrn16_4", (3, 8, 8), {"dropout": 0.3}, k=2))
    mixed = members("mlp", (64,), {}, k=1) + members("cnn", (1, 8, 8), {}, k=1)
    with pytest.raises(ValueError, match="share one architecture"):
        population_model(mixed)
