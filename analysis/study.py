"""What the report analyses: the study's runs, its metric and direction, its cells.

``describe_study(results)`` gathers, once, what every report section needs and
would otherwise re-derive (and possibly derive differently): the metric the report
ranks by and whether it is maximized, the study's extra swept axes
(``extra_axes``), and the trials with continuously sampled axes binned into cells
(``grid_cells``).

A *cell* is one value of (optimizer, init, β, β2) and of every extra swept axis (an
optimizer keyword such as ``weight_decay``, which reaches the records as a column
of its own): each extra axis is a dimension of every table and figure, never
averaged over.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.boundary import is_boundary_study
from analysis.load import Results
from analysis.metrics import is_maximized
from robustness.results.schema import TRIAL_COLUMNS

__all__ = [
    "CELL",
    "MAP_CELL",
    "Study",
    "axes_label",
    "baseline_of",
    "describe_study",
    "direction_word",
    "extra_axes",
    "grid_cells",
]

CELL = ["optimizer", "init", "beta", "beta2"]
MAP_CELL = ["optimizer", "init", "beta"]  # a divergence map is lr x beta: beta2 is pooled

MAX_GRID_LRS = 25  # more distinct values than this: a sampler drew them, bin them
MAX_GRID_BETAS = 8
LR_BINS = 15
BETA_BINS = 6


@dataclass(frozen=True)
class Study:
    """The inputs of every report section.

    ``trials``: every run as loaded; ``cells``: the same runs with continuously
    sampled lr/β snapped to bin centres (the runs themselves for a grid study);
    ``binned``: one sentence per binned axis; ``metric``: the column the report
    ranks by (the search objective, or the capped ``objective`` column when the
    objective is not a column); ``maximize``: its direction; ``axes``: the extra
    swept axes (``extra_axes``), part of every cell; ``baseline``: the optimizer
    the others are compared with (``baseline_of``); ``sampler``: the spec's
    ``search.sampler`` (``grid`` when the spec does not say).
    """

    results: Results
    metric: str
    maximize: bool
    cells: pd.DataFrame
    binned: list[str]
    axes: list[str]
    baseline: str
    sampler: str

    @property
    def cell(self) -> list[str]:
        """The keys of a cell: optimizer, init, β, β2 and the extra axes."""
        return [*CELL, *self.axes]

    @property
    def map_cell(self) -> list[str]:
        """The keys of a divergence-map panel row: a cell with β2 pooled."""
        return [*MAP_CELL, *self.axes]

    @property
    def trials(self) -> pd.DataFrame:
        return self.results.trials

    @property
    def spec(self) -> dict:
        return self.results.spec

    @property
    def direction(self) -> str:
        return direction_word(self.maximize)


def describe_study(results: Results) -> Study:
    """The metric, direction and cells of a loaded results directory."""
    trials = results.trials
    search = results.spec.get("search") or {}
    metric = search.get("objective") or "final_val_loss"
    if metric not in trials.columns:
        metric = "objective"
    direction = search.get("direction")
    maximize = direction == "maximize" if direction else is_maximized(metric)
    axes = extra_axes(trials, results.spec)
    # a boundary study's probe lrs are exact per cell (analysis.boundary): never binned
    boundary = is_boundary_study(results.spec)
    cells, binned = (trials, []) if boundary else grid_cells(trials, axes)
    return Study(
        results=results,
        metric=metric,
        maximize=maximize,
        cells=cells,
        binned=binned,
        axes=axes,
        baseline=baseline_of(results.spec, trials),
        sampler=str(search.get("sampler") or "grid"),
    )


def baseline_of(spec: dict, trials: pd.DataFrame) -> str:
    """The optimizer every other one is compared with: the spec's ``analysis.baseline``
    when it names an optimizer of the results, else ``sgd`` when present, else the
    first label in alphabetical order."""
    labels = sorted(trials["optimizer"].dropna().unique())
    wanted = (spec.get("analysis") or {}).get("baseline")
    if wanted in labels:
        return wanted
    return "sgd" if "sgd" in labels or not labels else labels[0]


def extra_axes(trials: pd.DataFrame, spec: dict | None = None) -> list[str]:
    """The swept axes beyond lr, init, β and β2, in column order.

    The runner copies each extra axis of a configuration into its record as a column
    outside the results schema. An axis is such a column that takes more than one
    value (a missing value, where an axis does not apply to an optimizer, counts as
    a value); when the spec is known, it must also be an axis of its ``space`` or of
    an optimizer's ``space``, so that no other column is ever taken for one.
    """
    named = _spec_axes(spec) if spec else None
    return [
        c
        for c in trials.columns
        if c not in TRIAL_COLUMNS
        and (named is None or c in named)
        and trials[c].nunique(dropna=False) > 1
    ]


def _spec_axes(spec: dict) -> set[str] | None:
    """Every axis name the spec's ``space`` sections write, or None without a space."""
    spaces = [spec.get("space")]
    optimizers = spec.get("optimizers")
    if isinstance(optimizers, dict):
        spaces += [
            (entry or {}).get("space") for entry in optimizers.values() if isinstance(entry, dict)
        ]
    names = {str(k) for space in spaces if isinstance(space, dict) for k in space}
    return names if spec.get("space") is not None else None


