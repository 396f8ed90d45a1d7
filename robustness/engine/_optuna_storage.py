"""Where the engine keeps its Optuna studies: a journal while it runs, ``optuna.db`` after.

Optuna's SQLite storage costs 20-60 ms of driver CPU per configuration (SQLAlchemy
ORM work for ask, user attrs and tell; measured on the 2-core machine), which is as
much as a small configuration's compute, and the driver shares the cores with the
trials. So during a session the studies live in an Optuna ``JournalStorage`` on
``optuna.journal`` in the results directory, through ``AppendOnlyJournal``: the one
driver appends each operation as a JSON line (a ``write`` per operation, no lock,
no fsync) and reads it back from memory, about 2 ms per configuration in all. The
file is Optuna's journal format, so ``JournalFileBackend`` reads it too, and it is
the state a resumed study starts from: a driver killed with SIGKILL has written
every operation before it died (a torn last line is dropped on reading).

``optuna.db`` (the contract: SQLite, for ``optuna-dashboard`` and
``optuna.load_study``) is written from the journal when a session ends, also after
an interrupt, into a temporary file renamed into place: ``export_sqlite``. It
writes every trial of a study in one transaction (``_bulk_add``, about 1 ms a
trial instead of Optuna's ``copy_study`` at ~15 ms, one transaction a trial); if
that fails, it falls back to ``copy_study``. A results directory from before the
journal (only ``optuna.db``) is imported into a new journal first.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import BaseJournalBackend, JournalStorage

from robustness.results import store

JOURNAL_FILE = "optuna.journal"
_log = logging.getLogger(__name__)


class AppendOnlyJournal(BaseJournalBackend):
    """A journal file with a single writer (this process): operations are kept in
    memory and appended to the file as they happen."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._logs: list[dict[str, Any]] = []
        if self._path.exists():
            self._logs = list(_read_lines(self._path))
            _rewrite_if_torn(self._path, self._logs)
        self._file = open(self._path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        yield from self._logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self._file.write("".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs))
        self._file.flush()  # in the OS's hands: survives the process being killed
        self._logs.extend(logs)

    def close(self) -> None:
        self._file.close()


class ReadOnlyJournal(BaseJournalBackend):
    """The journal as a reader in another process sees it (``robustness status``):
    read once, a torn last line dropped, never written."""

    def __init__(self, path: str | Path) -> None:
        self._logs = list(_read_lines(Path(path)))

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        yield from self._logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        raise PermissionError("a read-only view of the Optuna journal")


def read_studies(results_dir: Path) -> list[optuna.Study] | None:
    """The studies of ``results_dir``'s journal, read only (None without a journal)."""
    journal = results_dir / JOURNAL_FILE
    if not journal.exists():
        return None
    storage = JournalStorage(ReadOnlyJournal(journal))
    return [
        optuna.load_study(study_name=summary.study_name, storage=storage)
        for summary in storage.get_all_studies()
    ]


