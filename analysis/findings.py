"""The report's summary: one plain-words sentence per table that supports one.

Contract: ``findings_of(tables)`` takes the computed tables (by name) with the
metric and its direction, and returns ``Finding`` s. Every number of a sentence is
formatted from a value of the one table it links to (``Finding.table``), with three
significant digits, so a reader can check it there; a sentence whose table is
missing or empty is left out, and one that raises is left out and reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from analysis.document import Finding, Table
from analysis.study import axes_label

__all__ = ["Tables", "findings_of"]

TUNABILITY_K = 10


@dataclass(frozen=True)
class Tables:
    """What the sentences are made from: the tables by name, the metric, its direction,
    and the extra swept axes (each sentence names an optimizer with its axis values)."""

    tables: Mapping[str, Table]
    metric: str
    maximize: bool
    axes: Sequence[str] = ()


def _num(value: float) -> str:
    """How numbers are printed in sentences: three significant digits."""
    return f"{value:.3g}"


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.0f}%"


def findings_of(tables: Tables) -> tuple[list[Finding], list[str]]:
    """The summary sentences that the tables support, and the failure messages."""
    makers = [
        _find_outcomes,
        _find_best,
        _find_stability,
        _find_band,
        _find_init,
        _find_margin,
        _find_shift,
        _find_paired,
        _find_tuning,
        _find_importance,
    ]
    findings, failures = [], []
    for make in makers:
        try:
            finding = make(tables)
        except Exception as exc:  # a sentence that cannot be made is left out, and said
            failures.append(f"finding {make.__name__}: {type(exc).__name__}: {exc}")
            continue
        if isinstance(finding, Finding):
            findings.append(finding)
        elif finding:
            findings += finding
    return findings, failures


def _table(tables: Tables, name: str) -> pd.DataFrame | None:
    table = tables.tables.get(name)
    return None if table is None or table.frame.empty else table.frame


def _who(row, axes: Sequence[str]) -> str:
    """The optimizer of a row, with its extra axes' values: 'sgd (weight_decay 0.0005)'."""
    label = str(row["optimizer"])
    return f"{label} ({axes_label(row, list(axes))})" if axes else label


def _per_who(frame: pd.DataFrame, axes: Sequence[str]):
    """Groups of rows per optimizer and extra-axis value, in sorted order."""
    keys = ["optimizer", *[a for a in axes if a in frame.columns]]
    return frame.groupby(keys, dropna=False, sort=True)


def _find_outcomes(tables: Tables) -> Finding | None:
    frame = _table(tables, "outcomes")
    if frame is None:
        return None
    axes = tables.axes
    if (frame["n_error"] == frame["n_runs"]).all():
        total = ", ".join(
            f"{_who(r, axes)}: {r['n_error']} of {r['n_runs']}" for _, r in frame.iterrows()
        )
        return Finding(f"Every run ended in an error ({total}).", "outcomes")
    rows = [r for _, r in frame.iterrows() if pd.notna(r["p_diverged"])]
    if not rows:
        return None
    if (frame["n_diverged"] == 0).all():
        text = (
            "No run diverged ("
            + ", ".join(f"{_who(r, axes)}: {r['n_runs']} runs" for _, r in frame.iterrows())
            + ")."
        )
        return Finding(text, "outcomes")
    parts = [
        f"{_who(r, axes)} in {_pct(r['p_diverged'])} of its {r['n_assessed']} runs"
        + (
            ""
            if r["n_assessed"] == r["n_runs"]
            else f" that ended neither in an error nor pruned ({r['n_runs']} in all)"
        )
        for r in rows
    ]
    return Finding("Training diverged for " + _join(parts) + ".", "outcomes")


def _find_best(tables: Tables) -> Finding | None:
    frame = _table(tables, "outcomes")
    if frame is None or frame["best_objective"].isna().all():
        return None
    frame = frame.dropna(subset=["best_objective"])
    frame = frame.sort_values("best_objective", ascending=not tables.maximize)
    parts = []
    for _, row in frame.iterrows():
        beta = "" if pd.isna(row["best_beta"]) else f", β {_num(row['best_beta'])}"
        parts.append(
            f"{_who(row, tables.axes)} {_num(row['best_objective'])} (lr "
            f"{_num(row['best_lr'])}{beta}, init {row['best_init']})"
        )
    verb = "highest" if tables.maximize else "lowest"
    return Finding(f"The {verb} search objective per optimizer: " + _join(parts) + ".", "outcomes")


def _find_stability(tables: Tables) -> Finding | None:
    frame = _table(tables, "max_stable_lr")
    if frame is None:
        return None
    parts = []
    for _, own in _per_who(frame, tables.axes):
        who = _who(own.iloc[0], tables.axes)
        own = own.dropna(subset=["max_stable_lr"])
        if own.empty:
            parts.append(f"{who} diverges already at its smallest learning rate")
            continue
        row = own.loc[own["max_stable_lr"].idxmax()]
        bound = "at least " if bool(row["censored"]) else ""
        beta = "" if pd.isna(row["beta"]) else f", β {_num(row['beta'])}"
        parts.append(f"{who} {bound}{_num(row['max_stable_lr'])} (init {row['init']}{beta})")
    return Finding(
        "The largest learning rate that still trains stably: " + _join(parts) + ".",
        "max_stable_lr",
    )


