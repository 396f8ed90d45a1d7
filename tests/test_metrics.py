"""Robustness metrics on hand-built trials frames whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import metrics
from robustness.errors import UserInputError
from robustness.results.schema import TRIAL_COLUMNS

D = "div"  # in a grid table: this seed's run diverged
S = "stall"  # stalled, with the initial loss as its final loss
E = "err"  # errored
P = "pruned"  # stopped by the scheduler after a good start (final loss 0.5 when stopped)


def run(
    *,
    optimizer: str = "sgd",
    lr: float = 0.1,
    seed: int = 0,
    outcome: str = "converged",
    loss: float = 1.0,
    acc: float = 0.5,
    init: str = "default",
    beta: float = 0.9,
    beta2: float = math.nan,
    initial_loss: float = 2.0,
    initial_acc: float = 0.1,
    **extra: object,
) -> dict:
    """One run as a record with every schema column; the trial id names its config."""
    trial_id = f"{optimizer}|{init}|{beta}|{beta2}|{lr}"
    row = dict.fromkeys(TRIAL_COLUMNS)
    row |= {
        "study": "test",
        "trial_id": trial_id,
        "run_id": f"{trial_id}-s{seed}",
        "optimizer": optimizer,
        "lr": lr,
        "beta": beta,
        "beta2": beta2,
        "init": init,
        "seed": seed,
        "model": "mlp",
        "dataset": "digits",
        "outcome": outcome,
        "initial_loss": initial_loss,
        "initial_train_acc": initial_acc,
        "initial_val_loss": initial_loss,
        "initial_val_acc": initial_acc,
        "final_train_loss": loss,
        "best_train_loss": loss,
        "final_val_loss": loss,
        "best_val_loss": loss,
        "final_train_acc": acc,
        "best_train_acc": acc,
        "final_val_acc": acc,
        "best_val_acc": acc,
        "steps_done": 10,
        "wall_seconds": 0.1,
        "node_id": "n0",
        "objective": loss,
    }
    return row | extra


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).astype(TRIAL_COLUMNS)


def grid(lrs: list[float], table: list[list[object]], **common: object) -> list[dict]:
    """Runs for ``lrs`` x seeds: ``table[i][s]`` is seed s at lrs[i], a final loss or D/S/E."""
    rows = []
    for lr, cells in zip(lrs, table, strict=True):
        for seed, cell in enumerate(cells):
            initial = float(common.get("initial_loss", 2.0))
            if cell == D:
                kw = {"outcome": "diverged", "loss": math.nan, "acc": math.nan}
                kw["objective"] = initial
            elif cell == S:
                kw = {"outcome": "stalled", "loss": initial}
            elif cell == E:
                kw = {"outcome": "error", "loss": math.nan, "acc": math.nan}
            elif cell == P:
                kw = {"outcome": "pruned", "loss": 0.5}
            else:
                kw = {"loss": float(cell)}
            rows.append(run(lr=lr, seed=seed, **(common | kw)))
    return rows


LRS4 = [1e-3, 1e-2, 1e-1, 1.0]


# --------------------------------------------------------------------------- capping


def test_capped_loss_is_never_worse_than_the_untrained_model():
    trials = frame(
        [
            run(outcome="diverged", loss=math.nan),
            run(outcome="diverged", loss=0.3, seed=1),  # a pre-divergence best: still L0
            run(outcome="stalled", loss=2.5, seed=2),
            run(outcome="converged", loss=3.0, seed=3),
            run(outcome="converged", loss=math.inf, seed=4),
            run(outcome="converged", loss=0.25, seed=5),
            run(outcome="pruned", loss=0.75, seed=6),
            run(outcome="pruned", loss=math.nan, seed=7),  # never started: censored
        ]
    )
    trials.loc[1, "initial_val_loss"] = 2.4  # the val metric is capped by its own L0
    capped = metrics.capped_metric(trials, "final_val_loss").tolist()
    assert capped[:7] == [2.0, 2.4, 2.0, 2.0, 2.0, 0.25, 0.75] and math.isnan(capped[7])
    by_train = metrics.capped_metric(trials, "best_train_loss").tolist()
    assert by_train[1] == 2.0  # *_train_loss is capped by initial_loss


def test_capped_accuracy_of_a_diverged_run_is_its_untrained_accuracy():
    # a NaN network predicts class 0 everywhere: its accuracy is class 0's frequency
    # (0.11 here), never what the untrained model scored (0.1)
    trials = frame(
        [
            run(outcome="diverged", acc=0.11),
            run(outcome="converged", acc=math.nan, seed=1),
            run(outcome="converged", acc=0.8, seed=2),
            run(outcome="stalled", acc=0.05, seed=3),
        ]
    )
    assert metrics.capped_metric(trials, "best_val_acc").tolist() == [0.1, 0.1, 0.8, 0.1]


def test_missing_column_is_a_user_error_naming_it():
    trials = frame(grid(LRS4, [[1.0]] * 4)).drop(columns=["seed"])
    with pytest.raises(UserInputError, match="seed"):
        metrics.max_stable_lr(trials)


# --------------------------------------------------------------------------- divergence


def test_divergence_probability_counts_seeds_and_excludes_errors():
    trials = frame(grid(LRS4, [[1, 1, 1, 1], [1, 1, 1, D], [1, D, D, E], [D, D, D, D]]))
    out = metrics.divergence_probability(trials)
    assert out["lr"].tolist() == LRS4
    assert out["n_runs"].tolist() == [4, 4, 3, 4]
    assert out["n_diverged"].tolist() == [0, 1, 2, 4]
    assert out["n_error"].tolist() == [0, 0, 1, 0]
    np.testing.assert_allclose(out["p_diverged"], [0, 0.25, 2 / 3, 1])


def test_pruned_runs_are_censored_in_every_divergence_probability():
    # lr 1e-2: 1 diverged of 2 at risk (the pruned seeds count in neither); lr 1e-1:
    # only pruned runs, so no probability at all
    trials = frame(grid([1e-3, 1e-2, 1e-1], [[1, 1, 1], [D, 1, P], [P, P, P]]))
    out = metrics.divergence_probability(trials)
    assert out["n_runs"].tolist() == [3, 2, 0]
    assert out["n_pruned"].tolist() == [0, 1, 3]
    assert out["p_diverged"].tolist()[:2] == [0.0, 0.5] and math.isnan(out["p_diverged"][2])
    profile = metrics.lr_profile(trials)
    assert profile["diverged"].tolist()[:2] == [0.0, 0.5]
    assert profile["median"].tolist() == [1.0, 1.0, 0.5]  # pruned: their value when stopped
    summary = metrics.summary_by_optimizer(trials).iloc[0]
    assert (summary["n_pruned"], summary["n_diverged"]) == (4, 1)
    assert summary["p_diverged"] == pytest.approx(1 / 5)
    # max_stable_lr: 1e-2 has half of its runs at risk diverged, so 1e-3 is the limit
    assert metrics.max_stable_lr(trials, n_boot=20)["max_stable_lr"].iloc[0] == 1e-3


def test_divergence_probability_keeps_nan_beta2_as_a_group():
    rows = grid([0.1], [[1, D]], optimizer="sgd") + grid(
        [0.1], [[D, D]], optimizer="novograd", beta2=0.98
    )
    out = metrics.divergence_probability(frame(rows))
    assert out["optimizer"].tolist() == ["novograd", "sgd"]
    assert out["beta2"].iloc[0] == 0.98 and math.isnan(out["beta2"].iloc[1])
    assert out["p_diverged"].tolist() == [1.0, 0.5]


def test_max_stable_lr_is_the_lr_below_the_first_half_diverged_one():
    # p(diverge) = 0, .25, .5, 1: an lr diverges at p >= 0.5, so 1e-1 is the first one
    trials = frame(grid(LRS4, [[1, 1, 1, 1], [1, 1, 1, D], [1, 1, D, D], [D, D, D, D]]))
    out = metrics.max_stable_lr(trials, n_boot=200).iloc[0]
    assert out["max_stable_lr"] == 1e-2
    assert out["first_diverging_lr"] == 1e-1
    assert not out["censored"]
    assert out["n_lrs"] == 4 and out["n_seeds"] == 4


def test_max_stable_lr_stops_at_the_first_diverging_lr_even_if_larger_ones_train():
    trials = frame(grid(LRS4, [[1, 1], [D, D], [1, 1], [1, 1]]))
    assert metrics.max_stable_lr(trials, n_boot=50)["max_stable_lr"].iloc[0] == 1e-3


def test_max_stable_lr_is_censored_at_the_largest_lr_when_none_diverged():
    trials = frame(grid(LRS4, [[1, 1]] * 4))
    out = metrics.max_stable_lr(trials, n_boot=50).iloc[0]
    assert out["max_stable_lr"] == 1.0 and out["censored"]
    assert math.isnan(out["first_diverging_lr"])
    assert math.isnan(out["ci_low"]) and math.isnan(out["ci_high"])  # 2 seeds: no interval
    assert math.isnan(out["lr_boundary_logistic"])
    five = metrics.max_stable_lr(frame(grid(LRS4, [[1] * 5] * 4)), n_boot=50).iloc[0]
    assert five["ci_low"] == five["ci_high"] == 1.0


def test_max_stable_lr_is_nan_when_all_diverged():
    trials = frame(grid(LRS4, [[D, D]] * 4))
    out = metrics.max_stable_lr(trials, n_boot=50).iloc[0]
    assert math.isnan(out["max_stable_lr"]) and not out["censored"]
    assert out["first_diverging_lr"] == 1e-3
    assert math.isnan(out["ci_low"]) and math.isnan(out["ci_high"])
    assert math.isnan(out["lr_boundary_logistic"])


def test_max_stable_lr_skips_an_lr_whose_runs_all_errored():
    trials = frame(grid(LRS4[:3], [[1, 1], [E, E], [D, D]]))
    out = metrics.max_stable_lr(trials, n_boot=50).iloc[0]
    assert out["max_stable_lr"] == 1e-3 and out["first_diverging_lr"] == 1e-1
    assert out["n_lrs"] == 2


def test_max_stable_lr_ci_collapses_when_seeds_agree():
    trials = frame(grid(LRS4, [[1] * 5, [1] * 5, [D] * 5, [D] * 5]))
    out = metrics.max_stable_lr(trials, n_boot=300).iloc[0]
    assert out["max_stable_lr"] == out["ci_low"] == out["ci_high"] == 1e-2


def test_max_stable_lr_bootstrap_ci_contains_the_estimate_and_spans_seed_disagreement():
    # three seeds diverge from 1e-1, three only at 1: p(1e-1) = 0.5, so the estimate
    # is 1e-2; resamples with fewer early-diverging seeds give 1e-1
    table = [[1] * 6, [1] * 6, [D, D, D, 1, 1, 1], [D] * 6]
    trials = frame(grid(LRS4, table))
    out = metrics.max_stable_lr(trials, n_boot=2000, seed=3).iloc[0]
    assert out["max_stable_lr"] == 1e-2
    assert out["ci_low"] == 1e-2 and out["ci_high"] == 1e-1
    again = metrics.max_stable_lr(trials, n_boot=2000, seed=3).iloc[0]
    assert again["ci_high"] == out["ci_high"] and again["ci_low"] == out["ci_low"]


def test_max_stable_lr_runs_per_group_with_nan_keys():
    rows = grid(LRS4, [[1], [1], [1], [D]], optimizer="sgd") + grid(
        LRS4, [[1], [D], [D], [D]], optimizer="insgd", beta2=0.99
    )
    out = metrics.max_stable_lr(frame(rows), n_boot=20)
    assert out["optimizer"].tolist() == ["insgd", "sgd"]
    assert out["max_stable_lr"].tolist() == [1e-3, 1e-1]


@pytest.mark.parametrize(
    "table",
    [
        [[1] * 3, [1] * 3, [1] * 3, [D] * 3],  # separable, boundary near the top
        [[1] * 3, [D] * 3, [D] * 3, [D] * 3],  # separable, boundary near the bottom
        [[1, 1, 1], [1, 1, D], [1, D, D], [D, D, D]],  # graded
    ],
)
def test_logistic_boundary_lies_between_last_stable_and_first_diverging_lr(table):
    out = metrics.max_stable_lr(frame(grid(LRS4, table)), n_boot=20).iloc[0]
    boundary = out["lr_boundary_logistic"]
    last_stable = max(lr for lr, cells in zip(LRS4, table, strict=True) if D not in cells)
    first_div = min(lr for lr, cells in zip(LRS4, table, strict=True) if D in cells)
    assert last_stable < boundary < LRS4[-1]
    assert first_div <= out["first_diverging_lr"]
    if all(c == D for c in table[LRS4.index(first_div)]):  # separable grid
        assert last_stable < boundary < first_div


def test_logistic_boundary_of_a_symmetric_grid_is_the_geometric_midpoint():
    # p = 0, 1/4, 3/4, 1 at 1e-3..1: symmetric about log10(lr) = -1.5
    table = [[1] * 4, [1, 1, 1, D], [1, D, D, D], [D] * 4]
    boundary = metrics.max_stable_lr(frame(grid(LRS4, table)), n_boot=20)[
        "lr_boundary_logistic"
    ].iloc[0]
    assert math.log10(boundary) == pytest.approx(-1.5, abs=1e-3)


# --------------------------------------------------------------------------- lr band


LRS7 = [10.0**e for e in range(-6, 1)]


def test_lr_band_is_the_contiguous_run_of_near_best_lrs():
    # medians 2.0, 1.0, 0.5, 0.52, 0.7, 0.54, capped 2.0; tolerance 10% -> <= 0.55
    table = [[2.0], [1.0], [0.5], [0.52], [0.7], [0.54], [D]]
    out = metrics.lr_band_width(frame(grid(LRS7, table))).iloc[0]
    assert out["best"] == 0.5 and out["best_lr"] == 1e-4
    # edges interpolated in log10(lr) where the median crosses 0.55: below, from 1.0 at
    # -5 to 0.5 at -4, 9/10 of the way: -4.1; above, from 0.52 at -3 to 0.7 at -2,
    # 0.03/0.18 = 1/6 of the way: -2.8333
    assert math.log10(out["band_lo"]) == pytest.approx(-4.1)
    assert math.log10(out["band_hi"]) == pytest.approx(-3 + 1 / 6)
    assert out["width_decades"] == pytest.approx(1.1 + 1 / 6)
    assert out["grid_step_decades"] == pytest.approx(1.0)
    assert out["resolved"] and not out["censored"]
    assert out["n_lrs_in_band"] == 2 and out["n_lrs"] == 7
    assert out["tolerance"] == 0.1


def test_lr_band_narrower_than_the_grid_step_is_unresolved_not_zero():
    # threshold 0.55: lower edge 9/10 of the way from 1e-5 (1.0) to 1e-4 (0.5): -4.1;
    # upper edge 1/10 of the way from 1e-4 (0.5) to 1e-3 (1.0): -3.9; width 0.2 < 1
    table = [[2.0], [1.0], [0.5], [1.0], [D], [D], [D]]
    out = metrics.lr_band_width(frame(grid(LRS7, table))).iloc[0]
    assert out["width_decades"] == pytest.approx(0.2) and out["n_lrs_in_band"] == 1
    assert not out["resolved"] and not out["censored"]


def test_lr_band_reaching_the_end_of_the_grid_is_censored():
    table = [[0.5], [0.5], [1.0], [D]]
    out = metrics.lr_band_width(frame(grid(LRS4, table))).iloc[0]
    assert out["band_lo"] == 1e-3 and out["censored"]
    assert math.log10(out["band_hi"]) == pytest.approx(-2 + 0.1)  # 0.55 from 0.5 to 1.0


def test_lr_band_uses_the_seed_median_with_diverged_runs_at_the_initial_loss():
    # lr 1e-2: [0.4, D, D] -> median of 0.4, 2.0, 2.0 = 2.0; lr 1e-1: median 0.9
    lrs = [1e-2, 1e-1]
    trials = frame(grid(lrs, [[0.4, D, D], [0.9, 0.8, 1.0]]))
    out = metrics.lr_band_width(trials).iloc[0]
    assert out["best"] == pytest.approx(0.9) and out["best_lr"] == 1e-1
    assert out["n_lrs_in_band"] == 1


def test_lr_band_for_accuracy_uses_an_absolute_tolerance():
    rows = grid(LRS4, [[1.0], [1.0], [1.0], [1.0]])
    for row, acc in zip(rows, [0.5, 0.9, 0.895, 0.85], strict=True):
        row.update(final_val_acc=acc)
    out = metrics.lr_band_width(frame(rows), metric="final_val_acc").iloc[0]
    assert out["best"] == 0.9 and out["tolerance"] == 0.01
    # threshold 0.89: from 0.5 at -3 to 0.9 at -2: 0.39/0.4 of the way; from 0.895 at
    # -1 to 0.85 at 0: 0.005/0.045 = 1/9 of the way
    assert math.log10(out["band_lo"]) == pytest.approx(-3 + 0.39 / 0.4)
    assert math.log10(out["band_hi"]) == pytest.approx(-1 + 1 / 9)
    wide = metrics.lr_band_width(frame(rows), metric="final_val_acc", tolerance=0.4).iloc[0]
    assert wide["width_decades"] == pytest.approx(3.0)


# --------------------------------------------------------------------------- sensitivity


def test_lr_sensitivity_matches_wortsman_definition_by_hand():
    # seed means: 1e-3 -> (0.4 + 0.6)/2 = 0.5; 1e-2 -> (1.0 + 2.0[div])/2 = 1.5;
    # 1e-1 -> 3.0 clipped to l0 = 2.0; 1 -> all diverged = 2.0
    table = [[0.4, 0.6], [1.0, D], [3.0, 3.0], [D, D]]
    out = metrics.lr_sensitivity(frame(grid(LRS4, table))).iloc[0]
    assert out["best"] == pytest.approx(0.5) and out["best_lr"] == 1e-3
    assert out["initial_loss"] == pytest.approx(2.0)
    assert out["sensitivity"] == pytest.approx((0.5 + 1.5 + 2.0 + 2.0) / 4 - 0.5)
    assert out["n_lrs"] == 4


def test_lr_sensitivity_is_zero_when_every_lr_is_equally_good():
    out = metrics.lr_sensitivity(frame(grid(LRS4, [[0.7, 0.7]] * 4)))
    assert out["sensitivity"].iloc[0] == pytest.approx(0.0)


def test_lr_sensitivity_refuses_an_accuracy_metric():
    with pytest.raises(UserInputError, match="loss metric"):
        metrics.lr_sensitivity(frame(grid(LRS4, [[0.7]] * 4)), metric="final_val_acc")


def test_lr_profile_keeps_the_beta_with_the_best_seed_median_per_lr():
    # beta 0.5: medians 0.4 (1e-3), 2.0 (1e-2: diverged runs count at the initial loss);
    # beta 0.9: medians 0.6, 1.0, so beta 0.5 wins at 1e-3 and beta 0.9 at 1e-2
    rows = grid(LRS4[:2], [[0.3, 0.5], [D, D]], beta=0.5)
    rows += grid(LRS4[:2], [[0.6, 0.6], [1.0, 1.0]], beta=0.9)
    out = metrics.lr_profile(frame(rows))
    assert out["lr"].tolist() == LRS4[:2]
    assert out["beta"].tolist() == [0.5, 0.9]
    assert out["median"].tolist() == pytest.approx([0.4, 1.0])
    assert out[["low", "high"]].iloc[0].tolist() == pytest.approx([0.35, 0.45])
    assert out["diverged"].tolist() == [0.0, 0.0]
    assert out["n_runs"].tolist() == [2, 2]


# --------------------------------------------------------------------------- expected max


def _configs_with_values(values: list[float], optimizer: str = "sgd") -> pd.DataFrame:
    lrs = [10.0 ** (-i) for i in range(len(values))]
    rows = grid(lrs, [[1.0, 1.0]] * len(values), optimizer=optimizer)
    for row in rows:
        # both seeds of a configuration average to its value
        base = values[lrs.index(row["lr"])]
        row["best_val_acc"] = base + (0.01 if row["seed"] == 0 else -0.01)
    return frame(rows)


def test_expected_max_at_k1_is_the_mean_and_tends_to_the_max():
    values = [0.2, 0.5, 0.55, 0.9, 0.6]
    out = metrics.expected_max_curve(_configs_with_values(values), ks=[1, 2, 50, 500])
    assert out["k"].tolist() == [1, 2, 50, 500]
    assert out["expected_best"].iloc[0] == pytest.approx(np.mean(values))
    assert out["std"].iloc[0] == pytest.approx(np.std(values))
    assert out["expected_best"].is_monotonic_increasing
    assert out["expected_best"].iloc[-1] == pytest.approx(0.9, abs=1e-9)
    assert out["n_configs"].tolist() == [5] * 4


def test_expected_max_matches_monte_carlo_sampling_with_replacement():
    values = np.array([0.1, 0.3, 0.3, 0.45, 0.8, 0.82])
    ks = [1, 2, 3, 5, 8]
    out = metrics.expected_max_curve(_configs_with_values(list(values)), ks=ks)
    rng = np.random.default_rng(0)
    for k, expected, std in zip(ks, out["expected_best"], out["std"], strict=True):
        draws = values[rng.integers(0, len(values), size=(200_000, k))].max(axis=1)
        assert expected == pytest.approx(draws.mean(), abs=0.003)
        assert std == pytest.approx(draws.std(), abs=0.003)


def test_expected_min_for_a_minimized_metric():
    values = [0.2, 0.5, 0.9]
    trials = frame(grid([1e-3, 1e-2, 1e-1], [[v] for v in values]))
    out = metrics.expected_max_curve(trials, metric="final_val_loss", ks=[1, 2])
    assert out["expected_best"].iloc[0] == pytest.approx(np.mean(values))
    # E[min of 2] = sum over pairs (with replacement) of the smaller value / 9
    pairs = [min(a, b) for a in values for b in values]
    assert out["expected_best"].iloc[1] == pytest.approx(np.mean(pairs))


def test_expected_max_defaults_to_k_up_to_the_largest_group():
    trials = pd.concat(
        [_configs_with_values([0.1, 0.2, 0.3]), _configs_with_values([0.5, 0.6], "insgd")]
    )
    out = metrics.expected_max_curve(trials)
    assert out.groupby("optimizer")["k"].apply(list).to_dict() == {
        "insgd": [1, 2, 3],
        "sgd": [1, 2, 3],
    }
    # ks beyond a group's size are valid: draws are with replacement
    insgd = out[out["optimizer"] == "insgd"]["expected_best"].tolist()
    assert insgd[2] == pytest.approx(0.5 * (1 / 8) + 0.6 * (7 / 8))


def test_tunability_weights_the_expected_max_curve():
    curve = pd.DataFrame(
        {"optimizer": ["a", "a", "a"], "k": [1, 2, 3], "expected_best": [0.3, 0.6, 0.9]}
    )
    uniform = metrics.tunability(curve)["tunability"].iloc[0]
    early = metrics.tunability(curve, weighting="early")["tunability"].iloc[0]
    late = metrics.tunability(curve, weighting="late")["tunability"].iloc[0]
    assert uniform == pytest.approx(0.6)
    assert early == pytest.approx((3 * 0.3 + 2 * 0.6 + 1 * 0.9) / 6)
    assert late == pytest.approx((1 * 0.3 + 2 * 0.6 + 3 * 0.9) / 6)


# --------------------------------------------------------------------------- init, pairs


def test_worst_case_over_init_names_the_worst_and_best_scheme():
    rows = (
        grid([0.1], [[1.0, 1.2]], init="default")
        + grid([0.1], [[0.4, 0.6]], init="orthogonal")
        + grid([0.1], [[D, 1.0]], init="zeros")  # mean of 2.0 (capped) and 1.0
    )
    out = metrics.worst_case_over_init(frame(rows)).iloc[0]
    assert (out["worst"], out["worst_init"]) == (pytest.approx(1.5), "zeros")
    assert (out["best"], out["best_init"]) == (pytest.approx(0.5), "orthogonal")
    assert out["spread"] == pytest.approx(1.0) and out["n_inits"] == 3

    acc = metrics.worst_case_over_init(frame(rows), metric="final_val_acc").iloc[0]
    # zeros: the diverged seed counts at its untrained accuracy 0.1, the other 0.5
    assert acc["worst_init"] == "zeros" and acc["worst"] == pytest.approx(0.3)


def _paired_rows(shift: float, n_seeds: int = 5, **kw) -> list[dict]:
    rows = []
    for init in ("default", "orthogonal"):
        table = [[0.5 + 0.1 * s + shift for s in range(n_seeds)] for _ in LRS4]
        rows += grid(LRS4, table, init=init, **kw)
    return rows


def test_paired_comparison_of_a_uniform_improvement_has_a_collapsed_ci():
    trials = frame(_paired_rows(0.0) + _paired_rows(-0.1, optimizer="insgd", beta2=0.99))
    out = metrics.paired_comparison(trials, n_boot=200).iloc[0]
    assert (out["optimizer"], out["baseline"]) == ("insgd", "sgd")
    assert out["n_pairs"] == 2 * 4 * 5
    assert out["mean_diff"] == pytest.approx(-0.1)
    assert out["ci_low"] == pytest.approx(-0.1) and out["ci_high"] == pytest.approx(-0.1)
    assert out["p_better"] == 1.0 and out["frac_pairs_better"] == 1.0


def test_paired_comparison_averages_other_axes_within_a_pair():
    rows = (
        _paired_rows(0.0)
        + _paired_rows(-0.3, optimizer="novograd", beta2=0.9)
        + _paired_rows(0.1, optimizer="novograd", beta2=0.99)
    )
    out = metrics.paired_comparison(frame(rows), n_boot=100).iloc[0]
    assert out["n_pairs"] == 40 and out["mean_diff"] == pytest.approx(-0.1)


def test_paired_comparison_ci_contains_the_mean_difference():
    rng = np.random.default_rng(1)
    rows = _paired_rows(0.0)
    other = _paired_rows(0.0, optimizer="insgd")
    for row in other:
        row["final_val_loss"] += rng.normal(0.05, 0.1)
    out = metrics.paired_comparison(frame(rows + other), n_boot=1000).iloc[0]
    assert out["ci_low"] < out["mean_diff"] < out["ci_high"]
    assert 0.0 <= out["p_better"] <= 0.5


def test_paired_comparison_tuned_pairs_best_configs_per_init_and_seed():
    # sgd's best lr is 1e-2 (0.3), insgd's is 1 (0.2): tuned pairs are (init, seed)
    sgd = grid(LRS4, [[0.9, 0.9], [0.3, 0.3], [0.6, 0.6], [D, D]])
    insgd = grid(LRS4, [[0.9, 0.9], [0.8, 0.8], [0.5, 0.5], [0.2, 0.2]], optimizer="insgd")
    out = metrics.paired_comparison(frame(sgd + insgd), level="tuned", n_boot=50).iloc[0]
    assert out["n_pairs"] == 2 and out["level"] == "tuned"
    assert out["mean_diff"] == pytest.approx(-0.1)


def test_paired_comparison_refuses_an_absent_baseline():
    with pytest.raises(UserInputError, match="present: sgd"):
        metrics.paired_comparison(frame(_paired_rows(0.0)), baseline="novograd")


# --------------------------------------------------------------------------- counts


def test_outcome_counts_lists_every_outcome_with_zeros():
    rows = grid([0.1, 1.0], [[1, S], [D, E]]) + grid([0.1], [[1]], optimizer="insgd")
    out = metrics.outcome_counts(frame(rows))
    sgd = out[out["optimizer"] == "sgd"].set_index("outcome")["n_runs"].to_dict()
    assert sgd == {"converged": 1, "diverged": 1, "stalled": 1, "pruned": 0, "error": 1}
    insgd = out[out["optimizer"] == "insgd"]
    assert insgd["n_runs"].tolist() == [1, 0, 0, 0, 0]
    assert insgd["fraction"].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_summary_by_optimizer_counts_outcomes_and_finds_the_best_config():
    rows = grid(LRS4, [[0.9, 0.7], [0.3, 0.5], [S, E], [D, D]], init="orthogonal")
    rows += grid([0.5], [[0.1, 0.1]], optimizer="insgd", beta2=0.99, beta=0.5)
    out = metrics.summary_by_optimizer(frame(rows)).set_index("optimizer")
    sgd = out.loc["sgd"]
    assert (sgd["n_runs"], sgd["n_converged"], sgd["n_diverged"]) == (8, 4, 2)
    assert (sgd["n_stalled"], sgd["n_error"], sgd["n_configs"]) == (1, 1, 4)
    assert sgd["p_diverged"] == pytest.approx(2 / 7)
    assert sgd["best_objective"] == pytest.approx(0.4)
    assert (sgd["best_lr"], sgd["best_init"], sgd["best_beta"]) == (1e-2, "orthogonal", 0.9)
    assert math.isnan(sgd["best_beta2"])
    insgd = out.loc["insgd"]
    assert (insgd["best_lr"], insgd["best_beta"], insgd["best_beta2"]) == (0.5, 0.5, 0.99)


# --------------------------------------------------------------------------- seed-level statistics


def test_cluster_bootstrap_resamples_seeds_not_pairs():
    # 5 seeds with 10 identical pairs each: seed 4's pairs are 1, the others 0. A
    # resample's mean is (times seed 4 is drawn) / 5, Binomial(5, 1/5) / 5:
    # P(<= 0) = 0.328 and P(<= 2) = 0.942 < 0.975 <= P(<= 3) = 0.993, so the 95%
    # interval is [0, 0.6]. Resampling the 50 pairs one by one would give about
    # [0.09, 0.31] (0.2 +- 1.96 * sqrt(0.2 * 0.8 / 50)), far too narrow.
    values = np.repeat([0.0, 0.0, 0.0, 0.0, 1.0], 10)
    seeds = np.repeat(np.arange(5), 10)
    boot = metrics.cluster_bootstrap_means(values, seeds, 4000, np.random.default_rng(0))
    assert np.quantile(boot, 0.025) == 0.0
    assert np.quantile(boot, 0.975) == pytest.approx(0.6)
    assert set(np.round(boot * 5, 9)) <= {0.0, 1.0, 2.0, 3.0, 4.0, 5.0}


def test_paired_comparison_interval_is_over_seeds():
    # the optimizer is better by 0.1 on four seeds and worse by 0.4 on the fifth, at
    # every lr and init: 8 pairs per seed. The mean is 0; a seed-level interval spans
    # the resamples' means (k * 0.4 - (5 - k) * 0.1) / 5 for k = 0..3 at least.
    rows = _paired_rows(0.0)
    other = _paired_rows(0.0, optimizer="insgd")
    for row in other:
        row["final_val_loss"] += 0.4 if row["seed"] == 4 else -0.1
    out = metrics.paired_comparison(frame(rows + other), n_boot=4000).iloc[0]
    assert out["mean_diff"] == pytest.approx(0.0)
    assert out["n_pairs"] == 40 and out["n_seeds"] == 5
    assert out["ci_low"] == pytest.approx(-0.1)  # seed 4 drawn 0 times: P = 0.328
    assert out["ci_high"] == pytest.approx(0.2)  # drawn 3 times: the 97.5% quantile
    assert out["frac_pairs_better"] == pytest.approx(0.8)


def test_paired_comparison_gives_no_interval_under_five_seeds():
    rows = _paired_rows(0.0, n_seeds=4) + _paired_rows(-0.1, n_seeds=4, optimizer="insgd")
    out = metrics.paired_comparison(frame(rows), n_boot=100).iloc[0]
    assert out["mean_diff"] == pytest.approx(-0.1) and out["n_seeds"] == 4
    assert math.isnan(out["ci_low"]) and math.isnan(out["ci_high"])
    assert math.isnan(out["p_better"])


def test_tuned_comparison_is_cross_fitted_on_halves_of_the_seeds():
    # insgd's two configurations are equally good on average (0.5), but each wins on
    # one seed. Chosen on the same seeds it is scored on, the winner looks like 0.0:
    # 0.5 better than sgd's 0.5. Cross-fitted: chosen on seed 0 (lr 1e-3: 0.0), scored
    # on seed 1 (1.0); chosen on seed 1 (lr 1e-2: 0.0), scored on seed 0 (1.0). So
    # the tuned difference is +0.5 on both seeds, exactly.
    sgd = grid([1e-3], [[0.5, 0.5]])
    insgd = grid([1e-3, 1e-2], [[0.0, 1.0], [1.0, 0.0]], optimizer="insgd")
    out = metrics.paired_comparison(frame(sgd + insgd), level="tuned", n_boot=50).iloc[0]
    assert out["mean_diff"] == pytest.approx(0.5) and out["n_pairs"] == 2
    assert metrics.seed_halves([7, 3, 5, 1]) == ([1, 5], [3, 7])


def test_paired_comparison_keeps_an_extra_axis_apart():
    rows, other = [], []
    for wd, shift in ((0.0, -0.1), (1e-3, 0.2)):
        rows += _paired_rows(0.0, weight_decay=wd)
        other += _paired_rows(shift, optimizer="insgd", weight_decay=wd)
    trials = pd.DataFrame(rows + other).astype(TRIAL_COLUMNS)
    out = metrics.paired_comparison(trials, axes=["weight_decay"], n_boot=50)
    assert out["weight_decay"].tolist() == [0.0, 1e-3]
    assert out["mean_diff"].tolist() == pytest.approx([-0.1, 0.2])
    assert out["n_pairs"].tolist() == [40, 40]
