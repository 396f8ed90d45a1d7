"""Compare two runs of one study run by run: which outcomes differ, and how near a boundary.

``python -m benchmarks.compare_outcomes REFERENCE OTHER`` (two results directories
of the same spec, or their ``trials.parquet``), e.g. a study with
``resources.population: "off"`` as REFERENCE and ``auto`` as OTHER.

Runs are matched by (optimizer, lr, beta, beta2, init, seed). Prints how many have
the same outcome and, for each run whose outcome differs, both records (outcome,
diverged step, final losses) and its *distance to the boundary*: along the lr
grid of its cell (the same optimizer, beta, beta2, init and seed), the number of
grid steps from the run to the nearest lr whose outcome in REFERENCE differs from
the run's REFERENCE outcome. 1 means the next lr of the grid already has another
outcome: the run sits at a stability boundary, where float rounding (summation
order of a batched matmul, float32) can tip a run either way. A differing run
farther than one step from every boundary is not rounding at an edge and needs a
look. The whole lr line of the cell is printed in both runs.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

#: what identifies a run across two executions of one spec
RUN_KEYS = ["optimizer", "lr", "beta", "beta2", "init", "seed"]
#: a run's cell: the runs that differ only in lr
CELL_KEYS = ["optimizer", "beta", "beta2", "init", "seed"]
FLOAT_KEYS = ("lr", "beta", "beta2")
SHOWN = ["outcome", "diverged_step", "final_train_loss", "final_val_loss"]


@dataclass
class Difference:
    """One run whose outcome differs: both records and its cell's lr line."""

    key: dict
    reference: pd.Series
    other: pd.Series
    steps_to_boundary: float  # grid steps to the nearest other REFERENCE outcome (inf: none)
    line: pd.DataFrame  # lr, outcome in REFERENCE, outcome in OTHER, over the cell's grid


def trials(path: str | Path) -> pd.DataFrame:
    """A study's ``trials.parquet`` (``path``: the results directory or the file)."""
    path = Path(path)
    return pd.read_parquet(path / "trials.parquet" if path.is_dir() else path)


def _with_float_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """Float keys as strings, compared as they print (a NaN beta2 equals itself)."""
    return frame.assign(
        **{f"_{k}": frame[k].astype("float64").map(lambda v: f"{v:.6g}") for k in FLOAT_KEYS}
    )


def _match_keys() -> list[str]:
    return [f"_{k}" if k in FLOAT_KEYS else k for k in RUN_KEYS]


def steps_to_boundary(outcomes: list[str], index: int) -> float:
    """Grid steps from ``outcomes[index]`` to the nearest entry with another outcome
    (``outcomes`` ordered along the lr grid); ``inf`` when the line has one outcome."""
    others = [abs(i - index) for i, o in enumerate(outcomes) if o != outcomes[index]]
    return min(others) if others else math.inf


def compare(reference: pd.DataFrame, other: pd.DataFrame) -> tuple[int, int, list[Difference]]:
    """(runs matched, runs with the same outcome, the differing runs) of two runs of a study.

    Raises:
        ValueError: the two hold different runs (not the same spec).
    """
    keys = _match_keys()
    reference, other = _with_float_keys(reference), _with_float_keys(other)
    merged = reference.merge(other, on=keys, how="outer", suffixes=("", "_other"), indicator=True)
    unmatched = merged[merged["_merge"] != "both"]
    if len(unmatched):
        raise ValueError(f"{len(unmatched)} runs are in only one of the two studies")
    same = merged["outcome"] == merged["outcome_other"]
    cells = {k: f"_{k}" if k in FLOAT_KEYS else k for k in CELL_KEYS}
    differences = []
    for _, row in merged[~same].iterrows():
        in_cell = (merged[list(cells.values())] == row[list(cells.values())]).all(axis=1)
        line = merged[in_cell].sort_values("lr")
        lrs = list(line["_lr"])
        index = lrs.index(row["_lr"])
        differences.append(
            Difference(
                key={k: row[k] for k in RUN_KEYS},
                reference=row[SHOWN],
                other=row[[f"{c}_other" for c in SHOWN]].set_axis(SHOWN),
                steps_to_boundary=steps_to_boundary(list(line["outcome"]), index),
                line=line[["lr", "outcome", "outcome_other"]].reset_index(drop=True),
            )
        )
    return len(merged), int(same.sum()), differences


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    total, same, differences = compare(trials(argv[0]), trials(argv[1]))
    print(f"outcomes identical: {same}/{total} ({same / total:.1%})")
    for d in differences:
        print(f"\n{d.key}")
        print(pd.DataFrame({"reference": d.reference, "other": d.other}).to_string())
        print(f"grid steps to the cell's nearest boundary (in reference): {d.steps_to_boundary}")
        print(d.line.rename(columns={"outcome": "reference", "outcome_other": "other"}).to_string())
    far = [d for d in differences if d.steps_to_boundary > 1]
    print(f"\ndiffering runs more than one grid step from a boundary: {len(far)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
