"""The trial runner: one configuration, trained on each seed, without Ray.

Public surface: ``run_trial`` and ``TrialResult``; ``TrialConfig`` (with its
``ScheduleConfig`` and ``DivergenceConfig``), the contract the study plan fills;
``OBJECTIVE_COLUMNS`` (what a search may optimize), ``resolve_device`` and
``lr_multiplier`` (the schedule, for anyone who needs to plot it).
"""

from robustness.runner.config import DivergenceConfig, ScheduleConfig, TrialConfig
from robustness.runner.outcome import OBJECTIVE_COLUMNS, capped_objective, is_maximized
from robustness.runner.schedule import lr_multiplier
from robustness.runner.trial import TrialResult, resolve_device, run_trial

__all__ = [
    "OBJECTIVE_COLUMNS",
    "DivergenceConfig",
    "ScheduleConfig",
    "TrialConfig",
    "TrialResult",
    "capped_objective",
    "is_maximized",
    "lr_multiplier",
    "resolve_device",
    "run_trial",
]
