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
    MIN_SEEDS_FOR_CI,
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
from analysis.shift import aligned_profiles, lr_shift, stability_margin
from analysis.study import Study
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
    by = ["optimizer", *study.axes]
    summary = summary_by_optimizer(study.trials, by=by, direction=study.direction)
    section.add(
        "outcomes",
        f"Outcomes and best configuration per {_per(by)}",
        "Run counts by outcome; p_diverged = n_diverged / n_assessed, where n_assessed "
        "counts the runs at risk (neither error nor pruned: a run the scheduler stopped "
        "early is censored, in neither count). The best configuration has the best "
        "seed-mean search objective. " + CAPPING_RULE,
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
            | {f"{axis} values": _values(own[axis]) for axis in study.axes}
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
    shown = [f"{v:g}" if isinstance(v, float | int) else str(v) for v in values]
    return ", ".join(shown) if values else "default"


def _ci_words(study: Study, what: str = "estimate") -> str:
    """How a table's interval was made, or why it has none."""
    n_seeds = study.trials["seed"].nunique()
    if n_seeds < MIN_SEEDS_FOR_CI:
        seeds = f"{n_seeds} seed{'' if n_seeds == 1 else 's'}"
        return (
            f"no interval for the {what}: the study has {seeds}, fewer than the "
            f"{MIN_SEEDS_FOR_CI} a bootstrap over seeds needs (ci_low and ci_high are empty)"
        )
    return (
        f"ci_low, ci_high: 95% interval for the {what}, a cluster bootstrap over seeds "
        "(seeds resampled with replacement, each bringing all its runs)"
    )


_SAMPLED = {
    "random": "a uniform random sample of the space, so the curve estimates a random search",
    "qmc": "a quasi-random sample of the space, so the curve estimates a random search",
}


def _draw_words(study: Study) -> str:
    """How the k configurations of the tunability curve are drawn, for this sampler."""
    if study.sampler == "grid":
        return "drawn uniformly at random, with replacement, from the grid's configurations"
    what = _SAMPLED.get(
        study.sampler,
        "chosen by the sampler from earlier results, so they concentrate where it "
        "expected good results and the curve is more optimistic than a random search",
    )
    return (
        f"drawn uniformly, with replacement, from the configurations the {study.sampler} "
        f"sampler tried ({what})"
    )


def _per(keys: list[str]) -> str:
    """'optimizer' or 'optimizer and weight_decay': what one row of a table is per."""
    words = [{"beta": "β", "beta2": "β2"}.get(k, k) for k in keys]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


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
        f"{_ci_words(study)}; censored = nothing diverged, so the value is a lower "
        "bound; lr_boundary_logistic = lr where a logistic fit gives P(diverge) = 0.5.",
        max_stable_lr(trials, by=study.cell),
    )
    section.add(
        "divergence_probability",
        "Divergence probability per learning rate, β and init",
        "Fraction of the runs at risk of each cell (neither error nor pruned) that "
        "diverged; β2 pooled.",
        divergence_probability(trials, by=[*study.map_cell, "lr"]),
    )
    # β2 pooled, like the map
    section.data["map_boundary"] = max_stable_lr(trials, by=study.map_cell)
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
        boundary_table(trials, by=study.cell),
    )
    section.add(
        "divergence_probability",
        "Divergence probability of every probe",
        "Fraction of the runs at risk (neither error nor pruned) of each probe that "
        "diverged; β2 pooled.",
        divergence_probability(trials, by=[*study.map_cell, "lr"]),
    )
    section.data["map_boundary"] = boundary_table(trials, by=study.map_cell)  # β2 pooled
    section.figures.append("divergence_map")


