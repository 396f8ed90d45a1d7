"""A synthetic but realistic results directory, for analysis tests and benchmarks.

``write_synthetic_results(path, ...)`` writes ``trials.parquet``, ``curves.parquet``
and ``spec.yaml`` following ``robustness/results/schema.py``, the way the engine
would after a grid study, without training anything. The numbers follow a simple
model of what real studies show:

- each (optimizer, init, beta) has a stability boundary in log10(lr); momentum
  lowers it (an effective learning rate of lr / (1 - beta)), and each seed jitters
  it a little, so the divergence probability rises from 0 to 1 over about half a
  decade;
- above the boundary a run diverges (non-finite or exploding loss, stopped early,
  objective capped at the initial loss); far below it the loss barely moves and the
  run stalls; in between the final loss is a flat-bottomed parabola in log10(lr).

``scenario`` forces the degenerate cases the report must survive: ``"all_diverged"``
and ``"none_diverged"`` move every boundary far below or above the swept range.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from robustness.results.schema import (
    CURVE_COLUMNS,
    CURVES_FILE,
    SPEC_FILE,
    TRIAL_COLUMNS,
    TRIALS_FILE,
)

# log10 of the stability boundary at beta = 0 and the default init
_BOUNDARY = {"sgd": -0.2, "insgd": 0.4, "novograd": 0.0}
# how strongly momentum lowers the boundary (1 = exactly lr / (1 - beta))
_MOMENTUM_EFFECT = {"sgd": 1.0, "insgd": 0.8, "novograd": 0.3}
_SCENARIO_SHIFT = {"mixed": 0.0, "all_diverged": -20.0, "none_diverged": 20.0}
_STEPS = 300


def write_synthetic_results(
    path: Path | str,
    *,
    optimizers: Sequence[str] = ("sgd", "insgd", "novograd"),
    inits: Sequence[str] = ("default", "kaiming_normal"),
    betas: Sequence[float] = (0.5, 0.9),
    lrs: Sequence[float] | None = None,
    seeds: Sequence[int] = (0, 1),
    curve_points: int = 10,
    scenario: str = "mixed",
    with_curves: bool = True,
    rng_seed: int = 0,
) -> Path:
    """Write a results directory at ``path`` and return it.

    Optimizer names other than sgd/insgd/novograd (e.g. labels such as
    ``insgd_reference``) get the boundary of their prefix. ``with_curves=False``
    writes an empty ``curves.parquet`` (a study run without curve logging).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    lrs = list(np.logspace(-4, 1, 9) if lrs is None else lrs)
    rng = np.random.default_rng(rng_seed)
    trials = _trials(optimizers, inits, betas, lrs, seeds, scenario, rng)
    curves = _curves(trials, curve_points, rng) if with_curves else _empty(CURVE_COLUMNS)
    trials.to_parquet(path / TRIALS_FILE, index=False)
    curves.to_parquet(path / CURVES_FILE, index=False)
    spec = _spec(optimizers, inits, betas, lrs, seeds)
    (path / SPEC_FILE).write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _trials(optimizers, inits, betas, lrs, seeds, scenario, rng) -> pd.DataFrame:
    grid = list(itertools.product(optimizers, inits, betas, lrs, seeds))
    opt, init, beta, lr, seed = (np.array(col) for col in zip(*grid, strict=True))
    n = len(grid)
    base_opt = np.array([_base(o) for o in opt])
    init_shift = {name: -0.15 * i for i, name in enumerate(inits)}
    boundary = (
        np.array([_BOUNDARY[b] for b in base_opt])
        + np.array([_MOMENTUM_EFFECT[b] for b in base_opt]) * np.log10(1 - beta.astype(float))
        + np.array([init_shift[i] for i in init])
        + _SCENARIO_SHIFT[scenario]
        + rng.normal(0.0, 0.12, n)
    )
    log_lr = np.log10(lr.astype(float))
    initial = np.log(10) + rng.normal(0.0, 0.01, n)
    distance = log_lr - (boundary - 1.0)  # optimum one decade below the boundary
    flat = np.maximum(np.abs(distance) - 0.4, 0.0)  # a flat valley: a band of good lrs
    final = np.minimum(0.12 + 0.45 * flat**2 + rng.gamma(2.0, 0.005, n), initial * 1.02)
    diverged = log_lr > boundary
    stalled = ~diverged & (final >= 0.99 * initial)
    outcome = np.where(diverged, "diverged", np.where(stalled, "stalled", "converged"))
    if scenario == "mixed" and n > 20:
        outcome[n // 3] = "error"
    is_err = outcome == "error"
    is_div = outcome == "diverged"
    cause = np.where(rng.random(n) < 0.6, "nonfinite", "explosion")
    div_step = rng.integers(5, _STEPS // 2, n)

    final_val = np.where(is_div, np.where(cause == "nonfinite", np.nan, 50.0 * initial), final)
    final_val = np.where(is_err, np.nan, final_val)
    final_train = np.where(np.isfinite(final_val), final_val * 0.9, final_val)
    best_val = np.where(is_div, initial * 0.95, final * 0.98)
    best_val = np.where(is_err, np.nan, best_val)
    acc = np.clip(1.0 - 0.9 * final / initial + rng.normal(0, 0.01, n), 0.1, 1.0)
    final_acc = np.where(is_div | is_err, np.where(is_div, 0.1, np.nan), acc)
    objective = np.where(is_div | is_err, initial, np.minimum(final_val, initial))

    trial_key = pd.Series(list(zip(opt, init, beta, lr, strict=True))).astype(str)
    trial_id = pd.factorize(trial_key)[0]
    trial_ids = np.char.add("t", np.char.zfill(trial_id.astype(str), 5))
    frame = pd.DataFrame(
        {
            "study": "synthetic",
            "trial_id": trial_ids,
            "run_id": np.char.add(np.char.add(trial_ids, "-s"), seed.astype(str)),
            "optimizer": opt,
            "lr": lr.astype(float),
            "beta": beta.astype(float),
            "beta2": np.where(base_opt == "sgd", np.nan, 0.99),
            "init": init,
            "seed": seed.astype(int),
            "model": "mlp",
            "dataset": "digits",
            "outcome": outcome,
            "diverged_step": pd.array(np.where(is_div, div_step, 0), dtype="Int64"),
            "divergence_cause": np.where(is_div, cause, None),
            "error": np.where(is_err, "RuntimeError: synthetic failure", None),
            "initial_loss": initial,
            "initial_train_acc": 0.1,
            "initial_val_loss": initial,
            "initial_val_acc": 0.1,
            "final_train_loss": final_train,
            "best_train_loss": best_val * 0.9,
            "final_train_acc": final_acc,
            "best_train_acc": final_acc,
            "final_val_loss": final_val,
            "best_val_loss": best_val,
            "final_val_acc": final_acc,
            "best_val_acc": final_acc,
            "insgd_normalized_fraction": np.where(base_opt == "insgd", 0.97, np.nan),
            "steps_done": np.where(is_div, div_step, np.where(is_err, 0, _STEPS)),
            "wall_seconds": rng.gamma(4.0, 0.5, n),
            "node_id": "node-0",
            "objective": objective,
        }
    )
    frame.loc[~is_div, "diverged_step"] = pd.NA
    return frame.astype(TRIAL_COLUMNS)


def _curves(trials: pd.DataFrame, points: int, rng) -> pd.DataFrame:
    """``points`` evaluations per run; diverged runs stop at their divergence step."""
    n = len(trials)
    frac = np.linspace(0.0, 1.0, points)
    last_step = trials["steps_done"].to_numpy(dtype=float)
    step = np.rint(np.outer(last_step, frac)).astype(int)
    initial = trials["initial_loss"].to_numpy()[:, None]
    target = trials["best_val_loss"].fillna(trials["initial_loss"]).to_numpy()[:, None]
    decay = np.exp(-4.0 * step / _STEPS)
    val = target + (initial - target) * decay + rng.normal(0, 0.01, (n, points)) * target
    diverged = (trials["outcome"] == "diverged").to_numpy()
    # a diverged run's last two evaluations blow up, the last one to the recorded value
    blow = np.geomspace(initial[:, 0] * 3.0, initial[:, 0] * 50.0, 2).T
    val[diverged, -2:] = blow[diverged]
    nonfinite = diverged & trials["divergence_cause"].eq("nonfinite").fillna(False).to_numpy(bool)
    val[nonfinite, -1] = np.nan
    acc = np.clip(1.0 - 0.9 * val / initial, 0.1, 1.0)
    frame = pd.DataFrame(
        {
            "run_id": np.repeat(trials["run_id"].to_numpy(), points),
            "step": step.ravel(),
            "epoch": step.ravel() * 128 / 1437,
            "lr": np.repeat(trials["lr"].to_numpy(), points),
            "train_loss": (val * 0.9).ravel(),
            "val_loss": val.ravel(),
            "val_acc": acc.ravel(),
        }
    )
    errored = np.repeat((trials["outcome"] == "error").to_numpy(), points)
    return frame[~errored].astype(CURVE_COLUMNS).reset_index(drop=True)


def _empty(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


def _base(label: str) -> str:
    return next(b for b in _BOUNDARY if label == b or label.startswith(b + "_"))


def _spec(optimizers, inits, betas, lrs, seeds) -> dict:
    return {
        "name": "synthetic",
        "description": "Synthetic grid study written by tests/_synthetic.py",
        "problem": {
            "dataset": "digits",
            "model": "mlp",
            "model_args": {},
            "batch_size": 128,
            "steps": _STEPS,
            "eval_every": 30,
            "loss": "auto",
        },
        "optimizers": {name: {} for name in optimizers},
        "space": {
            "lr": [float(x) for x in lrs],
            "init": list(inits),
            "beta": [float(b) for b in betas],
            "beta2": [0.99],
        },
        "seeds": [int(s) for s in seeds],
        "search": {"sampler": "grid", "objective": "final_val_loss", "direction": "minimize"},
        "divergence": {"loss_factor": 10.0, "stall_margin": 0.01},
        "resources": {"cpu": 1, "gpu": 0},
        "provenance": {
            "versions": {"optim-robustness": "0.1.0", "torch": "2.13.0", "ray": "2.60.0"},
            "git_commit": "0000000",
            "host": "synthetic-host",
            "started": "2026-01-01T00:00:00+00:00",
            "finished": "2026-01-01T00:10:00+00:00",
        },
    }
