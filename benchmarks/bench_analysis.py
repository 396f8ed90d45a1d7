"""Analysis and report of a 20,000-run study, against merely reading it and one groupby.

A synthetic results directory (``tests/_synthetic.py``, the same generator the
report tests use) of 3 optimizers x 5 inits x 3 betas x 15 learning rates x 30
seeds = 20,250 runs, 10 curve points each, is written to a temporary directory.
Then, in one process:

- baseline: read ``trials.parquet`` and ``curves.parquet`` with pandas and compute
  the mean objective per (optimizer, init, beta, lr), the least any analysis does;
- the report, stage by stage: load (``load_results``: read + validate + cast),
  metrics (``build_report``: every table and finding), figures (``report_figures``)
  and writing (``render_report``: PNG + SVG per figure, CSV + LaTeX per table, HTML,
  Markdown).

Prints a Markdown table of the times and of each stage as a ratio to the baseline.
The budget: the whole report under a minute on the 2-core dev machine.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.load import load_results
from analysis.report import build_report, render_report, report_figures
from robustness.results.schema import CURVES_FILE, TRIALS_FILE
from tests._synthetic import write_synthetic_results

SHAPE = {
    "optimizers": ("sgd", "insgd", "novograd"),
    "inits": ("default", "kaiming_normal", "kaiming_uniform", "xavier_normal", "orthogonal"),
    "betas": (0.0, 0.5, 0.9),
    "lrs": list(np.logspace(-4, 1, 15)),
    "seeds": tuple(range(30)),
    "curve_points": 10,
}


def _baseline(results: Path) -> float:
    start = time.perf_counter()
    trials = pd.read_parquet(results / TRIALS_FILE)
    pd.read_parquet(results / CURVES_FILE)
    trials.groupby(["optimizer", "init", "beta", "lr"])["objective"].mean()
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench_analysis_") as tmp:
        results = write_synthetic_results(Path(tmp) / "results", **SHAPE)
        _baseline(results)  # warm the file cache and pandas' imports alike for both sides
        baseline = min(_baseline(results) for _ in range(3))

        stages: dict[str, float] = {}
        start = time.perf_counter()
        loaded = load_results(results)
        stages["load (read + validate)"] = time.perf_counter() - start
        mark = time.perf_counter()
        report = build_report(loaded)
        stages["metrics (tables + findings)"] = time.perf_counter() - mark
        mark = time.perf_counter()
        figures = report_figures(report)
        stages["figures (draw)"] = time.perf_counter() - mark
        mark = time.perf_counter()
        render_report(report, Path(tmp) / "report", figures)
        stages["writing (PNG+SVG, CSV+LaTeX, HTML, MD)"] = time.perf_counter() - mark
        total = time.perf_counter() - start

    n_runs, n_points = len(loaded.trials), len(loaded.curves)
    print(
        f"{n_runs} runs, {n_points} curve points; {len(figures)} figures, "
        f"{len(report.tables)} tables\n"
    )
    print("| stage | seconds | share of report | ratio to baseline |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| baseline: read both parquet files + groupby mean | {baseline:.3f} | | 1.0 |")
    for name, seconds in stages.items():
        print(f"| {name} | {seconds:.2f} | {seconds / total:.0%} | {seconds / baseline:.0f} |")
    print(f"| **whole report** | **{total:.2f}** | 100% | **{total / baseline:.0f}** |")
    if report.failures:
        print(f"\nsections that failed: {report.failures}")


if __name__ == "__main__":
    main()
