"""What the report analyses: the study's runs, its metric and direction, its cells.

``describe_study(results)`` gathers, once, what every report section needs and
would otherwise re-derive (and possibly derive differently): the metric the report
ranks by and whether it is maximized, and the trials with continuously sampled
axes binned into cells (``grid_cells``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.boundary import is_boundary_study
from analysis.load import Results
from analysis.metrics import is_maximized

__all__ = ["CELL", "MAP_CELL", "Study", "describe_study", "direction_word", "grid_cells"]

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
    objective is not a column); ``maximize``: its direction.
    """

    results: Results
    metric: str
    maximize: bool
    cells: pd.DataFrame
    binned: list[str]

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
    # a boundary study's probe lrs are exact per cell (analysis.boundary): never binned
    cells, binned = (trials, []) if is_boundary_study(results.spec) else grid_cells(trials)
    return Study(results=results, metric=metric, maximize=maximize, cells=cells, binned=binned)


def direction_word(maximize: bool) -> str:
    return "maximize" if maximize else "minimize"


def grid_cells(trials: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The trials with continuously sampled lr and β snapped to bin centres.

    Per-cell metrics (divergence maps, stability limits, bands) need several runs per
    (lr, β) cell. A grid study has them; a random/TPE/QMC study draws every value
    anew, so its lr is binned into ``LR_BINS`` log-spaced bins (geometric centres)
    and its β, β2 into ``BETA_BINS`` equal bins (centres). Returns the frame to use
    and a sentence per binned axis (empty for a grid study).
    """
    cells, notes = trials, []
    lrs = trials["lr"].dropna()
    if lrs.nunique() > MAX_GRID_LRS and (lrs > 0).all():
        edges = np.geomspace(lrs.min(), lrs.max() * (1 + 1e-12), LR_BINS + 1)
        centres = np.sqrt(edges[1:] * edges[:-1])
        index = np.clip(np.searchsorted(edges, trials["lr"], side="right") - 1, 0, LR_BINS - 1)
        cells = cells.assign(lr=centres[index])
        notes.append(f"lr, sampled continuously, is binned into {LR_BINS} log-spaced bins")
    for axis in ("beta", "beta2"):
        values = trials[axis].dropna()
        if values.nunique() > MAX_GRID_BETAS:
            edges = np.linspace(values.min(), values.max() * (1 + 1e-12), BETA_BINS + 1)
            centres = np.round((edges[1:] + edges[:-1]) / 2, 4)
            index = np.clip(
                np.searchsorted(edges, trials[axis], side="right") - 1, 0, BETA_BINS - 1
            )
            cells = cells.assign(**{axis: np.where(trials[axis].isna(), np.nan, centres[index])})
            notes.append(f"{axis}, sampled continuously, is binned into {BETA_BINS} equal bins")
    return cells, notes
