"""Learning-rate schedules over a step budget, as a multiplier of the base lr.

``lr_multiplier(schedule, total_steps)`` returns ``f(k) -> float``: the factor
applied to the base learning rate for the optimizer step with 0-based index
``k`` (so it plugs straight into ``torch.optim.lr_scheduler.LambdaLR``).

- warmup: for ``k < warmup_steps`` the factor ramps linearly,
  ``(k + 1) / warmup_steps``, then the schedule below takes over;
- ``constant``: 1;
- ``step``: ``gamma ** m`` where ``m`` counts the milestones already reached; a
  milestone is a fraction of the budget, reached at step index
  ``round(fraction * total_steps)``;
- ``cosine``: ``0.5 * (1 + cos(pi * t / T))`` over the steps after warmup
  (``t`` from 0, ``T = total_steps - warmup_steps``), reaching 0 after the budget.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

from robustness.errors import UserInputError
from robustness.runner.config import ScheduleConfig


def lr_multiplier(schedule: ScheduleConfig, total_steps: int) -> Callable[[int], float]:
    """The learning-rate factor for each 0-based step index of a ``total_steps`` budget.

    Raises:
        UserInputError: milestones outside (0, 1), or warmup not shorter than the budget.
    """
    if any(not 0.0 < m < 1.0 for m in schedule.milestones):
        raise UserInputError(
            f"schedule milestones must be fractions of the budget in (0, 1), "
            f"got {list(schedule.milestones)}"
        )
    if schedule.name == "step" and not schedule.milestones:
        raise UserInputError("schedule 'step' needs at least one milestone, e.g. [0.5, 0.75]")
    warmup = schedule.warmup_steps
    if warmup and warmup >= total_steps:
        raise UserInputError(
            f"schedule warmup_steps ({warmup}) must be smaller than the step budget ({total_steps})"
        )
    boundaries = sorted(round(m * total_steps) for m in schedule.milestones)
    decay_steps = total_steps - warmup

    def factor(k: int) -> float:
        if k < warmup:
            return (k + 1) / warmup
        if schedule.name == "step":
            return schedule.gamma ** bisect.bisect_right(boundaries, k)
        if schedule.name == "cosine":
            t = min(k - warmup, decay_steps)
            return 0.5 * (1.0 + math.cos(math.pi * t / decay_steps))
        return 1.0

    return factor
