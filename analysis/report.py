"""The study report: metric tables, figures and plain-words findings, as HTML and Markdown.

Contract: ``write_report(results_dir, out_dir=None) -> Path`` reads a results
directory (``analysis.load.load_results``; a missing, empty or malformed one raises
``ResultsError``, exit code 2 on the CLI) and writes, into ``out_dir`` (default
``results_dir/report``):

- ``index.html``: self-contained (figures as base64 PNG data URIs, inline CSS, no
  script, no external resource), opens from a file with no server;
- ``report.md``: the same content, figures referenced by relative path;
- ``figures/``: every figure as PNG and SVG;
- ``tables/``: every table as CSV (full precision) and LaTeX.

It returns the path of ``index.html``. The work is three stages, public so that
callers (the CLI, the benchmark) can use or time them one by one:
``build_report`` (metrics -> tables and findings), ``report_figures`` (tables ->
figures) and ``render_report`` (-> files).

Every sentence of the summary is generated from one table, its numbers formatted
from that table's values, and links to it. A section that cannot be computed for
this study (one optimizer, one init, nothing diverged, no curves) says why instead
of failing; an unexpected error inside one section is reported in that section and
the rest of the report is still written.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
import os
import platform
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from analysis import figures as fig
from analysis.importance import param_importance
from analysis.load import Results, load_results
from analysis.metrics import (
    divergence_probability,
    expected_max_curve,
    is_maximized,
    lr_band_width,
    lr_profile,
    lr_sensitivity,
    max_stable_lr,
    paired_comparison,
    summary_by_optimizer,
    tunability,
    worst_case_over_init,
)
from robustness.results.schema import OUTCOMES, REPORT_DIR
from robustness.runner.outcome import CAPPING_RULE

__all__ = [
    "Finding",
    "Report",
    "Table",
    "build_report",
    "render_report",
    "report_figures",
    "write_report",
]

CELL = ["optimizer", "init", "beta", "beta2"]
MAP_CELL = ["optimizer", "init", "beta"]  # a divergence map is lr x beta: beta2 is pooled
HTML_TABLE_ROWS = 40  # longer tables are cut in the page; the CSV holds every row
TUNABILITY_K = 10

# What the spec's two coefficient axes mean for each registered optimizer (DESIGN.md).
AXIS_MEANING: dict[str, tuple[str, str]] = {
    "sgd": ("momentum μ", "does not apply"),
    "insgd": ("momentum μ", "input-power momentum β (P_t = β·P_{t−1} + (1−β)·p_t)"),
    "novograd": ("β1, first-moment coefficient", "β2, second-moment (gradient-norm) coefficient"),
}


@dataclass(frozen=True)
class Table:
    """One table of the report: written to ``tables/<name>.csv`` and ``.tex``."""

    name: str
    title: str
    caption: str
    frame: pd.DataFrame


@dataclass(frozen=True)
class Finding:
    """One summary sentence; every number in ``text`` comes from table ``table``."""

    text: str
    table: str


@dataclass
class Section:
    """A report section: its figures and tables, or a note saying why it is empty."""

    key: str
    title: str
    intro: str
    figures: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    note: str | None = None


@dataclass
class Report:
    """Everything the report shows, computed from one results directory.

    ``tables`` by name; ``findings`` the summary sentences; ``sections`` in page
    order; ``failures`` the messages of sections that raised (empty when all went
    well); ``cells`` the trials with continuously sampled axes binned (the trials
    themselves for a grid study; ``binned`` says which axes); ``map_boundary`` the stability boundary per (optimizer, init, β) drawn on
    the divergence maps; ``example_runs`` the runs drawn as training curves.
    """

    results: Results
    metric: str
    maximize: bool
    tables: dict[str, Table] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    cells: pd.DataFrame = field(default_factory=pd.DataFrame)
    binned: list[str] = field(default_factory=list)
    map_boundary: pd.DataFrame = field(default_factory=pd.DataFrame)
    example_runs: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def headline(self) -> str:
        """One line: runs, optimizers and outcomes."""
        trials = self.results.trials
        counts = trials["outcome"].value_counts()
        parts = [f"{int(counts.get(o, 0))} {o}" for o in OUTCOMES if counts.get(o, 0)]
        labels = sorted(trials["optimizer"].dropna().unique())
        return (
            f"{len(trials)} runs of {len(labels)} optimizer(s) ({', '.join(labels)}): "
            + ", ".join(parts)
        )

    def add(self, name: str, title: str, caption: str, frame: pd.DataFrame) -> None:
        self.tables[name] = Table(name, title, caption, frame.reset_index(drop=True))


# --------------------------------------------------------------------------- stage 1


def build_report(results: Results) -> Report:
    """Compute every metric table and the summary findings (no drawing, no writing)."""
    trials = results.trials
    search = results.spec.get("search") or {}
    metric = search.get("objective") or "final_val_loss"
    if metric not in trials.columns:
        metric = "objective"
    direction = search.get("direction")
    maximize = direction == "maximize" if direction else is_maximized(metric)
    cells, binned = _grid_cells(trials)
    report = Report(results=results, metric=metric, maximize=maximize, cells=cells, binned=binned)
    all_errors = trials["outcome"].eq("error").all()
    for key, title, intro, compute in _SECTIONS:
        section = Section(key, title, intro)
        if all_errors and key not in ("outcomes", "axes"):
            section.note = (
                "Every run ended in an error, so there is nothing to analyse here; the "
                "error messages are in the 'error' column of trials.parquet."
            )
            report.sections.append(section)
            continue
        try:
            compute(report, section)
        except Exception as exc:  # one broken section must not cost the whole report
            section.note = f"This section could not be computed: {type(exc).__name__}: {exc}"
            report.failures.append(f"{key}: {type(exc).__name__}: {exc}")
        if binned and key in _PER_CELL_SECTIONS:
            binned_note = "Here " + "; ".join(binned) + "."
            section.note = f"{section.note} {binned_note}" if section.note else binned_note
        report.sections.append(section)
    report.findings = _findings(report)
    return report


MAX_GRID_LRS = 25  # more distinct values than this: a sampler drew them, bin them
MAX_GRID_BETAS = 8
LR_BINS = 15
BETA_BINS = 6


def _grid_cells(trials: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
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


def _metric_words(report: Report) -> str:
    words = report.metric.replace("_", " ")
    return words if report.metric == "objective" else f"{words} (capped)"


def _outcomes(report: Report, section: Section) -> None:
    direction = "maximize" if report.maximize else "minimize"
    summary = summary_by_optimizer(report.results.trials, direction=direction)
    report.add(
        "outcomes",
        "Outcomes and best configuration per optimizer",
        "Run counts by outcome; p_diverged = diverged / runs at risk (neither error "
        "nor pruned: a run the scheduler stopped early is censored, in neither count). "
        "The best configuration has the best seed-mean search objective. " + CAPPING_RULE,
        summary,
    )
    section.tables.append("outcomes")


def _axis_mapping(report: Report, section: Section) -> None:
    trials = report.results.trials
    entries = report.results.spec.get("optimizers") or {}
    rows = []
    for label in sorted(trials["optimizer"].dropna().unique()):
        entry = entries.get(label) if isinstance(entries, dict) else None
        base = (entry or {}).get("base") or _base_from_label(label)
        beta, beta2 = AXIS_MEANING.get(base, ("unknown", "unknown"))
        own = trials[trials["optimizer"] == label]
        rows.append(
            {
                "optimizer": label,
                "base": base,
                "beta means": beta,
                "beta values": _values(own["beta"]),
                "beta2 means": beta2,
                "beta2 values": _values(own["beta2"]),
            }
        )
    report.add(
        "axes",
        "What β and β2 mean for each optimizer",
        "The spec's beta is each optimizer's first-moment coefficient, beta2 its second "
        "coefficient; 'default' means the optimizer's own default was used.",
        pd.DataFrame(rows),
    )
    section.tables.append("axes")


def _base_from_label(label: str) -> str:
    return next((b for b in AXIS_MEANING if label == b or label.startswith(b + "_")), label)


def _values(column: pd.Series) -> str:
    values = sorted(column.dropna().unique())
    return ", ".join(f"{v:g}" for v in values) if values else "default"


def _divergence(report: Report, section: Section) -> None:
    trials = report.cells
    probability = divergence_probability(trials, by=[*MAP_CELL, "lr"])
    boundary = max_stable_lr(trials, by=MAP_CELL)  # β2 pooled, like the map
    report.add(
        "divergence_probability",
        "Divergence probability per learning rate, β and init",
        "Fraction of the seeds (non-error runs) of each cell that diverged; β2 pooled.",
        probability,
    )
    report.add(
        "max_stable_lr",
        "Maximum stable learning rate",
        "Largest tested lr below the first lr where at least half the runs diverge; "
        "95% bootstrap CI over seeds (ci_low, ci_high); censored = nothing diverged, so "
        "the value is a lower bound; lr_boundary_logistic = lr where a logistic fit "
        "gives P(diverge) = 0.5.",
        max_stable_lr(trials, by=CELL),
    )
    report.map_boundary = boundary
    section.figures.append("divergence_map")
    section.tables += ["max_stable_lr", "divergence_probability"]
    if not trials["outcome"].eq("diverged").any():
        section.note = (
            "No run diverged anywhere in the swept range: every stability limit is "
            "censored (a lower bound), and the maps are uniformly zero."
        )


def _sensitivity(report: Report, section: Section) -> None:
    trials = report.cells
    profile = lr_profile(trials, metric=report.metric, direction=_direction_word(report.maximize))
    report.add(
        "lr_profile",
        f"{_metric_words(report)} against learning rate",
        "Per optimizer, init and lr, the β (and β2) with the best seed median; median, "
        "inter-quartile range (low, high) over seeds and the fraction that diverged.",
        profile,
    )
    band = lr_band_width(trials, metric=report.metric, by=CELL)
    report.add(
        "lr_band",
        "Width of the good learning-rate band",
        "Per cell, the contiguous band of learning rates whose seed-median "
        f"{report.metric} is within the tolerance of the best (relative for a loss, "
        "absolute for an accuracy); width in decades of lr.",
        band,
    )
    section.figures += ["sensitivity", "stability"]
    section.tables += ["lr_profile", "lr_band"]
    if trials[["final_train_loss", "initial_loss"]].notna().any().all():
        report.add(
            "lr_sensitivity",
            "Learning-rate sensitivity (Wortsman et al. 2023)",
            "E over tested lr of min(final train loss, initial loss) minus its minimum: "
            "0 = every lr is as good as the best; larger = more sensitive.",
            lr_sensitivity(trials, metric="final_train_loss", by=CELL),
        )
        section.tables.append("lr_sensitivity")


def _init(report: Report, section: Section) -> None:
    trials = report.cells
    if trials["init"].nunique() < 2:
        section.note = "The study used a single init scheme, so there is nothing to compare."
        return
    report.add(
        "init_worst_case",
        "Worst and best init scheme per configuration",
        f"Per optimizer, β, β2 and lr: seed-mean {report.metric} of the worst and best "
        "init scheme and their spread.",
        worst_case_over_init(
            trials, metric=report.metric, direction=_direction_word(report.maximize)
        ),
    )
    section.tables.append("init_worst_case")


def _direction_word(maximize: bool) -> str:
    return "maximize" if maximize else "minimize"


def _paired(report: Report, section: Section) -> None:
    trials = report.cells
    labels = sorted(trials["optimizer"].dropna().unique())
    if len(labels) < 2:
        section.note = "The study has a single optimizer, so there is no pair to compare."
        return
    baseline = "sgd" if "sgd" in labels else labels[0]
    direction = _direction_word(report.maximize)
    frames = [
        paired_comparison(
            trials, metric=report.metric, baseline=baseline, level=level, direction=direction
        )
        for level in ("tuned", "run")
    ]
    report.add(
        "paired",
        f"Paired comparison against {baseline}",
        f"mean_diff = optimizer minus {baseline} in {report.metric}, averaged over pairs "
        "with a 95% bootstrap CI. level 'tuned': each (optimizer, init) at its best "
        "configuration, paired by init and seed; level 'run': paired by init, β, lr and "
        "seed. p_better = bootstrap probability that the optimizer is better.",
        pd.concat(frames, ignore_index=True),
    )
    section.tables.append("paired")


def _tuning(report: Report, section: Section) -> None:
    trials = report.results.trials
    direction = _direction_word(report.maximize)
    curve = expected_max_curve(trials, metric=report.metric, direction=direction)
    report.add(
        "expected_max",
        "Expected best result after k random configurations",
        f"Expected best seed-mean {report.metric} among k configurations drawn uniformly "
        "at random from the grid (Dodge et al. 2019), and its standard deviation.",
        curve,
    )
    report.add(
        "tunability",
        "Tunability",
        "Mean of the expected-best curve over k (Sivaprasad et al. 2020, uniform weights).",
        tunability(curve) if not curve.empty else curve,
    )
    section.figures.append("tunability")
    section.tables += ["tunability", "expected_max"]


def _importance(report: Report, section: Section) -> None:
    trials = report.results.trials
    direction = _direction_word(report.maximize)
    frames = [
        param_importance(trials, target=target, direction=direction)
        for target in ("objective", "diverged")
    ]
    table = pd.concat(frames, ignore_index=True)
    report.add(
        "importance",
        "Hyperparameter importance",
        "PED-ANOVA importance (Watanabe et al. 2023; Optuna) of each swept axis, per "
        "optimizer, for the search objective and for divergence (0/1); normalized to 1.",
        table,
    )
    section.tables.append("importance")
    if table["importance"].notna().any():
        section.figures.append("importance")
    else:
        reasons = sorted(set(table["note"].dropna().astype(str)) - {""})
        section.note = "No importance could be estimated: " + (
            "; ".join(reasons) or "no swept axis varies within an optimizer"
        )


def _examples(report: Report, section: Section) -> None:
    results = report.results
    if results.curves.empty:
        section.note = "The results hold no training curves (curves.parquet is empty)."
        return
    runs = _example_runs(results.trials, results.curves, report)
    if runs.empty:
        section.note = "No run with a recorded curve could be picked."
        return
    report.example_runs = runs
    section.figures.append("training_curves")


def _example_runs(trials: pd.DataFrame, curves: pd.DataFrame, report: Report) -> pd.DataFrame:
    """Per optimizer: a run of its best configuration, and the diverged run nearest to it.

    The diverged run shares the best configuration's init and β where one does, at the
    smallest diverging learning rate (the edge of stability).
    """
    with_curve = trials[trials["run_id"].isin(set(curves["run_id"])).to_numpy(dtype=bool)]
    best = report.tables["outcomes"].frame.set_index("optimizer")["best_trial_id"]
    picked = []
    for label, own in with_curve.groupby("optimizer", sort=True):
        converged = own[own["trial_id"] == best.get(label)]
        if converged.empty:
            converged = own[own["outcome"] == "converged"]
        if not converged.empty:
            picked.append(converged.sort_values("seed").iloc[0])
        diverged = own[own["outcome"] == "diverged"]
        if diverged.empty:
            continue
        if picked and picked[-1]["optimizer"] == label:
            near = diverged[
                (diverged["init"] == picked[-1]["init"]).to_numpy(dtype=bool)
                & np.isclose(diverged["beta"], picked[-1]["beta"], equal_nan=True)
            ]
            diverged = near if not near.empty else diverged
        picked.append(diverged.sort_values(["lr", "seed"]).iloc[0])
    columns = ["run_id", "optimizer", "outcome", "lr", "beta", "init", "seed"]
    return pd.DataFrame(picked)[columns].reset_index(drop=True) if picked else pd.DataFrame()


_PER_CELL_SECTIONS = ("divergence", "sensitivity", "init", "paired")
_SECTIONS: list[tuple[str, str, str, Callable[[Report, Section], None]]] = [
    (
        "outcomes",
        "Outcomes",
        "How every run ended (converged, diverged, stalled, error) and the best configuration.",
        _outcomes,
    ),
    (
        "axes",
        "What β and β2 mean",
        "The spec sweeps two coefficient axes whose meaning depends on the optimizer.",
        _axis_mapping,
    ),
    (
        "divergence",
        "Where training diverges",
        "Divergence probability over learning rate × β, one panel per optimizer and init "
        "scheme; white markers: the maximum stable learning rate per β with its 95% "
        "bootstrap interval; dashed: the logistic estimate of the P = 0.5 boundary.",
        _divergence,
    ),
    (
        "sensitivity",
        "Learning-rate sensitivity",
        "The final metric against learning rate (median and inter-quartile range over "
        "seeds at the best β; ✕ where most runs diverged and count at their capped "
        "value), then the stability limit and the good learning-rate band per optimizer, "
        "init and β. " + CAPPING_RULE,
        _sensitivity,
    ),
    (
        "init",
        "Initialization",
        "How much the init scheme changes the result at a fixed optimizer, β and lr.",
        _init,
    ),
    (
        "paired",
        "Paired comparison",
        "Each optimizer against the baseline on matched runs.",
        _paired,
    ),
    (
        "tuning",
        "Tuning effort",
        "The expected best result after k random configurations (± one standard deviation).",
        _tuning,
    ),
    (
        "importance",
        "Hyperparameter importance",
        "Which swept axes matter, for the objective and for divergence.",
        _importance,
    ),
    (
        "examples",
        "Example training curves",
        "A run of each optimizer's best configuration beside a diverged run near it "
        "(✕ at the top: the loss became non-finite).",
        _examples,
    ),
]


# --------------------------------------------------------------------------- findings


def _num(value: float) -> str:
    """How numbers are printed in sentences: three significant digits."""
    return f"{value:.3g}"


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.0f}%"


def _findings(report: Report) -> list[Finding]:
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
    findings = []
    for make in makers:
        try:
            finding = make(report)
        except Exception as exc:  # a sentence that cannot be made is left out, and said
            report.failures.append(f"finding {make.__name__}: {type(exc).__name__}: {exc}")
            continue
        if finding is not None:
            findings.append(finding)
    return findings


def _table(report: Report, name: str) -> pd.DataFrame | None:
    table = report.tables.get(name)
    return None if table is None or table.frame.empty else table.frame


def _find_outcomes(report: Report) -> Finding | None:
    frame = _table(report, "outcomes")
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


def _find_best(report: Report) -> Finding | None:
    frame = _table(report, "outcomes")
    if frame is None or frame["best_objective"].isna().all():
        return None
    frame = frame.dropna(subset=["best_objective"])
    frame = frame.sort_values("best_objective", ascending=not report.maximize)
    parts = []
    for row in frame.itertuples():
        beta = "" if pd.isna(row.best_beta) else f", β {_num(row.best_beta)}"
        parts.append(
            f"{row.optimizer} {_num(row.best_objective)} (lr {_num(row.best_lr)}{beta}, "
            f"init {row.best_init})"
        )
    verb = "highest" if report.maximize else "lowest"
    return Finding(f"The {verb} search objective per optimizer: " + _join(parts) + ".", "outcomes")


def _find_stability(report: Report) -> Finding | None:
    frame = _table(report, "max_stable_lr")
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


def _find_band(report: Report) -> Finding | None:
    frame = _table(report, "lr_band")
    if frame is None:
        return None
    cells = _best_cells(frame, report.maximize)
    if cells.empty:
        return None
    parts = [
        f"{row.optimizer}'s is {_num(row.width_decades)} decades wide "
        f"({_num(row.band_lo)} to {_num(row.band_hi)})"
        for row in cells.itertuples()
    ]
    tol = float(cells["tolerance"].iloc[0])
    within = f"{_pct(tol)} of" if not report.maximize else f"{_num(tol)} of"
    return Finding(
        f"At each optimizer's best init and β, the band of learning rates within {within} "
        "the best result: " + _join(parts) + ".",
        "lr_band",
    )


def _find_init(report: Report) -> Finding | None:
    frame = _table(report, "init_worst_case")
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
        f"The init scheme changes {report.metric} at a fixed configuration for "
        + _join(parts)
        + ".",
        "init_worst_case",
    )


def _find_paired(report: Report) -> Finding | None:
    frame = _table(report, "paired")
    if frame is None:
        return None
    tuned = frame[(frame["level"] == "tuned") & frame["mean_diff"].notna()]
    if tuned.empty:
        return None
    baseline = tuned["baseline"].iloc[0]
    parts = []
    for row in tuned.itertuples():
        better = (row.mean_diff > 0) == report.maximize and row.mean_diff != 0
        parts.append(
            f"{row.optimizer} {row.mean_diff:+.3g} (CI {_num(row.ci_low)} to "
            f"{_num(row.ci_high)}, {row.n_pairs} pair{'' if row.n_pairs == 1 else 's'}: "
            f"{'better' if better else 'worse'})"
        )
    lower = "higher" if report.maximize else "lower"
    return Finding(
        f"Tuned against tuned on each init, {report.metric} minus {baseline}'s "
        f"({lower} is better): " + _join(parts) + ".",
        "paired",
    )


def _find_tuning(report: Report) -> Finding | None:
    frame = _table(report, "expected_max")
    if frame is None:
        return None
    k = min(TUNABILITY_K, int(frame["k"].max()))
    at_k = frame[frame["k"] == k].dropna(subset=["expected_best"])
    if at_k.empty:
        return None
    at_k = at_k.sort_values("expected_best", ascending=not report.maximize)
    parts = [f"{row.optimizer} {_num(row.expected_best)}" for row in at_k.itertuples()]
    return Finding(
        f"With a budget of {k} random configurations, the expected best {report.metric} is "
        + _join(parts)
        + ".",
        "expected_max",
    )


def _find_importance(report: Report) -> Finding | None:
    frame = _table(report, "importance")
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


# --------------------------------------------------------------------------- stage 2


def report_figures(report: Report) -> dict[str, Figure]:
    """Draw every figure the sections ask for, by name. A figure that fails is dropped
    from its section, which then says why."""
    drawers: dict[str, Callable[[], Figure]] = {
        "divergence_map": lambda: fig.divergence_map(
            report.tables["divergence_probability"].frame,
            report.map_boundary,
        ),
        "sensitivity": lambda: fig.sensitivity_curves(
            report.tables["lr_profile"].frame, metric=report.metric
        ),
        "stability": lambda: fig.stability_intervals(
            report.tables["max_stable_lr"].frame, report.tables["lr_band"].frame
        ),
        "tunability": lambda: fig.tunability_curves(
            report.tables["expected_max"].frame, metric=report.metric
        ),
        "importance": lambda: fig.importance_bars(report.tables["importance"].frame),
        "training_curves": lambda: fig.training_curves(
            report.results.curves[
                report.results.curves["run_id"].isin(report.example_runs["run_id"])
            ],
            report.example_runs,
        ),
    }
    figures = {}
    for section in report.sections:
        for name in list(section.figures):
            try:
                figures[name] = drawers[name]()
            except Exception as exc:
                section.figures.remove(name)
                message = f"figure {name} could not be drawn: {type(exc).__name__}: {exc}"
                section.note = f"{section.note} {message}" if section.note else message
                report.failures.append(message)
    return figures


FIGURE_CAPTIONS = {
    "divergence_map": "Divergence probability (colour) over learning rate × β.",
    "sensitivity": "Final metric against learning rate at the best β: median and IQR.",
    "stability": "Maximum stable learning rate (95% CI) and the good learning-rate band.",
    "tunability": "Expected best result after k random configurations, ± one std.",
    "importance": "PED-ANOVA importance for the objective and for divergence.",
    "training_curves": "Training loss of example runs: converged beside diverged.",
}


# --------------------------------------------------------------------------- stage 3


def render_report(
    report: Report, out_dir: str | Path | None = None, figures: dict[str, Figure] | None = None
) -> Path:
    """Write figures, tables, ``index.html`` and ``report.md``; return ``index.html``'s path.

    ``figures`` default: ``report_figures(report)``. ``out_dir`` default:
    ``<results dir>/report``.
    """
    out = Path(out_dir) if out_dir is not None else report.results.path / REPORT_DIR
    figures = report_figures(report) if figures is None else figures
    fig_dir, table_dir = out / "figures", out / "tables"
    for directory, patterns in ((fig_dir, ("*.png", "*.svg")), (table_dir, ("*.csv", "*.tex"))):
        directory.mkdir(parents=True, exist_ok=True)
        for pattern in patterns:  # drop stale files of an earlier report
            for stale in directory.glob(pattern):
                stale.unlink()
    images = {}
    for name, figure in figures.items():
        png, _svg = fig.save_figure(figure, fig_dir, name)
        images[name] = base64.b64encode(png.read_bytes()).decode("ascii")
    for table in report.tables.values():
        table.frame.to_csv(table_dir / f"{table.name}.csv", index=False)
        _atomic_write(table_dir / f"{table.name}.tex", _latex(table))
    context = _context(report, images)
    env = _environment()
    _atomic_write(out / "index.html", env.get_template("report.html").render(context))
    _atomic_write(out / "report.md", env.get_template("report.md").render(context))
    return out / "index.html"


def write_report(results_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Analyse a results directory and write its report; return the path of ``index.html``.

    Raises ``ResultsError`` (exit code 2 on the CLI) for a missing, empty or malformed
    results directory.
    """
    return render_report(build_report(load_results(results_dir)), out_dir)


