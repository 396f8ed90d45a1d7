"""Column contract of ``trials.parquet`` and ``curves.parquet``.

The trial runner produces records with exactly these keys, the engine writes them,
and ``analysis`` reads them. Swept axes beyond the core ones (for example a swept
``weight_decay``) are added as extra columns named after the axis. A value that
does not apply is missing (NaN / None), e.g. ``beta2`` for SGD, accuracies for a
regression task, ``diverged_step`` for a run that did not diverge.

File names inside a results directory are fixed here too.
"""

from __future__ import annotations

#: ``pruned``: stopped early by the study's scheduler (ASHA); its curve and metrics
#: stop at ``steps_done``, and a seed it never started has ``steps_done == 0`` and
#: no metrics. The analysis treats it as censored.
OUTCOMES = ("converged", "diverged", "stalled", "pruned", "error")
#: Outcomes that say nothing about divergence (the run failed, or stopped before its
#: end): left out of a divergence probability's runs, by the analysis and by the
#: boundary sampler alike.
NOT_AT_RISK = ("error", "pruned")
DIVERGENCE_CAUSES = ("nonfinite", "explosion")

# column -> pandas dtype (nullable dtypes where a value may be missing)
TRIAL_COLUMNS: dict[str, str] = {
    "study": "string",
    "trial_id": "string",  # one configuration: f"{label}-{optuna number:04d}" (a Ray trial may carry several)
    "run_id": "string",  # one configuration x seed: f"{trial_id}-s{seed}"
    "optimizer": "string",  # "sgd" | "insgd" | "novograd"
    "lr": "float64",
    "beta": "float64",  # first-moment coefficient (SGD/INSGD momentum, NovoGrad beta1)
    "beta2": "float64",  # NovoGrad beta2, INSGD input-power beta; NaN for SGD
    "init": "string",
    "seed": "int64",
    "model": "string",
    "dataset": "string",
    "outcome": "string",  # one of OUTCOMES
    "diverged_step": "Int64",  # first step at which divergence was seen
    "divergence_cause": "string",  # one of DIVERGENCE_CAUSES, or missing
    "error": "string",  # the exception message for outcome == "error"
    # the initialized model (step 0), measured exactly as the final metrics are:
    # what each metric is capped by (robustness.runner.outcome.capped_value)
    "initial_loss": "float64",  # training-set loss before the first step
    "initial_train_acc": "float64",  # training-set accuracy before the first step
    "initial_val_loss": "float64",  # validation loss before the first step
    "initial_val_acc": "float64",  # validation accuracy before the first step
    "final_train_loss": "float64",
    "best_train_loss": "float64",
    "final_train_acc": "float64",
    "best_train_acc": "float64",
    "final_val_loss": "float64",
    "best_val_loss": "float64",
    "final_val_acc": "float64",
    "best_val_acc": "float64",
    "insgd_normalized_fraction": "float64",  # share of parameters INSGD normalizes; NaN: others
    "steps_done": "int64",
    "wall_seconds": "float64",
    "node_id": "string",
    "objective": "float64",  # the capped value of the search objective's metric
}

CURVE_COLUMNS: dict[str, str] = {
    "run_id": "string",
    "step": "int64",
    "epoch": "float64",
    "lr": "float64",  # the learning rate in force at this step (schedules)
    "train_loss": "float64",  # mean training loss since the previous evaluation
    "val_loss": "float64",
    "val_acc": "float64",
}

TRIALS_FILE = "trials.parquet"
CURVES_FILE = "curves.parquet"
SPEC_FILE = "spec.yaml"
OPTUNA_FILE = "optuna.db"
REPORT_DIR = "report"
PROVENANCE_KEY = "provenance"  # the block spec.yaml adds to the resolved spec
PLANNED_RUNS = "planned_runs"  # in the provenance: configurations x seeds of the plan
LOCK_FILE = "driver.lock"  # held by the one driver of the directory (engine._lock)
