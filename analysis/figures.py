"""Paper-ready figures drawn from the tidy tables of ``analysis.metrics``.

Every function here only draws: it takes DataFrames that are already computed
(the metric tables, or ``trials``/``curves`` rows already chosen) and returns a
``matplotlib.figure.Figure``. No metric is computed inside a figure function, so
every number a figure shows is also in a table of the report.

Conventions, shared by all figures:
- widths fit a paper: one column is ``SINGLE_COLUMN`` inches, two ``DOUBLE_COLUMN``;
  fonts are at least 8 pt at that size;
- each optimizer keeps one colour from seaborn's colour-blind-safe palette across
  all figures (``optimizer_colors``); heatmaps use the perceptually uniform
  ``viridis`` colormap;
- learning rates are on log axes.

Figures are built on ``matplotlib.figure.Figure`` directly (not ``pyplot``), so
nothing accumulates in global state and they are safe to build in a loop.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

SINGLE_COLUMN = 3.5  # inches
DOUBLE_COLUMN = 7.0  # inches
HEATMAP_CMAP = "viridis"
PNG_DPI = 200
MAX_SHIFT_PANELS = 9

_RC = {
    "font.size": 8,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 9,
    "lines.linewidth": 1.4,
    "lines.markersize": 4,
    "axes.linewidth": 0.7,
    "svg.fonttype": "none",  # text stays text in SVG: smaller, editable
    "svg.hashsalt": "robustness",  # deterministic SVG ids
    "axes.spines.top": False,
    "axes.spines.right": False,
}


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Seaborn's "ticks" style at paper font sizes, for building and saving figures."""
    with mpl.rc_context({**sns.axes_style("ticks"), **_RC}):
        yield


def optimizer_colors(optimizers: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One colour-blind-safe colour per optimizer label, stable for a given label set."""
    labels = sorted(set(optimizers))
    palette = sns.color_palette("colorblind", max(len(labels), 1))
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def save_figure(fig: Figure, directory: Path | str, name: str) -> list[Path]:
    """Write ``name.png`` (``PNG_DPI``) and ``name.svg`` into ``directory``; return both.

    The figure's layout is frozen after the first file (its layout engine is removed),
    so both files have the same geometry and the second costs one draw less.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{name}.png", directory / f"{name}.svg"]
    with paper_style():
        # constrained layout already fits everything: no bbox_inches="tight" (a second draw)
        fig.savefig(paths[0], dpi=PNG_DPI, metadata={"Software": None})
        # the layout is now fixed: skip re-solving it for the second format
        fig.set_layout_engine("none")
        fig.savefig(paths[1], metadata={"Date": None, "Creator": None})
    return paths


# --------------------------------------------------------------------------- helpers


def _panel_grid(
    n_rows: int, n_cols: int, *, width: float, panel_height: float, **subplot_kw
) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width, panel_height * n_rows + 0.5), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, **subplot_kw)
    return fig, axes


def _levels(frame: pd.DataFrame, column: str) -> list:
    """Sorted distinct values of a column, or ``[None]`` when it is absent."""
    if column not in frame:
        return [None]
    return sorted(frame[column].dropna().unique().tolist()) or [None]


def _select(frame: pd.DataFrame, **equal) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for column, value in equal.items():
        if value is not None and column in frame:
            mask &= (frame[column] == value).to_numpy(dtype=bool, na_value=False)
    return frame[mask]


def _log_edges(values: np.ndarray) -> np.ndarray:
    """Cell edges for log-spaced centres: geometric midpoints, half a step beyond the ends."""
    logs = np.log10(values)
    if len(logs) == 1:
        return 10.0 ** np.array([logs[0] - 0.25, logs[0] + 0.25])
    mids = (logs[1:] + logs[:-1]) / 2
    first = logs[0] - (mids[0] - logs[0])
    last = logs[-1] + (logs[-1] - mids[-1])
    return 10.0 ** np.concatenate([[first], mids, [last]])


def _log_x(ax: Axes, numticks: int = 12) -> None:
    """Log x axis (learning rates, budgets) with readable plain-number tick labels."""
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis, ax.get_xlim(), numticks)


