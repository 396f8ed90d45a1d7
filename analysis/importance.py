"""Hyperparameter importance from Optuna's evaluators, for the objective and for divergence.

Contract: ``param_importance`` takes the ``trials`` frame of ``trials.parquet``
(columns of ``robustness/results/schema.py``: it needs ``trial_id``, ``outcome``,
``objective`` and the swept axes) and returns a tidy frame with one row per
(group, parameter).

How: per group (default: per optimizer label) it builds an in-memory Optuna study
with one completed trial per configuration (``trial_id``). A trial's value is the
mean over the configuration's non-error runs of the target: ``objective`` (the
runner's capped objective) or ``diverged`` (1 for a diverged run, 0 otherwise, so
the value is the divergence probability). Its params are the swept axes that vary
within the group: ``lr`` as a log-scaled float, other numeric axes as floats,
text axes (``init``) as categoricals. Optuna's ``get_param_importances`` with the
chosen evaluator then gives normalized importances (summing to 1 per group):

- ``ped_anova``: PED-ANOVA (Watanabe et al. 2023), how much each parameter matters
  to reach the top 10% of configurations (direction: ``direction`` for the
  objective, lower is better for divergence);
- ``fanova``: fANOVA over a random forest (Hutter et al. 2014), the share of the
  target's variance each parameter explains; seeded by ``seed``.

Degenerate groups do not raise: fewer than two configurations or no varying axis
give one row with ``param`` and ``importance`` missing; a constant target gives
NaN importances. The ``note`` column says why, and carries Optuna's warnings.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import optuna
import pandas as pd

from analysis.frames import diverged_flag, require_columns, usable_runs
from robustness.errors import unknown_choice
from robustness.results.schema import TRIAL_COLUMNS

__all__ = ["CORE_AXES", "EVALUATORS", "TARGETS", "param_importance"]

CORE_AXES = ("lr", "beta", "beta2", "init")
EVALUATORS = ("ped_anova", "fanova")
TARGETS = ("objective", "diverged")
LOG_AXES = frozenset({"lr", "weight_decay"})
_COLUMNS = ("param", "importance", "target", "evaluator", "n_configs", "note")


def param_importance(
    trials: pd.DataFrame,
    target: Literal["objective", "diverged"] = "objective",
    by: str = "optimizer",
    evaluator: Literal["ped_anova", "fanova"] = "ped_anova",
    seed: int = 0,
    params: Sequence[str] | None = None,
    direction: Literal["minimize", "maximize"] = "minimize",
) -> pd.DataFrame:
    """Importance of each swept parameter for ``target``, per value of ``by``.

    ``params``: the candidate axes; default ``lr, beta, beta2, init`` plus every
    extra (non-schema) column of ``trials``. Only those that vary within a group
    (and are known for every configuration of it) are assessed there.
    ``direction`` is the objective's search direction (ignored for ``diverged``).

    Returns ``by``, ``param``, ``importance``, ``target``, ``evaluator``,
    ``n_configs``, ``note``; rows sorted by group, then importance descending.
    """
    if target not in TARGETS:
        raise unknown_choice("importance target", target, TARGETS)
    if evaluator not in EVALUATORS:
        raise unknown_choice("importance evaluator", evaluator, EVALUATORS)
    if direction not in ("minimize", "maximize"):
        raise unknown_choice("direction", direction, ("minimize", "maximize"))
    if params is None:
        params = [*CORE_AXES, *(c for c in trials.columns if c not in TRIAL_COLUMNS)]
    require_columns(trials, [by, "trial_id", "outcome", "objective", *params], "param_importance")
    configs = _configurations(trials, by, list(params), target)
    frames = []
    for key, group in configs.groupby(by, dropna=False, sort=True):
        study_direction = direction if target == "objective" else "minimize"
        rows = _group_importance(group, list(params), evaluator, study_direction, seed)
        rows.insert(0, by, key)
        frames.append(rows.assign(target=target, evaluator=evaluator, n_configs=len(group)))
    if not frames:
        return pd.DataFrame(columns=[by, *_COLUMNS])
    return pd.concat(frames, ignore_index=True)[[by, *_COLUMNS]]


def _configurations(trials: pd.DataFrame, by: str, params: list[str], target: str) -> pd.DataFrame:
    """One row per (group, trial_id): the params of its first run and the target mean."""
    usable = usable_runs(trials)
    if target == "objective":
        value = usable["objective"].to_numpy(dtype=float, na_value=np.nan)
    else:
        value = diverged_flag(usable)  # a pruned run is censored: NaN, skipped
    frame = usable[[by, "trial_id", *params]].assign(value=value)
    grouped = frame.groupby([by, "trial_id"], dropna=False, sort=True)
    out = grouped[params].first()
    out["value"] = grouped["value"].mean()
    return out.reset_index().dropna(subset=["value"])


def _group_importance(
    configs: pd.DataFrame,
    params: list[str],
    evaluator: str,
    direction: str,
    seed: int,
) -> pd.DataFrame:
    distributions = {}
    skipped = []
    for name in params:
        column = configs[name]
        if column.nunique(dropna=True) < 2:
            continue
        if column.isna().any():
            skipped.append(name)
            continue
        distributions[name] = _distribution(name, column)
    notes = [f"skipped {', '.join(skipped)} (missing for some configurations)"] if skipped else []
    if len(configs) < 2 or not distributions:
        why = "fewer than two configurations" if len(configs) < 2 else "no swept axis varies"
        return _rows([(None, np.nan)], "; ".join([why, *notes]))
    values = configs["value"].to_numpy(dtype=float)
    if np.ptp(values) == 0:
        return _rows([(p, np.nan) for p in distributions], "; ".join(["constant target", *notes]))

    study = _study(configs, distributions, direction)
    chosen = (
        optuna.importance.FanovaImportanceEvaluator(seed=seed)
        if evaluator == "fanova"
        else optuna.importance.PedAnovaImportanceEvaluator()
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importances = optuna.importance.get_param_importances(study, evaluator=chosen)
    notes += sorted({str(w.message) for w in caught})
    if len(distributions) == 1:
        notes.insert(0, "only one axis varies")
    ranked = sorted(importances.items(), key=lambda item: -item[1])
    return _rows(ranked, "; ".join(notes))


def _distribution(name: str, column: pd.Series) -> optuna.distributions.BaseDistribution:
    if pd.api.types.is_numeric_dtype(column.dtype):
        low, high = float(column.min()), float(column.max())
        log = name in LOG_AXES and low > 0
        return optuna.distributions.FloatDistribution(low, high, log=log)
    choices = tuple(sorted(str(v) for v in column.unique()))
    return optuna.distributions.CategoricalDistribution(choices)


def _study(
    configs: pd.DataFrame,
    distributions: dict[str, optuna.distributions.BaseDistribution],
    direction: str,
) -> optuna.Study:
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line per group
    try:
        study = optuna.create_study(direction=direction)
    finally:
        optuna.logging.set_verbosity(verbosity)
    categorical = optuna.distributions.CategoricalDistribution
    columns = {
        name: [str(v) for v in configs[name]]
        if isinstance(d, categorical)
        else configs[name].to_numpy(dtype=float).tolist()
        for name, d in distributions.items()
    }
    trials = [
        optuna.trial.create_trial(
            params={name: columns[name][i] for name in distributions},
            distributions=distributions,
            value=float(value),
        )
        for i, value in enumerate(configs["value"].to_numpy(dtype=float))
    ]
    study.add_trials(trials)
    return study


def _rows(pairs: Sequence[tuple[str | None, float]], note: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "param": pd.Series([p for p, _ in pairs], dtype="object"),
            "importance": pd.Series([v for _, v in pairs], dtype="float64"),
            "note": note,
        }
    )
