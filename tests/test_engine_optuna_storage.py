"""The engine's Optuna storage: the append-only journal a session runs on, and the
``optuna.db`` SQLite file exported from it (no Ray started)."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from robustness.engine._optuna_storage import (
    JOURNAL_FILE,
    close_journal,
    export_sqlite,
    open_journal,
)

SPACE = {"lr": FloatDistribution(1e-4, 1.0, log=True), "init": CategoricalDistribution(["a", "b"])}


def _fill(storage, name, n=12):
    """Trials in every state the engine leaves, with its user attrs."""
    study = optuna.create_study(
        storage=storage, study_name=name, sampler=optuna.samplers.RandomSampler(seed=1)
    )
    for i in range(n):
        trial = study.ask(fixed_distributions=SPACE)
        trial.set_user_attr("trial_id", f"{name}-{i:04d}")
        trial.set_user_attr("n_converged", i)
        if i % 5 == 1:
            study.tell(trial, state=TrialState.FAIL)
        elif i % 5 == 2:
            trial.report(0.7, 3)
            trial.report(math.inf, 4)
            study.tell(trial, state=TrialState.PRUNED)
        elif i < n - 1:
            study.tell(trial, 0.1 * i)
    study.enqueue_trial({"lr": 0.01, "init": "a"})  # WAITING; the last one stays RUNNING
    return study


def _same_trials(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for field in (
            "number",
            "state",
            "values",
            "params",
            "distributions",
            "user_attrs",
            "system_attrs",
            "datetime_start",
            "datetime_complete",
        ):
            assert getattr(x, field) == getattr(y, field), field
        assert x.intermediate_values == y.intermediate_values


def test_export_writes_every_study_and_trial_as_optuna_reads_them(tmp_path):
    journal = open_journal(tmp_path, tmp_path / "optuna.db")
    studies = {name: _fill(journal, name) for name in ("s/sgd", "s/insgd")}
    export_sqlite(journal, tmp_path / "optuna.db")
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    names = {s.study_name for s in optuna.get_all_study_summaries(url)}
    assert names == set(studies)
    for name, study in studies.items():
        exported = optuna.load_study(study_name=name, storage=url)
        assert exported.direction == study.direction
        _same_trials(study.trials, exported.trials)
        assert exported.best_trial.number == study.best_trial.number
    close_journal(journal)


def test_a_reopened_journal_holds_the_session_even_after_a_torn_last_line(tmp_path):
    journal = open_journal(tmp_path, tmp_path / "optuna.db")
    before = _fill(journal, "s/a").trials
    close_journal(journal)
    with open(tmp_path / JOURNAL_FILE, "a", encoding="utf-8") as file:
        file.write('{"op_code": 5, "trial_id": 3, "sta')  # the driver was killed mid-write
    reopened = open_journal(tmp_path, tmp_path / "optuna.db")
    _same_trials(before, optuna.load_study(study_name="s/a", storage=reopened).trials)
    study = optuna.load_study(study_name="s/a", storage=reopened)
    trial = study.ask(fixed_distributions=SPACE)  # appends after the dropped line
    study.tell(trial, 0.5)
    close_journal(reopened)
    again = open_journal(tmp_path, tmp_path / "optuna.db")
    told = optuna.load_study(study_name="s/a", storage=again).trials[trial.number]
    assert told.state == TrialState.COMPLETE and told.value == 0.5
    close_journal(again)


def test_a_results_directory_with_only_optuna_db_is_imported_into_a_journal(tmp_path):
    sqlite = f"sqlite:///{tmp_path / 'optuna.db'}"
    legacy = _fill(sqlite, "s/a")
    journal = open_journal(tmp_path, tmp_path / "optuna.db")
    assert (tmp_path / JOURNAL_FILE).exists()
    imported = optuna.load_study(study_name="s/a", storage=journal)
    assert [t.state for t in imported.trials] == [t.state for t in legacy.trials]
    assert [t.user_attrs for t in imported.trials] == [t.user_attrs for t in legacy.trials]
    close_journal(journal)


@pytest.mark.parametrize("fallback", [False, True])
def test_export_falls_back_to_optuna_copy_when_the_bulk_insert_fails(
    tmp_path, monkeypatch, fallback
):
    from robustness.engine import _optuna_storage

    if fallback:

        def broken(*args, **kwargs):
            raise RuntimeError("Optuna's private models changed")

        monkeypatch.setattr(_optuna_storage, "_bulk_add", broken)
    journal = open_journal(tmp_path, tmp_path / "optuna.db")
    study = _fill(journal, "s/a")
    export_sqlite(journal, tmp_path / "optuna.db")
    exported = optuna.load_study(study_name="s/a", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.params for t in exported.trials] == [t.params for t in study.trials]
    assert [t.state for t in exported.trials] == [t.state for t in study.trials]
    close_journal(journal)