def _log_y(ax: Axes) -> None:
    """Log y axis (losses) with readable plain-number tick labels."""
    ax.set_yscale("log")
    _plain_log_ticks(ax.yaxis, ax.get_ylim())


def _plain_log_ticks(axis, limits: tuple[float, float], numticks: int = 12) -> None:
    """Ticks at 1, 2, 5 x 10^k on a short range, at decades on a long one, printed as
    plain numbers (0.001, 0.2, 10): no superscript exponents, which print under 8 pt."""
    lo, hi = limits
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 0.0
    subs = (1.0,) if decades > 2.5 else (1.0, 2.0, 5.0)
    axis.set_major_locator(mpl.ticker.LogLocator(base=10, subs=subs, numticks=numticks))
    axis.set_major_formatter(mpl.ticker.FuncFormatter(_plain_number))
    axis.set_minor_formatter(mpl.ticker.NullFormatter())


def _plain_number(x: float, _pos=None) -> str:
    """0.01, 0.5, 10 as they are; powers of ten below 0.01 or from 1e4 as 1e-4, 1e5."""
    if x > 0 and (x < 0.01 or x >= 1e4) and math.isclose(math.log10(x), round(math.log10(x))):
        return f"1e{round(math.log10(x))}"
    return f"{x:g}"