def _best_cells(frame: pd.DataFrame, maximize: bool, axes: Sequence[str]) -> pd.DataFrame:
    """Per optimizer and extra-axis value, the row with the best ``best`` (its tuned cell)."""
    frame = frame.dropna(subset=["best"])
    if frame.empty:
        return frame
    best = _per_who(frame, axes)["best"]
    index = best.idxmax() if maximize else best.idxmin()
    return frame.loc[index.to_numpy()]


def _find_band(tables: Tables) -> Finding | None:
    frame = _table(tables, "lr_band")
    if frame is None:
        return None
    cells = _best_cells(frame, tables.maximize, tables.axes)
    if cells.empty:
        return None
    parts = []
    for _, row in cells.sort_values("width_decades", ascending=False).iterrows():
        who = _who(row, tables.axes)
        if not bool(row["resolved"]):
            step = row["grid_step_decades"]
            grid = f" ({_num(step)} decades)" if pd.notna(step) else ""
            parts.append(
                f"{who}'s is narrower than one grid step{grid}, around lr {_num(row['best_lr'])}"
            )
            continue
        bound = "at least " if bool(row["censored"]) else ""
        end = ", reaching the end of the tested range" if bool(row["censored"]) else ""
        parts.append(
            f"{who}'s is {bound}{_num(row['width_decades'])} decades wide "
            f"({_num(row['band_lo'])} to {_num(row['band_hi'])}{end})"
        )
    tol = float(cells["tolerance"].iloc[0])
    within = f"{_pct(tol)} of" if not tables.maximize else f"{_num(tol)} of"
    return Finding(
        f"At each optimizer's best init and β, the band of learning rates within {within} "
        "the best result: " + _join(parts) + ".",
        "lr_band",
    )


def _find_margin(tables: Tables) -> Finding | None:
    frame = _table(tables, "lr_margin")
    if frame is None or "best" not in frame:
        return None
    cells = _best_cells(frame, tables.maximize, tables.axes)
    cells = cells.dropna(subset=["best_lr"])
    if cells.empty:
        return None
    parts = []
    for _, row in cells.iterrows():
        who = _who(row, tables.axes)
        if pd.isna(row["margin_decades"]):
            parts.append(f"{who}: no stable learning rate in that cell")
            continue
        bound = "at least " if bool(row["censored"]) else ""
        parts.append(
            f"{who} {bound}{_num(row['margin_decades'])} decades (best lr "
            f"{_num(row['best_lr'])}, stable up to {bound}{_num(row['max_stable_lr'])})"
        )
    return Finding(
        "At each optimizer's best cell, the stability limit lies this far above its best "
        "learning rate: " + _join(parts) + ".",
        "lr_margin",
    )


SHIFT_ACCOUNTS = 0.25
"""A shift that leaves at most this fraction of the unshifted RMS difference between
two learning-rate profiles (1/16 of the squared difference) makes the difference
'mostly a rescaled learning rate'; up to ``SHIFT_PART`` it accounts for part of it;
beyond, it does not account for it."""
SHIFT_PART = 0.75


