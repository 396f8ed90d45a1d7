"""A Ray Tune ``Searcher`` that asks Optuna for configurations and tells it results.

Why a custom searcher rather than ``ray.tune.search.optuna.OptunaSearch``: each
optimizer label has its own axes (``beta2`` does not apply to SGD), so one Optuna
study per label (named ``"<study>/<label>"``, all in one storage) keeps every
search space exact and avoids duplicate configurations; and resuming is done from
the Optuna storage plus the persisted per-trial parts, which is robust to the
driver being killed at any point (no pickled searcher state to go stale).

Packing: one Ray trial may carry a *pack* of several configurations, which the
trainable runs one after another (each on every seed). Optuna still has one trial
per configuration: the searcher asks Optuna once per configuration of a pack, and
tells each configuration on its own from its own persisted part. ``suggest``
returns ``{"pack": [payload, ...]}`` (payloads from ``LabelSearch.make_config``). The
pack size is fixed (``pack_size``) or adaptive (``pack_size=None``): 1 until some
configurations have finished, then ``ceil(target_seconds / mean compute seconds of
a finished configuration)``, at most ``remaining / (2 x concurrency)`` so the last
Ray trials stay short and the workers finish together, but never fewer than
``min_seconds`` of compute (a tail of one-configuration Ray trials would pay Ray's
per-trial cost for each), nor more than remain.

Bookkeeping, per label:
- ``target``: how many configurations the label needs (grid size, or the budget;
  for the adaptive ``boundary`` sampler an upper bound, shown as progress only).
- done: Optuna trials that are COMPLETE, PRUNED, or FAIL from a trial that really
  failed. A trial abandoned by a dead driver is FAIL with user attr
  ``abandoned=True``, does not count, and its parameters are enqueued again.
- the searcher asks ``target - done`` times (enqueued trials are asked first), and
  reports ``FINISHED`` once every label is asked out.
- the ``boundary`` sampler decides itself: the searcher asks a label only while
  ``sampler.ready(study)`` is positive, returns None (Tune asks again later) while
  every open cell waits for a probe in flight, and ``FINISHED`` once
  ``sampler.resolved(study)`` for every label.

Every Optuna trial it asks is told exactly once, when its Ray trial ends: COMPLETE
with the seed-aggregated, capped objective (never NaN) when its part was persisted
(the values come from the trainable's final report, ``SUMMARIES``, or, when the
report lacks them, from the part on disk);
when the Ray trial crashed after its last try (Tune reruns a trial whose worker
died ``resources.max_retries`` times before it tells the searcher), FAIL with
``error`` records for the configuration that was running (the first of its pack
without a part; ``error`` holds the tries and the last cause from Tune's error
file) and FAIL + ``abandoned`` (asked again) for the ones after it, which
never started; PRUNED when a scheduler stopped it (its worker writes its part, of
``pruned`` runs, after Tune stops it: ``settle_pruned`` waits for those parts at
the end and writes ``pruned`` records with nothing measured for any a worker did
not write, so no planned run is ever missing); FAIL + ``abandoned`` when it ended
without a result otherwise. On resume, a trial left RUNNING whose part holds
``pruned`` runs was stopped by Tune shutting down, not by the scheduler: it is
abandoned and asked again. User attrs: ``trial_id`` (the results' trial id),
outcome counts ``n_converged`` ... ``n_error``, ``node_id``.

Faults of the results directory:
- a part that cannot be written (the trainable's ``WRITE_FAILED`` report, or the
  driver's own ``error`` part): ``stopped`` says why, no more trials are suggested,
  the configurations without a part are abandoned (asked again on resume), and the
  engine stops the study once the running trials end.
- a done configuration whose part is missing or damaged, found when a study is
  resumed: its files are set aside (``*.damaged``), its trial id is listed in the
  study's user attr ``lost_parts`` (no longer done) and its parameters are asked
  again; ``reran`` lists them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState
from ray.tune.search import Searcher

from robustness.engine._boundary import BoundarySampler
from robustness.engine._done import (
    LOST_PARTS,
    counts_as_done,
    done_counts,
    done_trial_ids,
    lost_parts,
)
from robustness.engine._trainable import PACK, SUMMARIES, WRITE_FAILED, summarize
from robustness.results import store

METRIC = "objective"


@dataclass(frozen=True)
class LabelSearch:
    """What the searcher needs to know about one optimizer label.

    ``make_config(params)`` turns Optuna's parameters into the JSON-serializable
    payload the trainable receives (the engine builds a ``TrialConfig`` there).
    ``error_records(trial_id, params, message)`` makes the per-seed ``error`` rows
    for a Ray trial that crashed before it could persist anything.
    """

    label: str
    distributions: Mapping[str, BaseDistribution]
    target: int
    sampler: optuna.samplers.BaseSampler
    make_config: Callable[[str, dict[str, Any]], dict[str, Any]]
    error_records: Callable[[str, dict[str, Any], str], list[dict[str, Any]]]


@dataclass
class _Asked:
    """One configuration of a live pack: its label, its Optuna trial, its results id."""

    entry: LabelSearch
    trial: optuna.trial.Trial
    our_id: str


@dataclass
class _Pace:
    """Compute seconds of the configurations finished in this session."""

    configs: int = 0
    seconds: float = 0.0
    sizes: list[int] = field(default_factory=list)  # pack size of every Ray trial asked


class OptunaStudySearcher(Searcher):
    """Interleaves the labels' Optuna studies (round robin) behind one Ray searcher.

    ``on_done(trial_id, counts)`` is called after each configuration is told, for
    progress display. ``pruning``: a scheduler may stop trials early; such a trial is
    told PRUNED. Without one, a trial that ends with no persisted result (Tune
    shutting down) is abandoned and its parameters are asked again.

    ``pack_size``: configurations per Ray trial, or None for adaptive packing sized
    to ``target_seconds`` of compute, balanced over ``concurrency`` trials at once,
    at least ``min_seconds`` (see the module docstring). A scheduler (``pruning``)
    needs ``pack_size=1``. ``error_text(ray_trial_id)``: the text of Tune's error
    file of a failed Ray trial (the cause recorded in its ``error`` rows).
    ``label_packs``: fill a pack from one label while it has configurations left
    (the labels take turns pack by pack), so that a pack is one population
    (population training), instead of alternating labels within a pack.
    """

    def __init__(
        self,
        labels: list[LabelSearch],
        *,
        study_name: str,
        storage: str | optuna.storages.BaseStorage,
        direction: str,
        results_dir: str,
        on_done: Callable[[str, dict[str, int]], None] | None = None,
        pruning: bool = False,
        pack_size: int | None = 1,
        concurrency: int = 1,
        target_seconds: float = 2.5,
        min_seconds: float = 0.5,
        error_text: Callable[[str], str | None] | None = None,
        label_packs: bool = False,
    ) -> None:
        super().__init__(metric=METRIC, mode="min" if direction == "minimize" else "max")
        if pack_size is not None and pack_size < 1:
            raise ValueError(f"pack_size must be a positive integer or None, got {pack_size}")
        if pruning and pack_size != 1:
            raise ValueError(
                "a scheduler stops Ray trials one configuration at a time: pack_size=1"
            )
        self._labels = labels
        self._results_dir = results_dir
        self._on_done = on_done
        self._pruning = pruning
        self._pack_size = pack_size
        self._concurrency = max(1, int(concurrency))
        self._target_seconds = float(target_seconds)
        self._min_seconds = float(min_seconds)
        self._error_text = error_text
        self.pace = _Pace()
        self.stopped: str | None = None  # why the study must stop (a part not written)
        self.reran: list[str] = []  # trial ids of damaged parts, run again
        self._studies: dict[str, optuna.Study] = {}
        self._remaining: dict[str, int] = {}
        self._live: dict[str, list[_Asked]] = {}
        self._pruned: dict[str, tuple[LabelSearch, dict[str, Any]]] = {}  # part pending
        self._turn = 0
        self._label_packs = label_packs
        for entry in labels:
            study = optuna.create_study(
                storage=storage,
                study_name=f"{study_name}/{entry.label}",
                sampler=entry.sampler,
                direction=direction,
                load_if_exists=True,
            )
            self._studies[entry.label] = study
            self._remaining[entry.label] = entry.target - self._reconcile(entry, study)

    # -- resume -------------------------------------------------------------------

    def _reconcile(self, entry: LabelSearch, study: optuna.Study) -> int:
        """Close trials a dead driver left RUNNING, give a pruned trial of an earlier
        session without a part its records; return how many are done."""
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            trial_id = frozen.user_attrs.get("trial_id")
            part = store.intact_part(self._results_dir, trial_id) if trial_id else None
            if part is not None:
                summary = summarize(part.to_dict("records"))
                if not summary["counts"].get("pruned"):  # else cut short by a shutdown
                    self._tell(study, frozen.number, summary)
                    continue
            _abandon(study, entry, frozen.number, frozen.params)
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
            trial_id = frozen.user_attrs.get("trial_id")
            if trial_id and store.intact_part(self._results_dir, trial_id) is None:
                self._pruned[trial_id] = (entry, dict(frozen.params))
        self.settle_pruned(wait_seconds=0.0)
        self._rerun_damaged(entry, study)
        lost = lost_parts(study)
        return sum(1 for t in study.get_trials(deepcopy=False) if counts_as_done(t, lost))

    def _rerun_damaged(self, entry: LabelSearch, study: optuna.Study) -> None:
        """A done configuration whose part is missing or unreadable is no longer done:
        its trial id joins the study's ``lost_parts``, its files are set aside and its
        parameters are asked again (Optuna cannot reopen a finished trial)."""
        lost = lost_parts(study)
        damaged = []
        for frozen in study.get_trials(deepcopy=False):
            trial_id = frozen.user_attrs.get("trial_id")
            if frozen.state == TrialState.PRUNED or not counts_as_done(frozen, lost):
                continue  # a pruned configuration's part was settled above
            if trial_id and store.intact_part(self._results_dir, trial_id) is None:
                damaged.append(trial_id)
                store.set_aside(self._results_dir, trial_id)
                if set(frozen.params) == set(entry.distributions):
                    study.enqueue_trial(dict(frozen.params), skip_if_exists=False)
        if damaged:
            study.set_user_attr(LOST_PARTS, sorted(lost | set(damaged)))
            self.reran.extend(damaged)

    # -- Ray Tune Searcher API ----------------------------------------------------

    def suggest(self, trial_id: str) -> dict | str | None:
        size = self.next_pack_size()
        if self.stopped:
            return Searcher.FINISHED
        if size == 0:  # None: an adaptive sampler waits for results in flight
            return Searcher.FINISHED if self.finished() else None
        if self._label_packs:
            pack = [self._ask(self._pack_label()) for _ in range(size)]
            self._turn += 1  # the labels take turns pack by pack
        else:
            pack = [self._ask() for _ in range(size)]
        self._live[trial_id] = pack
        self.pace.sizes.append(size)
        return {PACK: [a.entry.make_config(a.our_id, dict(a.trial.params)) for a in pack]}

    def next_pack_size(self) -> int:
        """How many configurations the next Ray trial carries (0: none left to ask)."""
        remaining = sum(self._open(entry) for entry in self._labels)
        if remaining <= 0:
            return 0
        if self._pack_size is not None:
            return min(self._pack_size, remaining)
        if self.pace.configs == 0 or self.pace.seconds <= 0:
            return 1
        mean = self.pace.seconds / self.pace.configs
        wanted = math.ceil(self._target_seconds / mean)
        balanced = remaining // (2 * self._concurrency)
        smallest = math.ceil(self._min_seconds / mean)
        return max(1, min(remaining, wanted, max(balanced, smallest)))

    def _open(self, entry: LabelSearch) -> int:
        """How many configurations of ``entry`` may be asked now: the budget left, or
        for an adaptive sampler (``BoundarySampler``) the probes it can hand out now."""
        if isinstance(entry.sampler, BoundarySampler):
            return entry.sampler.ready(self._studies[entry.label])
        return self._remaining[entry.label]

    def finished(self) -> bool:
        """True when nothing is left to ask, ever: every budget is asked out and every
        adaptive sampler has resolved its search."""
        for entry in self._labels:
            if isinstance(entry.sampler, BoundarySampler):
                if not entry.sampler.resolved(self._studies[entry.label]):
                    return False
            elif self._remaining[entry.label] > 0:
                return False
        return True

    def _pack_label(self) -> LabelSearch:
        """``label_packs``: the turn's label while it has configurations open, then
        the next one that has."""
        ordered = self._labels[self._turn % len(self._labels) :] + self._labels
        return next(e for e in ordered if self._open(e) > 0)

    def _ask(self, entry: LabelSearch | None = None) -> _Asked:
        if entry is None:  # round robin, configuration by configuration
            open_labels = [e for e in self._labels if self._open(e) > 0]
            entry = open_labels[self._turn % len(open_labels)]
            self._turn += 1
        study = self._studies[entry.label]
        trial = study.ask(fixed_distributions=dict(entry.distributions))
        self._remaining[entry.label] -= 1
        our_id = f"{entry.label}-{trial.number:04d}"
        trial.set_user_attr("trial_id", our_id)
        return _Asked(entry, trial, our_id)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        """Tell every configuration of the Ray trial's pack (see the module docstring)."""
        blame = error  # the first configuration without a part was running when it crashed
        summaries = json.loads((result or {}).get(SUMMARIES) or "{}")
        write_failed = (result or {}).get(WRITE_FAILED) or None
        if write_failed:
            self.stopped = self.stopped or write_failed
        for asked in self._live.pop(trial_id, []):
            study = self._studies[asked.entry.label]
            number = asked.trial.number
            if store.has_part(self._results_dir, asked.our_id):
                summary = summaries.get(asked.our_id) or self._part_summary(asked.our_id)
                counts = self._tell(study, number, summary)
                self._pace_from(summary)
            elif blame and (crashed := self._record_crash(asked, trial_id)) is not None:
                blame, counts = False, crashed
            elif write_failed or (blame and self.stopped):  # asked again on resume
                _abandon(study, asked.entry, number, asked.trial.params)
                self._remaining[asked.entry.label] += 1
                continue
            elif self._pruning and not error:  # stopped by the scheduler before its seeds ended
                last = (result or {}).get(METRIC)
                counts = {}
                if last is not None and math.isfinite(float(last)):  # kept as its last report
                    iteration = int((result or {}).get("training_iteration", 0))
                    asked.trial.report(float(last), iteration)
                study.tell(asked.trial, state=TrialState.PRUNED)
                self._pruned[asked.our_id] = (asked.entry, dict(asked.trial.params))
            else:  # never ran, or stopped without a result (Tune shutting down): ask again
                _abandon(study, asked.entry, number, asked.trial.params)
                self._remaining[asked.entry.label] += 1
                continue
            if self._on_done is not None:
                self._on_done(asked.our_id, counts)

    def _record_crash(self, asked: _Asked, ray_trial_id: str) -> dict[str, int] | None:
        """Persist ``error`` rows (with the cause) for the configuration a crashed Ray
        trial was running and tell Optuna FAIL; return its counts, or None (and the
        study stops) when the part cannot be written."""
        message = self._failure_cause(ray_trial_id)
        rows = asked.entry.error_records(asked.our_id, dict(asked.trial.params), message)
        try:
            store.write_part(self._results_dir, asked.our_id, rows, [])
        except OSError as exc:
            self.stopped = self.stopped or (
                f"writing the part of {asked.our_id} failed: {type(exc).__name__}: {exc}"
            )
            return None
        study = self._studies[asked.entry.label]
        counts = summarize(rows)["counts"]
        _set_attrs(study, asked.trial.number, counts)
        study.tell(asked.trial, state=TrialState.FAIL)
        return counts

    def _failure_cause(self, trial_id: str) -> str:
        """Why the Ray trial ``trial_id`` failed, from the error text Tune keeps for it
        (``error_text``): its tries and its last error line."""
        text = self._error_text(trial_id) if self._error_text is not None else None
        if not text:
            return "the Ray trial failed (worker crash or unhandled exception)"
        tries = text.count("Failure # ")
        last = text.rsplit("Failure # ", 1)[-1]
        lines = [line.strip() for line in last.splitlines()[1:] if line.strip()]
        cause = lines[-1] if lines else "no message"
        cause = cause if len(cause) <= 300 else cause[:297] + "..."
        return f"the Ray trial failed {tries} time(s), the last with: {cause}"

    def _pace_from(self, summary: dict[str, Any]) -> None:
        if summary.get("seconds") is not None:
            self.pace.configs += 1
            self.pace.seconds += float(summary["seconds"])

    def _part_summary(self, trial_id: str) -> dict[str, Any]:
        records = store.read_part_records(self._results_dir, trial_id)
        return summarize(records.to_dict("records"))

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its searcher into tuner.pkl for Tuner.restore, which this engine
        # does not use (see the module docstring); keep that file small and picklable.
        state = self.__dict__.copy()
        state.update(_studies={}, _live={}, _on_done=None, pace=_Pace())
        return state

    def save(self, checkpoint_path: str) -> None:
        """State lives in the Optuna storage and the parts; nothing to pickle."""

    def restore(self, checkpoint_path: str) -> None:
        """See ``save``: a resumed study reconciles from the storage instead."""

    # -- results ------------------------------------------------------------------

    def done_counts(self) -> dict[str, int]:
        """Runs per outcome of every configuration that counts as done."""
        return done_counts(self._studies.values())

    def settle_pruned(self, wait_seconds: float = 10.0) -> list[str]:
        """Make sure every configuration told PRUNED has its part.

        Its worker writes the part after Tune stops it, so this waits up to
        ``wait_seconds`` for those parts; for one still missing (the worker was
        ended before it could write) it writes one ``pruned`` record per seed with
        nothing measured. Returns the trial ids it wrote records for.
        """
        deadline = time.monotonic() + wait_seconds
        while self._pruned:
            for trial_id in [t for t in self._pruned if store.has_part(self._results_dir, t)]:
                del self._pruned[trial_id]
            if not self._pruned or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        written = []
        for trial_id, (entry, params) in sorted(self._pruned.items()):
            rows = entry.error_records(trial_id, params, "")
            for row in rows:
                row.update(outcome="pruned", error=None)
            store.write_part(self._results_dir, trial_id, rows, [])
            written.append(trial_id)
        self._pruned.clear()
        return written

    def done_trial_ids(self) -> list[str]:
        """The results' trial ids of every configuration that counts as done."""
        return done_trial_ids(self._studies.values())

    @staticmethod
    def _tell(study: optuna.Study, number: int, summary: dict[str, Any]) -> dict[str, int]:
        """Tell Optuna one configuration's ``summarize``d records; return its counts."""
        counts = summary["counts"]
        _set_attrs(study, number, counts, node_id=summary.get("node_id"))
        value = float(summary["objective"])
        if math.isfinite(value):
            study.tell(number, value)
        else:
            study.tell(number, state=TrialState.FAIL)
        return counts


def _abandon(study: optuna.Study, entry: LabelSearch, number: int, params: dict) -> None:
    """Close a trial that will never report (FAIL, ``abandoned``) and queue its
    parameters to be asked again, unless it died before it had them."""
    _set_attrs(study, number, {}, abandoned=True)
    study.tell(number, state=TrialState.FAIL)
    if set(params) == set(entry.distributions):
        study.enqueue_trial(dict(params), skip_if_exists=False)


def _set_attrs(study: optuna.Study, number: int, counts: dict[str, int], **extra: Any) -> None:
    # Optuna's public API sets user attrs only on a live Trial; a reconciled or
    # abandoned trial is reached by number through the storage.
    storage = study._storage
    internal_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    for outcome, n in counts.items():
        storage.set_trial_user_attr(internal_id, f"n_{outcome}", int(n))
    for key, value in extra.items():
        if value is not None:
            storage.set_trial_user_attr(internal_id, key, value)