def _beta_label(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "default"
    return f"{value:g}"


def _empty_figure(message: str, width: float = SINGLE_COLUMN) -> Figure:
    fig = Figure(figsize=(width, 1.2))
    fig.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


_OUTLINE_DARK = [patheffects.withStroke(linewidth=2.2, foreground="black")]


# --------------------------------------------------------------------------- figures


def divergence_map(
    probability: pd.DataFrame,
    boundary: pd.DataFrame | None = None,
    *,
    value: str = "p_diverged",
) -> Figure:
    """Learning rate × β heatmaps of divergence probability, one panel per optimizer × init.

    Args:
      probability: columns ``optimizer``, ``lr``, ``beta`` and ``value`` (in [0, 1]),
        optionally ``init``; one row per cell.
      boundary: the estimated stability boundary per β, drawn over the heatmap:
        columns ``optimizer``, ``beta``, ``max_stable_lr`` (optionally ``init``,
        ``ci_low``, ``ci_high``, ``lr_boundary_logistic``, ``censored``). A censored
        estimate (nothing diverged above it) is drawn as a hollow marker.
    """
    with paper_style():
        if probability.empty:
            return _empty_figure("no runs to map")
        optimizers, inits = _levels(probability, "optimizer"), _levels(probability, "init")
        fig, axes = _panel_grid(
            len(optimizers),
            len(inits),
            width=DOUBLE_COLUMN if len(inits) > 1 else SINGLE_COLUMN + 0.6,
            panel_height=1.25,
            sharex=True,
        )
        lr_edges = _log_edges(np.array(sorted(probability["lr"].unique())))
        mesh = None
        for i, opt in enumerate(optimizers):
            rows = _select(probability, optimizer=opt)
            betas = _levels(rows, "beta")
            for j, init in enumerate(inits):
                ax = axes[i, j]
                cells = _select(rows, init=init)
                mesh = _heatmap(ax, cells, betas, lr_edges, value)
                if boundary is not None and not boundary.empty:
                    _draw_boundary(ax, _select(boundary, optimizer=opt, init=init), betas)
                ax.set_xlim(lr_edges[0], lr_edges[-1])
                _log_x(ax, numticks=max(3, int(fig.get_figwidth() / len(inits) * 2.5)))
                label_map_facet(ax, opt, init, row=i, col=j, last_row=i == len(optimizers) - 1)
        cbar = fig.colorbar(mesh, ax=axes, shrink=0.9, aspect=30, pad=0.01)
        cbar.set_label("P(diverge)")
        if boundary is not None and not boundary.empty:
            _boundary_legend(fig, boundary)
        return fig


def _heatmap(ax: Axes, cells: pd.DataFrame, betas: list, lr_edges: np.ndarray, value: str):
    lrs = np.sqrt(lr_edges[1:] * lr_edges[:-1])  # the cell centres
    grid = np.full((len(betas), len(lrs)), np.nan)
    for _, row in cells.iterrows():
        r = _beta_index(betas, row.get("beta"))
        c = int(np.argmin(np.abs(np.log10(lrs) - np.log10(row["lr"]))))
        grid[r, c] = row[value]
    y_edges = np.arange(len(betas) + 1) - 0.5
    mesh = ax.pcolormesh(
        lr_edges,
        y_edges,
        np.ma.masked_invalid(grid),
        cmap=HEATMAP_CMAP,
        vmin=0.0,
        vmax=1.0,
        shading="flat",
        rasterized=False,
    )
    ax.set_facecolor("0.85")  # cells never run show as light grey
    ax.set_yticks(range(len(betas)), [_beta_label(b) for b in betas])
    ax.set_ylim(-0.5, len(betas) - 0.5)
    return mesh


def _beta_index(betas: list, beta) -> int:
    for k, b in enumerate(betas):
        if b is None or beta is None or pd.isna(beta):
            if (b is None) == (beta is None or pd.isna(beta)):
                return k
        elif math.isclose(b, beta):
            return k
    return 0


def label_map_facet(
    ax: Axes, opt: str, init: str | None, *, row: int, col: int, last_row: bool
) -> None:
    """A divergence map's facet labels: init above the top row, optimizer left of
    each row (its title when the map has no init facets), lr under the last row."""
    if init is None:
        ax.set_title(opt)
    elif row == 0:
        ax.set_title(f"init: {init}")
    if col == 0:
        # a label with extra axes, "sgd (weight_decay 0)", wraps before its axes so
        # that it fits beside one row of panels
        ax.set_ylabel("β" if init is None else f"{opt.replace(' (', chr(10) + '(')}\nβ")
    if col:
        ax.tick_params(labelleft=False)
    ax.set_xlabel("learning rate" if last_row else "")


def _draw_boundary(ax: Axes, rows: pd.DataFrame, betas: list) -> None:
    if rows.empty:
        return
    rows = rows.assign(_y=[_beta_index(betas, b) for b in rows.get("beta", [None] * len(rows))])
    rows = rows.sort_values("_y")
    finite = rows[np.isfinite(rows["max_stable_lr"].astype(float))]
    if not finite.empty:
        if {"ci_low", "ci_high"} <= set(finite.columns):
            lo = (finite["max_stable_lr"] - finite["ci_low"]).clip(lower=0).fillna(0)
            hi = (finite["ci_high"] - finite["max_stable_lr"]).clip(lower=0).fillna(0)
            ax.errorbar(
                finite["max_stable_lr"],
                finite["_y"],
                xerr=[lo.to_numpy(float), hi.to_numpy(float)],
                fmt="none",
                ecolor="white",
                elinewidth=1.0,
                capsize=2,
            )
        ax.plot(
            finite["max_stable_lr"], finite["_y"], color="white", lw=1.2, path_effects=_OUTLINE_DARK
        )
        censored = finite.get("censored", pd.Series(False, index=finite.index))
        censored = censored.fillna(False).astype(bool)
        ax.scatter(
            finite["max_stable_lr"][~censored],
            finite["_y"][~censored],
            s=18,
            marker="o",
            facecolor="white",
            edgecolor="black",
            linewidth=0.7,
            zorder=3,
        )
        ax.scatter(
            finite["max_stable_lr"][censored],
            finite["_y"][censored],
            s=18,
            marker="o",
            facecolor="none",
            edgecolor="white",
            linewidth=1.0,
            zorder=3,
        )
    if "lr_boundary_logistic" in rows:
        logistic = rows[np.isfinite(rows["lr_boundary_logistic"].astype(float))]
        if not logistic.empty:
            ax.plot(
                logistic["lr_boundary_logistic"],
                logistic["_y"],
                color="white",
                lw=1.0,
                ls=(0, (2, 1.5)),
                marker="|",
                markersize=6,
                path_effects=_OUTLINE_DARK,
            )


def _boundary_legend(fig: Figure, boundary: pd.DataFrame) -> None:
    has_ci = {"ci_low", "ci_high"} <= set(boundary.columns) and (
        boundary[["ci_low", "ci_high"]].notna().all(axis=1).any()
    )
    label = "max stable lr" + (" (CI)" if has_ci else "")
    handles = [Line2D([], [], color="black", marker="o", mfc="white", lw=1.2, label=label)]
    if "lr_boundary_logistic" in boundary and boundary["lr_boundary_logistic"].notna().any():
        handles.append(
            Line2D([], [], color="black", ls=(0, (2, 1.5)), marker="|", label="logistic P=0.5")
        )
    if "censored" in boundary and boundary["censored"].fillna(False).astype(bool).any():
        handles.append(
            Line2D([], [], ls="", marker="o", mfc="none", mec="black", label="censored (≥)")
        )
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)


