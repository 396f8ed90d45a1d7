"""The report's summary: one plain-words sentence per table that supports one.

Contract: ``findings_of(tables)`` takes the computed tables (by name) with the
metric and its direction, and returns ``Finding`` s. Every number of a sentence is
formatted from a value of the one table it links to (``Finding.table``), with three
significant digits, so a reader can check it there; a sentence whose table is
missing or empty is left out, and one that raises is left out and reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from analysis.document import Finding, Table

__all__ = ["Tables", "findings_of"]

TUNABILITY_K = 10


@dataclass(frozen=True)
class Tables:
    """What the sentences are made from: the tables by name, the metric, its direction."""

    tables: Mapping[str, Table]
    metric: str
    maximize: bool


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
        if finding is not None:
            findings.append(finding)
    return findings, failures


def _table(tables: Tables, name: str) -> pd.DataFrame | None:
    table = tables.tables.get(name)
    return None if table is None or table.frame.empty else table.frame


def _find_outcomes(tables: Tables) -> Finding | None:
    frame = _table(tables, "outcomes")
    if frame is None:
        return None
    parts = [
        f"{row.optimizer} in {_pct(row.p_diverged)} of its {row.n_runs} runs"
        for row in frame.itertuples()
        if pd.notna(row.p_diverged)
    ]
    if (frame["n_error"] == frame["n_runs"]).all():
        total = ", ".join(f"{r.optimizer}: {r.n_error} of {r.n_runs}" for r in frame.itertuples())
        return Finding(f"Every run ended in an error ({total}).", "outcomes")
    if not parts:
        return None
    if (frame["n_diverged"] == 0).all():
        text = (
            "No run diverged ("
            + ", ".join(f"{r.optimizer}: {r.n_runs} runs" for r in frame.itertuples())
            + ")."
        )
        return Finding(text, "outcomes")
    return Finding("Training diverged for " + _join(parts) + ".", "outcomes")


def _find_best(tables: Tables) -> Finding | None:
    frame = _table(tables, "outcomes")
    if frame is None or frame["best_objective"].isna().all():
        return None
    frame = frame.dropna(subset=["best_objective"])
    frame = frame.sort_values("best_objective", ascending=not tables.maximize)
    parts = []
    for row in frame.itertuples():
        beta = "" if pd.isna(row.best_beta) else f", β {_num(row.best_beta)}"
        parts.append(
            f"{row.optimizer} {_num(row.best_objective)} (lr {_num(row.best_lr)}{beta}, "
            f"init {row.best_init})"
        )
    verb = "highest" if tables.maximize else "lowest"
    return Finding(f"The {verb} search objective per optimizer: " + _join(parts) + ".", "outcomes")


def _find_stability(tables: Tables) -> Finding | None:
    frame = _table(tables, "max_stable_lr")
    if frame is None:
        return None
    parts = []
    for label, own in frame.groupby("optimizer", sort=True):
        own = own.dropna(subset=["max_stable_lr"])
        if own.empty:
            parts.append(f"{label} diverges already at its smallest learning rate")
            continue
        row = own.loc[own["max_stable_lr"].idxmax()]
        bound = "at least " if bool(row["censored"]) else ""
        beta = "" if pd.isna(row["beta"]) else f", β {_num(row['beta'])}"
        parts.append(f"{label} {bound}{_num(row['max_stable_lr'])} (init {row['init']}{beta})")
    return Finding(
        "The largest learning rate that still trains stably: " + _join(parts) + ".",
        "max_stable_lr",
    )


def _best_cells(frame: pd.DataFrame, maximize: bool) -> pd.DataFrame:
    """Per optimizer, the row with the best ``best`` value (its tuned cell)."""
    frame = frame.dropna(subset=["best"])
    index = (
        frame.groupby("optimizer")["best"].idxmax()
        if maximize
        else frame.groupby("optimizer")["best"].idxmin()
    )
    return frame.loc[index.to_numpy()].sort_values("width_decades", ascending=False)


def _find_band(tables: Tables) -> Finding | None:
    frame = _table(tables, "lr_band")
    if frame is None:
        return None
    cells = _best_cells(frame, tables.maximize)
    if cells.empty:
        return None
    parts = [
        f"{row.optimizer}'s is {_num(row.width_decades)} decades wide "
        f"({_num(row.band_lo)} to {_num(row.band_hi)})"
        for row in cells.itertuples()
    ]
    tol = float(cells["tolerance"].iloc[0])
    within = f"{_pct(tol)} of" if not tables.maximize else f"{_num(tol)} of"
    return Finding(
        f"At each optimizer's best init and β, the band of learning rates within {within} "
        "the best result: " + _join(parts) + ".",
        "lr_band",
    )


def _find_init(tables: Tables) -> Finding | None:
    frame = _table(tables, "init_worst_case")
    if frame is None:
        return None
    parts = []
    for label, own in frame.groupby("optimizer", sort=True):
        own = own.dropna(subset=["spread"])
        if own.empty:
            continue
        row = own.loc[own["spread"].idxmax()]
        parts.append(
            f"{label} by up to {_num(row['spread'])} (lr {_num(row['lr'])}: "
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
    for row in tuned.itertuples():
        better = (row.mean_diff > 0) == tables.maximize and row.mean_diff != 0
        parts.append(
            f"{row.optimizer} {row.mean_diff:+.3g} (CI {_num(row.ci_low)} to "
            f"{_num(row.ci_high)}, {row.n_pairs} pair{'' if row.n_pairs == 1 else 's'}: "
            f"{'better' if better else 'worse'})"
        )
    lower = "higher" if tables.maximize else "lower"
    return Finding(
        f"Tuned against tuned on each init, {tables.metric} minus {baseline}'s "
        f"({lower} is better): " + _join(parts) + ".",
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
    parts = [f"{row.optimizer} {_num(row.expected_best)}" for row in at_k.itertuples()]
    return Finding(
        f"With a budget of {k} random configurations, the expected best {tables.metric} is "
        + _join(parts)
        + ".",
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
