"""The trial runner: one configuration, trained on each seed, without Ray.

Public surface: ``run_trial`` and ``TrialResult``; ``RunLog`` and ``make_record``
(one seed's measurements and the record built from them: another training loop
reuses them so that its records match); ``TrialStopped`` (what a callback raises
to stop a trial early: its runs are then recorded as ``pruned``); ``run_population``
(many configurations trained at once as one model) and ``population_key`` (which
configurations can share a population); ``TrialConfig`` (with its
``ScheduleConfig`` and ``DivergenceConfig``), the contract the study plan fills;
``OBJECTIVE_COLUMNS`` (what a search may optimize); ``capped_value``,
``initial_column`` and ``mean_objective`` (the one capping rule every comparison
of runs uses, see ``robustness.runner.outcome``); ``resolve_device`` and
``lr_multiplier`` (the schedule, for anyone who needs to plot it).
"""

from robustness.runner.config import DivergenceConfig, ScheduleConfig, TrialConfig
from robustness.runner.grouping import population_key
from robustness.runner.outcome import (
    OBJECTIVE_COLUMNS,
    TrialStopped,
    capped_value,
    initial_column,
    is_maximized,
    mean_objective,
)
from robustness.runner.schedule import lr_multiplier

# The training loop imports torch; load it on first use so that importing the
# config (the spec does, and every CLI verb does) stays cheap.
_LAZY = {"RunLog", "TrialResult", "make_record", "resolve_device", "run_trial"}


def __getattr__(name: str):
    if name in _LAZY:
        from robustness.runner import trial

        return getattr(trial, name)
    if name == "run_population":
        from robustness.runner.population import run_population

        return run_population
    raise AttributeError(f"module 'robustness.runner' has no attribute {name!r}")


__all__ = [
    "OBJECTIVE_COLUMNS",
    "DivergenceConfig",
    "RunLog",
    "ScheduleConfig",
    "TrialConfig",
    "TrialResult",
    "TrialStopped",
    "capped_value",
    "initial_column",
    "is_maximized",
    "lr_multiplier",
    "make_record",
    "mean_objective",
    "population_key",
    "resolve_device",
    "run_population",
    "run_trial",
]
