"""Column checks and run selection shared by every analysis module.

Two rules the metrics, the importance analysis and the report sections all apply,
kept here so each lives in one place:

- ``require_columns``: a function that needs columns says which ones are missing
  (a ``UserInputError``, exit code 2 on the CLI) instead of failing with a KeyError
  deep inside pandas;
- ``usable_runs``: runs that ended in ``error`` never count in a metric (they are
  counted where counts are reported); every other outcome is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from robustness.errors import UserInputError

__all__ = ["require_columns", "usable_runs"]


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