def axes_label(row: pd.Series | dict, axes: list[str]) -> str:
    """The extra axes' values of one row as words, e.g. 'weight_decay 0.0005' ('' if none)."""
    parts = []
    for axis in axes:
        value = row.get(axis)
        if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            shown = "n/a"
        elif isinstance(value, float | np.floating):
            shown = f"{value:.3g}"
        else:
            shown = str(value)
        parts.append(f"{axis} {shown}")
    return ", ".join(parts)


def direction_word(maximize: bool) -> str:
    return "maximize" if maximize else "minimize"


def grid_cells(trials: pd.DataFrame, axes: list[str] = ()) -> tuple[pd.DataFrame, list[str]]:
    """The trials with continuously sampled lr, β and extra axes snapped to bin centres.

    Per-cell metrics (divergence maps, stability limits, bands) need several runs per
    (lr, β) cell. A grid study has them; a random/TPE/QMC study draws every value
    anew, so its lr is binned into ``LR_BINS`` log-spaced bins (geometric centres)
    and its β, β2 and numeric extra ``axes`` into ``BETA_BINS`` equal bins (centres).
    Returns the frame to use and a sentence per binned axis (empty for a grid study).
    """
    cells, notes = trials, []
    lrs = trials["lr"].dropna()
    if lrs.nunique() > MAX_GRID_LRS and (lrs > 0).all():
        edges = np.geomspace(lrs.min(), lrs.max() * (1 + 1e-12), LR_BINS + 1)
        centres = np.sqrt(edges[1:] * edges[:-1])
        index = np.clip(np.searchsorted(edges, trials["lr"], side="right") - 1, 0, LR_BINS - 1)
        cells = cells.assign(lr=centres[index])
        notes.append(f"lr, sampled continuously, is binned into {LR_BINS} log-spaced bins")
    numeric = [a for a in axes if pd.api.types.is_numeric_dtype(trials[a].dtype)]
    for axis in ("beta", "beta2", *numeric):
        values = trials[axis].dropna()
        if values.nunique() > MAX_GRID_BETAS:
            edges = np.linspace(values.min(), values.max() * (1 + 1e-12), BETA_BINS + 1)
            centres = (edges[1:] + edges[:-1]) / 2
            centres = (
                np.round(centres, 4)
                if axis in ("beta", "beta2")
                else np.array([float(f"{c:.4g}") for c in centres])
            )
            index = np.clip(
                np.searchsorted(edges, trials[axis], side="right") - 1, 0, BETA_BINS - 1
            )
            cells = cells.assign(**{axis: np.where(trials[axis].isna(), np.nan, centres[index])})
            notes.append(f"{axis}, sampled continuously, is binned into {BETA_BINS} equal bins")
    return cells, notes
