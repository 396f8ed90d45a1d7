"""Learning-rate schedules as multipliers of the base lr (robustness.runner.schedule)."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from robustness.errors import UserInputError
from robustness.runner import ScheduleConfig, lr_multiplier


def test_constant_schedule_is_one_everywhere():
    factor = lr_multiplier(ScheduleConfig(), 10)
    assert [factor(k) for k in range(10)] == [1.0] * 10


def test_step_schedule_multiplies_by_gamma_at_each_fractional_milestone():
    factor = lr_multiplier(ScheduleConfig(name="step", milestones=(0.75, 0.5), gamma=0.5), 8)
    assert [factor(k) for k in range(8)] == [1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25]


def test_warmup_ramps_linearly_then_hands_over():
    factor = lr_multiplier(
        ScheduleConfig(name="step", milestones=(0.5,), gamma=0.1, warmup_steps=4), 10
    )
    assert [factor(k) for k in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(4) == 1.0
    assert factor(5) == pytest.approx(0.1)


def test_cosine_decays_from_one_to_zero_after_warmup():
    factor = lr_multiplier(ScheduleConfig(name="cosine", warmup_steps=2), 12)
    assert factor(0) == 0.5 and factor(1) == 1.0
    assert factor(2) == 1.0  # decay starts after warmup
    assert factor(7) == pytest.approx(0.5)  # halfway through the 10 decay steps
    assert factor(11) == pytest.approx(0.5 * (1 + math.cos(math.pi * 9 / 10)))
    assert factor(12) == pytest.approx(0.0)
    values = [factor(k) for k in range(2, 13)]
    assert values == sorted(values, reverse=True)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "step", "milestones": (0.5, 1.5)}, r"in \(0, 1\)"),
        ({"name": "cosine", "milestones": (0.0,)}, r"in \(0, 1\)"),
        ({"name": "step"}, "needs at least one milestone"),
    ],
)
def test_bad_milestones_are_refused_by_the_config(fields, message):
    with pytest.raises(ValidationError, match=message):
        ScheduleConfig(**fields)


def test_warmup_as_long_as_the_budget_is_a_user_input_error():
    with pytest.raises(UserInputError, match="warmup_steps"):
        lr_multiplier(ScheduleConfig(warmup_steps=10), 10)
