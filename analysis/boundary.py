"""The stability section of a boundary-search study (``search: {sampler: boundary}``).

A boundary study probes, per cell, a handful of learning rates chosen by bisection
(``robustness.engine._boundary``); every probe is an ordinary configuration in
``trials.parquet``. Its learning rates are exact (never binned into a grid) and
its stability limit is the bracket the search ends with:

- ``max_stable_lr``: the last stable probe, the largest probed lr below the first
  diverging one (the same rule as ``metrics.max_stable_lr``: an lr diverges when at
  least half of its non-error runs diverged);
- ``first_diverging_lr``: the first unstable probe (NaN: censored, nothing diverged);
- ``ratio``: first_diverging_lr / max_stable_lr, the resolution reached;
- ``lr_boundary_logistic`` with ``logistic_low``/``logistic_high``: the lr where a
  logistic fit of divergence on log10 lr over all of the cell's probes gives
  P = 0.5, with a 95% Wald (delta-method) interval. The interval is given only with
  at least ``MIN_SEEDS_FOR_INTERVAL`` seeds and some probe where the seeds
  disagree: when every probe is all-or-nothing the fit is a step with no width to
  estimate, and the bracket itself is the honest interval.

``boundary_table`` computes it; ``boundary_map`` draws the probes as points on the
lr axis (colour: the fraction of seeds that diverged) with each cell's bracket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis import figures as fig_lib
from analysis.metrics import (
    CELL,
    _fit_logistic_1d,
    divergence_probability,
    max_stable_lr,
)

__all__ = ["BOUNDARY_COLUMNS", "boundary_map", "boundary_table", "is_boundary_study"]

MIN_SEEDS_FOR_INTERVAL = 3
_Z95 = 1.959963984540054

BOUNDARY_COLUMNS = (
    "max_stable_lr",
    "first_diverging_lr",
    "ratio",
    "censored",
    "n_probes",
    "n_seeds",
    "lr_boundary_logistic",
    "logistic_low",
    "logistic_high",
)


def is_boundary_study(spec: Mapping[str, Any]) -> bool:
    """True for a results directory whose spec searched with the boundary sampler."""
    return (spec.get("search") or {}).get("sampler") == "boundary"


def boundary_table(trials: pd.DataFrame, by: Sequence[str] = CELL) -> pd.DataFrame:
    """Per cell (``by``): the bracket the boundary search ended with, the number of
    probes, and the logistic estimate (see the module docstring).

    Needs ``by``, ``lr``, ``seed``, ``outcome``. Returns ``by`` then ``BOUNDARY_COLUMNS``,
    sorted by ``by``.
    """
    by = list(by)
    bracket = max_stable_lr(trials, by=by, n_boot=1)
    probability = divergence_probability(trials, by=[*by, "lr"])
    groups = probability.groupby(by, dropna=False, sort=True)
    logistic = []
    for _, cell in groups:
        tested = cell[cell["n_runs"] > 0]
        logistic.append(
            _logistic_interval(
                tested["lr"].to_numpy(float),
                tested["n_diverged"].to_numpy(float),
                tested["n_runs"].to_numpy(float),
            )
        )
    out = bracket[by].copy()
    out["max_stable_lr"] = bracket["max_stable_lr"].to_numpy()
    out["first_diverging_lr"] = bracket["first_diverging_lr"].to_numpy()
    out["ratio"] = out["first_diverging_lr"] / out["max_stable_lr"]
    out["censored"] = bracket["censored"].to_numpy()
    out["n_probes"] = bracket["n_lrs"].to_numpy()
    out["n_seeds"] = bracket["n_seeds"].to_numpy()
    estimate = pd.DataFrame(logistic, columns=["lr_boundary_logistic", "low", "high"])
    out["lr_boundary_logistic"] = estimate["lr_boundary_logistic"].to_numpy()
    few_seeds = out["n_seeds"].to_numpy() < MIN_SEEDS_FOR_INTERVAL
    out["logistic_low"] = np.where(few_seeds, np.nan, estimate["low"].to_numpy())
    out["logistic_high"] = np.where(few_seeds, np.nan, estimate["high"].to_numpy())
    return out.reset_index(drop=True)


def _logistic_interval(
    lrs: np.ndarray, n_div: np.ndarray, n_run: np.ndarray
) -> tuple[float, float, float]:
    """(estimate, low, high) of the lr where a logistic fit gives P(diverge) = 0.5;
    NaN where it is undefined (no divergence, all divergence, slope <= 0), and no
    interval when no probe has seeds that disagree."""
    nan = (np.nan, np.nan, np.nan)
    total_div, total = n_div.sum(), n_run.sum()
    if len(lrs) < 2 or total == 0 or total_div == 0 or total_div == total:
        return nan
    x = np.log10(lrs)
    center, scale = x.mean(), x.std()
    z = (x - center) / scale
    a, b = _fit_logistic_1d(z, n_div, n_run)
    if b <= 0:
        return nan
    z0 = -a / b
    estimate = float(10 ** (center + scale * z0))
    mixed = ((n_div > 0) & (n_div < n_run)).any()
    if not mixed:
        return estimate, np.nan, np.nan
    design = np.stack([np.ones_like(z), z], axis=1)
    p = 1.0 / (1.0 + np.exp(-(design @ np.array([a, b]))))
    information = (design * (n_run * p * (1.0 - p))[:, None]).T @ design
    try:
        covariance = np.linalg.inv(information)
    except np.linalg.LinAlgError:
        return estimate, np.nan, np.nan
    gradient = np.array([-1.0 / b, a / b**2])
    sd = float(np.sqrt(max(gradient @ covariance @ gradient, 0.0)))
    low, high = (10 ** (center + scale * (z0 + s * _Z95 * sd)) for s in (-1, 1))
    return estimate, float(low), float(high)


def boundary_map(probability: pd.DataFrame, table: pd.DataFrame) -> Figure:
    """The probes of a boundary study as points on the lr axis, one row per β, one
    panel per optimizer × init; colour = fraction of seeds that diverged (the grid
    maps' colour scale). Each cell's bracket (last stable to first diverging probe)
    is a segment with end ticks, drawn over the points; a censored cell is a hollow marker at its last stable probe.

    ``probability``: ``divergence_probability`` rows (``optimizer``, ``init``,
    ``beta``, ``lr``, ``p_diverged``); ``table``: ``boundary_table`` rows.
    """
    with fig_lib.paper_style():
        if probability.empty:
            return fig_lib._empty_figure("no probes to draw")
        optimizers = fig_lib._levels(probability, "optimizer")
        inits = fig_lib._levels(probability, "init")
        fig, axes = fig_lib._panel_grid(
            len(optimizers),
            len(inits),
            width=fig_lib.DOUBLE_COLUMN if len(inits) > 1 else fig_lib.SINGLE_COLUMN + 0.6,
            panel_height=1.25,
            sharex=True,
        )
        lrs = probability["lr"].to_numpy(float)
        limits = (lrs.min() / 1.5, lrs.max() * 1.5)
        points = None
        for i, opt in enumerate(optimizers):
            rows = fig_lib._select(probability, optimizer=opt)
            betas = fig_lib._levels(rows, "beta")
            for j, init in enumerate(inits):
                ax = axes[i, j]
                probes = fig_lib._select(rows, init=init)
                y = [
                    fig_lib._beta_index(betas, b) for b in probes.get("beta", [None] * len(probes))
                ]
                brackets = fig_lib._select(table, optimizer=opt, init=init)
                _draw_brackets(ax, brackets, betas)
                points = ax.scatter(
                    probes["lr"],
                    y,
                    c=probes["p_diverged"],
                    cmap=fig_lib.HEATMAP_CMAP,
                    vmin=0.0,
                    vmax=1.0,
                    s=14,
                    edgecolor="0.2",
                    linewidth=0.4,
                    zorder=3,
                )
                ax.set_yticks(range(len(betas)), [fig_lib._beta_label(b) for b in betas])
                ax.set_ylim(-0.5, len(betas) - 0.5)
                ax.set_xlim(*limits)
                fig_lib._log_x(ax, numticks=max(3, int(fig.get_figwidth() / len(inits) * 2.5)))
                fig_lib.label_map_facet(
                    ax, opt, init, row=i, col=j, last_row=i == len(optimizers) - 1
                )
        cbar = fig.colorbar(points, ax=axes, shrink=0.9, aspect=30, pad=0.01)
        cbar.set_label("P(diverge) of the probe")
        handles = [
            Line2D(
                [],
                [],
                color="black",
                lw=1.0,
                marker="|",
                ms=9,
                label="bracket: last stable, first diverging",
            )
        ]
        if table["censored"].fillna(False).astype(bool).any():
            handles.append(
                Line2D([], [], ls="", marker="o", mfc="none", mec="black", label="censored (≥)")
            )
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
        return fig


def _draw_brackets(ax: Any, rows: pd.DataFrame, betas: list) -> None:
    for _, row in rows.iterrows():
        y = fig_lib._beta_index(betas, row.get("beta"))
        last, first = float(row["max_stable_lr"]), float(row["first_diverging_lr"])
        if np.isfinite(last) and np.isfinite(first):
            ax.plot([last, first], [y, y], color="black", lw=1.0, marker="|", ms=9, zorder=4)
        elif np.isfinite(last):  # censored: stable up to the top of the range
            ax.scatter([last], [y], s=60, facecolor="none", edgecolor="black", lw=0.9, zorder=4)
