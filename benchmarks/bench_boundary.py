"""The stability boundary to 10% by bisection against the quickstart's half-decade grid.

``python -m benchmarks boundary``: the bundled ``stability_boundary`` study (boundary
sampler, resolution 1.1) and the bundled ``quickstart`` (grid, 11 lrs over the same 5
decades), each as shipped, each in its own fresh Python process with its own local
Ray (as ``bench_engine`` measures the engine), one after the other on the same
machine. Baseline: the quickstart. Reported per study: configurations, runs, Ray
trials, Σ run seconds (the runner's ``wall_seconds``), the warm wall (``run_study``
alone, Ray up) and the whole process (Python start to exit, as ``robustness run
--no-report``); then each as a ratio boundary / quickstart.

The question both answer is the largest stable lr per cell: the quickstart to its
grid step (a ratio of 3.16 between the last stable and the first diverging lr), the
boundary study to 1.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import yaml

STUDIES = ("quickstart", "stability_boundary")


def _run(name: str) -> dict:
    from benchmarks.bench_engine import _engine

    text = resources.files("robustness.studies").joinpath(f"{name}.yaml").read_text()
    with tempfile.TemporaryDirectory(prefix="bench_boundary_") as tmp:
        measured = _engine(Path(tmp), yaml.safe_load(text))
        import pandas as pd

        trials = pd.read_parquet(Path(tmp) / "out" / "trials.parquet")
        measured["configurations"] = int(trials["trial_id"].nunique())
    return measured


def _measure(name: str) -> dict:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_boundary", name], capture_output=True, text=True
    )
    process = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process": process}


def main() -> None:
    rows = {}
    for name in STUDIES:
        rows[name] = _measure(name)
        print(f"  measured {name}: warm {rows[name]['warm']:.1f} s", flush=True)
    keys = ("configurations", "runs", "ray_trials", "compute", "warm", "process")
    print("\n| study | configurations | runs | Ray trials | Σ run s | wall warm s | process s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        print(
            f"| {name} | {r['configurations']} | {r['runs']} | {r['ray_trials']} | "
            f"{r['compute']:.1f} | {r['warm']:.1f} | {r['process']:.1f} |"
        )
    base, new = rows["quickstart"], rows["stability_boundary"]
    ratios = " | ".join(f"{new[k] / base[k]:.2f}x" for k in keys)
    print(f"| boundary / quickstart | {ratios} |")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps(_run(sys.argv[1])))
    else:
        main()
