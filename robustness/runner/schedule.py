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

    ``ScheduleConfig`` itself checks the milestones (fractions in (0, 1)); only
    what needs the budget is checked here.

    Raises:
        UserInputError: warmup not shorter than the budget.
    """
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
