"""The Ray Tune trainable: a pack of configurations, each trained on every seed.

A Ray trial's config is ``{"pack": [payload, ...]}``, one payload per configuration
as ``trial_payload`` builds it (a ``TrialConfig`` as JSON plus where to persist).
The configurations run on the trial's resources: those that can share a
population (``population_key``; unless ``resources.population`` is ``off``) train
at once as one model (``run_population``), the others one after another; for each
configuration the trainable runs ``run_trial`` (or its population does the same),
stamps every record with what only the engine knows
(``study``, the optimizer label, ``node_id``), and persists the configuration's
part in the results directory as soon as it finishes, so a Ray trial stopped or
killed mid-pack loses at most the configuration it was running. After the whole
pack it reports once: ``objective`` (the mean of the configurations' seed-aggregated
objectives) and ``configurations``, each configuration's ``summarize``d records by
trial id, as JSON (Tune flattens nested results). The searcher tells Optuna from
those; the part on disk stays the record, read back only when a summary is missing.

The trainable never raises for a failing run: an exception outside ``run_trial``'s
own per-seed handling becomes one ``error`` record per seed of that configuration
only, and the rest of the pack (and the study) goes on.

How far a running configuration is: at evaluations (never per step), at most every
``RUNNING_EVERY`` seconds, it writes ``running/<trial_id>.json`` (seed, step, step
budget) for the progress display and ``robustness status``; removed with its part.

Faults outside the run:
- the worker process dies (SIGKILL, out of memory, node lost): Tune runs the Ray
  trial again (``resources.max_retries`` times); the rerun skips the configurations
  whose part was persisted and reads their summary back from it.
- a part cannot be written (disk full, permission): the pack stops there and the
  final report says why (``WRITE_FAILED``); the driver then stops the study. Nothing
  persisted before is touched.

What a scheduler (ASHA) sees, only when the study has one (then a pack is one
configuration, see ``StudySpec.pack_size``): one report per evaluation of every
seed after step 0, in order (seed 0's evaluations, then seed 1's ...). Its time
attribute is ``progress``, in runs: seed index + the fraction of that seed's budget
done, so ``grace_period: 0.25`` is a quarter of the first seed's budget, as the
spec documents. The step-0 evaluation, which depends only on the init and the
seed, is never reported, so it is never a rung. ``objective`` = the evaluation's
value of the objective's metric (``val_loss`` for ``*_val_loss``, ``train_loss``
for ``*_train_loss``, ``val_acc`` for ``*_acc``) under the capping rule
(``capped_value``, against the seed's step-0 value; a seed's last report carries
its outcome, so a diverged seed reports its untrained value). The final report
(the seed-aggregated objective, after the part is written) has no ``progress``,
so the scheduler never takes it for a rung.

A configuration ASHA stops: Tune stops a function trainable by making its next
``tune.report`` raise ``SystemExit``. The reporter turns that into
``TrialStopped``, ``run_trial`` records the seed it was training as ``pruned``
with its partial curve (and every seed not yet started as ``pruned``, nothing
measured), the part is written as for any configuration, and the trainable ends
with ``SystemExit(0)`` as Tune expects (no final report: returning would make
Tune's wrapper report once more, into a session that no longer reads). Every
configuration x seed the study planned thus ends as a row (the searcher writes
``pruned`` rows for a stopped worker that could not). Without a scheduler nothing
is reported before the end (less Ray overhead).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

from robustness.results import store
from robustness.results.schema import OUTCOMES
from robustness.runner.config import TrialConfig
from robustness.runner.outcome import TrialStopped, capped_value, is_maximized, mean_objective

PACK = "pack"  # the Ray trial config's key: the list of configuration payloads
SUMMARIES = "configurations"  # the final report's key: JSON of trial id -> summarize()
PROGRESS = "progress"  # the scheduler's time attribute, in runs (see the module docstring)
STOPPED = "stopped"  # a summary's flag: the scheduler stopped the configuration
RUNNING_EVERY = 2.0  # seconds between two running/<trial_id>.json writes of a configuration
WRITE_FAILED = "write_failed"  # the final report's key: why a part could not be written
_WORST_LOSS = 1e30


def trial_payload(
    config: TrialConfig,
    *,
    trial_id: str,
    label: str,
    study: str,
    results_dir: str,
    report_evals: bool,
    population: int | str = "off",
) -> dict[str, Any]:
    """The JSON-serializable dict the searcher hands Ray for one configuration.

    ``population`` is the spec's ``resources.population`` (``"auto"``, ``"off"``
    or the most runs trained at once).
    """
    return {
        "trial_id": trial_id,
        "label": label,
        "study": study,
        "results_dir": results_dir,
        "report_evals": report_evals,
        "population": population,
        "trial": config.model_dump(mode="json"),
    }


def train_pack(config: dict[str, Any]) -> None:
    """Ray Tune function trainable (see the module docstring)."""
    import ray
    from ray import tune

    node_id = ray.get_runtime_context().get_node_id()
    pack = config[PACK]
    summaries = {}
    write_failed = ""
    todo = []
    for payload in pack:
        trial_id, results_dir = payload["trial_id"], payload["results_dir"]
        persisted = store.intact_part(results_dir, trial_id)
        if persisted is not None:  # a retry: persisted before the worker died
            summaries[trial_id] = summarize(persisted.to_dict("records"))
            continue
        todo.append(payload)
    try:
        for group in population_groups(todo):
            if len(group) > 1:
                summaries.update(run_population_group(group, node_id=node_id))
                continue
            payload = group[0]
            report = tune.report if payload["report_evals"] and len(pack) == 1 else None
            summary = run_configuration(payload, node_id=node_id, report=report)
            summaries[payload["trial_id"]] = summary
            if summary.get(STOPPED):  # Tune stopped this trial: end its thread as Tune does
                raise SystemExit(0)
    except OSError as exc:  # a part could not be written: the study must stop
        write_failed = f"writing a part failed: {type(exc).__name__}: {exc}"
    finite = [s["objective"] for s in summaries.values() if _finite(s["objective"])]
    tune.report(
        {
            "objective": sum(finite) / len(finite) if finite else math.nan,
            SUMMARIES: json.dumps(summaries),
            WRITE_FAILED: write_failed,
            "node_id": node_id,
            "persisted": not write_failed,
        }
    )


def run_configuration(
    payload: dict[str, Any],
    *,
    node_id: str | None,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run one configuration of a pack on all its seeds and persist its part.

    Returns ``summarize`` of its records, with ``STOPPED: True`` when the scheduler
    stopped it (its part then holds ``pruned`` runs). ``report`` (a scheduler's
    ``tune.report``) receives one report per evaluation after step 0. Never raises
    for a failing configuration: it is recorded as ``error`` runs.
    """
    stopped = False
    config = TrialConfig.model_validate(payload["trial"])
    trial_id = payload["trial_id"]
    running = _RunningWriter(config, payload)
    callback = running if report is None else _both(_eval_reporter(config, report), running)
    started = time.perf_counter()
    try:
        from robustness.runner import run_trial

        result = run_trial(config, callback=callback, trial_id=trial_id)
        records, curves = [dict(r) for r in result.records], list(result.curves)
        stopped = result.stopped
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        records, curves = error_records(config, trial_id, message), []
        for record in records:
            record["wall_seconds"] = (time.perf_counter() - started) / len(records)
    summary = _persist(payload, records, curves, node_id)
    running.clear()
    if stopped:
        summary[STOPPED] = True
    return summary


