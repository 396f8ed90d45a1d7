"""The report of a small REAL results directory, written by the engine (Ray Tune + Optuna).

2 optimizers x 3 learning rates x 1 seed, 30 steps of an MLP on digits; the largest
learning rate is meant to diverge. No β is swept, so the β axis holds each
optimizer's default (NaN in the results), a case the synthetic data never has.
"""

from __future__ import annotations

import html

import pandas as pd
import pytest
import yaml

from analysis.load import load_results
from analysis.report import build_report, render_report
from tests.test_engine import tiny_problem

SPEC = {
    "name": "tiny_report",
    "problem": tiny_problem(),
    "optimizers": {"sgd": {}, "novograd": {}},
    "space": {"lr": [0.01, 0.3, 30.0]},
    "seeds": [0],
    "resources": {"cpu": 1, "max_concurrent": 2},
}


@pytest.mark.slow
def test_report_from_a_real_engine_run(tmp_path):
    from robustness.engine import run_study

    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    results = run_study(spec, tmp_path / "results", progress=False, report=False)

    loaded = load_results(results)
    assert len(loaded.trials) == 6
    assert set(loaded.trials["optimizer"]) == {"sgd", "novograd"}
    report = build_report(loaded)
    assert not report.failures, report.failures
    index = render_report(report)
    assert index == results / "report" / "index.html"

    page = html.unescape(index.read_text())
    assert "tiny_report" in page
    for name in ("divergence_map", "sensitivity", "stability", "tunability"):
        assert (index.parent / "figures" / f"{name}.png").stat().st_size > 5000
        assert (index.parent / "figures" / f"{name}.svg").is_file()
    outcomes = pd.read_csv(index.parent / "tables" / "outcomes.csv").set_index("optimizer")
    assert outcomes["n_runs"].to_dict() == {"novograd": 3, "sgd": 3}
    for finding in report.findings:  # sentences are generated from the real tables
        assert finding.text in page
    # provenance comes from the engine's spec.yaml
    assert "Provenance" in page and "seeds 0" in page
