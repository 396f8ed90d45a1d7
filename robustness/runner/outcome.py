"""How a finished run is classified, and the capped objective the searcher sees.

DESIGN.md "Outcomes": every run ends as exactly one of ``converged``,
``diverged``, ``stalled`` or ``error``. For the searcher, a run that did not
converge must never report NaN or a reward for blowing up: its loss objective is
capped at its initial loss (Wortsman et al. 2023).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

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
    ``(1 - stall_margin) * initial_loss``, else ``stalled`` (errors are classified
    where they are caught)."""
    if diverged:
        return "diverged"
    if math.isfinite(best_train_loss) and best_train_loss < (1.0 - stall_margin) * initial_loss:
        return "converged"
    return "stalled"


def capped_objective(record: Mapping[str, Any], objective: str, fallback_initial: float) -> float:
    """This run's search objective, never NaN.

    Loss objectives: the record's value, but a diverged, stalled or errored run, or
    a non-finite value, gets ``min(value, initial_loss)`` (``initial_loss`` when the
    value is non-finite). If the run has no finite initial loss (it failed before
    measuring it), ``fallback_initial`` stands in for it (the caller passes the
    worst initial loss of the trial's other seeds, or ``inf``).
    Accuracy objectives: the value, or 0.0 when non-finite.
    """
    value = _as_float(record.get(objective))
    if is_maximized(objective):
        return value if math.isfinite(value) else 0.0
    initial = _as_float(record.get("initial_loss"))
    if not math.isfinite(initial):
        initial = fallback_initial
    if not math.isfinite(value):
        return initial
    if record.get("outcome") != "converged":
        return min(value, initial)
    return value


def _as_float(value: Any) -> float:
    return math.nan if value is None else float(value)
