"""benchmarks/compare_outcomes: runs matched across two studies, distance to a boundary."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from benchmarks.compare_outcomes import compare, steps_to_boundary

LRS = [1e-3, 10**-2.5, 1e-2, 10**-1.5, 0.1]


def study(outcomes_by_seed: dict[int, list[str]]) -> pd.DataFrame:
    rows = [
        {
            "optimizer": "sgd",
            "lr": lr,
            "beta": 0.9,
            "beta2": float("nan"),
            "init": "default",
            "seed": seed,
            "outcome": outcome,
            "diverged_step": 7 if outcome == "diverged" else None,
            "final_train_loss": 1.0,
            "final_val_loss": 1.5,
        }
        for seed, outcomes in outcomes_by_seed.items()
        for lr, outcome in zip(LRS, outcomes, strict=True)
    ]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # order must not matter


def test_steps_to_boundary_counts_grid_steps_to_the_nearest_other_outcome():
    line = ["stalled", "converged", "converged", "converged", "diverged"]
    assert [steps_to_boundary(line, i) for i in range(5)] == [1, 1, 2, 1, 1]
    assert steps_to_boundary(["converged"] * 3, 1) == math.inf


def test_compare_finds_the_differing_run_and_its_distance_in_the_reference_line():
    c, d = "converged", "diverged"
    reference = study({0: [c, c, c, d, d], 1: [c, c, c, c, c]})
    # seed 0: lr 1e-2 tips at the edge; seed 1: lr 10**-2.5 diverges far from any edge
    other = study({0: [c, c, d, d, d], 1: [c, d, c, c, c]})
    total, same, differences = compare(reference, other)
    assert (total, same) == (10, 8)
    by_seed = {diff.key["seed"]: diff for diff in differences}
    assert by_seed[0].key["lr"] == 1e-2 and by_seed[0].steps_to_boundary == 1
    assert by_seed[0].reference["outcome"] == c and by_seed[0].other["outcome"] == d
    assert by_seed[0].other["diverged_step"] == 7
    assert list(by_seed[0].line["outcome"]) == [c, c, c, d, d]
    assert list(by_seed[0].line["outcome_other"]) == [c, c, d, d, d]
    assert by_seed[1].key["lr"] == 10**-2.5 and by_seed[1].steps_to_boundary == math.inf


def test_compare_refuses_studies_with_different_runs():
    c = "converged"
    with pytest.raises(ValueError, match="5 runs are in only one"):
        compare(study({0: [c] * 5}), study({0: [c] * 5, 1: [c] * 5}))