def population_groups(pack: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The pack's payloads grouped into populations (``population_key``), in order
    of first appearance; each payload alone when population training is off or a
    scheduler watches every evaluation (a population has no per-evaluation
    callback)."""
    from robustness.runner.grouping import population_key

    groups: dict[str, list[dict[str, Any]]] = {}
    for index, payload in enumerate(pack):
        alone = payload.get("population", "off") == "off" or (
            payload["report_evals"] and len(pack) == 1
        )
        key = f"alone-{index}" if alone else population_key(_config(payload))
        groups.setdefault(key, []).append(payload)
    return list(groups.values())


def run_population_group(
    payloads: list[dict[str, Any]], *, node_id: str | None
) -> dict[str, dict[str, Any]]:
    """Run configurations that share a population key as populations
    (``run_population``), persisting each one's part as soon as it finishes.

    Returns ``summarize`` of each configuration's records by trial id. Raises only
    ``OSError`` (a part could not be written); a configuration the population did
    not finish (a bad configuration among them, a failure) runs through
    ``run_configuration``, which records its errors.
    """
    from robustness.runner import run_population

    by_id = {p["trial_id"]: p for p in payloads}
    summaries: dict[str, dict[str, Any]] = {}

    def persist(result) -> None:
        trial_id = result.records[0]["trial_id"]
        records = [dict(r) for r in result.records]
        summaries[trial_id] = _persist(by_id[trial_id], records, list(result.curves), node_id)

    try:
        run_population(
            [_config(p) for p in payloads],
            trial_ids=list(by_id),
            on_result=persist,
            max_members=payloads[0].get("population", "auto"),
        )
    except OSError:
        raise
    except Exception:  # what did not finish runs one configuration at a time below
        pass
    for trial_id, payload in by_id.items():
        if trial_id not in summaries:
            summaries[trial_id] = run_configuration(payload, node_id=node_id)
    return summaries


def _persist(
    payload: dict[str, Any],
    records: list[dict[str, Any]],
    curves: list[dict[str, Any]],
    node_id: str | None,
) -> dict[str, Any]:
    """Stamp what only the engine knows, write the configuration's part, summarize."""
    for record in records:
        record.update(study=payload["study"], optimizer=payload["label"], node_id=node_id)
    store.write_part(payload["results_dir"], payload["trial_id"], records, curves)
    return summarize(records)


def _config(payload: dict[str, Any]) -> TrialConfig:
    return TrialConfig.model_validate(payload["trial"])


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What the searcher tells Optuna about one configuration, from its records.

    ``objective``: ``mean_objective`` (the mean of the seeds' capped objectives
    that are not missing; NaN when none is, and Optuna is then told FAIL); ``counts``: runs per outcome;
    ``node_id``: where it ran; ``seconds``: the runs' summed ``wall_seconds`` (None
    when a run lacks it), which paces adaptive packing.
    """
    seconds = [r.get("wall_seconds") for r in records]
    return {
        "objective": mean_objective(records),
        "counts": {o: sum(1 for r in records if r.get("outcome") == o) for o in OUTCOMES},
        "node_id": next((r["node_id"] for r in records if isinstance(r.get("node_id"), str)), None),
        "seconds": float(sum(seconds)) if seconds and all(map(_present, seconds)) else None,
    }


def pack_name(config: dict[str, Any]) -> str:
    """A Ray trial's name: its first configuration's trial id, ``+N`` more."""
    pack = config.get(PACK) or []
    if not pack:
        return "empty-pack"
    first = str(pack[0]["trial_id"])
    return first if len(pack) == 1 else f"{first}+{len(pack) - 1}"


def error_records(config: TrialConfig, trial_id: str, message: str) -> list[dict[str, Any]]:
    """One ``error`` record per seed for a configuration that could not run at all.

    Nothing was measured, not even the initialized model, so the capped objective
    is missing (``capped_value``) and the searcher tells Optuna FAIL.
    """
    return [
        {
            **config.tags,
            "trial_id": trial_id,
            "run_id": f"{trial_id}-s{seed}",
            "optimizer": config.optimizer,
            "lr": config.lr,
            "beta": config.beta,
            "beta2": config.beta2,
            "init": config.init,
            "seed": seed,
            "model": config.model,
            "dataset": config.dataset,
            "outcome": "error",
            "error": message,
            "steps_done": 0,
            "wall_seconds": 0.0,
            "objective": math.nan,
        }
        for seed in config.seeds
    ]


def _eval_reporter(
    config: TrialConfig, report: Callable[[dict[str, Any]], None]
) -> Callable[[dict[str, Any]], None]:
    """A run_trial callback that reports each evaluation after step 0 to the
    scheduler (see the module docstring), and turns Tune's stop into ``TrialStopped``."""
    name = config.objective
    maximize = is_maximized(name)
    key = "val_acc" if maximize else ("train_loss" if "train" in name else "val_loss")
    initial_key = {"val_acc": "initial_val_acc", "train_loss": "initial_loss"}.get(
        key, "initial_val_loss"
    )
    worst = 0.0 if maximize else _WORST_LOSS  # only when even step 0 was not finite
    budget_steps, budget_epochs = config.steps, config.epochs

    def on_eval(event: dict[str, Any]) -> None:
        if event["step"] == 0:
            return
        value = capped_value(
            event.get(key), event.get(initial_key), event.get("outcome"), maximize=maximize
        )
        value = float(value) if _finite(value) else worst
        if budget_steps is not None:
            fraction = event["step"] / budget_steps
        else:
            fraction = float(event["epoch"]) / float(budget_epochs)
        try:
            report({"objective": value, PROGRESS: event["seed_index"] + min(fraction, 1.0)})
        except SystemExit:  # how Tune ends a function trainable it stops
            raise TrialStopped from None

    return on_eval


