"""The one capping rule (``capped_value``), branch by branch, scalar and vectorised."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from robustness.errors import UserInputError
from robustness.runner.outcome import (
    OBJECTIVE_COLUMNS,
    capped_value,
    initial_column,
    mean_objective,
)

NAN = math.nan

# (value, initial, outcome) -> capped, for a loss (minimized) and an accuracy
LOSS_CASES = [
    (0.4, 2.3, "converged", 0.4),  # better than untrained: kept
    (2.9, 2.3, "converged", 2.3),  # worse than untrained (overfit val loss): L0
    (2.9, 2.3, "stalled", 2.3),
    (0.3, 2.3, "diverged", 2.3),  # a pre-divergence best never counts
    (NAN, 2.3, "diverged", 2.3),
    (47.0, 2.3, "error", 2.3),  # a failed run counts as untrained
    (math.inf, 2.3, "converged", 2.3),  # non-finite: as untrained
    (NAN, 2.3, "stalled", 2.3),
    (0.8, 2.3, "pruned", 0.8),  # its value when stopped, capped
    (3.1, 2.3, "pruned", 2.3),
    (NAN, 2.3, "pruned", NAN),  # never measured (a seed never started): censored
    (NAN, NAN, "error", NAN),  # failed before the initial model was measured
    (0.4, NAN, "converged", 0.4),  # no initial: a finite value stands
    (NAN, NAN, "diverged", NAN),  # a NaN untrained model: nothing to count
]
ACC_CASES = [
    (0.93, 0.11, "converged", 0.93),
    (0.05, 0.11, "stalled", 0.11),  # worse than chance-at-init: a0
    (0.1086, 0.1671, "diverged", 0.1671),  # the blown-up net's one-class accuracy
    (0.90, 0.1671, "diverged", 0.1671),  # a diverged run's best counts as untrained
    (NAN, 0.11, "converged", 0.11),
    (0.5, 0.11, "error", 0.11),
    (0.4, 0.11, "pruned", 0.4),
    (NAN, 0.11, "pruned", NAN),
]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize(("value", "initial", "outcome", "expected"), LOSS_CASES)
def test_loss_branches_one_by_one(value, initial, outcome, expected):
    got = capped_value(value, initial, outcome, maximize=False)
    assert isinstance(got, float) and _same(got, expected)


@pytest.mark.parametrize(("value", "initial", "outcome", "expected"), ACC_CASES)
def test_accuracy_branches_one_by_one(value, initial, outcome, expected):
    got = capped_value(value, initial, outcome, maximize=True)
    assert isinstance(got, float) and _same(got, expected)


@pytest.mark.parametrize(("cases", "maximize"), [(LOSS_CASES, False), (ACC_CASES, True)])
def test_vectorised_over_numpy_and_pandas_equals_the_scalar_rule(cases, maximize):
    values, initials, outcomes, expected = (list(c) for c in zip(*cases, strict=True))
    as_numpy = capped_value(np.array(values), np.array(initials), outcomes, maximize=maximize)
    np.testing.assert_array_equal(as_numpy, expected)  # NaN == NaN positionally
    # nullable pandas columns (what a loaded trials.parquet holds), NA for missing
    frame = pd.DataFrame({"v": values, "v0": initials, "outcome": outcomes})
    frame = frame.astype({"v": "Float64", "v0": "Float64", "outcome": "string"})
    frame.loc[frame["v"].isna(), "v"] = pd.NA
    got = capped_value(frame["v"], frame["v0"], frame["outcome"], maximize=maximize)
    np.testing.assert_array_equal(got, expected)


def test_broadcasts_one_initial_over_many_values_and_none_is_missing():
    got = capped_value([0.5, None, 3.0], 2.0, ["converged", "pruned", "diverged"], maximize=False)
    np.testing.assert_array_equal(got, [0.5, NAN, 2.0])
    # a missing outcome is an ordinary run (e.g. a record built before classification)
    assert capped_value(3.0, 2.0, None, maximize=False) == 2.0


def test_each_metric_is_capped_by_the_same_metric_at_step_0():
    assert {m: initial_column(m) for m in OBJECTIVE_COLUMNS} == {
        "final_val_loss": "initial_val_loss",
        "best_val_loss": "initial_val_loss",
        "final_train_loss": "initial_loss",
        "best_train_loss": "initial_loss",
        "final_val_acc": "initial_val_acc",
        "best_val_acc": "initial_val_acc",
        "final_train_acc": "initial_train_acc",
        "best_train_acc": "initial_train_acc",
    }
    with pytest.raises(UserInputError, match=r"no capping rule for metric 'val_f1'; allowed: "):
        initial_column("val_f1")


def test_mean_objective_skips_missing_seeds_and_is_nan_only_when_all_are():
    records = [{"objective": 0.5}, {"objective": None}, {"objective": NAN}, {"objective": 1.5}]
    assert mean_objective(records) == 1.0
    assert math.isnan(mean_objective([{"objective": pd.NA}, {}]))
    assert mean_objective([{"objective": math.inf}, {"objective": 1.0}]) == math.inf
