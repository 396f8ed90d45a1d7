"""Run a small grid study in this process, without Ray, into a results directory.

For analysis tests that need *real* training runs with a known answer (a linear
regression whose stability limit is known from theory) but not the engine:
every grid configuration of every optimizer label is trained with ``run_trial``
and its records written as the engine would (``optimizer`` is the label, extra
axes are columns), with the resolved ``spec.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from robustness.results.schema import SPEC_FILE, TRIAL_COLUMNS, TRIALS_FILE
from robustness.runner.trial import run_trial
from robustness.spec import make_plan, parse_spec


def run_grid_locally(spec: dict[str, Any], out: Path) -> tuple[Path, dict[str, Any]]:
    """Train every configuration of ``spec`` (a grid study); return the results
    directory and the dataset's metadata."""
    plan = make_plan(parse_spec(spec))
    records, metadata = [], {}
    for label in plan.labels:
        for number, params in enumerate(plan.grid_points(label)):
            trial_id = f"{label}-{number:04d}"
            result = run_trial(plan.trial_config(label, params), trial_id=trial_id)
            metadata = result.dataset_metadata
            for record in result.records:
                records.append(record | {"optimizer": label, "study": spec["name"]})
                records[-1]["trial_id"] = trial_id
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(records)
    frame = frame.astype({c: t for c, t in TRIAL_COLUMNS.items() if c in frame.columns})
    frame.to_parquet(out / TRIALS_FILE, index=False)
    (out / SPEC_FILE).write_text(yaml.safe_dump(plan.spec.resolved(), sort_keys=False))
    return out, metadata
