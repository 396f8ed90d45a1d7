"""The trial runner: one configuration, trained on each seed, without Ray.

Public surface: ``run_trial`` and ``TrialResult``; ``TrialConfig`` (with its
``ScheduleConfig`` and ``DivergenceConfig``), the contract the study plan fills;
``OBJECTIVE_COLUMNS`` (what a search may optimize), ``resolve_device`` and
``lr_multiplier`` (the schedule, for anyone who needs to plot it).
"""

from robustness.runner.config import DivergenceConfig, ScheduleConfig, TrialConfig
from robustness.runner.outcome import OBJECTIVE_COLUMNS, capped_objective, is_maximized
from robustness.runner.schedule import lr_multiplier

# The training loop imports torch; load it on first use so that importing the
# config (the spec does, and every CLI verb does) stays cheap.
_LAZY = {"TrialResult", "resolve_device", "run_trial"}


def __getattr__(name: str):
    if name in _LAZY:
        from robustness.runner import trial

        return getattr(trial, name)
    raise AttributeError(f"module 'robustness.runner' has no attribute {name!r}")


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
