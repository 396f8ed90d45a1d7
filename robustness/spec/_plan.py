"""The plan of a study: per optimizer label, the axes that apply, their values or
distributions, the grid, and the counts; and the ``TrialConfig`` of a configuration.

The engine drives one Optuna sampler per optimizer label through ask/tell:
``plan.distributions(label)`` for ``ask``, ``plan.grid(label)`` for the grid
sampler's ``search_space``, ``plan.n_configurations(label)`` for the budget and
``plan.trial_config(label, params)`` for what each trial trains. The record's
``optimizer`` column is the label, set by the engine; the ``TrialConfig`` carries
the registered optimizer name.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from robustness.runner.config import DivergenceConfig, ScheduleConfig, TrialConfig
from robustness.spec._axis import AxisSpec
from robustness.spec._describe import describe_plan
from robustness.spec._schema import CORE_AXES, StudySpec

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution


def max_probes(lo: float, hi: float, resolution: float, *, band: bool = False) -> int:
    """Most probes the boundary sampler needs in one cell to bracket the largest
    stable lr on ``[lo, hi]`` to ``resolution``: both ends, then one bisection in log
    lr per halving of the bracket, ``2 + ceil(log2(ln(hi/lo) / ln(resolution)))``.
    With ``band``, as many again for each side of the best and each of the band's
    two edges (every interval lies within ``[lo, hi]``): a bound for progress, not a
    promise (a better band probe moves the best, and the search around it)."""
    halvings = max(0, math.ceil(math.log2(math.log(hi / lo) / math.log(resolution)) - 1e-12))
    return 2 + halvings * (5 if band else 1)


@dataclass(frozen=True)
class OptimizerPlan:
    """One optimizer label of a study, resolved.

    Attributes:
        label: the spec's name for it (the ``optimizer`` results column).
        base: the registered optimizer it builds (``sgd``, ``insgd``, ...), or the
            import path of the optimizer class it builds.
        fixed_args: keyword arguments passed on every run (e.g. ``mode``).
        axes: the swept axes that apply, in order: lr, init, beta, beta2, extras.
        sources: for each axis, the spec key path it was written at.
        dropped: ``(axis, why)`` for study axes this optimizer does not sweep.
        optimizer_axes: for a class by import path (``base`` is then that path),
            the constructor argument each axis sets; None for a registered one.
        takes: for a class by import path, ``"model"`` or ``"params"`` if the spec
            says (None: the class decides).
    """

    label: str
    base: str
    fixed_args: Mapping[str, Any]
    axes: Mapping[str, AxisSpec]
    sources: Mapping[str, str]
    dropped: tuple[tuple[str, str], ...]
    optimizer_axes: Mapping[str, str] | None = None
    takes: str | None = None

    @property
    def grid_size(self) -> int | None:
        """The number of grid points, or None when an axis is a distribution."""
        sizes = [axis.size() for axis in self.axes.values()]
        return None if None in sizes else math.prod(sizes)  # type: ignore[arg-type]

    def grid(self) -> dict[str, list[Any]]:
        """Axis -> values: the ``search_space`` of ``optuna.samplers.GridSampler``."""
        return {name: axis.grid_values() for name, axis in self.axes.items()}

    def grid_points(self) -> list[dict[str, Any]]:
        """Every configuration of the grid, as params dicts, in axis order."""
        grid = self.grid()
        return [
            dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())
        ]

    def distributions(self) -> dict[str, BaseDistribution]:
        """Axis -> Optuna distribution (see ``AxisSpec.distribution``)."""
        return {name: axis.distribution() for name, axis in self.axes.items()}


@dataclass(frozen=True)
class Plan:
    """What a study will run. Made by ``make_plan(spec)``, which checks the spec first."""

    spec: StudySpec
    optimizers: Mapping[str, OptimizerPlan]

    @property
    def labels(self) -> tuple[str, ...]:
        """The optimizer labels, in spec order."""
        return tuple(self.optimizers)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.spec.seeds)

    @property
    def is_grid(self) -> bool:
        return self.spec.search.sampler == "grid"

    @property
    def is_boundary(self) -> bool:
        return self.spec.search.sampler == "boundary"

    def n_cells(self, label: str) -> int:
        """Combinations of ``label``'s axes other than lr (the boundary sampler's cells)."""
        axes = self.optimizer(label).axes
        return math.prod(axis.size() or 1 for name, axis in axes.items() if name != "lr")

    def max_probes_per_cell(self, label: str) -> int:
        """Most probes the boundary sampler needs in one cell of ``label``."""
        lo, hi = self.optimizer(label).axes["lr"].extreme_values()
        return max_probes(
            float(lo), float(hi), self.spec.search.resolution, band=self.spec.search.band
        )

    def optimizer(self, label: str) -> OptimizerPlan:
        """The resolved entry of ``label``; ``KeyError`` listing the labels otherwise."""
        if label not in self.optimizers:
            raise KeyError(f"no optimizer label {label!r} in this plan; labels: {self.labels}")
        return self.optimizers[label]

    def grid(self, label: str) -> dict[str, list[Any]]:
        """Axis -> values for ``label`` (the grid sampler's ``search_space``)."""
        return self.optimizer(label).grid()

    def grid_points(self, label: str) -> list[dict[str, Any]]:
        """Every grid configuration of ``label`` as a params dict."""
        return self.optimizer(label).grid_points()

    def distributions(self, label: str) -> dict[str, BaseDistribution]:
        """Axis -> Optuna distribution for ``label`` (what ``study.ask`` takes)."""
        return self.optimizer(label).distributions()

    def n_configurations(self, label: str | None = None) -> int:
        """Configurations of ``label`` (all labels when None): the grid size,
        ``search.n_trials`` for a budgeted sampler (a budget per label), or for the
        boundary sampler the most it may probe (cells x ``max_probes_per_cell``)."""
        if label is None:
            return sum(self.n_configurations(name) for name in self.labels)
        if self.is_grid:
            return self.optimizer(label).grid_size  # type: ignore[return-value]
        if self.is_boundary:
            return self.n_cells(label) * self.max_probes_per_cell(label)
        return self.spec.search.n_trials  # type: ignore[return-value]

    @property
    def n_seeds(self) -> int:
        return len(self.spec.seeds)

    def n_runs(self, label: str | None = None) -> int:
        """Runs (configurations x seeds) of ``label``, or of the whole study."""
        return self.n_configurations(label) * self.n_seeds

    def trial_config(self, label: str, params: Mapping[str, Any]) -> TrialConfig:
        """The ``TrialConfig`` of one configuration of ``label``.

        Args:
            label: an optimizer label of the plan.
            params: a value for every axis of ``label`` and nothing else (what an
                Optuna trial of ``distributions(label)`` or a ``grid_points`` entry
                holds). Extra axes go into ``optimizer_args`` and ``tags`` (so they
                become results columns).

        Raises:
            KeyError: an unknown label. ValueError: params that do not match the axes.
        """
        entry = self.optimizer(label)
        if set(params) != set(entry.axes):
            raise ValueError(
                f"params for {label!r} must set exactly the axes {sorted(entry.axes)}, "
                f"got {sorted(params)}"
            )
        extras = {name: value for name, value in params.items() if name not in CORE_AXES}
        problem = self.spec.problem
        return TrialConfig(
            optimizer=entry.base,
            optimizer_axes=None if entry.optimizer_axes is None else dict(entry.optimizer_axes),
            optimizer_takes=entry.takes,
            lr=params["lr"],
            beta=params.get("beta"),
            beta2=params.get("beta2"),
            init=params.get("init", "default"),
            init_args=problem.init_args,
            optimizer_args={**entry.fixed_args, **extras},
            model=problem.model,
            model_args=problem.model_args,
            dataset=problem.dataset,
            dataset_args=problem.dataset_args,
            data_root=problem.data_root,
            batch_size=problem.batch_size,
            steps=problem.steps,
            epochs=problem.epochs,
            eval_every=problem.eval_every,
            loss=problem.loss,
            schedule=ScheduleConfig(**problem.schedule.model_dump()),
            divergence=DivergenceConfig(**self.spec.divergence.model_dump()),
            objective=self.spec.search.objective,
            seeds=self.seeds,
            device=problem.device,
            tf32=problem.tf32,
            threads=problem.threads,
            tags=extras,
        )

    def describe(self) -> str:
        """The plan as text: problem, search, per optimizer its axes and counts, totals."""
        return describe_plan(self)
