"""The stability section of a boundary-search study: the bracket table and the map."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.boundary import boundary_table, is_boundary_study
from analysis.load import load_results
from analysis.report import build_report, report_figures
from tests._synthetic import write_synthetic_results


def _runs(beta, probes):
    """Trials rows: ``probes`` = {lr: outcomes per seed} of one cell."""
    rows = []
    for lr, outcomes in probes.items():
        for seed, outcome in enumerate(outcomes):
            rows.append(
                {
                    "optimizer": "sgd",
                    "init": "default",
                    "beta": beta,
                    "beta2": np.nan,
                    "lr": lr,
                    "seed": seed,
                    "outcome": outcome,
                }
            )
    return rows


C, D, E = "converged", "diverged", "error"


def test_boundary_table_gives_the_bracket_the_probe_count_and_the_resolution():
    trials = pd.DataFrame(
        _runs(0.0, {1e-3: [C, C], 1.0: [C, C], 1.05: [C, D], 10.0: [D, D]})  # 1/2: unstable
        + _runs(0.5, {1e-3: [C, C], 10.0: [C, E]})  # censored; the error run is no evidence
        + _runs(0.9, {1e-3: [D, D], 10.0: [D, D]})  # diverges everywhere
    )
    table = boundary_table(trials).set_index("beta")
    assert table.loc[0.0, "max_stable_lr"] == 1.0
    assert table.loc[0.0, "first_diverging_lr"] == 1.05
    assert table.loc[0.0, "ratio"] == pytest.approx(1.05)
    assert table.loc[0.0, "n_probes"] == 4 and table.loc[0.0, "n_seeds"] == 2
    assert not table.loc[0.0, "censored"]
    assert table.loc[0.5, "censored"] and table.loc[0.5, "max_stable_lr"] == 10.0
    assert math.isnan(table.loc[0.5, "first_diverging_lr"])
    assert math.isnan(table.loc[0.9, "max_stable_lr"])
    assert table.loc[0.9, "first_diverging_lr"] == 1e-3
    # two seeds: a logistic estimate, but too few seeds for an interval
    assert 1.0 < table.loc[0.0, "lr_boundary_logistic"] < 10.0
    assert math.isnan(table.loc[0.0, "logistic_low"])


def test_logistic_interval_with_enough_seeds_where_they_disagree():
    probes = {
        0.01: [C] * 8,
        0.1: [C] * 7 + [D],
        0.2: [C] * 5 + [D] * 3,
        0.3: [C] * 3 + [D] * 5,
        0.5: [C] + [D] * 7,
        10.0: [D] * 8,
    }
    (row,) = boundary_table(pd.DataFrame(_runs(0.0, probes))).to_dict("records")
    assert (row["max_stable_lr"], row["first_diverging_lr"]) == (0.2, 0.3)
    estimate, low, high = row["lr_boundary_logistic"], row["logistic_low"], row["logistic_high"]
    assert 0.2 < estimate < 0.3  # the crossing sits between 3/8 and 5/8
    assert low < estimate < high and high / low < 3
    # all-or-nothing probes: the fit is a step; the bracket is the interval
    (step,) = boundary_table(pd.DataFrame(_runs(0.0, {0.1: [C] * 4, 0.2: [D] * 4}))).to_dict(
        "records"
    )
    assert math.isnan(step["logistic_low"]) and math.isnan(step["logistic_high"])


def test_report_of_a_boundary_study_keeps_exact_probe_lrs_and_uses_the_bracket(tmp_path):
    rng = np.random.default_rng(0)
    results = write_synthetic_results(
        tmp_path / "boundary",
        optimizers=("sgd",),
        inits=("default",),
        lrs=sorted(10 ** rng.uniform(-4, 1, 30)),  # > 25 distinct: a grid study would bin
        seeds=(0, 1),
    )
    spec = yaml.safe_load((results / "spec.yaml").read_text())
    spec["search"] = {"sampler": "boundary", "objective": "final_val_loss", "resolution": 1.1}
    (results / "spec.yaml").write_text(yaml.safe_dump(spec))
    loaded = load_results(results)
    assert is_boundary_study(loaded.spec)
    report = build_report(loaded)
    assert not report.failures, report.failures
    assert report.binned == []
    probability = report.tables["divergence_probability"].frame
    assert probability["lr"].nunique() == 30  # every probe on its own
    table = report.tables["max_stable_lr"].frame
    assert {"first_diverging_lr", "ratio", "n_probes"} <= set(table.columns)
    assert (table["n_probes"] == 30).all()
    figures = report_figures(report)
    assert not report.failures, report.failures
    assert {"divergence_map", "stability"} <= set(figures)
