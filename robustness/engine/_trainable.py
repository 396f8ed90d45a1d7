"""The Ray Tune trainable: one configuration, trained on every seed of the study.

It receives the payload ``trial_payload`` builds (a ``TrialConfig`` as JSON plus
where to persist), runs ``run_trial``, stamps the records with what only the engine
knows (``study``, the optimizer label, ``node_id``), persists them as this trial's
part in the results directory, and reports the seed-aggregated objective once.

The trainable never raises for a failing run: an exception outside ``run_trial``'s
own per-seed handling becomes one ``error`` record per seed, and the study goes on.

What a scheduler (ASHA) sees, only when the study has one: one report per
evaluation of every seed, in order (seed 0's evaluations, then seed 1's ...), so
its time attribute ``training_iteration`` counts evaluations across the seeds;
``objective`` = the evaluation's value of the objective's metric (``val_loss`` for
``*_val_loss``, ``train_loss`` for ``*_train_loss``, ``val_acc`` for ``*_acc``), a
non-finite value replaced by the worst value (1e30 for a loss, 0.0 for an
accuracy). ``progress`` (seed index + fraction of that seed's budget) rides along
for display. The final report (the seed-aggregated objective, after the part is
written) comes one iteration after the last evaluation. A trial ASHA stops early
persists nothing: it is PRUNED in ``optuna.db`` and has no rows in the tables.
Without a scheduler nothing is reported before the end (less Ray overhead).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from robustness.results import store
from robustness.runner.config import TrialConfig

PROGRESS = "progress"
_WORST_LOSS = 1e30


def trial_payload(
    config: TrialConfig,
    *,
    trial_id: str,
    label: str,
    study: str,
    results_dir: str,
    report_evals: bool,
) -> dict[str, Any]:
    """The JSON-serializable dict the searcher hands Ray for one configuration."""
    return {
        "trial_id": trial_id,
        "label": label,
        "study": study,
        "results_dir": results_dir,
        "report_evals": report_evals,
        "trial": config.model_dump(mode="json"),
    }


def train_configuration(payload: dict[str, Any]) -> None:
    """Ray Tune function trainable (see the module docstring)."""
    import ray
    from ray import tune

    config = TrialConfig.model_validate(payload["trial"])
    trial_id = payload["trial_id"]
    node_id = ray.get_runtime_context().get_node_id()
    callback = _eval_reporter(config, tune.report) if payload["report_evals"] else None
    started = time.perf_counter()
    try:
        from robustness.runner import run_trial

        result = run_trial(config, callback=callback, trial_id=trial_id)
        records, curves = [dict(r) for r in result.records], list(result.curves)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        records, curves = error_records(config, trial_id, message), []
        for record in records:
            record["wall_seconds"] = (time.perf_counter() - started) / len(records)
    for record in records:
        record.update(study=payload["study"], optimizer=payload["label"], node_id=node_id)
    store.write_part(payload["results_dir"], trial_id, records, curves)
    objectives = [float(r["objective"]) for r in records if _finite(r.get("objective"))]
    tune.report(
        {
            "objective": sum(objectives) / len(objectives) if objectives else math.nan,
            PROGRESS: float(len(config.seeds)),
            "node_id": node_id,
            "persisted": True,
        }
    )


def error_records(config: TrialConfig, trial_id: str, message: str) -> list[dict[str, Any]]:
    """One ``error`` record per seed for a configuration that could not run at all.

    The objective is the worst capped value available without an initial loss: 0.0
    for an accuracy objective, NaN for a loss (the searcher then tells Optuna FAIL).
    """
    objective = 0.0 if config.objective.endswith("_acc") else math.nan
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
            "objective": objective,
        }
        for seed in config.seeds
    ]


def _eval_reporter(
    config: TrialConfig, report: Callable[[dict[str, Any]], None]
) -> Callable[[dict[str, Any]], None]:
    """A run_trial callback that reports each evaluation to the scheduler."""
    name = config.objective
    key = "val_acc" if name.endswith("_acc") else ("train_loss" if "train" in name else "val_loss")
    worst = 0.0 if name.endswith("_acc") else _WORST_LOSS
    budget_steps, budget_epochs = config.steps, config.epochs

    def on_eval(event: dict[str, Any]) -> None:
        value = event.get(key)
        value = float(value) if _finite(value) else worst
        if budget_steps is not None:
            fraction = event["step"] / budget_steps
        else:
            fraction = float(event["epoch"]) / float(budget_epochs)
        report({"objective": value, PROGRESS: event["seed_index"] + min(fraction, 1.0)})

    return on_eval


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