def _read_lines(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                return  # a line torn by a kill mid-write: everything before it is whole


def _rewrite_if_torn(path: Path, logs: list[dict[str, Any]]) -> None:
    with open(path, encoding="utf-8") as lines:
        if sum(1 for _ in lines) == len(logs):
            return
    text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
    store.atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def open_journal(results_dir: Path, sqlite_file: Path) -> JournalStorage:
    """The session's live storage; imports a journal-less ``sqlite_file`` first."""
    journal = results_dir / JOURNAL_FILE
    legacy = not journal.exists() and sqlite_file.exists()
    storage = JournalStorage(AppendOnlyJournal(journal))
    if legacy:
        url = f"sqlite:///{sqlite_file}"
        for summary in optuna.get_all_study_summaries(url, include_best_trial=False):
            optuna.copy_study(
                from_study_name=summary.study_name, from_storage=url, to_storage=storage
            )
    return storage


def close_journal(storage: JournalStorage) -> None:
    backend = getattr(storage, "_backend", None)
    if isinstance(backend, AppendOnlyJournal):
        backend.close()


def export_sqlite(source: optuna.storages.BaseStorage, path: Path) -> None:
    """Write every study of ``source`` into the SQLite file ``path``, atomically."""

    def write(tmp: Path) -> None:
        tmp.unlink()  # atomic_write made it; SQLite wants to create its own file
        target = optuna.storages.RDBStorage(f"sqlite:///{tmp}")
        try:
            for study in source.get_all_studies():
                _copy(source, study, target)
        finally:
            target.engine.dispose()

    store.atomic_write(path, write)


def _copy(
    source: optuna.storages.BaseStorage,
    study: optuna.study.FrozenStudy,
    target: optuna.storages.RDBStorage,
) -> None:
    study_id = target.create_new_study(study.directions, study.study_name)
    for key, value in study.user_attrs.items():
        target.set_study_user_attr(study_id, key, value)
    for key, value in study.system_attrs.items():
        target.set_study_system_attr(study_id, key, value)
    trials = source.get_all_trials(source.get_study_id_from_name(study.study_name), deepcopy=False)
    try:
        _bulk_add(target, study_id, trials)
    except Exception as exc:  # Optuna's private ORM changed: the public, slower way
        _log.debug("bulk export failed (%s); using add_trials", exc)
        target.delete_study(study_id)
        optuna.copy_study(
            from_study_name=study.study_name,
            from_storage=source,
            to_storage=target,
        )


def _bulk_add(
    target: optuna.storages.RDBStorage, study_id: int, trials: Iterable[optuna.trial.FrozenTrial]
) -> None:
    """Insert ``trials`` (numbers kept) with one multi-row insert per table in one
    transaction, into the tables of Optuna's ORM models, filled as Optuna's own
    ``add_trial`` fills them one transaction at a time."""
    import sqlalchemy
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    rows: dict[Any, list[dict[str, Any]]] = {}

    def add(model: Any, **row: Any) -> None:
        rows.setdefault(model, []).append(row)

    with _create_scoped_session(target.scoped_session) as session:
        first = session.execute(
            sqlalchemy.select(sqlalchemy.func.max(models.TrialModel.trial_id))
        ).scalar()
        for trial_id, frozen in enumerate(trials, start=(first or 0) + 1):
            add(
                models.TrialModel,
                trial_id=trial_id,
                number=frozen.number,
                study_id=study_id,
                state=frozen.state,
                datetime_start=_naive_utc(frozen.datetime_start),
                datetime_complete=_naive_utc(frozen.datetime_complete),
            )
            for objective, value in enumerate(frozen.values or []):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                add(
                    models.TrialValueModel,
                    trial_id=trial_id,
                    objective=objective,
                    value=stored,
                    value_type=kind,
                )
            for name, value in frozen.params.items():
                distribution = frozen.distributions[name]
                add(
                    models.TrialParamModel,
                    trial_id=trial_id,
                    param_name=name,
                    param_value=distribution.to_internal_repr(value),
                    distribution_json=distribution_to_json(distribution),
                )
            for model, attrs in (
                (models.TrialUserAttributeModel, frozen.user_attrs),
                (models.TrialSystemAttributeModel, frozen.system_attrs),
            ):
                for key, value in attrs.items():
                    add(model, trial_id=trial_id, key=key, value_json=json.dumps(value))
            ivm = models.TrialIntermediateValueModel
            for step, value in frozen.intermediate_values.items():
                stored, kind = ivm.intermediate_value_to_stored_repr(value)
                add(
                    ivm,
                    trial_id=trial_id,
                    step=step,
                    intermediate_value=stored,
                    intermediate_value_type=kind,
                )
        for model, table_rows in rows.items():
            session.execute(sqlalchemy.insert(model.__table__), table_rows)


def _naive_utc(moment: Any) -> Any:
    """How Optuna's RDB storage keeps a datetime: naive UTC (a naive one is local)."""
    if moment is None:
        return None
    return moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