def _find_shift(tables: Tables) -> list[Finding]:
    """One sentence per optimizer (and extra-axis value): its median cell's shift."""
    frame = _table(tables, "lr_shift")
    if frame is None:
        return []
    frame = frame.dropna(subset=["shift_decades"])
    if frame.empty:
        return []
    baseline = frame["baseline"].iloc[0]
    parts = []
    for _, own in _per_who(frame, tables.axes):
        own = own.sort_values("shift_decades", kind="stable").reset_index(drop=True)
        row = own.iloc[(len(own) - 1) // 2]  # the (lower) median cell: a row of the table
        who = _who(row, tables.axes)
        shift = float(row["shift_decades"])
        if float(row["flat_decades"]) > 0:
            parts.append(
                f"{who} is not told apart by a shift: its profile matches {baseline}'s "
                f"equally well over {_num(row['flat_decades'])} decades of shifts"
            )
            continue
        if abs(shift) < 0.005:
            move = f"{who} behaves like {baseline} at the same learning rate"
        else:
            side = "higher" if shift > 0 else "lower"
            move = (
                f"{who} needs a learning rate {_num(abs(shift))} decades {side} than "
                f"{baseline}'s to behave like it"
            )
        spread = (
            f"median over its cells; from {_num(own['shift_decades'].iloc[0])} to "
            f"{_num(own['shift_decades'].iloc[-1])}"
            if len(own) > 1
            else "one cell"
        )
        if pd.notna(row["ci_low"]) and pd.notna(row["ci_high"]):
            spread += f"; 95% CI {_num(row['ci_low'])} to {_num(row['ci_high'])}"
        text = (
            f"{move} ({spread}). After that shift the profiles differ by "
            f"{_num(row['residual_trained'])} where both train and by "
            f"{_num(row['residual'])} over every compared lr, divergence included (RMS "
            f"of {tables.metric}"
        )
        unshifted = row["residual_unshifted"]
        if pd.notna(unshifted):
            text += f"; {_num(unshifted)} without the shift)"
            if row["residual"] <= SHIFT_ACCOUNTS * unshifted:
                text += ": the difference is mostly a rescaled learning rate"
            elif row["residual_trained"] <= SHIFT_ACCOUNTS * row["residual"]:
                text += (
                    ": where both train it is a rescaled learning rate, but the "
                    "learning rate at which training diverges moved differently"
                )
            elif row["residual"] < SHIFT_PART * unshifted:
                text += ": a rescaled learning rate accounts for part of the difference only"
            else:
                text += ": a rescaled learning rate does not account for the difference"
        else:
            text += ")"
        parts.append(text)
    return [Finding(f"Learning-rate shift against {baseline}: {p}.", "lr_shift") for p in parts]


def _find_init(tables: Tables) -> Finding | None:
    frame = _table(tables, "init_worst_case")
    if frame is None:
        return None
    parts = []
    for _, own in _per_who(frame, tables.axes):
        own = own.dropna(subset=["spread"])
        if own.empty:
            continue
        row = own.loc[own["spread"].idxmax()]
        parts.append(
            f"{_who(row, tables.axes)} by up to {_num(row['spread'])} (lr {_num(row['lr'])}: "
            f"{row['worst_init']} {_num(row['worst'])} vs {row['best_init']} {_num(row['best'])})"
        )
    if not parts:
        return None
    return Finding(
        f"The init scheme changes {tables.metric} at a fixed configuration for "
        + _join(parts)
        + ".",
        "init_worst_case",
    )


def _find_paired(tables: Tables) -> Finding | None:
    frame = _table(tables, "paired")
    if frame is None:
        return None
    tuned = frame[(frame["level"] == "tuned") & frame["mean_diff"].notna()]
    if tuned.empty:
        return None
    baseline = tuned["baseline"].iloc[0]
    parts = []
    for _, row in tuned.iterrows():
        better = (row["mean_diff"] > 0) == tables.maximize and row["mean_diff"] != 0
        pairs = f"{row['n_pairs']} pair{'' if row['n_pairs'] == 1 else 's'}"
        if pd.notna(row["ci_low"]) and pd.notna(row["ci_high"]):
            interval = f"95% CI {_num(row['ci_low'])} to {_num(row['ci_high'])}, {pairs}"
        else:
            seeds = row["n_seeds"]
            interval = f"{pairs}; no interval with only {seeds} seed{'' if seeds == 1 else 's'}"
        parts.append(
            f"{_who(row, tables.axes)} {row['mean_diff']:+.3g} ({interval}: "
            f"{'better' if better else 'worse'} on average)"
        )
    lower = "higher" if tables.maximize else "lower"
    return Finding(
        f"Tuned against tuned on each init (each configuration chosen on half of the seeds "
        f"and scored on the other half), {tables.metric} minus {baseline}'s ({lower} is "
        "better): " + _join(parts) + ".",
        "paired",
    )


def _find_tuning(tables: Tables) -> Finding | None:
    frame = _table(tables, "expected_max")
    if frame is None:
        return None
    k = min(TUNABILITY_K, int(frame["k"].max()))
    at_k = frame[frame["k"] == k].dropna(subset=["expected_best"])
    if at_k.empty:
        return None
    at_k = at_k.sort_values("expected_best", ascending=not tables.maximize)
    parts = [f"{_who(row, tables.axes)} {_num(row['expected_best'])}" for _, row in at_k.iterrows()]
    return Finding(
        f"With {k} configurations drawn at random from those the study ran, the expected "
        f"best {tables.metric} is " + _join(parts) + ".",
        "expected_max",
    )


def _find_importance(tables: Tables) -> Finding | None:
    frame = _table(tables, "importance")
    if frame is None:
        return None
    frame = frame[frame["target"] == "diverged"].dropna(subset=["importance"])
    if frame.empty:
        return None
    top = frame.loc[frame.groupby("optimizer")["importance"].idxmax().to_numpy()]
    parts = [
        f"{row.param} for {row.optimizer} ({_num(row.importance)})" for row in top.itertuples()
    ]
    return Finding(
        "The axis that matters most for divergence is " + _join(parts) + ".", "importance"
    )


def _join(parts: list[str]) -> str:
    if len(parts) <= 2:
        return " and ".join(parts)
    return "; ".join(parts[:-1]) + "; and " + parts[-1]