def sensitivity_curves(
    profile: pd.DataFrame,
    *,
    metric: str = "final_val_loss",
    log_y: bool | None = None,
) -> Figure:
    """The final metric against learning rate: median and spread over seeds.

    One line per optimizer, one panel per init scheme. ``profile`` has columns
    ``optimizer``, ``lr``, ``median``, ``low``, ``high`` (the spread band, e.g. the
    inter-quartile range), ``diverged`` (fraction of runs at that point that
    diverged) and optionally ``init``. Points where most runs diverged are drawn as
    ✕ at their (capped) value. ``log_y`` defaults to True for loss metrics.
    """
    with paper_style():
        if profile.empty:
            return _empty_figure("no runs to plot")
        inits = _levels(profile, "init")
        n_cols = min(len(inits), 3)
        n_rows = math.ceil(len(inits) / n_cols)
        fig, axes = _panel_grid(
            n_rows,
            n_cols,
            width=DOUBLE_COLUMN if n_cols > 1 else SINGLE_COLUMN,
            panel_height=1.9,
            sharex=True,
            sharey=True,
        )
        colors = optimizer_colors(profile["optimizer"].unique())
        log_y = ("loss" in metric) if log_y is None else log_y
        for k, init in enumerate(inits):
            ax = axes.flat[k]
            panel = _select(profile, init=init)
            for opt, line in panel.groupby("optimizer", sort=True):
                line = line.sort_values("lr")
                color = colors[opt]
                ax.fill_between(
                    line["lr"], line["low"], line["high"], color=color, alpha=0.22, lw=0
                )
                ax.plot(line["lr"], line["median"], color=color, marker="o", ms=3, label=opt)
                bad = line[line["diverged"] > 0.5]
                ax.scatter(
                    bad["lr"], bad["median"], marker="x", s=28, color=color, lw=1.3, zorder=3
                )
            if init is not None:
                ax.set_title(f"init: {init}")
            ax.set_xlabel("learning rate")
            if k % n_cols == 0:
                ax.set_ylabel(metric.replace("_", " "))
        for ax in axes.flat[: len(inits)]:  # limits are final now: set the log scales
            _log_x(ax)
            if log_y and (profile[["median", "low", "high"]] > 0).all().all():
                _log_y(ax)
        for ax in axes.flat[len(inits) :]:
            ax.set_visible(False)
        handles = [Line2D([], [], color=c, marker="o", ms=3, label=o) for o, c in colors.items()]
        handles.append(Line2D([], [], ls="", marker="x", color="0.3", label="mostly diverged"))
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
        return fig


