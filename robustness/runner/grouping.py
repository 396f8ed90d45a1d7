"""Which configurations can train together as one population (``run_population``).

Kept apart from the training code (no torch import), so that the spec and the
engine can group configurations cheaply.
"""

from __future__ import annotations

import json
import numbers

from robustness.errors import UserInputError
from robustness.runner.config import TrialConfig

__all__ = ["MEMBER_FIELDS", "check_one_population", "population_key"]

#: TrialConfig fields in which the configurations of one population may differ
#: (besides numeric ``optimizer_args``)
MEMBER_FIELDS = ("lr", "beta", "beta2", "init", "init_args", "seeds", "tags")


def population_key(config: TrialConfig) -> str:
    """What configurations must share to train as one population (a JSON string).

    Everything but ``MEMBER_FIELDS`` and the numeric values of
    ``optimizer_args`` (weight decay, eps, dampening, ...): problem, model and
    its arguments, dataset, batch size, budget, schedule, divergence rules,
    objective, device, threads, the optimizer and its non-numeric options
    (INSGD's mode and norm, nesterov).
    """
    fixed = config.model_dump(mode="json", exclude=set(MEMBER_FIELDS))
    fixed["optimizer_args"] = {
        name: value for name, value in fixed["optimizer_args"].items() if not _is_number(value)
    }
    return json.dumps(fixed, sort_keys=True)


def check_one_population(configs: list[TrialConfig]) -> None:
    """Refuse configurations that differ in more than their members' own values."""
    if not configs:
        return
    first = json.loads(population_key(configs[0]))
    for index, config in enumerate(configs[1:], start=1):
        other = json.loads(population_key(config))
        if other != first:
            fields = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
            raise UserInputError(
                f"run_population: configuration {index} differs from configuration 0 in "
                f"{', '.join(fields)}; configurations of one population may differ only in "
                f"{', '.join(MEMBER_FIELDS)} and numeric optimizer_args (group them by "
                "robustness.runner.population_key)"
            )


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