def sensitivity_section(study: Study, section: Section) -> None:
    trials = study.cells
    section.add(
        "lr_profile",
        f"{metric_words(study)} against learning rate",
        f"Per {_per(['optimizer', 'init', *study.axes, 'lr'])}, the β (and β2) with "
        "the best seed median; median, "
        "inter-quartile range (low, high) over seeds and the fraction that diverged.",
        lr_profile(
            trials,
            metric=study.metric,
            by=["optimizer", "init", *study.axes],
            direction=study.direction,
        ),
    )
    section.add(
        "lr_band",
        "Width of the good learning-rate band",
        "Per cell, the contiguous band of learning rates whose seed-median "
        f"{study.metric} is within the tolerance of the best (relative for a loss, "
        "absolute for an accuracy). Its edges are interpolated in log10(lr) between "
        "the last good and the first bad grid point; width in decades of lr. "
        "resolved = no: the band is narrower than one grid step (grid_step_decades), "
        "so the grid bounds its width but cannot measure it; censored = the band "
        "reaches the end of the tested range and may be wider.",
        lr_band_width(trials, metric=study.metric, by=study.cell, direction=study.direction),
    )
    section.figures += ["sensitivity", "stability"]
    if trials[["final_train_loss", "initial_loss"]].notna().any().all():
        section.add(
            "lr_sensitivity",
            "Learning-rate sensitivity (Wortsman et al. 2023)",
            "E over tested lr of min(final train loss, initial loss) minus its minimum: "
            "0 = every lr is as good as the best; larger = more sensitive.",
            lr_sensitivity(trials, metric="final_train_loss", by=study.cell),
        )


def init_section(study: Study, section: Section) -> None:
    trials = study.cells
    if trials["init"].nunique() < 2:
        section.note = "The study used a single init scheme, so there is nothing to compare."
        return
    by = ["optimizer", "beta", "beta2", *study.axes, "lr"]
    section.add(
        "init_worst_case",
        "Worst and best init scheme per configuration",
        f"Per {_per(by)}: seed-mean {study.metric} of the worst and best "
        "init scheme and their spread.",
        worst_case_over_init(trials, metric=study.metric, by=by, direction=study.direction),
    )


def paired_section(study: Study, section: Section) -> None:
    trials = study.cells
    labels = sorted(trials["optimizer"].dropna().unique())
    if len(labels) < 2:
        section.note = "The study has a single optimizer, so there is no pair to compare."
        return
    baseline = study.baseline
    frames = [
        paired_comparison(
            trials,
            metric=study.metric,
            baseline=baseline,
            level=level,
            direction=study.direction,
            axes=study.axes,
        )
        for level in ("tuned", "run")
    ]
    section.add(
        "paired",
        f"Paired comparison against {baseline}",
        f"mean_diff = optimizer minus {baseline} in {study.metric}, averaged over pairs. "
        "level 'tuned' (cross-fitted): the seeds are split into two halves (alternate "
        "seeds in sorted order); each optimizer's best configuration per "
        f"{_per(['init', *study.axes])} is chosen on one half and scored on the other, "
        "then the halves swap, so no seed scores a choice it was used to make; pairs "
        f"share {_per(['init', *study.axes, 'seed'])}. level 'run': pairs share "
        f"{_per(['init', 'β', *study.axes, 'lr', 'seed'])}. "
        f"{_ci_words(study, 'mean difference')}; p_better = the bootstrap probability "
        "that the optimizer is better.",
        pd.concat(frames, ignore_index=True),
    )


