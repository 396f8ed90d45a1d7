"""The report's sections, computed: pure functions from the study's frames to tables.

Each section function takes the ``Study`` (``analysis.study``) and returns its
``Section`` (``analysis.document``): the tables it computed, the names of the
figures to draw from them and a note where something could not be shown. A
section reads only the study, never another section's result, so sections can be
computed, tested or replaced one by one (``SECTIONS`` lists them in page order).

``compute_sections`` runs them all: a section that cannot be computed for this
study (one optimizer, one init, nothing diverged, no curves) says why in its note;
an unexpected error inside one section is reported in that section and in the
failures, and the others are still computed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.boundary import boundary_table, is_boundary_study
from analysis.document import Section
from analysis.importance import param_importance
from analysis.metrics import (
    divergence_probability,
    expected_max_curve,
    lr_band_width,
    lr_profile,
    lr_sensitivity,
    max_stable_lr,
    paired_comparison,
    summary_by_optimizer,
    tunability,
    worst_case_over_init,
)
from analysis.study import CELL, MAP_CELL, Study
from robustness.runner.outcome import CAPPING_RULE

__all__ = ["AXIS_MEANING", "SECTIONS", "SectionSpec", "compute_sections", "metric_words"]

# What the spec's two coefficient axes mean for each registered optimizer.
AXIS_MEANING: dict[str, tuple[str, str]] = {
    "sgd": ("momentum μ", "does not apply"),
    "insgd": ("momentum μ", "input-power momentum β (P_t = β·P_{t−1} + (1−β)·p_t)"),
    "novograd": ("β1, first-moment coefficient", "β2, second-moment (gradient-norm) coefficient"),
    "adam": ("β1, betas[0]", "β2, betas[1]"),
    "adamw": ("β1, betas[0]", "β2, betas[1]"),
}


def metric_words(study: Study) -> str:
    """The metric as words in a title: 'final val loss (capped)'."""
    words = study.metric.replace("_", " ")
    return words if study.metric == "objective" else f"{words} (capped)"


# --------------------------------------------------------------------------- sections


def outcomes_section(study: Study, section: Section) -> None:
    summary = summary_by_optimizer(study.trials, direction=study.direction)
    section.add(
        "outcomes",
        "Outcomes and best configuration per optimizer",
        "Run counts by outcome; p_diverged = diverged / runs at risk (neither error "
        "nor pruned: a run the scheduler stopped early is censored, in neither count). "
        "The best configuration has the best seed-mean search objective. " + CAPPING_RULE,
        summary,
    )


def axes_section(study: Study, section: Section) -> None:
    trials = study.trials
    entries = study.spec.get("optimizers") or {}
    rows = []
    for label in sorted(trials["optimizer"].dropna().unique()):
        entry = (entries.get(label) if isinstance(entries, dict) else None) or {}
        base = entry.get("class") or entry.get("base") or _base_from_label(label)
        axes = entry.get("axes") or {}  # a class by import path: the mapping the spec gave
        beta, beta2 = AXIS_MEANING.get(
            base, tuple(f"sets {axes[a]}" if a in axes else "unknown" for a in ("beta", "beta2"))
        )
        own = trials[trials["optimizer"] == label]
        rows.append(
            {
                "optimizer": label,
                "base": base,
                "beta means": beta,
                "beta values": _values(own["beta"]),
                "beta2 means": beta2,
                "beta2 values": _values(own["beta2"]),
                "INSGD normalizes": _shares(own.get("insgd_normalized_fraction")),
            }
        )
    section.add(
        "axes",
        "What β and β2 mean for each optimizer",
        "The spec's beta is each optimizer's first-moment coefficient, beta2 its second "
        "coefficient; 'default' means the optimizer's own default was used. 'INSGD "
        "normalizes': the share of the model's parameters INSGD input-normalized (the "
        "rest took plain SGD with momentum).",
        pd.DataFrame(rows),
    )


def _base_from_label(label: str) -> str:
    return next((b for b in AXIS_MEANING if label == b or label.startswith(b + "_")), label)


def _shares(column: pd.Series | None) -> str:
    values = [] if column is None else sorted(column.dropna().unique())
    return ", ".join(f"{v:.1%} of parameters" for v in values) if values else "not INSGD"


def _values(column: pd.Series) -> str:
    values = sorted(column.dropna().unique())
    return ", ".join(f"{v:g}" for v in values) if values else "default"


def divergence_section(study: Study, section: Section) -> None:
    """Where training diverges: the probability map and the stability limit per cell.

    Kept as one function of its own: a boundary-search study replaces the grid
    estimate here with its own, and nothing else in the report depends on how.
    """
    if is_boundary_study(study.spec):
        boundary_section(study, section)
        return
    trials = study.cells
    section.add(
        "max_stable_lr",
        "Maximum stable learning rate",
        "Largest tested lr below the first lr where at least half the runs diverge; "
        "95% bootstrap CI over seeds (ci_low, ci_high); censored = nothing diverged, so "
        "the value is a lower bound; lr_boundary_logistic = lr where a logistic fit "
        "gives P(diverge) = 0.5.",
        max_stable_lr(trials, by=CELL),
    )
    section.add(
        "divergence_probability",
        "Divergence probability per learning rate, β and init",
        "Fraction of the seeds (non-error runs) of each cell that diverged; β2 pooled.",
        divergence_probability(trials, by=[*MAP_CELL, "lr"]),
    )
    section.data["map_boundary"] = max_stable_lr(trials, by=MAP_CELL)  # β2 pooled, like the map
    section.figures.append("divergence_map")
    if not trials["outcome"].eq("diverged").any():
        section.note = (
            "No run diverged anywhere in the swept range: every stability limit is "
            "censored (a lower bound), and the maps are uniformly zero."
        )


def boundary_section(study: Study, section: Section) -> None:
    """The divergence section of a boundary-search study: the bracket per cell."""
    trials = study.cells
    section.add(
        "max_stable_lr",
        "Maximum stable learning rate (boundary search)",
        "Per cell, the bracket the bisection ended with: max_stable_lr is the last "
        "stable probe and first_diverging_lr the first probe where at least half the "
        "runs diverge (ratio = their quotient, the resolution reached); censored = "
        "nothing diverged up to the top of the range; n_probes = configurations run; "
        "lr_boundary_logistic = lr where a logistic fit over the probes gives "
        "P(diverge) = 0.5, with a 95% interval (logistic_low, logistic_high) when "
        "there are 3 seeds or more and some probe's seeds disagree.",
        boundary_table(trials, by=CELL),
    )
    section.add(
        "divergence_probability",
        "Divergence probability of every probe",
        "Fraction of the seeds (non-error runs) of each probe that diverged; β2 pooled.",
        divergence_probability(trials, by=[*MAP_CELL, "lr"]),
    )
    section.data["map_boundary"] = boundary_table(trials, by=MAP_CELL)  # β2 pooled
    section.figures.append("divergence_map")


def sensitivity_section(study: Study, section: Section) -> None:
    trials = study.cells
    section.add(
        "lr_profile",
        f"{metric_words(study)} against learning rate",
        "Per optimizer, init and lr, the β (and β2) with the best seed median; median, "
        "inter-quartile range (low, high) over seeds and the fraction that diverged.",
        lr_profile(trials, metric=study.metric, direction=study.direction),
    )
    section.add(
        "lr_band",
        "Width of the good learning-rate band",
        "Per cell, the contiguous band of learning rates whose seed-median "
        f"{study.metric} is within the tolerance of the best (relative for a loss, "
        "absolute for an accuracy); width in decades of lr.",
        lr_band_width(trials, metric=study.metric, by=CELL),
    )
    section.figures += ["sensitivity", "stability"]
    if trials[["final_train_loss", "initial_loss"]].notna().any().all():
        section.add(
            "lr_sensitivity",
            "Learning-rate sensitivity (Wortsman et al. 2023)",
            "E over tested lr of min(final train loss, initial loss) minus its minimum: "
            "0 = every lr is as good as the best; larger = more sensitive.",
            lr_sensitivity(trials, metric="final_train_loss", by=CELL),
        )


def init_section(study: Study, section: Section) -> None:
    trials = study.cells
    if trials["init"].nunique() < 2:
        section.note = "The study used a single init scheme, so there is nothing to compare."
        return
    section.add(
        "init_worst_case",
        "Worst and best init scheme per configuration",
        f"Per optimizer, β, β2 and lr: seed-mean {study.metric} of the worst and best "
        "init scheme and their spread.",
        worst_case_over_init(trials, metric=study.metric, direction=study.direction),
    )


def paired_section(study: Study, section: Section) -> None:
    trials = study.cells
    labels = sorted(trials["optimizer"].dropna().unique())
    if len(labels) < 2:
        section.note = "The study has a single optimizer, so there is no pair to compare."
        return
    baseline = "sgd" if "sgd" in labels else labels[0]
    frames = [
        paired_comparison(
            trials, metric=study.metric, baseline=baseline, level=level, direction=study.direction
        )
        for level in ("tuned", "run")
    ]
    section.add(
        "paired",
        f"Paired comparison against {baseline}",
        f"mean_diff = optimizer minus {baseline} in {study.metric}, averaged over pairs "
        "with a 95% bootstrap CI. level 'tuned': each (optimizer, init) at its best "
        "configuration, paired by init and seed; level 'run': paired by init, β, lr and "
        "seed. p_better = bootstrap probability that the optimizer is better.",
        pd.concat(frames, ignore_index=True),
    )


def tuning_section(study: Study, section: Section) -> None:
    curve = expected_max_curve(study.trials, metric=study.metric, direction=study.direction)
    section.add(
        "tunability",
        "Tunability",
        "Mean of the expected-best curve over k (Sivaprasad et al. 2020, uniform weights).",
        tunability(curve) if not curve.empty else curve,
    )
    section.add(
        "expected_max",
        "Expected best result after k random configurations",
        f"Expected best seed-mean {study.metric} among k configurations drawn uniformly "
        "at random from the grid (Dodge et al. 2019), and its standard deviation.",
        curve,
    )
    section.figures.append("tunability")


def importance_section(study: Study, section: Section) -> None:
    frames = [
        param_importance(study.trials, target=target, direction=study.direction)
        for target in ("objective", "diverged")
    ]
    table = pd.concat(frames, ignore_index=True)
    section.add(
        "importance",
        "Hyperparameter importance",
        "PED-ANOVA importance (Watanabe et al. 2023; Optuna) of each swept axis, per "
        "optimizer, for the search objective and for divergence (0/1); normalized to 1.",
        table,
    )
    if table["importance"].notna().any():
        section.figures.append("importance")
    else:
        reasons = sorted(set(table["note"].dropna().astype(str)) - {""})
        section.note = "No importance could be estimated: " + (
            "; ".join(reasons) or "no swept axis varies within an optimizer"
        )


def examples_section(study: Study, section: Section) -> None:
    results = study.results
    if results.curves.empty:
        section.note = "The results hold no training curves (curves.parquet is empty)."
        return
    best = summary_by_optimizer(study.trials, direction=study.direction)
    runs = example_runs(results.trials, results.curves, best)
    if runs.empty:
        section.note = "No run with a recorded curve could be picked."
        return
    section.data["example_runs"] = runs
    section.data["example_curves"] = results.curves[
        results.curves["run_id"].isin(runs["run_id"]).to_numpy(dtype=bool)
    ]
    section.figures.append("training_curves")


def example_runs(trials: pd.DataFrame, curves: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer: a run of its best configuration, and the diverged run nearest to it.

    ``best`` is ``summary_by_optimizer``'s table (its ``best_trial_id``). The diverged
    run shares the best configuration's init and β where one does, at the smallest
    diverging learning rate (the edge of stability).
    """
    with_curve = trials[trials["run_id"].isin(set(curves["run_id"])).to_numpy(dtype=bool)]
    best_id = best.set_index("optimizer")["best_trial_id"]
    picked = []
    for label, own in with_curve.groupby("optimizer", sort=True):
        converged = own[own["trial_id"] == best_id.get(label)]
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


