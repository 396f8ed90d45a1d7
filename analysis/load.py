"""Load a results directory into DataFrames, refusing anything malformed.

Contract (docs/design.md, "The results directory"; column names in
``robustness/results/schema.py``):

- ``trials.parquet`` is required, unless ``parts/`` holds parts (a study whose
  driver was killed before it wrote its tables): then the tables are built from
  every part (``robustness.results.store.read_parts``). One row per run, every
  column of ``TRIAL_COLUMNS``
  (extra columns, e.g. a swept ``weight_decay`` or the config's tags, are kept),
  at least one row, and ``outcome`` values from ``OUTCOMES`` only. The step-0
  columns ``initial_train_acc``, ``initial_val_loss`` and ``initial_val_acc`` and
  ``insgd_normalized_fraction`` are missing (NaN) in a directory written before
  runs recorded them.
- ``curves.parquet`` is optional: an empty frame with ``CURVE_COLUMNS`` when absent;
  when present it must be readable and have every ``CURVE_COLUMNS`` column.
- ``spec.yaml`` is optional (``{}`` when absent), read with ``yaml.safe_load``, and
  must be a mapping when present.

Completeness: ``spec.yaml``'s provenance records ``planned_runs`` (configurations x
seeds of the study's plan); ``Results.incomplete`` says ``incomplete: N of M runs``
when fewer runs than planned are recorded (a killed or interrupted study).

Columns are cast to the schema's dtypes, so downstream code sees float ``lr``,
``beta`` and ``beta2`` (NaN where an axis does not apply) whatever the writer used.
Any problem raises ``ResultsError`` naming the path and what is wrong; it is a
``UserInputError``, so the CLI reports it with exit code 2 and no traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from robustness.errors import UserInputError
from robustness.results.schema import (
    CURVE_COLUMNS,
    CURVES_FILE,
    OUTCOMES,
    PLANNED_RUNS,
    PROVENANCE_KEY,
    SPEC_FILE,
    TRIAL_COLUMNS,
    TRIALS_FILE,
)
from robustness.results.store import PARTS_DIR, read_parts

__all__ = ["Results", "ResultsError", "load_results"]


# columns that results directories written before them lack: read as NaN
_ADDED_LATER = (
    "initial_train_acc",
    "initial_val_loss",
    "initial_val_acc",
    "insgd_normalized_fraction",
)


class ResultsError(UserInputError):
    """A results directory that is missing, empty or malformed."""


@dataclass(frozen=True)
class Results:
    """One results directory, loaded.

    ``trials``: one row per run (``TRIAL_COLUMNS`` plus extra axis columns).
    ``curves``: one row per evaluation (``CURVE_COLUMNS``), possibly empty.
    ``spec``: the resolved spec with its provenance, as a plain dict.
    ``path``: the results directory.
    ``from_parts``: the tables were built from ``parts/`` (no ``trials.parquet``).
    """

    trials: pd.DataFrame
    curves: pd.DataFrame
    spec: dict[str, Any]
    path: Path
    from_parts: bool = False

    @property
    def planned_runs(self) -> int | None:
        """Runs the study's plan has (``spec.yaml`` provenance), None if unrecorded."""
        value = (self.spec.get(PROVENANCE_KEY) or {}).get(PLANNED_RUNS)
        return int(value) if isinstance(value, (int, float)) and value >= 0 else None

    @property
    def incomplete(self) -> str | None:
        """``"incomplete: N of M runs"`` when fewer runs than planned are recorded."""
        planned = self.planned_runs
        if planned is None or len(self.trials) >= planned:
            return None
        return f"incomplete: {len(self.trials)} of {planned} runs"


def load_results(results_dir: str | Path) -> Results:
    """Read ``trials.parquet``, ``curves.parquet`` and ``spec.yaml`` from a results dir.

    Raises:
        ResultsError: the directory is missing or not a directory, has no
            ``trials.parquet``, a file cannot be read, a required column is missing,
            there are no runs, or an ``outcome`` value is not one of ``OUTCOMES``.
    """
    path = Path(results_dir).expanduser()
    if not path.exists():
        raise ResultsError(f"results directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise ResultsError(f"results path {str(path)!r} is not a directory")
    trials_path = path / TRIALS_FILE
    if not trials_path.is_file():
        return _from_parts(path)
    trials = _read_table(trials_path, TRIAL_COLUMNS)
    if trials.empty:
        raise ResultsError(f"{str(trials_path)!r} holds no runs (0 rows)")
    _check_outcomes(trials, trials_path)

    curves_path = path / CURVES_FILE
    if curves_path.exists():
        curves = _read_table(curves_path, CURVE_COLUMNS)
    else:
        curves = _empty_frame(CURVE_COLUMNS)
    return Results(trials=trials, curves=curves, spec=_read_spec(path / SPEC_FILE), path=path)


def _from_parts(path: Path) -> Results:
    """A results directory without tables: its parts, or a clear error."""
    parts = path / PARTS_DIR
    try:
        trials, curves = read_parts(path)
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise ResultsError(
            f"cannot read the parts in {str(parts)!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if trials.empty:
        raise ResultsError(
            f"{str(path)!r} is not a results directory: it has no {TRIALS_FILE} and no "
            f"finished run in {PARTS_DIR}/ (run a study first, e.g. `robustness run --out DIR`)"
        )
    _check_outcomes(trials, parts)
    spec = _read_spec(path / SPEC_FILE)
    return Results(trials=trials, curves=curves, spec=spec, path=path, from_parts=True)


def _read_table(file: Path, columns: dict[str, str]) -> pd.DataFrame:
    """Read a parquet file, check it has ``columns`` and cast them to their dtypes."""
    try:
        frame = pd.read_parquet(file)
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise ResultsError(
            f"cannot read {str(file)!r} as parquet: {type(exc).__name__}: {exc}"
        ) from exc
    for column in _ADDED_LATER:
        if column in columns and column not in frame.columns:
            frame[column] = float("nan")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ResultsError(
            f"{str(file)!r} lacks required column(s) {', '.join(missing)}; "
            f"expected every column of {', '.join(columns)}"
        )
    try:
        return frame.astype(columns)
    except (TypeError, ValueError) as exc:
        raise ResultsError(f"{str(file)!r} has a column of the wrong type: {exc}") from exc


def _check_outcomes(trials: pd.DataFrame, file: Path) -> None:
    bad = sorted(set(trials["outcome"].dropna().unique()) - set(OUTCOMES))
    if trials["outcome"].isna().any():
        bad.append("<missing>")
    if bad:
        raise ResultsError(
            f"{str(file)!r} has unknown outcome value(s) {', '.join(map(str, bad))}; "
            f"allowed: {', '.join(OUTCOMES)}"
        )


def _read_spec(file: Path) -> dict[str, Any]:
    if not file.exists():
        return {}
    try:
        spec = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ResultsError(f"cannot read {str(file)!r} as YAML: {exc}") from exc
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise ResultsError(
            f"{str(file)!r} must hold a mapping (the resolved spec), got {type(spec).__name__}"
        )
    return spec


def _empty_frame(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in columns.items()})
