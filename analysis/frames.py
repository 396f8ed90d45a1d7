"""Column checks and run selection shared by every analysis module.

Two rules the metrics, the importance analysis and the report sections all apply,
kept here so each lives in one place:

- ``require_columns``: a function that needs columns says which ones are missing
  (a ``UserInputError``, exit code 2 on the CLI) instead of failing with a KeyError
  deep inside pandas;
- ``usable_runs``: runs that ended in ``error`` never count in a metric (they are
  counted where counts are reported); every other outcome is kept;
- ``runs_at_risk`` / ``diverged_flag``: a divergence probability counts neither
  ``error`` nor ``pruned`` runs (a run a scheduler stopped early is censored:
  whether it would have diverged is unknown).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from robustness.errors import UserInputError
from robustness.results.schema import NOT_AT_RISK

__all__ = ["diverged_flag", "require_columns", "runs_at_risk", "usable_runs"]


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise ``UserInputError`` naming ``what`` and the columns of ``columns`` that
    ``frame`` lacks (and the ones it has); return quietly when none is missing."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserInputError(
            f"{what} needs column(s) {', '.join(missing)} in the trials frame; "
            f"it has: {', '.join(map(str, frame.columns))}"
        )


def usable_runs(trials: pd.DataFrame) -> pd.DataFrame:
    """The runs that count in metrics: every outcome except ``error``."""
    return trials[trials["outcome"].ne("error").to_numpy(dtype=bool)]


def runs_at_risk(trials: pd.DataFrame) -> pd.DataFrame:
    """The runs a divergence probability counts: not ``error``, not ``pruned``
    (stopped before the end, so whether it would have diverged is unknown)."""
    return trials[~trials["outcome"].isin(NOT_AT_RISK).to_numpy(dtype=bool)]


def diverged_flag(trials: pd.DataFrame) -> np.ndarray:
    """Per run: 1.0 diverged, 0.0 any other outcome, NaN for a censored (``pruned``)
    run, so that a mean skipping NaN is the divergence probability of the runs at
    risk (error runs are dropped by the callers, as everywhere)."""
    outcome = trials["outcome"]
    flag = outcome.eq("diverged").to_numpy(dtype=float)
    flag[outcome.eq("pruned").to_numpy(dtype=bool)] = np.nan
    return flag
