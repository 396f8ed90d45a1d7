"""``study_status``: how a study in a results directory stands, read from its files.

It works while a driver runs (from another terminal), after the study finished,
and after its driver was killed, because it only reads what the driver and the
workers persist anyway, and never writes:

- ``spec.yaml``: the study (the plan's totals) and its provenance (start, end);
- ``optuna.journal`` (read-only view, ``_optuna_storage.read_studies``): which
  configurations are done, pruned or running, by the rule of ``_done``;
- ``parts/``: the runs of the done configurations (outcomes, objectives);
- ``running/``: how far each running configuration is (seed, step);
- ``driver.lock``: whether a driver holds the directory (``_lock.lock_holder``).

A configuration a killed driver left RUNNING counts as done when its part is
there (the next resume will say so too), else as interrupted. No Ray is imported.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from pathlib import Path
from typing import Any

import yaml
from optuna.trial import TrialState

from robustness.engine import _lock, _optuna_storage
from robustness.engine._done import done_trial_ids
from robustness.engine._trainable import summarize
from robustness.errors import UserInputError
from robustness.results import store
from robustness.results.schema import OUTCOMES, PROVENANCE_KEY, SPEC_FILE, TRIAL_COLUMNS

_PARAMS = ("lr", "beta", "beta2", "init")


def study_status(results_dir: str | Path) -> dict[str, Any]:
    """The status of the study in ``results_dir`` as one JSON-ready dict.

    Keys: ``results_dir``, ``study``, ``state`` (``running``, ``finished`` or
    ``interrupted``), ``driver`` (the lock's holder, or None), ``configurations``
    and ``runs`` (``total``, ``done``, ``running``, ``left``; configurations also
    ``pruned`` and ``interrupted``), ``outcomes`` (runs per outcome), ``objective``,
    ``direction``, ``best`` (per optimizer label: ``trial_id``, ``objective``,
    ``params``), ``running`` (per running configuration: ``trial_id``, ``label``,
    ``seed``, ``seeds``, ``step``, ``total_steps``), ``started``, ``finished``,
    ``elapsed_seconds`` and ``eta_seconds`` (None when unknown).

    Raises:
        UserInputError: ``results_dir`` holds no study (no ``spec.yaml``).
    """
    from robustness.spec import make_plan, parse_spec

    out = Path(results_dir).expanduser().resolve()
    spec_file = out / SPEC_FILE
    if not spec_file.is_file():
        raise UserInputError(
            f"{str(out)!r} holds no study: it has no {SPEC_FILE} (give the --out of a "
            "`robustness run`)"
        )
    # the lock first: a driver writes its end time before it lets the lock go, so a
    # free lock and no end time means the driver died
    holder = _lock.lock_holder(out)
    data = yaml.safe_load(spec_file.read_text(encoding="utf-8")) or {}
    provenance = data.get(PROVENANCE_KEY) or {}
    spec = parse_spec(data, str(spec_file))
    plan = make_plan(spec)
    seeds = len(spec.seeds)

    done, pruned, in_flight = _configurations(out)
    parts = {trial_id: store.intact_part(out, trial_id) for trial_id in done}
    records = {k: v.to_dict("records") for k, v in parts.items() if v is not None}
    running_info = store.read_running(out) if holder is not None else {}
    running = sorted(in_flight) if holder is not None else []
    total = plan.n_configurations()
    n_done = len(done)
    runs_done = sum(len(rows) for rows in records.values())
    runs_total = total * seeds
    # the runs a running configuration has begun (its finished seeds are persisted
    # with its part, so until then they count as running)
    begun = {t: int((running_info.get(t) or {}).get("seed_index", 0)) + 1 for t in running}
    outcomes = {
        o: sum(r.get("outcome") == o for rows in records.values() for r in rows) for o in OUTCOMES
    }

    started = _time(provenance.get("started"))
    finished = _time(provenance.get("finished")) if holder is None else None
    now = dt.datetime.now(dt.timezone.utc)
    elapsed = ((finished or now) - started).total_seconds() if started else None
    left = max(0, total - n_done - len(running))
    state = "running" if holder is not None else ("finished" if finished else "interrupted")
    return {
        "results_dir": str(out),
        "study": spec.name,
        "state": state,
        "driver": holder,
        "configurations": {
            "total": total,
            "done": n_done,
            "pruned": len(pruned),
            "running": len(running),
            "interrupted": 0 if holder is not None else len(in_flight),
            "left": left,
        },
        "runs": {
            "total": runs_total,
            "done": runs_done,
            "running": sum(begun.values()),
            # the configurations left, and the seeds a running one has still to begin
            # (a pruned configuration's runs are never left)
            "left": left * seeds + sum(seeds - n for n in begun.values()),
        },
        "outcomes": outcomes,
        "objective": spec.search.objective,
        "direction": spec.search.direction,
        "best": _best(records, spec.search.direction),
        "running": [_running(trial_id, running_info.get(trial_id)) for trial_id in running],
        "started": provenance.get("started"),
        "finished": provenance.get("finished") if finished else None,
        "elapsed_seconds": elapsed,
        "eta_seconds": 0.0 if state == "finished" else _eta(out, holder, left, len(running)),
    }


def _configurations(out: Path) -> tuple[set[str], set[str], set[str]]:
    """Trial ids done, pruned (a subset of done) and RUNNING without a part."""
    studies = _optuna_storage.read_studies(out)
    if studies is None:  # a directory from before the journal: the parts alone
        parts = (out / store.PARTS_DIR).glob("*.trials.*")
        ids = {p.name.split(".trials.")[0] for p in parts if not p.name.endswith(".damaged")}
        return ids, set(), set()
    done = set(done_trial_ids(studies))
    pruned, in_flight = set(), set()
    for study in studies:
        for trial in study.get_trials(deepcopy=False):
            trial_id = trial.user_attrs.get("trial_id")
            if trial_id is None:
                continue
            if trial.state == TrialState.PRUNED and trial_id in done:
                pruned.add(trial_id)
            elif trial.state == TrialState.RUNNING:
                if store.has_part(out, trial_id):
                    done.add(trial_id)  # finished, not yet told (or its driver died)
                else:
                    in_flight.add(trial_id)
    return done, pruned, in_flight


def _best(records: dict[str, list[dict[str, Any]]], direction: str) -> dict[str, Any]:
    """Per optimizer label, the done configuration with the best seed-aggregated
    objective (the value the search was told)."""
    best: dict[str, dict[str, Any]] = {}
    sign = 1.0 if direction == "minimize" else -1.0
    for trial_id, rows in sorted(records.items()):
        objective = summarize(rows)["objective"]
        if not rows or not math.isfinite(objective):
            continue
        label = str(rows[0].get("optimizer"))
        if label not in best or sign * objective < sign * best[label]["objective"]:
            first = rows[0]
            params = {k: first.get(k) for k in _PARAMS if _given(first.get(k))}
            params.update({k: v for k, v in first.items() if k not in TRIAL_COLUMNS and _given(v)})
            best[label] = {"trial_id": trial_id, "objective": objective, "params": params}
    return best


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _running(trial_id: str, info: dict[str, Any] | None) -> dict[str, Any]:
    info = info or {}
    seed_index = info.get("seed_index")
    return {
        "trial_id": trial_id,
        "label": info.get("label"),
        "seed": None if seed_index is None else int(seed_index) + 1,
        "seeds": info.get("seeds"),
        "step": info.get("step"),
        "total_steps": info.get("total_steps"),
    }


def _eta(out: Path, holder: dict[str, Any] | None, left: int, running: int) -> float | None:
    """Seconds to the end at the pace of this driver session: configurations whose
    part was written since the driver started, per second."""
    session = _time((holder or {}).get("started"))
    if session is None:
        return None
    since = session.timestamp()
    finished = sum(
        1 for p in (out / store.PARTS_DIR).glob("*.trials.arrow") if p.stat().st_mtime >= since
    )
    seconds = time.time() - since
    if finished == 0 or seconds <= 0:
        return None
    return (left + running) * seconds / finished


def _time(text: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def format_status(status: dict[str, Any]) -> str:
    """``study_status`` as the lines ``robustness status`` prints."""
    driver = status["driver"]
    state = status["state"]
    if driver is not None:
        state += f" ({_lock.describe_holder(driver)})"
    elif state == "interrupted":
        state += (
            " (no driver holds it; continue with "
            f"`robustness run --out {status['results_dir']} --resume`)"
        )
    c, r = status["configurations"], status["runs"]
    extra = "".join(f", {c[key]} {key}" for key in ("pruned", "interrupted") if c[key])
    lines = [
        f"study {status['study']} in {status['results_dir']}: {state}",
        f"configurations: {c['done']} done, {c['running']} running, {c['left']} left "
        f"of {c['total']}{extra}",
        f"runs: {r['done']} done, {r['running']} running, {r['left']} left of {r['total']}",
        "outcomes: " + ", ".join(f"{k} {v}" for k, v in status["outcomes"].items()),
    ]
    if status["best"]:
        lines.append(f"best so far ({status['objective']}, {status['direction']}d):")
        width = max(map(len, status["best"]))
        for label, best in status["best"].items():
            params = " ".join(f"{k}={_short(v)}" for k, v in best["params"].items())
            lines.append(
                f"  {label:<{width}}  {best['objective']:.4g}  {best['trial_id']}  {params}"
            )
    if status["running"]:
        lines.append("running:")
        for item in status["running"]:
            lines.append(f"  {item['trial_id']}  {_where(item)}")
    elapsed, eta = status["elapsed_seconds"], status["eta_seconds"]
    timing = f"elapsed {_duration(elapsed)}"
    if status["state"] != "finished":
        timing += f", ETA {_duration(eta)}"
    lines.append(timing)
    return "\n".join(lines)


def _where(item: dict[str, Any]) -> str:
    if item["step"] is None:
        return "started (no evaluation reported yet)"
    budget = f"/{item['total_steps']}" if item["total_steps"] else ""
    return f"seed {item['seed']}/{item['seeds']}, step {item['step']}{budget}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
