"""Engine overhead: a reduced quickstart through ``run_study`` against the summed
compute of its runs, and against the naive layout (one Ray trial per seed, default
Ray settings).

The study is the quickstart's problem (digits, MLP [64], batch 64, 200 steps) with
3 optimizers x 5 learning rates x 3 seeds = 15 configurations, 45 runs, two trials
at a time (the machine's 2 cores). Each layout runs in its own Python process (so
the lean Ray settings the engine applies do not leak into the naive one), with a
fresh local Ray:

- engine: ``run_study`` (one Ray trial per configuration carrying its 3 seeds,
  actor reuse, no Tune loggers, Optuna grid sampler, results written);
- naive: ``tune.Tuner`` over a grid of 45 (configuration, seed) points, each its own
  Ray trial, ``reuse_actors=False`` and Tune's default loggers (CSV, JSON,
  TensorBoard when available) and console output, no Optuna, no results files.

Overhead = wall x concurrency / summed run seconds - 1, where a run's seconds are
the ``wall_seconds`` the trial runner measured around its training loop. It is
given without Ray's start-up ("warm": Ray already up, as in a long study) and with
it ("cold": what a user waits for, ``ray.init`` included). The engine also runs the
study with 3x the learning rates; the difference between the two runs gives the
marginal overhead per trial, free of the fixed start-up cost. A first, unmeasured
engine run warms the process (one-off imports, file caches), so the two measured
runs differ only in size; each still starts its own Tuner and worker processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

CONCURRENCY = 2
STUDY = {
    "name": "bench-engine",
    "problem": {
        "dataset": "digits",
        "model": "mlp",
        "model_args": {"widths": [64]},
        "batch_size": 64,
        "steps": 200,
        "eval_every": 50,
    },
    "optimizers": {"sgd": {}, "insgd": {}, "novograd": {}},
    "space": {"lr": {"log": [1.0e-3, 1.0e-1], "points": 5}, "beta": [0.9]},
    "seeds": [0, 1, 2],
    "resources": {"cpu": 1, "max_concurrent": CONCURRENCY},
}
# The same study with 3x the learning rates, to separate the engine's fixed start-up
# cost (Tuner, Optuna storage, worker processes) from its cost per trial.
LARGE = {**STUDY, "space": {**STUDY["space"], "lr": {"log": [1.0e-3, 1.0e-1], "points": 15}}}


def _start_ray() -> float:
    from robustness.engine._cluster import connect

    start = time.perf_counter()
    connect(None, num_cpus=CONCURRENCY)
    return time.perf_counter() - start


def _engine(workdir: Path) -> dict:
    ray_start = _start_ray()
    _engine_study(workdir / "warm-up", STUDY)  # first Tuner of a process pays one-off costs
    small = _engine_study(workdir / "small", STUDY)
    large = _engine_study(workdir / "large", LARGE)
    return {**small, "ray_start": ray_start, "large": large}


def _engine_study(workdir: Path, study: dict) -> dict:
    import pandas as pd

    from robustness.engine import run_study

    workdir.mkdir()
    spec = workdir / "study.yaml"
    spec.write_text(yaml.safe_dump(study))
    start = time.perf_counter()
    out = run_study(str(spec), workdir / "out", progress=False, report=False)
    wall = time.perf_counter() - start
    trials = pd.read_parquet(out / "trials.parquet")
    return {
        "ray_trials": int(trials["trial_id"].nunique()),
        "runs": len(trials),
        "wall": wall,
        "compute": float(trials["wall_seconds"].sum()),
    }


def _naive_trainable(config: dict) -> None:
    from ray import tune

    from robustness.runner import TrialConfig, run_trial

    result = run_trial(TrialConfig.model_validate(config["trial"]))
    tune.report({"objective": result.objective, "run_seconds": result.records[0]["wall_seconds"]})


def _naive(workdir: Path) -> dict:
    import ray
    from ray import tune

    from robustness.spec import make_plan, parse_spec

    plan = make_plan(parse_spec(STUDY))
    points = [
        plan.trial_config(label, params)
        .model_copy(update={"seeds": (seed,), "device": "cpu", "threads": 1})
        .model_dump(mode="json")
        for label in plan.labels
        for params in plan.grid_points(label)
        for seed in plan.seeds
    ]
    start = time.perf_counter()
    ray.init(address="local", include_dashboard=False, num_cpus=CONCURRENCY)
    ray_start = time.perf_counter() - start
    start = time.perf_counter()
    tuner = tune.Tuner(
        tune.with_resources(_naive_trainable, {"cpu": 1}),
        param_space={"trial": tune.grid_search(points)},
        tune_config=tune.TuneConfig(max_concurrent_trials=CONCURRENCY, reuse_actors=False),
        run_config=tune.RunConfig(storage_path=str(workdir / "ray"), name="naive"),
    )
    grid = tuner.fit()
    wall = time.perf_counter() - start
    compute = sum(r.metrics["run_seconds"] for r in grid)
    ray.shutdown()
    return {
        "ray_trials": len(points),
        "runs": len(points),
        "wall": wall,
        "ray_start": ray_start,
        "compute": compute,
    }


def _measure(layout: str) -> dict:
    """Run one layout in a fresh process; its JSON result is the last stdout line."""
    command = [sys.executable, "-m", "benchmarks.bench_engine", layout]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    results = {layout: _measure(layout) for layout in ("engine", "naive")}
    engine = results["engine"]
    print(
        f"{len(STUDY['optimizers'])} optimizers x 5 lr x {len(STUDY['seeds'])} seeds, "
        f"{STUDY['problem']['steps']} steps on digits, {CONCURRENCY} trials at a time\n"
    )
    print(
        "| layout | Ray trials | runs | Σ run s | wall s (warm) | overhead warm | "
        "Ray start s | overhead cold | wall vs engine (warm) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for layout, r in results.items():
        warm = r["wall"] * CONCURRENCY / r["compute"] - 1
        cold = (r["wall"] + r["ray_start"]) * CONCURRENCY / r["compute"] - 1
        print(
            f"| {layout} | {r['ray_trials']} | {r['runs']} | {r['compute']:.1f} | "
            f"{r['wall']:.1f} | {warm:.0%} | {r['ray_start']:.1f} | {cold:.0%} | "
            f"{r['wall'] / engine['wall']:.2f}x |"
        )
    large = engine["large"]
    marginal = (large["wall"] - engine["wall"]) * CONCURRENCY / (
        large["compute"] - engine["compute"]
    ) - 1
    print(
        f"\nengine, 3x the configurations ({large['ray_trials']} Ray trials, {large['runs']} "
        f"runs, Σ run {large['compute']:.1f} s): wall {large['wall']:.1f} s, overhead "
        f"{large['wall'] * CONCURRENCY / large['compute'] - 1:.0%}; per-trial (marginal) "
        f"overhead = Δwall x {CONCURRENCY} / ΔΣ run s - 1 = {marginal:.0%}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        with tempfile.TemporaryDirectory(prefix="bench_engine_") as tmp:
            measured = {"engine": _engine, "naive": _naive}[sys.argv[1]](Path(tmp))
        print(json.dumps(measured))
    else:
        main()
