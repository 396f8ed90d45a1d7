"""How a finished run is classified, and the one rule that caps its metrics.

Every run ends as exactly one of ``OUTCOMES``: ``converged``, ``diverged``,
``stalled``, ``pruned`` (stopped early by the study's scheduler) or ``error``.

The capping rule (``capped_value``) says what a run's value of a metric *counts
as*, wherever runs are compared: the runner's ``objective``, what Optuna is told,
and every table, figure and sentence of the analysis. It is defined here only, so
that they all rank a run the same way. With ``v`` the run's value of a metric and
``v0`` the same metric of the same run's initialized model, measured at step 0
(``initial_column`` names that column):

- a run that failed (``diverged`` or ``error``) counts exactly as its untrained
  model: ``v0``, for final and best metrics alike. A diverged run's last numbers
  describe a broken model (a NaN network's accuracy is the frequency of class 0),
  and its pre-divergence best is not what the configuration delivers;
- any other run never counts as worse than its untrained model: ``min(v, v0)``
  for a loss, ``max(v, v0)`` for an accuracy (Wortsman et al. 2023 clip the loss
  at the initial loss), and a non-finite ``v`` counts as ``v0``;
- a ``pruned`` run whose value was never measured (a seed the scheduler stopped
  before it started, or a whole-training-set metric that is only measured at the
  end) stays missing: it was not trained to the end, so it is censored rather
  than scored as untrained;
- a missing ``v0`` (the run failed before its initial model was measured) leaves
  the value as it is when that is finite, else missing. Missing values are
  skipped by the means that use them; a configuration with no value at all is a
  failed Optuna trial, so Optuna is never told NaN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from robustness.errors import UserInputError

#: Record columns a search may optimize; ``*_acc`` columns are maximized.
OBJECTIVE_COLUMNS = (
    "final_val_loss",
    "best_val_loss",
    "final_train_loss",
    "best_train_loss",
    "final_val_acc",
    "best_val_acc",
    "final_train_acc",
    "best_train_acc",
)

#: The rule in one sentence, for captions and docs that state it.
CAPPING_RULE = (
    "Capped values: a diverged (or errored) run counts as its untrained model, i.e. "
    "the same metric measured at step 0, for final and best metrics alike; any other "
    "run never counts as worse than its untrained model (loss min(L, L0), accuracy "
    "max(a, a0))."
)

#: The step-0 column that caps each split's metric (``initial_column``).
INITIAL_COLUMNS = {
    ("train", "loss"): "initial_loss",
    ("train", "acc"): "initial_train_acc",
    ("val", "loss"): "initial_val_loss",
    ("val", "acc"): "initial_val_acc",
}
_METRIC = re.compile(r"(?:final|best)_(train|val)_(loss|acc)")


class TrialStopped(Exception):
    """Raised by a ``run_trial`` callback to stop the trial early (a scheduler
    pruning it). ``run_trial`` then returns normally: the seed being trained is
    recorded as ``pruned`` with its curve and metrics up to the evaluation that was
    reported last (``steps_done`` is that step; the whole-training-set metrics,
    measured only at the end, are missing), and every seed not yet started as
    ``pruned`` with ``steps_done == 0`` and nothing measured, so that every planned
    run has a record. A stop at a seed's last report (the one with its outcome)
    keeps that seed's record as it is."""


def is_maximized(objective: str) -> bool:
    """Accuracy objectives (names ending in ``_acc``) are maximized, losses minimized."""
    return objective.endswith("_acc")


def check_objective(objective: str, task: str) -> None:
    """Refuse an objective that is not a record column, or an accuracy on regression.

    Raises:
        UserInputError: naming the objective and the allowed ones.
    """
    allowed = [c for c in OBJECTIVE_COLUMNS if task == "classification" or not is_maximized(c)]
    if objective not in allowed:
        raise UserInputError(
            f"objective {objective!r} is not allowed for a {task} task; allowed: "
            + ", ".join(allowed)
        )


def classify_outcome(
    *, diverged: bool, best_train_loss: float, initial_loss: float, stall_margin: float
) -> str:
    """``diverged``, else ``converged`` if the best training loss got below
    ``(1 - stall_margin) * initial_loss``, else ``stalled`` (errors and pruned runs
    are classified where they are caught)."""
    if diverged:
        return "diverged"
    if math.isfinite(best_train_loss) and best_train_loss < (1.0 - stall_margin) * initial_loss:
        return "converged"
    return "stalled"


def initial_column(metric: str) -> str:
    """The record column holding ``metric`` measured on the initialized model (step 0).

    ``final_val_loss`` and ``best_val_loss`` -> ``initial_val_loss``;
    ``*_train_loss`` -> ``initial_loss``; ``*_val_acc`` -> ``initial_val_acc``;
    ``*_train_acc`` -> ``initial_train_acc``.

    Raises:
        UserInputError: ``metric`` is not one of ``OBJECTIVE_COLUMNS``.
    """
    match = _METRIC.fullmatch(metric)
    if match is None:
        raise UserInputError(
            f"no capping rule for metric {metric!r}; allowed: " + ", ".join(OBJECTIVE_COLUMNS)
        )
    return INITIAL_COLUMNS[match.group(1), match.group(2)]


def capped_value(value: Any, initial: Any, outcome: Any, *, maximize: bool) -> Any:
    """What a run's ``value`` of a metric counts as (the rule of the module docstring).

    Vectorised: ``value``, ``initial`` (the same metric at step 0) and ``outcome``
    broadcast like numpy arrays (scalars, arrays, pandas Series; a missing value may
    be None, NaN or pandas' NA). ``maximize``: the metric is an accuracy (higher is
    better) rather than a loss. Returns a float for scalar inputs, else a float
    ndarray of the broadcast shape.
    """
    v = _floats(value)
    v0 = _floats(initial)
    out = _outcomes(outcome)
    failed = (out == "diverged") | (out == "error")
    pruned = out == "pruned"
    finite = np.isfinite(v)
    better = np.fmax(v, v0) if maximize else np.fmin(v, v0)  # fmin/fmax: a NaN side loses
    kept = np.where(finite, better, v0)
    capped = np.where(failed, v0, np.where(pruned & np.isnan(v), np.nan, kept))
    return float(capped) if capped.ndim == 0 else capped


def mean_objective(records: Iterable[Mapping[str, Any]]) -> float:
    """A configuration's objective: the mean of its records' capped ``objective``
    over the seeds that have one (None, NaN and pandas' NA are skipped; ``inf``
    counts); NaN when none has one, which the engine tells Optuna as a failed trial."""
    values = [_float_or_nan(r.get("objective")) for r in records]
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def _floats(values: Any) -> np.ndarray:
    """``values`` as a float array; None and pandas' NA become NaN."""
    if hasattr(values, "to_numpy"):
        return values.to_numpy(dtype=float, na_value=np.nan)
    try:
        return np.asarray(values, dtype=float)  # None -> NaN
    except TypeError:  # pandas' NA inside a list or object array
        array = np.asarray(values, dtype=object)
        flat = [_float_or_nan(x) for x in array.ravel()]
        return np.asarray(flat, dtype=float).reshape(array.shape)


def _float_or_nan(x: Any) -> float:
    try:
        return math.nan if x is None else float(x)
    except TypeError:
        return math.nan


def _outcomes(outcome: Any) -> np.ndarray:
    """``outcome`` as an object array, a missing one as None."""
    if hasattr(outcome, "to_numpy"):
        return outcome.to_numpy(dtype=object, na_value=None)
    return np.asarray(outcome, dtype=object)
