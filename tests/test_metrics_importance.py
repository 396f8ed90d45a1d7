"""Optuna parameter importance built from a trials frame."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from analysis.importance import param_importance
from robustness.errors import UserInputError
from tests.test_metrics import frame, run

LRS = [10.0**e for e in np.linspace(-4, 0, 8)]
BETAS = [0.0, 0.5, 0.9, 0.99]


def _lr_determined(optimizer: str = "sgd", seeds: int = 2) -> list[dict]:
    """Objective a function of lr only; beta is noise; diverged iff lr > 0.1."""
    rows = []
    for lr, beta, seed in itertools.product(LRS, BETAS, range(seeds)):
        loss = (math.log10(lr) + 2.0) ** 2 + 0.1
        diverged = lr > 0.1
        rows.append(
            run(
                optimizer=optimizer,
                lr=lr,
                beta=beta,
                seed=seed,
                loss=loss,
                outcome="diverged" if diverged else "converged",
                objective=2.0 if diverged else loss,
            )
        )
    return rows


@pytest.mark.parametrize("evaluator", ["ped_anova", "fanova"])
@pytest.mark.parametrize("target", ["objective", "diverged"])
def test_a_param_that_determines_the_target_ranks_above_noise(evaluator, target):
    out = param_importance(frame(_lr_determined()), target=target, evaluator=evaluator)
    assert out["param"].tolist() == ["lr", "beta"]
    lr, beta = out["importance"].tolist()
    assert lr > 0.8 and beta < 0.2
    assert lr + beta == pytest.approx(1.0)
    assert (out["target"] == target).all() and (out["evaluator"] == evaluator).all()
    assert (out["n_configs"] == len(LRS) * len(BETAS)).all()


def test_importance_is_computed_per_optimizer():
    rows = _lr_determined("sgd") + _lr_determined("insgd")
    out = param_importance(frame(rows))
    assert out["optimizer"].tolist() == ["insgd", "insgd", "sgd", "sgd"]


def test_fanova_is_reproducible_for_a_seed():
    trials = frame(_lr_determined())
    first = param_importance(trials, evaluator="fanova", seed=5)["importance"].tolist()
    second = param_importance(trials, evaluator="fanova", seed=5)["importance"].tolist()
    assert first == second


def test_constant_target_gives_nan_importance_with_a_note():
    rows = [r | {"outcome": "converged", "objective": 1.0} for r in _lr_determined()]
    out = param_importance(frame(rows), target="diverged")
    assert set(out["param"]) == {"lr", "beta"}
    assert out["importance"].isna().all()
    assert (out["note"] == "constant target").all()


def test_single_configuration_gives_one_undefined_row():
    out = param_importance(frame([run(seed=0), run(seed=1)]))
    assert len(out) == 1 and out["param"].isna().all() and out["importance"].isna().all()
    assert "fewer than two configurations" in out["note"].iloc[0]


def test_a_single_varying_axis_gets_all_the_importance():
    rows = [r for r in _lr_determined() if r["beta"] == 0.9]
    out = param_importance(frame(rows))
    assert out["param"].tolist() == ["lr"]
    assert out["importance"].iloc[0] == pytest.approx(1.0)
    assert "only one axis varies" in out["note"].iloc[0]


def test_categorical_init_axis_is_assessed():
    rows = []
    for lr, init, seed in itertools.product(LRS, ["default", "orthogonal", "zeros"], range(2)):
        loss = 2.0 if init == "zeros" else 0.5
        rows.append(run(lr=lr, init=init, seed=seed, loss=loss))
    out = param_importance(frame(rows), evaluator="fanova")
    assert out["param"].tolist() == ["init", "lr"]
    assert out["importance"].iloc[0] > 0.9


def test_unknown_evaluator_is_refused_listing_the_allowed():
    with pytest.raises(UserInputError, match="allowed: fanova, ped_anova"):
        param_importance(frame(_lr_determined()), evaluator="shap")