def stability_intervals(max_stable: pd.DataFrame, band: pd.DataFrame) -> Figure:
    """Maximum stable learning rate and good-band width per optimizer and init, with intervals.

    Left panel, from ``max_stable``: columns ``optimizer``, ``max_stable_lr``,
    ``ci_low``, ``ci_high``, optionally ``init``, ``beta``, ``beta2`` and ``censored``
    (a censored value is a lower bound: hollow marker). Right panel, from ``band``:
    columns ``optimizer``, ``band_lo``, ``band_hi``, ``width_decades``, optionally
    ``init``, ``beta``, ``beta2``, ``best_lr``: the band as an interval on the
    learning-rate axis (marker at the best lr), its width in decades beside it when
    there is room. One row per optimizer × init; each (β, β2) of that row gets a
    sub-row and β a marker shape.
    """
    with paper_style():
        if max_stable.empty and band.empty:
            return _empty_figure("no stability estimates")
        both = pd.concat([max_stable, band], ignore_index=True)
        optimizers, inits = _levels(both, "optimizer"), _levels(both, "init")
        betas = _levels(both, "beta")
        markers = dict(zip(betas, "osD^vP*X", strict=False))
        colors = optimizer_colors(optimizers)
        rows = [
            (o, i)
            for o in optimizers
            for i in inits
            if not _select(both, optimizer=o, init=i).empty
        ]
        subrows = {key: _subrows(_select(both, optimizer=key[0], init=key[1])) for key in rows}
        n_lines = sum(len(v) for v in subrows.values())
        fig, axes = _panel_grid(
            1,
            2,
            width=DOUBLE_COLUMN,
            panel_height=min(0.13 * n_lines + 0.15 * len(rows), 8.0) + 0.7,
        )
        ax_lr, ax_band = axes[0]

        def position(row: pd.Series) -> float | None:
            key = (row["optimizer"], row.get("init"))
            if key not in subrows:
                return None
            subs = subrows[key]
            k = subs.index(_subkey(row))
            return rows.index(key) + (k - (len(subs) - 1) / 2) * (0.7 / max(len(subs), 1))

        for _, row in max_stable.iterrows():
            y = position(row)
            if y is None:
                continue
            color, marker = colors[row["optimizer"]], markers.get(_key(row.get("beta")), "o")
            lo, hi, point = row.get("ci_low"), row.get("ci_high"), row.get("max_stable_lr")
            if pd.notna(lo) and pd.notna(hi):
                ax_lr.plot([lo, hi], [y, y], color=color, lw=1.1, solid_capstyle="butt")
            if pd.notna(point):
                hollow = bool(row.get("censored")) if pd.notna(row.get("censored")) else False
                ax_lr.plot(
                    point, y, marker=marker, ms=4, color=color, mfc="white" if hollow else color
                )
        annotate = n_lines <= 24
        for _, row in band.iterrows():
            y = position(row)
            lo, hi = row.get("band_lo"), row.get("band_hi")
            if y is None or pd.isna(lo) or pd.isna(hi):
                continue
            color, marker = colors[row["optimizer"]], markers.get(_key(row.get("beta")), "o")
            ax_band.plot([lo, hi], [y, y], color=color, lw=2.2, solid_capstyle="butt")
            ax_band.plot([lo, hi], [y, y], ls="", marker="|", color=color, ms=5)
            if pd.notna(row.get("best_lr")):
                ax_band.plot(
                    row["best_lr"], y, marker=marker, ms=4, color=color, mec="white", mew=0.5
                )
            if annotate and pd.notna(row.get("width_decades")):
                ax_band.annotate(
                    f"{row['width_decades']:.2g} dec",
                    (hi, y),
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=8,
                )
        labels = [o if i is None else f"{o} · {i}" for o, i in rows]
        for ax in (ax_lr, ax_band):
            _log_x(ax)
            ax.set_yticks(range(len(rows)), labels)
            ax.set_ylim(len(rows) - 0.5, -0.5)
            ax.grid(axis="x", color="0.9", lw=0.6)
            for y in range(1, len(rows)):
                ax.axhline(y - 0.5, color="0.92", lw=0.6)
        ax_band.tick_params(labelleft=False)
        has_ci = {"ci_low", "ci_high"} <= set(max_stable.columns) and (
            max_stable[["ci_low", "ci_high"]].notna().all(axis=1).any()
        )
        ax_lr.set_xlabel("max stable learning rate" + (" (95% CI)" if has_ci else ""))
        ax_lr.set_title("stability limit")
        ax_band.set_xlabel("learning rate")
        ax_band.set_title("good learning-rate band (marker: best lr)")
        if len(betas) > 1 or betas != [None]:
            handles = [
                Line2D([], [], ls="", marker=m, color="0.3", label=f"β = {_beta_label(b)}")
                for b, m in markers.items()
            ]
            handles.append(
                Line2D([], [], ls="", marker="o", mfc="white", color="0.3", label="censored (≥)")
            )
            fig.legend(
                handles=handles, loc="outside lower center", ncols=len(handles), frameon=False
            )
        return fig


def _key(value):
    """A hashable, NaN-safe axis value."""
    return None if value is None or pd.isna(value) else float(value)


def _subkey(row: pd.Series) -> tuple:
    return (_key(row.get("beta")), _key(row.get("beta2")))


