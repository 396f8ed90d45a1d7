"""When a configuration counts as done: one rule for the searcher, the final tables
and ``robustness status`` (which must not import Ray, so it lives apart).

Done: an Optuna trial that is COMPLETE, PRUNED, or FAIL from a configuration that
really failed (not ``abandoned`` by a dead driver or a stopped study), and whose
trial id is not in the study's ``lost_parts`` (its part was found damaged on a
resume, and its parameters were asked again).
"""

from __future__ import annotations

from collections.abc import Iterable

import optuna
from optuna.trial import TrialState

LOST_PARTS = "lost_parts"  # study user attr: trial ids whose part was found damaged


def lost_parts(study: optuna.Study) -> set[str]:
    """The trial ids of ``study`` whose part was found damaged."""
    return set(study.user_attrs.get(LOST_PARTS, ()))


def counts_as_done(trial: optuna.trial.FrozenTrial, lost: set[str] = frozenset()) -> bool:
    """See the module docstring; ``lost`` is ``lost_parts`` of the trial's study."""
    if trial.user_attrs.get("trial_id") in lost:
        return False
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and not trial.user_attrs.get("abandoned", False)


def done_trial_ids(studies: Iterable[optuna.Study]) -> list[str]:
    """Trial ids of the done configurations across ``studies``."""
    ids = []
    for study in studies:
        lost = lost_parts(study)
        for t in study.get_trials(deepcopy=False):
            if counts_as_done(t, lost) and "trial_id" in t.user_attrs:
                ids.append(t.user_attrs["trial_id"])
    return ids


def done_counts(studies: Iterable[optuna.Study]) -> dict[str, int]:
    """Runs per outcome of the done configurations, from their trials' ``n_<outcome>``
    user attrs (what a resumed study's progress starts from)."""
    counts: dict[str, int] = {}
    for study in studies:
        lost = lost_parts(study)
        for t in study.get_trials(deepcopy=False):
            if not counts_as_done(t, lost):
                continue
            for key, value in t.user_attrs.items():
                if key.startswith("n_") and isinstance(value, int):
                    counts[key[2:]] = counts.get(key[2:], 0) + value
    return counts