# --------------------------------------------------------------------------- the list


@dataclass(frozen=True)
class SectionSpec:
    """One section of the page: its key, title, intro and the function that fills it.

    ``per_cell``: its tables are per (lr, β) cell, so binning a continuously
    sampled axis changes them (the section then says so).
    """

    key: str
    title: str
    intro: str
    compute: Callable[[Study, Section], None]
    per_cell: bool = False


SECTIONS: list[SectionSpec] = [
    SectionSpec(
        "outcomes",
        "Outcomes",
        "How every run ended (converged, diverged, stalled, error) and the best configuration.",
        outcomes_section,
    ),
    SectionSpec(
        "axes",
        "What β and β2 mean",
        "The spec sweeps two coefficient axes whose meaning depends on the optimizer.",
        axes_section,
    ),
    SectionSpec(
        "divergence",
        "Where training diverges",
        "Divergence probability over learning rate × β, one panel per optimizer and init "
        "scheme; white markers: the maximum stable learning rate per β with its 95% "
        "bootstrap interval; dashed: the logistic estimate of the P = 0.5 boundary.",
        divergence_section,
        per_cell=True,
    ),
    SectionSpec(
        "sensitivity",
        "Learning-rate sensitivity",
        "The final metric against learning rate (median and inter-quartile range over "
        "seeds at the best β; ✕ where most runs diverged and count at their capped "
        "value), then the stability limit and the good learning-rate band per optimizer, "
        "init and β. " + CAPPING_RULE,
        sensitivity_section,
        per_cell=True,
    ),
    SectionSpec(
        "init",
        "Initialization",
        "How much the init scheme changes the result at a fixed optimizer, β and lr.",
        init_section,
        per_cell=True,
    ),
    SectionSpec(
        "paired",
        "Paired comparison",
        "Each optimizer against the baseline on matched runs.",
        paired_section,
        per_cell=True,
    ),
    SectionSpec(
        "tuning",
        "Tuning effort",
        "The expected best result after k random configurations (± one standard deviation).",
        tuning_section,
    ),
    SectionSpec(
        "importance",
        "Hyperparameter importance",
        "Which swept axes matter, for the objective and for divergence.",
        importance_section,
    ),
    SectionSpec(
        "examples",
        "Example training curves",
        "A run of each optimizer's best configuration beside a diverged run near it "
        "(✕ at the top: the loss became non-finite).",
        examples_section,
    ),
]

_ALWAYS = ("outcomes", "axes")  # shown even when every run ended in an error


def compute_sections(study: Study) -> tuple[list[Section], list[str]]:
    """Every section of ``SECTIONS``, in page order, and the failure messages."""
    all_errors = study.trials["outcome"].eq("error").all()
    sections, failures = [], []
    for spec in SECTIONS:
        section = Section(spec.key, spec.title, spec.intro)
        if all_errors and spec.key not in _ALWAYS:
            section.note = (
                "Every run ended in an error, so there is nothing to analyse here; the "
                "error messages are in the 'error' column of trials.parquet."
            )
            sections.append(section)
            continue
        try:
            spec.compute(study, section)
        except Exception as exc:  # one broken section must not cost the whole report
            section.note = f"This section could not be computed: {type(exc).__name__}: {exc}"
            failures.append(f"{spec.key}: {type(exc).__name__}: {exc}")
        if study.binned and spec.per_cell:
            section.add_note("Here " + "; ".join(study.binned) + ".")
        sections.append(section)
    return sections, failures