class _RunningWriter:
    """A ``run_trial`` callback that says how far the configuration is, in
    ``running/<trial_id>.json`` (``store.write_running``), at an evaluation at least
    ``RUNNING_EVERY`` seconds after the previous write (or the start): nothing per
    step, and nothing at all for a configuration shorter than that."""

    def __init__(self, config: TrialConfig, payload: dict[str, Any]) -> None:
        self._results_dir, self._trial_id = payload["results_dir"], payload["trial_id"]
        self._label, self._seeds = payload["label"], len(config.seeds)
        self._steps, self._epochs = config.steps, config.epochs
        self._last = time.monotonic()
        self._written = False

    def __call__(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self._last < RUNNING_EVERY:
            return
        self._last = now
        step, epoch = int(event["step"]), float(event.get("epoch") or 0.0)
        total = self._steps
        if total is None and epoch > 0:
            total = round(float(self._epochs) * step / epoch)
        info = {
            "label": self._label,
            "seed_index": int(event["seed_index"]),
            "seeds": self._seeds,
            "step": step,
            "total_steps": total,
            "time": time.time(),
        }
        try:
            store.write_running(self._results_dir, self._trial_id, info)
        except OSError:  # only a display: the part's own write says if the disk fails
            return
        self._written = True

    def clear(self) -> None:
        if self._written:
            store.clear_running(self._results_dir, self._trial_id)


def _both(
    first: Callable[[dict[str, Any]], None], second: Callable[[dict[str, Any]], None]
) -> Callable[[dict[str, Any]], None]:
    def call(event: dict[str, Any]) -> None:
        first(event)
        second(event)

    return call


def _present(value: Any) -> bool:
    """A number that is not missing (None, NaN, pandas' NA); inf counts."""
    try:
        return not math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _finite(value: Any) -> bool:
    return _present(value) and math.isfinite(float(value))