def _subrows(frame: pd.DataFrame) -> list[tuple]:
    keys = {_subkey(row) for _, row in frame.iterrows()}
    return sorted(keys, key=lambda k: tuple(-1.0 if v is None else v for v in k))


def shift_profiles(profiles: pd.DataFrame, *, metric: str = "final_val_loss") -> Figure:
    """Learning-rate profiles aligned by their estimated shift, one panel per cell.

    ``profiles`` has columns ``optimizer``, ``init``, ``beta``, ``lr_aligned``,
    ``value``, ``role`` (``baseline`` or ``optimizer``), ``shift_decades`` and
    optionally ``beta2``: the table ``lr_shift_profiles``. One panel per (init, β),
    at most ``MAX_SHIFT_PANELS`` (the first ones in order; the table has all). The
    baseline is drawn black; each optimizer in its colour against lr / 10^shift,
    labelled with its shift.
    """
    with paper_style():
        if profiles.empty:
            return _empty_figure("no aligned profiles")
        keys = (
            profiles[["init", "beta"]]
            .drop_duplicates()
            .sort_values(["init", "beta"], na_position="first")
            .head(MAX_SHIFT_PANELS)
        )
        n_cols = min(len(keys), 3)
        n_rows = math.ceil(len(keys) / n_cols)
        fig, axes = _panel_grid(
            n_rows,
            n_cols,
            width=DOUBLE_COLUMN if n_cols > 1 else SINGLE_COLUMN,
            panel_height=1.7,
            sharex=True,
        )
        others = profiles[profiles["role"] != "baseline"]["optimizer"].unique()
        colors = optimizer_colors(others)
        log_y = "loss" in metric and (profiles["value"] > 0).all()
        for k, (_, key) in enumerate(keys.iterrows()):
            ax = axes.flat[k]
            panel = _select(profiles, init=key["init"])
            panel = panel[np.isclose(panel["beta"], key["beta"], equal_nan=True)]
            group = ["optimizer", "beta2"] if "beta2" in panel else ["optimizer"]
            for (label, *_), line in panel.groupby(group, dropna=False, sort=True):
                line = line.sort_values("lr_aligned")
                if (line["role"] == "baseline").all():
                    ax.plot(line["lr_aligned"], line["value"], color="black", lw=1.6, zorder=3)
                    continue
                shift = line["shift_decades"].iloc[0]
                ax.plot(
                    line["lr_aligned"],
                    line["value"],
                    color=colors[label],
                    ls="--",
                    marker="o",
                    ms=2.5,
                    label=f"{label} ({shift:+.2f} dec)",
                )
            ax.set_title(f"init {key['init']}, β {_beta_label(key['beta'])}")
            ax.set_xlabel("lr / 10^shift")
            if k % n_cols == 0:
                ax.set_ylabel(metric.replace("_", " "))
        for ax in axes.flat[: len(keys)]:
            _log_x(ax)
            if log_y:
                _log_y(ax)
        for ax in axes.flat[len(keys) :]:
            ax.set_visible(False)
        baseline = profiles.loc[profiles["role"] == "baseline", "optimizer"]
        handles = [
            Line2D([], [], color="black", lw=1.6, label=f"{baseline.iloc[0]} (baseline)")
            if len(baseline)
            else None,
            *(
                Line2D([], [], color=c, ls="--", marker="o", ms=2.5, label=o)
                for o, c in colors.items()
            ),
        ]
        handles = [h for h in handles if h is not None]
        fig.legend(
            handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False
        )
        return fig


