"""Engine overhead: wall time of a study against the summed compute of its runs.

Overhead = wall x concurrency / Σ run seconds - 1, where a run's seconds are the
``wall_seconds`` the trial runner measured around its training loop and the
concurrency is 2 (the machine's 2 cores, 2 trials at a time). 0% would be two
workers computing all the time; the target of issue #4 is under 25%.

Two studies, each layout measured in its own fresh Python process (so nothing is
imported, cached or started beforehand), ``BENCH_ENGINE_REPEAT`` times (default 2):

- ``quickstart``: the bundled quickstart as shipped (297 configurations x 2 seeds =
  594 runs of ~0.06 s), with ``resources.configs_per_trial`` ``auto`` (the default)
  and ``1`` (one configuration per Ray trial, the engine before packing).
- ``quickstart_x4``: the same study with 4x the steps (600, evaluated every 200):
  the same fixed costs (Ray, worker start-up, tables) against 2-4x the compute.
- ``reduced``: the earlier benchmark's reduced quickstart (15 configurations x 3
  seeds, 200 steps), also with the naive layout as the baseline: one Ray trial per
  (configuration, seed), ``reuse_actors=False``, Tune's default loggers and console
  output, no Optuna (the naive layout is too slow to run on the whole quickstart:
  about 3 s a Ray trial, 594 of them).

- ``pool``: the floor, no engine at all: the quickstart's configurations split over
  2 plain processes (``multiprocessing``, spawned) that run them one after another
  with ``run_trial``; its wall is the slower process's loop, after its imports and one
  warm-up run, so it is the compute phase of a perfect engine (both cores busy, no
  start-up, nothing written).

Three walls per measurement:

- ``process``: the whole process, as ``robustness run --no-report`` (Python start,
  imports, Ray start, the study, Ray shutdown);
- ``cold``: ``ray.init`` + ``run_study`` (what the engine costs, Ray start included);
- ``warm``: ``run_study`` alone, Ray already up and the packages imported.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

CONCURRENCY = 2
REDUCED = {
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
MEASURED = [
    ("quickstart", "pool"),
    ("quickstart", "auto"),
    ("quickstart_x4", "auto"),
    ("quickstart", "1"),
    ("reduced", "auto"),
    ("reduced", "1"),
    ("reduced", "naive"),
]


def _study(name: str, packing: str) -> dict:
    if name.startswith("quickstart"):
        from importlib import resources

        text = resources.files("robustness.studies").joinpath("quickstart.yaml").read_text()
        study = yaml.safe_load(text)
        if name == "quickstart_x4":
            problem = study["problem"]
            problem.update(steps=4 * problem["steps"], eval_every=4 * problem["eval_every"])
    else:
        study = json.loads(json.dumps(REDUCED))
    if packing not in ("naive", "pool"):
        study.setdefault("resources", {})["configs_per_trial"] = (
            "auto" if packing == "auto" else int(packing)
        )
    return study


def _engine(workdir: Path, study: dict) -> dict:
    import pandas as pd

    from robustness.engine import _cluster, run_study
    from robustness.spec import make_plan, parse_spec

    spec = parse_spec(study)
    make_plan(spec)  # imports torch and probes the optimizers: not part of "warm"
    start = time.perf_counter()
    _cluster.connect(None)  # a local Ray on every core, as `robustness run` starts it
    ray_start = time.perf_counter() - start
    start = time.perf_counter()
    out = run_study(spec, workdir / "out", progress=False, report=False)
    warm = time.perf_counter() - start
    trials = pd.read_parquet(out / "trials.parquet")
    (session,) = (out / "ray").iterdir()
    return {
        "ray_trials": sum(1 for p in session.iterdir() if p.is_dir()),
        "runs": len(trials),
        "compute": float(trials["wall_seconds"].sum()),
        "warm": warm,
        "ray_start": ray_start,
    }


def _naive_trainable(config: dict) -> None:
    from ray import tune

    from robustness.runner import TrialConfig, run_trial

    result = run_trial(TrialConfig.model_validate(config["trial"]))
    tune.report({"objective": result.objective, "run_seconds": result.records[0]["wall_seconds"]})


def _naive(workdir: Path, study: dict) -> dict:
    import ray
    from ray import tune

    from robustness.spec import make_plan, parse_spec

    plan = make_plan(parse_spec(study))
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
    warm = time.perf_counter() - start
    return {
        "ray_trials": len(points),
        "runs": len(points),
        "compute": sum(r.metrics["run_seconds"] for r in grid),
        "warm": warm,
        "ray_start": ray_start,
    }


def _pool_worker(args: tuple[list[dict], int]) -> tuple[float, float]:
    """One of the pool's processes: its share of the configurations, one after another."""
    import torch

    from robustness.runner import TrialConfig, run_trial

    configs, _ = args
    torch.set_num_threads(1)
    run_trial(TrialConfig.model_validate(configs[0]))  # imports and first-call costs
    start = time.perf_counter()
    seconds = 0.0
    for config in configs:
        result = run_trial(TrialConfig.model_validate(config))
        seconds += sum(r["wall_seconds"] for r in result.records)
    return seconds, time.perf_counter() - start


