"""``run_study``: a whole study through Ray Tune, driven by Optuna, into a results dir.

Flow: validate the output directory (fresh, or a resume of the same spec) ─ write
``spec.yaml`` with provenance ─ start or join Ray and check the cluster can run the
trials ─ one Optuna study per optimizer label behind ``OptunaStudySearcher`` ─ a
Ray Tune ``Tuner`` runs ``train_pack`` (one Ray trial per pack of configurations,
``resources.configs_per_trial``; each configuration on all seeds, one after another)
─ each finished configuration persists its part ─ the final tables are built from
the parts of the configurations Optuna counts as done, in a ``finally`` (so also
after Ctrl-C or an error: any results directory can be reported) ─ report ─ shut
Ray down.

Packing: Ray's cost per trial (scheduling, actor calls, result processing: tens of
milliseconds of driver time, more on a busy machine) is paid once per pack rather
than once per configuration. Optuna keeps one trial per configuration and the
results are the same whatever the packing: every run is seeded by its own seed.

Optuna's studies live in ``optuna.journal`` while a session runs and are written to
``optuna.db`` when it ends (``_optuna_storage``: SQLite costs tens of milliseconds
of driver CPU per configuration).

Resume (``resume=True``) does not use ``Tuner.restore``: the Optuna journal and the
parts are the state. Trials a killed driver left RUNNING are closed (COMPLETE from
their part if it was written, else FAIL + ``abandoned`` and their parameters queued
again); completed configurations are not re-run. The Ray experiment state of each
session stays under ``ray/`` for inspection.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import yaml
from ray.tune import Callback

from robustness.engine import _cluster, _lock, _optuna_storage
from robustness.engine._progress import StudyProgress
from robustness.engine._samplers import make_sampler
from robustness.engine._searcher import LabelSearch, OptunaStudySearcher
from robustness.engine._trainable import PROGRESS, error_records, trial_payload
from robustness.errors import StudyStoppedError, UserInputError
from robustness.results import store
from robustness.results.schema import (
    LOCK_FILE,
    OPTUNA_FILE,
    PLANNED_RUNS,
    PROVENANCE_KEY,
    SPEC_FILE,
)
from robustness.runner.device import trial_device
from robustness.spec import AUTO_PACK_SECONDS

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler

    from robustness.runner import TrialConfig
    from robustness.spec import Plan, StudySpec

RAY_DIR = "ray"
_ASHA_MAX_T = 10**9
_log = logging.getLogger(__name__)


def run_study(
    spec: StudySpec | str | Path,
    out_dir: str | Path,
    *,
    address: str | None = None,
    resume: bool = False,
    max_concurrent: int | None = None,
    progress: bool = True,
    shared_storage: bool = False,
    report: bool = True,
) -> Path:
    """Run the study ``spec`` (a ``StudySpec``, a path, or a bundled study's name).

    Writes the results directory of docs/design.md into ``out_dir`` and returns its path.
    ``address`` joins an existing Ray cluster (else a private local Ray is started
    and shut down at the end); ``shared_storage`` asserts that ``out_dir`` is seen by
    every node (needed on a multi-node cluster when it is not on a network file
    system). ``max_concurrent`` overrides ``resources.max_concurrent``. ``report``
    writes ``report/`` at the end when ``analysis`` is importable; a report failure
    is a warning and never loses the results.

    One driver per results directory: the run holds ``out_dir``'s driver lock
    (``_lock``) from its first write to its end, report included.

    Raises ``UserInputError`` for a non-empty ``out_dir`` without ``resume``, a
    resume with a different spec, a directory another live driver holds, or a
    cluster that cannot run the trials.
    """
    from robustness.spec import load_spec, make_plan

    if isinstance(spec, (str, Path)):
        spec = load_spec(spec)
    plan = make_plan(spec)
    out = Path(out_dir).expanduser().resolve()
    resolved = spec.resolved()
    _lock.refuse_if_held(out)
    _check_out_dir(out, resolved, resume=resume)  # refuse before anything is written
    # planned_runs: what a report of a study that never finished compares with
    session = {"resumed": resume, PLANNED_RUNS: plan.n_runs()}
    cpu, gpu = float(spec.resources.cpu), float(spec.resources.gpu)
    concurrent = max_concurrent or spec.resources.max_concurrent
    if concurrent is not None and concurrent < 1:
        raise UserInputError(f"max_concurrent must be a positive integer, got {concurrent}")
    owns_ray = _cluster.connect(address)
    optuna_verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        _cluster.check_resources(cpu, gpu)
        if address is not None:
            _cluster.check_shared_path(out, shared=shared_storage)
        out.mkdir(parents=True, exist_ok=True)
        with _lock.driver_lock(out):
            # checked again under the lock: another driver may have started meanwhile
            started = _check_out_dir(out, resolved, resume=resume)
            store.write_spec(out, resolved, {**store.provenance(started), **session})
            try:
                _run_tuner(
                    spec, plan, out, cpu=cpu, gpu=gpu, concurrent=concurrent, progress=progress
                )
            except OSError as exc:  # the driver's own writes: journal, tables
                raise _stopped(out, f"{type(exc).__name__}: {exc}") from exc
            finally:
                _release(owns_ray, optuna_verbosity)
                owns_ray = False
            finished = store.utc_now()
            store.write_spec(out, resolved, {**store.provenance(started, finished), **session})
            if report:
                _write_report(out)
    finally:
        _release(owns_ray, optuna_verbosity)
    return out


def _release(owns_ray: bool, optuna_verbosity: int) -> None:
    """Restore Optuna's log level; shut down the Ray this driver started."""
    optuna.logging.set_verbosity(optuna_verbosity)
    if owns_ray:
        import ray

        ray.shutdown()


def _run_tuner(
    spec: StudySpec,
    plan: Plan,
    out: Path,
    *,
    cpu: float,
    gpu: float,
    concurrent: int | None,
    progress: bool,
) -> None:
    from ray import tune

    from robustness.engine._trainable import pack_name, train_pack

    scheduler = _scheduler(spec)
    searcher: OptunaStudySearcher | None = None
    name = spec.name
    storage = _optuna_storage.open_journal(out, out / OPTUNA_FILE)
    threads = max(1, int(cpu))
    labels = [
        _label_search(spec, plan, label, out, gpu=gpu, threads=threads, scheduler=scheduler)
        for label in plan.labels
    ]
    total = sum(entry.target for entry in labels)
    # Tune starts one trial at a time unless a concurrency limit is set (it keeps a
    # single pending trial for a custom searcher): with the limit every worker starts
    # at once, which on 2 cores saves the seconds of a worker's start-up (torch).
    slots = concurrent or _cluster.trial_slots(cpu, gpu)
    try:
        with StudyProgress(total, len(spec.seeds), enabled=progress, results_dir=out) as bar:
            errors = _TrialErrors()
            searcher = OptunaStudySearcher(
                labels,
                study_name=name,
                storage=storage,
                direction=spec.search.direction,
                results_dir=str(out),
                on_done=lambda trial_id, counts: bar.configuration_done(counts, trial_id),
                pruning=scheduler is not None,
                pack_size=spec.pack_size(),
                label_packs=spec.resources.population != "off",
                concurrency=slots,
                target_seconds=AUTO_PACK_SECONDS,
                error_text=errors.error_text,
            )
            bar.set_done(len(searcher.done_trial_ids()), searcher.done_counts())
            resources = {"cpu": cpu, "gpu": gpu} if gpu > 0 else {"cpu": cpu}
            tuner = tune.Tuner(
                tune.with_resources(train_pack, resources),
                tune_config=tune.TuneConfig(
                    search_alg=searcher,
                    scheduler=scheduler,
                    num_samples=-1,
                    max_concurrent_trials=slots,
                    reuse_actors=True,
                    trial_dirname_creator=lambda trial: trial.trial_id,
                    trial_name_creator=lambda trial: pack_name(trial.config),
                ),
                run_config=tune.RunConfig(
                    name=_session_name(out),
                    storage_path=str(out / RAY_DIR),
                    verbose=0,
                    log_to_file=False,
                    callbacks=[errors],
                    # a trial whose worker died is run again from its first configuration
                    # without a part (the trainable skips the persisted ones)
                    failure_config=tune.FailureConfig(max_failures=spec.resources.max_retries),
                ),
            )
            with _quiet_result_grid():
                tuner.fit()
            if searcher.stopped:
                raise _stopped(out, searcher.stopped)
            if searcher.reran:
                _log.warning(
                    "%d configuration(s) had a damaged part and were run again: %s",
                    len(searcher.reran),
                    ", ".join(searcher.reran),
                )
    finally:  # also after an interrupt: the tables and optuna.db show what was done
        try:
            if searcher is not None:
                _write_tables(out, searcher, failing=sys.exc_info()[0] is not None)
        finally:
            try:
                _optuna_storage.export_sqlite(storage, out / OPTUNA_FILE)
            except OSError as exc:  # the journal still holds every operation
                _log.warning("optuna.db not written (%s); optuna.journal holds the study", exc)
            _optuna_storage.close_journal(storage)


def _write_tables(out: Path, searcher: OptunaStudySearcher, *, failing: bool) -> None:
    """The final tables from the parts of every configuration Optuna counts as done
    (pruned ones included, ``settle_pruned``). While another exception is on its way
    out (Ctrl-C, a crash, a study stopped) a failure here is a warning, so it does not
    hide that one."""
    try:
        searcher.settle_pruned()
        store.write_tables(out, searcher.done_trial_ids())
    except Exception as exc:
        if not failing:
            raise
        warnings.warn(
            f"the study stopped early and its tables could not be written: "
            f"{type(exc).__name__}: {exc}",
            RuntimeWarning,
            stacklevel=2,
        )


def _stopped(out: Path, cause: str) -> StudyStoppedError:
    """The error that stops a study whose results cannot be written."""
    return StudyStoppedError(
        f"the study in {str(out)!r} stopped: {cause}. Every run persisted before is kept "
        "(parts/ and optuna.journal); fix the cause (disk space, permissions), then "
        f"continue with `robustness run --out {out} --resume`"
    )


def _label_search(
    spec: StudySpec,
    plan: Plan,
    label: str,
    out: Path,
    *,
    gpu: float,
    threads: int,
    scheduler: TrialScheduler | None,
) -> LabelSearch:
    sampler_name = spec.search.sampler
    grid = plan.grid(label) if sampler_name == "grid" else None
    distributions = plan.distributions(label)
    seed = spec.search.seed

    def config_for(params: dict[str, Any]) -> TrialConfig:
        config = plan.trial_config(label, params)
        # a trial trains on what Ray reserved for it
        update: dict[str, Any] = {"device": trial_device(config.device, gpu)}
        if config.threads is None:
            update["threads"] = threads
        return config.model_copy(update=update)

    def make_config(trial_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return trial_payload(
            config_for(params),
            trial_id=trial_id,
            label=label,
            study=spec.name,
            results_dir=str(out),
            report_evals=scheduler is not None,
            population=spec.resources.population,
        )

    def crash_records(trial_id: str, params: dict[str, Any], message: str) -> list[dict]:
        rows = error_records(config_for(params), trial_id, message)
        for row in rows:
            row.update(study=spec.name, optimizer=label)
        return rows

    return LabelSearch(
        label=label,
        distributions=distributions,
        target=plan.n_configurations(label),
        sampler=make_sampler(
            sampler_name,
            seed=seed,
            grid=grid,
            distributions=distributions,
            resolution=spec.search.resolution,
            band=spec.search.band,
            maximize=spec.search.direction == "maximize",
        ),
        make_config=make_config,
        error_records=crash_records,
    )


def _scheduler(spec: StudySpec) -> TrialScheduler | None:
    """ASHA on the per-evaluation objective reports (see ``_trainable``), or None.

    Time is ``progress``, in runs (seed index + fraction of that seed's budget), so
    ``grace_period`` is in the unit the spec documents: 0.25 is a quarter of the
    first seed's budget; step 0 is never reported, so it is never a rung. ``max_t``
    is set beyond any trial's progress (ASHA stops a trial that reaches it, and the
    last rungs are never reached). A trial ASHA stops early is told PRUNED in
    ``optuna.db`` (with its last reported value as an intermediate value) and its
    runs are rows with outcome ``pruned``.
    """
    options = spec.search.scheduler
    if options is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr=PROGRESS,
        metric="objective",
        mode="min" if spec.search.direction == "minimize" else "max",
        max_t=_ASHA_MAX_T,
        grace_period=options.grace_period,
        reduction_factor=options.reduction_factor,
    )


def _check_out_dir(out: Path, resolved: dict[str, Any], *, resume: bool) -> dt.datetime:
    """Refuse to mix studies (writes nothing); return the study's start time, kept
    across resumes."""
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {str(out)!r} exists and is not a directory")
    if not (out.exists() and any(p.name != LOCK_FILE for p in out.iterdir())):
        return store.utc_now()
    spec_file = out / SPEC_FILE
    if not resume:
        raise UserInputError(
            f"the results directory {str(out)!r} is not empty; pass --resume to continue "
            "the study there, or choose another --out"
        )
    if not spec_file.exists():
        raise UserInputError(
            f"cannot resume in {str(out)!r}: it has no {SPEC_FILE}, so it holds no study; "
            "choose an empty or new --out"
        )
    previous = yaml.safe_load(spec_file.read_text(encoding="utf-8")) or {}
    provenance = previous.pop(PROVENANCE_KEY, {}) or {}
    previous = _with_current_defaults(previous)
    previous, resolved = _without_packing(previous), _without_packing(resolved)
    if _normalized(previous) != _normalized(resolved):
        changed = sorted(
            key
            for key in set(previous) | set(resolved)
            if _normalized(previous.get(key)) != _normalized(resolved.get(key))
        )
        raise UserInputError(
            f"cannot resume in {str(out)!r}: its study was run with a different spec "
            f"(differs in: {', '.join(changed)}); resume with the same spec, or choose another --out"
        )
    try:
        return dt.datetime.fromisoformat(provenance["started"])
    except (KeyError, TypeError, ValueError):
        return store.utc_now()


def _with_current_defaults(previous: dict[str, Any]) -> dict[str, Any]:
    """A stored spec resolved again by this version's schema, so keys added since it
    was written (with their defaults) do not count as a change. A stored spec this
    schema no longer reads is compared as it is (and then differs)."""
    from robustness.spec import parse_spec

    try:
        return parse_spec(previous).resolved()
    except Exception:
        return previous


_RESUMABLE = ("configs_per_trial", "max_retries", "population")
"""``resources`` keys a resume may change: packing groups runs into Ray trials,
retries rerun a dead worker's configuration and population training groups runs
into one model (a member is its run, to rounding): none changes what is computed."""


def _without_packing(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec without the ``resources`` keys of ``_RESUMABLE``."""
    resources = spec.get("resources")
    if not isinstance(resources, dict) or not set(_RESUMABLE) & set(resources):
        return spec
    rest = {k: v for k, v in resources.items() if k not in _RESUMABLE}
    return {**spec, "resources": rest}


def _normalized(value: Any) -> Any:
    """Round-trip through YAML so tuples/lists and float spellings compare equal."""
    return yaml.safe_load(yaml.safe_dump(value))


def _session_name(out: Path) -> str:
    sessions = out / RAY_DIR
    n = len(list(sessions.iterdir())) if sessions.exists() else 0
    return f"session-{n:03d}"


class _TrialErrors(Callback):
    """Keeps each Ray trial, so the searcher can read why one failed: Tune writes the
    error into the trial's error file before it tells the searcher."""

    def __init__(self) -> None:
        self._trials: dict[str, Any] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trials[trial.trial_id] = trial

    def error_text(self, trial_id: str) -> str | None:
        path = getattr(self._trials.get(trial_id), "error_file", None)
        try:
            return Path(path).read_text(encoding="utf-8", errors="replace") if path else None
        except OSError:
            return None


class _quiet_result_grid:
    """Tune's end-of-fit ResultGrid looks for per-trial result files that the lean
    settings never write and logs one warning per trial; silence exactly that."""

    _names = ("ray.tune.analysis.experiment_analysis", "ray.tune.result_grid")

    def __enter__(self) -> None:
        self._levels = {n: logging.getLogger(n).level for n in self._names}
        for n in self._names:
            logging.getLogger(n).setLevel(logging.ERROR + 10)

    def __exit__(self, *exc: object) -> None:
        for n, level in self._levels.items():
            logging.getLogger(n).setLevel(level)


def _write_report(out: Path) -> None:
    try:
        from analysis.report import write_report
    except ImportError:
        return
    try:
        write_report(out)
    except Exception as exc:  # the results are written; a report failure must not lose them
        warnings.warn(
            f"the results are complete in {out}, but writing the report failed: "
            f"{type(exc).__name__}: {exc}; retry with `robustness report {out}`",
            RuntimeWarning,
            stacklevel=2,
        )