def importance_bars(importance: pd.DataFrame) -> Figure:
    """Hyperparameter importance, the objective and divergence side by side.

    ``importance`` has columns ``optimizer``, ``param``, ``importance``, ``target``
    (e.g. "objective", "diverged"). One panel per target; within a panel, bars
    grouped by parameter, one colour per optimizer.
    """
    with paper_style():
        if importance.empty:
            return _empty_figure("no importance estimates")
        targets = _levels(importance, "target")
        params = sorted(importance["param"].dropna().unique(), key=lambda p: (p != "lr", p))
        colors = optimizer_colors(importance["optimizer"].unique())
        fig, axes = _panel_grid(
            1,
            len(targets),
            width=DOUBLE_COLUMN if len(targets) > 1 else SINGLE_COLUMN,
            panel_height=0.3 * len(params) * len(colors) ** 0.5 + 1.0,
            sharey=True,
        )
        height = 0.8 / max(len(colors), 1)
        for ax, target in zip(axes[0], targets, strict=True):
            panel = _select(importance, target=target)
            for k, (opt, color) in enumerate(colors.items()):
                rows = _select(panel, optimizer=opt).set_index("param")
                values = [rows["importance"].get(p, np.nan) for p in params]
                ys = np.arange(len(params)) - 0.4 + height * (k + 0.5)
                ax.barh(ys, values, height=height, color=color, label=opt)
            ax.set_yticks(range(len(params)), params)
            ax.set_ylim(len(params) - 0.5, -0.5)
            ax.set_xlim(0, max(1.0, panel["importance"].max(skipna=True) if len(panel) else 1.0))
            ax.set_xlabel("importance (fraction)")
            ax.set_title(f"target: {target}")
            ax.grid(axis="x", color="0.9", lw=0.6)
        handles = [mpl.patches.Patch(color=c, label=o) for o, c in colors.items()]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
        return fig


def tunability_curves(expected: pd.DataFrame, *, metric: str = "objective") -> Figure:
    """Expected best result after ``k`` random trials, one line per optimizer, ± std band.

    ``expected`` has columns ``optimizer``, ``k``, ``expected_best``, ``std``.
    """
    with paper_style():
        if expected.empty:
            return _empty_figure("no tunability estimates")
        fig = Figure(figsize=(SINGLE_COLUMN, 2.5), layout="constrained")
        ax = fig.subplots()
        colors = optimizer_colors(expected["optimizer"].unique())
        for opt, line in expected.groupby("optimizer", sort=True):
            line = line.sort_values("k")
            mean, std = line["expected_best"], line["std"].fillna(0)
            ax.fill_between(line["k"], mean - std, mean + std, color=colors[opt], alpha=0.2, lw=0)
            ax.plot(line["k"], mean, color=colors[opt], label=opt)
        _log_x(ax)
        ax.set_xlabel("trials k (random configurations)")
        ax.set_ylabel(f"expected best {metric.replace('_', ' ')}")
        ax.legend(frameon=False)
        return fig


def training_curves(curves: pd.DataFrame, runs: pd.DataFrame) -> Figure:
    """Example training curves, a converged run beside a diverged one, per optimizer.

    ``runs`` names the runs to draw: columns ``run_id``, ``optimizer``, ``outcome``,
    ``lr``. ``curves`` holds their rows (``run_id``, ``step``, ``train_loss``). A
    run whose last loss is non-finite gets a ✕ at the top of the panel at that step.
    """
    with paper_style():
        if runs.empty or curves.empty:
            return _empty_figure("no training curves recorded")
        optimizers = _levels(runs, "optimizer")
        fig, axes = _panel_grid(
            1,
            len(optimizers),
            width=DOUBLE_COLUMN if len(optimizers) > 1 else SINGLE_COLUMN,
            panel_height=2.0,
            sharey=True,
        )
        colors = optimizer_colors(optimizers)
        styles = {"converged": "-", "stalled": ":", "diverged": "--"}
        for ax, opt in zip(axes[0], optimizers, strict=True):
            for _, run in _select(runs, optimizer=opt).iterrows():
                rows = curves[curves["run_id"] == run["run_id"]].sort_values("step")
                if rows.empty:
                    continue
                loss = rows["train_loss"].to_numpy(float)
                finite = np.isfinite(loss)
                ls = styles.get(run["outcome"], "-.")
                label = f"{run['outcome']}, lr={run['lr']:.2g}"
                ax.plot(rows["step"][finite], loss[finite], color=colors[opt], ls=ls, label=label)
                if not finite[-1]:
                    ax.plot(
                        rows["step"].iloc[-1],
                        0.96,
                        transform=ax.get_xaxis_transform(),
                        marker="x",
                        color=colors[opt],
                        ms=6,
                        mew=1.5,
                        clip_on=False,
                    )
            _log_y(ax)
            ax.set_title(opt)
            ax.set_xlabel("step")
            ax.legend(frameon=False, fontsize=8, loc="best")
        axes[0, 0].set_ylabel("training loss")
        return fig