def _pool(workdir: Path, study: dict) -> dict:
    """The floor: the same runs split over CONCURRENCY plain processes (no Ray, no
    Optuna, no results written), timed after their imports and one warm-up run."""
    import multiprocessing

    from robustness.spec import make_plan, parse_spec

    plan = make_plan(parse_spec(study))
    configs = [
        plan.trial_config(label, params)
        .model_copy(update={"device": "cpu", "threads": 1})
        .model_dump(mode="json")
        for label in plan.labels
        for params in plan.grid_points(label)
    ]
    shares = [(configs[i::CONCURRENCY], i) for i in range(CONCURRENCY)]
    with multiprocessing.get_context("spawn").Pool(CONCURRENCY) as pool:
        done = pool.map(_pool_worker, shares)
    return {
        "ray_trials": 0,
        "runs": sum(len(c["seeds"]) for c in configs),
        "compute": sum(s for s, _ in done),
        "warm": max(w for _, w in done),
        "ray_start": 0.0,
    }


def _measure(name: str, packing: str) -> dict:
    """One layout in a fresh process; its JSON result is the last stdout line."""
    command = [sys.executable, "-m", "benchmarks.bench_engine", name, packing]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    process = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{name}/{packing} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process": process}


def _overhead(wall: float, compute: float) -> float:
    return wall * CONCURRENCY / compute - 1


def main() -> None:
    repeat = int(os.environ.get("BENCH_ENGINE_REPEAT", "2"))
    if os.cpu_count() != CONCURRENCY:
        print(
            f"note: this machine has {os.cpu_count()} CPUs; the study runs {CONCURRENCY} at a time"
        )
    only = os.environ.get("BENCH_ENGINE_ONLY")  # e.g. "quickstart/auto,reduced/naive"
    measured = [m for m in MEASURED if not only or "/".join(m) in only.split(",")]
    rows = []
    for attempt in range(1, repeat + 1):
        for name, packing in measured:
            r = _measure(name, packing)
            rows.append((name, packing, attempt, r))
            print(f"  measured {name}/{packing} #{attempt}: warm {r['warm']:.1f} s", flush=True)
    print(
        "\n| study | configs_per_trial | # | Ray trials | runs | Σ run s | wall warm s | "
        "overhead warm | Ray start s | overhead cold | process s | overhead process |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, packing, attempt, r in rows:
        cold = r["warm"] + r["ray_start"]
        print(
            f"| {name} | {packing} | {attempt} | {r['ray_trials']} | {r['runs']} | "
            f"{r['compute']:.1f} | {r['warm']:.1f} | {_overhead(r['warm'], r['compute']):.0%} | "
            f"{r['ray_start']:.1f} | {_overhead(cold, r['compute']):.0%} | "
            f"{r['process']:.1f} | {_overhead(r['process'], r['compute']):.0%} |"
        )
    pools = [r["warm"] for n, p, _, r in rows if (n, p) == ("quickstart", "pool")]
    if pools:
        floor = statistics.median(pools)
        print(f"\nquickstart walls relative to the pool's ({floor:.1f} s, median):")
        for packing in [p for n, p in measured if n == "quickstart" and p != "pool"]:
            runs = [r for n, p, _, r in rows if (n, p) == ("quickstart", packing)]
            for wall in ("warm", "cold", "process"):
                values = [r["warm"] + r["ray_start"] if wall == "cold" else r[wall] for r in runs]
                print(f"  {packing} {wall}: {statistics.median(values) / floor:.2f}x")
    print("\nmedian warm wall relative to configs_per_trial=1 (same study):")
    for name in ("quickstart", "reduced"):
        bases = [r["warm"] for n, p, _, r in rows if (n, p) == (name, "1")]
        if not bases:
            continue
        base = statistics.median(bases)
        for packing in [p for n, p in measured if n == name]:
            walls = [r["warm"] for n, p, _, r in rows if (n, p) == (name, packing)]
            print(f"  {name} {packing}: {statistics.median(walls) / base:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) > 2:
        name, packing = sys.argv[1], sys.argv[2]
        with tempfile.TemporaryDirectory(prefix="bench_engine_") as tmp:
            study = _study(name, packing)
            layout = {"naive": _naive, "pool": _pool}.get(packing, _engine)
            measured = layout(Path(tmp), study)
        print(json.dumps(measured))
    else:
        main()
