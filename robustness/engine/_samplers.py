"""Optuna samplers by the spec's ``search.sampler`` name, all seeded.

With a seed, ``grid``, ``random`` and ``qmc`` suggest the same configurations in the
same order whatever the concurrency; the model-based ``tpe``, ``gp`` and ``cmaes``
are reproducible only when trials finish in the same order (``max_concurrent: 1``),
since what they suggest depends on the results told so far. ``boundary``
(``_boundary``) bisects each cell on its own, so the lrs it probes are the same
whatever the concurrency.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from robustness.engine._boundary import DEFAULT_RESOLUTION, BoundarySampler
from robustness.errors import unknown_choice
from robustness.spec import SAMPLERS


def make_sampler(
    name: str,
    *,
    seed: int | None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    distributions: Mapping[str, BaseDistribution] | None = None,
    resolution: float = DEFAULT_RESOLUTION,
    band: bool = False,
    maximize: bool = False,
) -> optuna.samplers.BaseSampler:
    """The sampler ``name``; ``grid`` (axis -> values) is required for ``grid``, the
    label's ``distributions`` (and ``resolution``, ``band`` and the objective's
    direction, ``maximize``) for ``boundary``."""
    if name == "boundary":
        if distributions is None:
            raise ValueError("the boundary sampler needs the distributions")
        return BoundarySampler(distributions, resolution=resolution, band=band, maximize=maximize)
    with warnings.catch_warnings():  # qmc and gp are marked experimental by Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _make(name, seed, grid)


def _make(
    name: str, seed: int | None, grid: Mapping[str, Sequence[Any]] | None
) -> optuna.samplers.BaseSampler:
    samplers = optuna.samplers
    if name == "grid":
        if grid is None:
            raise ValueError("the grid sampler needs the grid")
        return _AskTellGridSampler(dict(grid), seed=seed)
    if name == "random":
        return samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return samplers.TPESampler(seed=seed)
    if name == "gp":
        return samplers.GPSampler(seed=seed)
    if name == "qmc":
        return samplers.QMCSampler(seed=seed, scramble=True, warn_asynchronous_seeding=False)
    if name == "cmaes":
        return samplers.CmaEsSampler(seed=seed)
    raise unknown_choice("sampler", name, SAMPLERS)


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """``GridSampler`` for ask/tell: the engine counts the grid itself.

    Optuna's ``after_trial`` calls ``study.stop()`` once the grid is exhausted,
    which raises outside ``study.optimize`` and would leave the told trial RUNNING.
    """

    def after_trial(self, study, trial, state, values) -> None:
        return None
