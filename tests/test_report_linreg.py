"""Report tables of real runs whose answers are known from theory (full-batch linreg).

Gradient descent with heavy-ball momentum β on a quadratic is stable while
``lr * λ < 2 (1 + β)``, λ the largest Hessian eigenvalue; weight decay wd adds
``wd * I`` to the Hessian (PyTorch's SGD adds ``wd * p`` to every gradient, bias
included), so the limit is ``lr* = 2 (1 + β) / (λ_max + wd)``. The dataset's
metadata gives λ_max. And SGD with ``dampening: 0.9`` at β 0.9 takes its first step
like plain SGD, then every later one with a tenth of the gradient: a learning rate
ten times smaller, a shift of +1 decade.

Slow (about 60 real configurations trained in this process); the rules themselves
are covered fast on hand-built frames in test_metrics.py and test_shift.py.
"""

from __future__ import annotations

import math

import pytest

from analysis.load import load_results
from analysis.render import labelled
from analysis.report import build_report
from tests._local_study import run_grid_locally

pytestmark = pytest.mark.slow

PROBLEM = {
    "dataset": "linreg",
    "model": "linear",
    "batch_size": "full",
    "steps": 60,
    "eval_every": 30,
}


@pytest.fixture(scope="module")
def weight_decay(tmp_path_factory):
    spec = {
        "name": "wd_limits",
        "problem": PROBLEM,
        "optimizers": {"sgd": {}},
        # 10^-0.375 .. 10^0.375, 1/8 decade apart: every limit falls between two lrs
        "space": {
            "lr": {"log": [10**-0.375, 10**0.375], "points": 7},
            "beta": [0.0, 0.9],
            "weight_decay": [0.0, 1.0],
        },
        "seeds": [0],
    }
    out, metadata = run_grid_locally(spec, tmp_path_factory.mktemp("wd"))
    return build_report(load_results(out)), metadata["hessian_max_eig"]


def test_each_weight_decay_has_its_own_stability_limit_as_theory_says(weight_decay):
    report, lam = weight_decay
    stable = report.tables["max_stable_lr"].frame
    assert report.axes == ["weight_decay"]
    assert len(stable) == 4  # (β, weight_decay) cells: nothing pooled
    for row in stable.itertuples():
        limit = 2 * (1 + row.beta) / (lam + row.weight_decay)
        assert row.max_stable_lr < limit < row.first_diverging_lr, row
    by_wd = stable[stable["beta"] == 0.0].set_index("weight_decay")["max_stable_lr"]
    assert by_wd[1.0] < by_wd[0.0]


def test_every_table_and_figure_keeps_the_weight_decay_axis(weight_decay):
    report, _ = weight_decay
    per_cell = (
        "outcomes",
        "divergence_probability",
        "max_stable_lr",
        "lr_profile",
        "lr_band",
        "lr_margin",
        "expected_max",
        "tunability",
    )
    for name in per_cell:
        frame = report.tables[name].frame
        assert set(frame["weight_decay"]) == {0.0, 1.0}, name
    assert "weight_decay values" in report.tables["axes"].frame
    assert report.tables["outcomes"].frame["n_runs"].tolist() == [14, 14]
    shown = labelled(report.tables["divergence_probability"].frame, report.axes)
    assert set(shown["optimizer"]) == {"sgd (weight_decay 0)", "sgd (weight_decay 1)"}


def test_damped_sgd_is_plain_sgd_one_decade_higher(tmp_path):
    spec = {
        "name": "damped",
        "problem": PROBLEM,
        "optimizers": {"sgd": {}, "sgd_damped": {"base": "sgd", "dampening": 0.9}},
        "space": {"lr": {"log": [1e-3, 10.0], "points": 13}, "beta": [0.9]},
        "seeds": [0],
        "analysis": {"baseline": "sgd"},
    }
    out, _ = run_grid_locally(spec, tmp_path / "damped")
    report = build_report(load_results(out))
    shift = report.tables["lr_shift"].frame.iloc[0]
    assert (shift["optimizer"], shift["baseline"]) == ("sgd_damped", "sgd")
    assert shift["shift_decades"] == pytest.approx(1.0, abs=0.1)
    assert math.isnan(shift["ci_low"])  # one seed: no interval
    sentence = next(f.text for f in report.findings if f.table == "lr_shift")
    assert f"sgd_damped needs a learning rate {shift['shift_decades']:.3g} decades higher" in (
        sentence
    )
