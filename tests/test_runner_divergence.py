"""The divergence watch and outcome classification (the capping rule: test_runner_outcome)."""

from __future__ import annotations

import math

import pytest
import torch

from robustness.errors import UserInputError
from robustness.runner.divergence import Divergence, DivergenceWatch
from robustness.runner.outcome import check_objective, classify_outcome


def feed(watch: DivergenceWatch, losses) -> None:
    for value in losses:
        watch.record(torch.tensor(value))


def test_watch_finds_the_exact_first_bad_step_across_checks():
    watch = DivergenceWatch(initial_loss=2.0, loss_factor=10.0, device=torch.device("cpu"))
    feed(watch, [2.0, 1.5, 1.0])
    assert watch.check() is None
    feed(watch, [1.0, 19.0, 21.0, math.nan])  # steps 4..7; 21 > 10 x 2 at step 6
    assert watch.check() == Divergence(6, "explosion")


def test_watch_tells_nonfinite_from_explosion():
    watch = DivergenceWatch(initial_loss=1.0, loss_factor=10.0, device=torch.device("cpu"))
    feed(watch, [1.0, math.inf])
    assert watch.check() == Divergence(2, "nonfinite")
    watch = DivergenceWatch(initial_loss=1.0, loss_factor=10.0, device=torch.device("cpu"))
    feed(watch, [math.nan, 100.0])
    assert watch.check() == Divergence(1, "nonfinite")


def test_watch_mean_covers_the_checked_losses_since_the_last_mean():
    watch = DivergenceWatch(initial_loss=10.0, loss_factor=10.0, device=torch.device("cpu"))
    feed(watch, [1.0, 2.0])
    watch.check()
    feed(watch, [3.0])
    watch.check()
    assert watch.pop_mean() == 2.0
    feed(watch, [5.0])
    watch.check()
    assert watch.pop_mean() == 5.0
    assert math.isnan(watch.pop_mean())


@pytest.mark.parametrize(
    ("diverged", "best", "outcome"),
    [
        (True, 0.1, "diverged"),
        (False, 0.98, "converged"),
        (False, 0.995, "stalled"),
        (False, math.nan, "stalled"),
    ],
)
def test_outcome_classification(diverged, best, outcome):
    assert (
        classify_outcome(
            diverged=diverged, best_train_loss=best, initial_loss=1.0, stall_margin=0.01
        )
        == outcome
    )


def test_objective_must_be_a_metric_column_that_fits_the_task():
    check_objective("final_val_acc", "classification")
    check_objective("best_train_loss", "regression")
    with pytest.raises(UserInputError, match="allowed: final_val_loss"):
        check_objective("final_val_acc", "regression")
    with pytest.raises(UserInputError, match="'lr' is not allowed"):
        check_objective("lr", "classification")
