"""Population optimizers by name: which optimizers can train a population, and how.

A population optimizer updates K members at once, each with its own
hyperparameters (``population_sgd``, ``population_novograd``,
``population_insgd``, beside the sequential math). It is built from the members'
own sequential optimizers, as ``build_optimizer`` made and validated them, so
the defaults and checks live in one place: the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from robustness.optim.population_insgd import PopulationINSGD
from robustness.optim.population_novograd import PopulationNovoGrad
from robustness.optim.population_sgd import PopulationSGD

__all__ = ["POPULATION_OPTIMIZERS", "build_population_optimizer"]


def _sgd(model: nn.Module, optimizers):
    return PopulationSGD.from_members(list(model.parameters()), optimizers)


def _novograd(model: nn.Module, optimizers):
    return PopulationNovoGrad.from_members(list(model.parameters()), optimizers)


#: optimizer name -> ``(population model, member optimizers) -> population optimizer``
POPULATION_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "novograd": _novograd,
    "insgd": PopulationINSGD.from_members,
}


def build_population_optimizer(
    name: str, model: nn.Module, member_optimizers: Sequence[torch.optim.Optimizer]
) -> torch.optim.Optimizer:
    """The population form of optimizer ``name`` over a population ``model`` (its
    parameters have the member dimension first), each member's hyperparameters
    read from its own optimizer. Call ``getattr(opt, "close", None)`` when done.

    Raises:
        KeyError: ``name`` has no population form (see ``POPULATION_OPTIMIZERS``).
    """
    return POPULATION_OPTIMIZERS[name](model, member_optimizers)