def optimum_section(study: Study, section: Section) -> None:
    """Robustness relative to each optimizer's own optimum, and its lr shift."""
    trials = study.cells
    band = lr_band_width(trials, metric=study.metric, by=study.cell, direction=study.direction)
    stable = max_stable_lr(trials, by=study.cell, n_boot=1)  # the point estimate only
    section.add(
        "lr_margin",
        "Stability margin and good band, relative to the best learning rate",
        "Per cell: best_lr = the lr with the best seed-median "
        f"{study.metric}; max_stable_lr as in the stability table (censored: a lower "
        "bound); margin_decades = log10(max_stable_lr / best_lr), how far the "
        "learning rate can grow beyond the optimum before training diverges; "
        "band_width_decades = the good band's width (band_resolved = no: narrower "
        "than one grid step).",
        stability_margin(band, stable, by=study.cell),
    )
    labels = sorted(trials["optimizer"].dropna().unique())
    if len(labels) < 2:
        section.note = (
            "The study has a single optimizer, so there is no learning-rate shift to estimate."
        )
        return
    shifts = lr_shift(trials, study.metric, study.baseline, axes=study.axes)
    section.add(
        "lr_shift",
        f"Effective learning-rate shift against {study.baseline}",
        f"shift_decades = the s that best aligns the optimizer's capped {study.metric} "
        f"profile over learning rate with {study.baseline}'s at the same "
        f"{_per(['init', 'β', *study.axes])}: the optimizer at 10^s × lr behaves like "
        f"{study.baseline} at lr. Profiles are seed means, linear in log10(lr) between "
        "grid points, compared only where the shifted grids overlap; the shift is "
        "fitted where both train (lrs where most runs diverged are left out). residual "
        "= the root mean square difference left after the shift over every compared lr, "
        "divergence included; residual_trained = the same where both train; "
        "residual_unshifted = residual without a shift; all in the metric's units. "
        "flat_decades > 0: a range of shifts fits equally well (its middle is given). "
        f"{_ci_words(study, 'shift')}.",
        shifts,
    )
    profiles = aligned_profiles(trials, study.metric, shifts, axes=study.axes)
    section.add(
        "lr_shift_profiles",
        "Learning-rate profiles, aligned",
        f"Seed-mean capped {study.metric} per cell and lr; lr_aligned = lr / "
        "10^shift_decades, where the optimizer behaves like the baseline "
        f"({study.baseline}, shift 0).",
        profiles,
    )
    if not profiles.empty:
        section.figures.append("lr_shift")


def tuning_section(study: Study, section: Section) -> None:
    by = ["optimizer", *study.axes]
    curve = expected_max_curve(study.trials, metric=study.metric, by=by, direction=study.direction)
    section.add(
        "tunability",
        "Tunability",
        f"Per {_per(by)}, the mean of the expected-best curve over k (Sivaprasad et al. "
        "2020, uniform weights).",
        tunability(curve, by=by) if not curve.empty else curve,
    )
    section.add(
        "expected_max",
        "Expected best result after k configurations",
        f"Expected best seed-mean {study.metric} among k configurations "
        f"{_draw_words(study)} (Dodge et al. 2019), and its standard deviation.",
        curve,
    )
    section.figures.append("tunability")
    section.captions["tunability"] = (
        f"Expected best {study.metric} after k configurations {_draw_words(study)}, ± one std."
    )


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
    runs = example_runs(results.trials, results.curves, best, study.axes)
    if runs.empty:
        section.note = "No run with a recorded curve could be picked."
        return
    section.data["example_runs"] = runs
    section.data["example_curves"] = results.curves[
        results.curves["run_id"].isin(runs["run_id"]).to_numpy(dtype=bool)
    ]
    section.figures.append("training_curves")


def example_runs(
    trials: pd.DataFrame, curves: pd.DataFrame, best: pd.DataFrame, axes: list[str] = ()
) -> pd.DataFrame:
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
    columns = ["run_id", "optimizer", "outcome", "lr", "beta", "init", "seed", *axes]
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
        "scheme; white markers: the maximum stable learning rate per β (with its 95% "
        "bootstrap interval where the study has at least 5 seeds); dashed: the "
        "logistic estimate of the P = 0.5 boundary.",
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
        "optimum",
        "Relative to each optimizer's optimum",
        "How far each optimizer's stability limit lies beyond its own best learning "
        "rate, how wide its good band is, and whether it is the baseline at a rescaled "
        "learning rate: the shift that best aligns its learning-rate profile with the "
        "baseline's, and what differs after that shift.",
        optimum_section,
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
        "The expected best result after k configurations drawn from those the study "
        "ran (± one standard deviation).",
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
