"""What a cell of the report is: the extra swept axes, the baseline."""

from __future__ import annotations

import pandas as pd

from analysis.study import baseline_of, extra_axes
from tests.test_metrics import frame, run


def _trials() -> pd.DataFrame:
    rows = [
        run(optimizer=o, seed=s, weight_decay=wd, note=f"host{s}", fixed=1.0)
        for o in ("sgd", "insgd")
        for wd in (0.0, 1e-3)
        for s in (0, 1)
    ]
    return frame(rows)


def test_extra_axes_are_the_spec_axes_that_vary():
    trials = _trials()
    spec = {"space": {"lr": [0.1], "weight_decay": [0.0, 1e-3], "fixed": [1.0]}}
    # 'note' varies but is no axis of the spec; 'fixed' is one but takes one value
    assert extra_axes(trials, spec) == ["weight_decay"]
    # an axis written under one optimizer's space counts too
    spec = {"space": {"lr": [0.1]}, "optimizers": {"sgd": {"space": {"weight_decay": [0.0]}}}}
    assert extra_axes(trials, spec) == ["weight_decay"]
    # without a spec: every varying column outside the results schema
    assert extra_axes(trials) == ["weight_decay", "note"]


def test_baseline_is_the_spec_choice_else_sgd_else_the_first_label():
    trials = _trials()
    assert baseline_of({"analysis": {"baseline": "insgd"}}, trials) == "insgd"
    assert baseline_of({}, trials) == "sgd"
    assert baseline_of({}, trials[trials["optimizer"] == "insgd"]) == "insgd"