def _atomic_write(path: Path, text: str) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _latex(table: Table) -> str:
    caption = table.caption.replace("\\", "/")
    return table.frame.to_latex(
        index=False,
        float_format=lambda x: f"{x:.4g}",
        na_rep="--",
        escape=True,
        caption=_latex_escape(caption),
        label=f"tab:{table.name}",
    )


def _latex_escape(text: str) -> str:
    for char, escaped in (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("analysis", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["md_cell"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    return env


def _cell(value: Any) -> str:
    """How a table cell is shown on the page (the CSV keeps full precision)."""
    if value is None or value is pd.NA:
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _display(table: Table) -> dict[str, Any]:
    frame = table.frame
    shown = frame.head(HTML_TABLE_ROWS)
    return {
        "name": table.name,
        "title": table.title,
        "caption": table.caption,
        "columns": [str(c) for c in frame.columns],
        "numeric": [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns],
        "rows": [[_cell(v) for v in row] for row in shown.itertuples(index=False)],
        "n_rows": len(frame),
        "truncated": len(frame) > len(shown),
    }


def _context(report: Report, images: dict[str, str]) -> dict[str, Any]:
    results = report.results
    spec = dict(results.spec)
    provenance = spec.pop("provenance", None) or {}
    trials = results.trials
    counts = trials["outcome"].value_counts()
    sections = [
        {
            "key": s.key,
            "title": s.title,
            "intro": s.intro,
            "note": s.note,
            "figures": [
                {
                    "name": name,
                    "caption": FIGURE_CAPTIONS.get(name, ""),
                    "png": images.get(name),
                }
                for name in s.figures
                if name in images
            ],
            "tables": [_display(report.tables[t]) for t in s.tables if t in report.tables],
        }
        for s in report.sections
    ]
    return {
        "title": f"Robustness report: {spec.get('name') or results.path.name}",
        "description": str(spec.get("description") or "").strip(),
        "headline": report.headline,
        "metric": report.metric,
        "direction": _direction_word(report.maximize),
        "findings": report.findings,
        "sections": sections,
        "failures": report.failures,
        "spec_yaml": yaml.safe_dump(spec, sort_keys=False, allow_unicode=True) if spec else "",
        "provenance": _flatten(provenance),
        "environment": _environment_versions(),
        "seeds": ", ".join(str(s) for s in sorted(trials["seed"].dropna().unique())),
        "outcome_counts": [(o, int(counts.get(o, 0))) for o in OUTCOMES],
        "n_runs": len(trials),
        "n_configs": int(trials["trial_id"].nunique()),
        "results_dir": str(results.path),
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _flatten(mapping: Any, prefix: str = "") -> list[tuple[str, str]]:
    if not isinstance(mapping, dict):
        return [(prefix or "value", str(mapping))]
    rows = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten(value, name + ".")
        else:
            rows.append((name, str(value)))
    return rows


def _environment_versions() -> list[tuple[str, str]]:
    rows = [("python", platform.python_version())]
    for package in ("optim-robustness", "pandas", "numpy", "matplotlib", "seaborn", "optuna"):
        try:
            rows.append((package, metadata.version(package)))
        except metadata.PackageNotFoundError:
            rows.append((package, "not installed"))
    return rows
