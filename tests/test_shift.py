"""The learning-rate shift and the stability margin, on profiles whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.shift import align_profiles, lr_shift, stability_margin
from tests.test_metrics import D, frame, grid

X = np.arange(-4.0, 1.0001, 0.5)  # log10(lr), 11 points half a decade apart


def valley(x: np.ndarray) -> np.ndarray:
    """A loss profile: high at tiny lr, a valley near lr 0.03, capped at 2 beyond."""
    return np.minimum(2.0, 0.1 + 0.4 * (x + 1.5) ** 2)


def test_a_shift_of_whole_grid_steps_is_recovered_exactly():
    # the optimizer at 10^s x lr behaves like the baseline at lr: f_opt(x) = f(x - s)
    out = align_profiles(X, valley(X - 1.0), X, valley(X))
    assert out["shift_decades"] == pytest.approx(1.0)
    assert out["residual"] == pytest.approx(0.0, abs=1e-12)
    assert out["flat_decades"] == 0.0
    # unshifted, the two differ by the RMS of f(x - 1) - f(x) over the grid
    assert out["residual_unshifted"] == pytest.approx(
        math.sqrt(np.mean((valley(X - 1.0) - valley(X)) ** 2))
    )
    assert align_profiles(X, valley(X + 1.5), X, valley(X))["shift_decades"] == pytest.approx(-1.5)


def test_a_shift_between_grid_points_is_found_to_a_fraction_of_a_step():
    # linear interpolation of a parabola sampled every half decade: within 0.05 decades
    for shift in (0.3, -0.7, 1.2):
        out = align_profiles(X, valley(X - shift), X, valley(X))
        assert out["shift_decades"] == pytest.approx(shift, abs=0.05), shift


def test_flat_profiles_give_a_range_of_shifts_not_a_number_out_of_nowhere():
    flat = np.ones_like(X)
    out = align_profiles(X, flat, X, flat)
    assert out["flat_decades"] > 2.0  # every overlapping shift fits equally well
    assert out["residual"] == 0.0


def test_the_shift_is_fitted_where_both_train_and_the_cliff_counts_in_the_residual():
    # both diverge (value 2) from lr 10^0 on, but where they train the optimizer is
    # the baseline shifted by +1 decade: the shift is 1, and the cliff that did not
    # move with it is what is left (residual) while the trained part matches exactly.
    base, opt = valley(X), valley(X - 1.0)
    base[X >= 0] = opt[X >= 0] = 2.0
    trains = X < 0
    out = align_profiles(X, opt, X, base, trains_opt=trains, trains_base=trains)
    assert out["shift_decades"] == pytest.approx(1.0)
    assert out["residual_trained"] == pytest.approx(0.0, abs=1e-12)
    assert out["residual"] > 0.1


def _shifted_trials(shift: float, seeds: int, noise: float = 0.0) -> pd.DataFrame:
    """sgd and 'slow' (sgd at 10^shift x lr) on a grid of 11 lrs, diverging above 10^0.5."""
    rng = np.random.default_rng(0)
    lrs = list(10.0**X)
    rows = []
    for label, s in (("sgd", 0.0), ("slow", shift)):
        table = []
        for x in X:
            if x - s > 0.5:
                table.append([D] * seeds)
            else:
                table.append([float(valley(x - s) + noise * rng.normal()) for _ in range(seeds)])
        rows += grid(lrs, table, optimizer=label, initial_loss=2.0)
    return frame(rows)


def test_lr_shift_reads_the_shift_from_the_runs_with_a_seed_interval():
    out = lr_shift(_shifted_trials(1.0, seeds=6, noise=0.01), "final_val_loss", "sgd", n_boot=200)
    row = out.iloc[0]
    assert (row["optimizer"], row["baseline"], row["init"]) == ("slow", "sgd", "default")
    assert row["shift_decades"] == pytest.approx(1.0, abs=0.02)
    assert row["ci_low"] <= 1.0 <= row["ci_high"] and row["ci_high"] - row["ci_low"] < 0.2
    assert row["n_seeds"] == 6 and row["n_lrs"] == 11


def test_lr_shift_gives_no_interval_under_five_seeds():
    row = lr_shift(_shifted_trials(-0.5, seeds=2), "final_val_loss", "sgd").iloc[0]
    assert row["shift_decades"] == pytest.approx(-0.5)
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])


def test_stability_margin_is_decades_from_the_best_lr_to_the_limit():
    by = ["optimizer"]
    band = pd.DataFrame(
        {
            "optimizer": ["a", "b"],
            "best": [0.1, 0.2],
            "best_lr": [1e-3, 1e-2],
            "width_decades": [1.5, 0.2],
            "resolved": [True, False],
        }
    )
    stable = pd.DataFrame(
        {"optimizer": ["a", "b"], "max_stable_lr": [0.1, np.nan], "censored": [True, False]}
    )
    out = stability_margin(band, stable, by).set_index("optimizer")
    assert out.loc["a", "margin_decades"] == pytest.approx(2.0) and out.loc["a", "censored"]
    assert math.isnan(out.loc["b", "margin_decades"])  # no stable lr at all
    assert not out.loc["b", "band_resolved"]
