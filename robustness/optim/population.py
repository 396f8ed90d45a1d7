"""Population optimizers by name: which optimizers can train a population, and how.

A population optimizer updates K members at once, each with its own
hyperparameters (``robustness.optim.population_sgd`` and its siblings). It is
built from the members' own sequential optimizers, as ``build_optimizer`` made
and validated them, so the defaults and checks live in one place: the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from robustness.optim.population_sgd import PopulationSGD

__all__ = ["POPULATION_OPTIMIZERS", "build_population_optimizer"]

_Builder = Callable[..., torch.optim.Optimizer]

#: optimizer name -> ``(params, member_optimizers) -> population optimizer``
POPULATION_OPTIMIZERS: dict[str, _Builder] = {
    "sgd": PopulationSGD.from_members,
}


def build_population_optimizer(
    name: str, params, member_optimizers: Sequence[torch.optim.Optimizer]
) -> torch.optim.Optimizer:
    """The population form of optimizer ``name`` over ``params`` (member dimension
    first), with each member's hyperparameters read from its own optimizer.

    Raises:
        KeyError: ``name`` has no population form (see ``POPULATION_OPTIMIZERS``).
    """
    return POPULATION_OPTIMIZERS[name](params, member_optimizers)
