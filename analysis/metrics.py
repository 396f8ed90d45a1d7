"""Robustness metrics: pure functions from the ``trials`` DataFrame to tidy DataFrames.

Input contract
--------------
``trials`` is the frame of ``trials.parquet`` (``analysis.load.load_results``): one
row per run with the columns of ``robustness/results/schema.py`` ``TRIAL_COLUMNS``.
Each function names the columns it needs and raises ``UserInputError`` when one is
missing. A grid *cell* is one value of the group keys ``by`` (default
``optimizer, init, beta, beta2`` plus ``lr`` where the metric is per learning rate);
``seed`` is the replicate. Group keys may be NaN (``beta2`` for SGD): NaN is a key
of its own, never dropped. Output rows are sorted by the group keys.

Outcomes: runs with ``outcome == "error"`` are excluded from every metric (they are
counted in ``n_error`` where a count is reported); ``diverged`` and ``stalled`` runs
are kept. ``pruned`` runs (stopped early by the study's scheduler) are censored:
they count in no divergence probability (neither the diverged runs nor the runs at
risk), and in value metrics with the value they had when stopped (capped as below;
a seed never started has none and is skipped).

Effective metric values (``capped_metric``): the one capping rule of
``robustness.runner.outcome.capped_value``, which the runner's ``objective`` and
the search use too. A diverged run counts exactly as its untrained model (the same
metric measured at step 0: ``initial_loss``, ``initial_train_acc``,
``initial_val_loss`` or ``initial_val_acc``), for final and best metrics alike;
any other run never counts as worse than its untrained model (``min(L, L0)`` for a
loss, ``max(a, a0)`` for an accuracy; a non-finite value counts as the initial
one). The ``objective`` column is already capped by the runner and used as it is.

Every stochastic procedure (bootstrap) takes ``seed`` and is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from analysis.frames import diverged_flag, require_columns, runs_at_risk, usable_runs
from robustness.errors import UserInputError
from robustness.results.band import band_threshold, band_tolerance, in_band
from robustness.results.schema import OUTCOMES
from robustness.runner.outcome import capped_value, initial_column, is_maximized

__all__ = [
    "capped_metric",
    "cluster_bootstrap_means",
    "diverged_flag",
    "divergence_probability",
    "expected_max_curve",
    "is_maximized",
    "lr_band_width",
    "lr_profile",
    "lr_sensitivity",
    "max_stable_lr",
    "outcome_counts",
    "paired_comparison",
    "seed_halves",
    "summary_by_optimizer",
    "tunability",
    "worst_case_over_init",
]

CELL = ("optimizer", "init", "beta", "beta2")
CELL_LR = (*CELL, "lr")
Direction = Literal["minimize", "maximize"]
MIN_SEEDS_FOR_CI = 5
"""Fewer seeds than this: no bootstrap interval over seeds. With n seeds a bootstrap
has C(2n-1, n) distinct resamples (3 for 2 seeds, 10 for 3), too few for a 95%
percentile interval to mean anything."""


# --------------------------------------------------------------------------- helpers


def _direction(metric: str, direction: Direction | None) -> Direction:
    if direction is None:
        return "maximize" if is_maximized(metric) else "minimize"
    if direction not in ("minimize", "maximize"):
        raise UserInputError(f"direction {direction!r} is not allowed; use minimize or maximize")
    return direction


def capped_metric(trials: pd.DataFrame, metric: str) -> pd.Series:
    """Per-run value of ``metric`` under the capping rule (see module docstring).

    The single entry point of the analysis to ``capped_value``. Needs ``outcome``,
    ``metric`` and the metric's step-0 column (``initial_column``), except for
    ``objective``, which is already capped. Returns a float Series aligned with
    ``trials``.
    """
    require_columns(trials, ["outcome", metric], f"metric {metric!r}")
    if metric == "objective":
        values = trials[metric].to_numpy(dtype=float, na_value=np.nan)
        return pd.Series(values, index=trials.index, name=metric)
    initial = initial_column(metric)
    require_columns(trials, [initial], f"metric {metric!r}")
    capped = capped_value(
        trials[metric], trials[initial], trials["outcome"], maximize=is_maximized(metric)
    )
    return pd.Series(capped, index=trials.index, name=metric)


def _group_index(frame: pd.DataFrame, by: Sequence[str]) -> list[np.ndarray]:
    """Positional row indices of each group of ``by``, in sorted key order, NaN kept."""
    if not len(frame):
        return []
    gid = frame.groupby(list(by), dropna=False, sort=True).ngroup().to_numpy()
    order = np.argsort(gid, kind="stable")
    cuts = np.flatnonzero(np.diff(gid[order])) + 1
    return np.split(order, cuts)


def _keys_of(frame: pd.DataFrame, by: Sequence[str], groups: list[np.ndarray]) -> pd.DataFrame:
    first = [g[0] for g in groups]
    return frame.iloc[first][list(by)].reset_index(drop=True)


def _mean_capped(usable: pd.DataFrame, metric: str, keys: Sequence[str]) -> pd.DataFrame:
    """Mean of the capped metric over the runs sharing each value of ``keys`` (column ``value``)."""
    frame = usable[list(keys)].assign(value=capped_metric(usable, metric).to_numpy())
    return frame.groupby(list(keys), dropna=False, sort=True)["value"].mean().reset_index()


# --------------------------------------------------------------------------- divergence


def divergence_probability(trials: pd.DataFrame, by: Sequence[str] = CELL_LR) -> pd.DataFrame:
    """Fraction of runs (seeds) that diverged in each cell.

    Needs ``by`` and ``outcome``. Returns one row per cell: ``by``, ``n_runs``
    (runs at risk: neither error nor pruned), ``n_diverged``, ``n_error``,
    ``n_pruned`` (censored, in neither count), ``p_diverged`` = n_diverged /
    n_runs (NaN when the cell has no run at risk).
    """
    by = list(by)
    require_columns(trials, [*by, "outcome"], "divergence_probability")
    outcome = trials["outcome"]
    flags = trials[by].assign(
        _div=outcome.eq("diverged").to_numpy(dtype=bool),
        _err=outcome.eq("error").to_numpy(dtype=bool),
        _pruned=outcome.eq("pruned").to_numpy(dtype=bool),
    )
    flags["_run"] = ~(flags["_err"] | flags["_pruned"])
    out = (
        flags.groupby(by, dropna=False, sort=True)
        .agg(
            n_runs=("_run", "sum"),
            n_diverged=("_div", "sum"),
            n_error=("_err", "sum"),
            n_pruned=("_pruned", "sum"),
        )
        .reset_index()
    )
    out = out.astype(dict.fromkeys(["n_runs", "n_diverged", "n_error", "n_pruned"], "int64"))
    out["p_diverged"] = out["n_diverged"] / out["n_runs"].where(out["n_runs"] > 0)
    return out


def _divergence_tables(
    usable: pd.DataFrame, by: Sequence[str]
) -> tuple[pd.DataFrame, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Per group of ``by``: (lrs, diverged counts, run counts), counts shaped seed x lr."""
    counts = (
        usable[[*by, "seed", "lr"]]
        .assign(_div=usable["outcome"].eq("diverged").to_numpy(dtype=float))
        .groupby([*by, "seed", "lr"], dropna=False, sort=True)["_div"]
        .agg(["sum", "count"])
        .reset_index()
    )
    groups = _group_index(counts, by)
    seed = counts["seed"].to_numpy()
    lr = counts["lr"].to_numpy(dtype=float)
    n_div = counts["sum"].to_numpy(dtype=float)
    n_run = counts["count"].to_numpy(dtype=float)
    tables = []
    for rows in groups:
        lrs, lr_at = np.unique(lr[rows], return_inverse=True)
        seeds, seed_at = np.unique(seed[rows], return_inverse=True)
        div = np.zeros((len(seeds), len(lrs)))
        run = np.zeros_like(div)
        np.add.at(div, (seed_at, lr_at), n_div[rows])
        np.add.at(run, (seed_at, lr_at), n_run[rows])
        tables.append((lrs, div, run))
    return _keys_of(counts, by, groups), tables


def _last_stable_index(
    weights: np.ndarray, div: np.ndarray, run: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Index of the max stable lr for each row of seed ``weights`` (-1: none), and censoring.

    An lr *diverges* when its weighted divergence probability is >= 0.5; the max
    stable lr is the largest tested lr below the first diverging one; censored when
    no tested lr diverges.
    """
    num = weights @ div
    den = weights @ run
    tested = den > 0
    diverging = tested & (num >= 0.5 * den)
    n_lr = div.shape[1]
    any_div = diverging.any(axis=1)
    first = np.where(any_div, diverging.argmax(axis=1), n_lr)
    below = tested & (np.arange(n_lr) < first[:, None])
    last = np.where(below.any(axis=1), n_lr - 1 - below[:, ::-1].argmax(axis=1), -1)
    return last, ~any_div & (last >= 0)


def _logistic_boundary(lrs: np.ndarray, n_div: np.ndarray, n_run: np.ndarray) -> float:
    """lr at which a logistic fit of P(diverge) on log10(lr) crosses 0.5 (NaN if degenerate)."""
    total_div, total = n_div.sum(), n_run.sum()
    if total == 0 or total_div == 0 or total_div == total or len(lrs) < 2:
        return float("nan")
    x = np.log10(lrs)
    center, scale = x.mean(), x.std()
    intercept, slope = _fit_logistic_1d((x - center) / scale, n_div, n_run)
    if slope <= 0:  # divergence does not grow with lr: no upper boundary
        return float("nan")
    return float(10 ** (center + scale * (-intercept / slope)))


def _fit_logistic_1d(
    z: np.ndarray, n_pos: np.ndarray, n_all: np.ndarray, ridge: float = 1e-4
) -> tuple[float, float]:
    """Binomial logistic regression ``P = sigmoid(a + b z)`` by damped Newton steps.

    ``n_pos`` of ``n_all`` trials at each ``z`` are positive. A tiny ridge on the
    slope keeps the optimum finite on a separable grid (then the fit is steep and
    crosses 0.5 inside the gap between the classes); the intercept is not penalized.
    Returns ``(a, b)``.
    """
    design = np.stack([np.ones_like(z), z], axis=1)
    penalty = np.array([0.0, ridge])

    def loss(theta: np.ndarray) -> float:
        eta = design @ theta
        nll = n_all @ np.logaddexp(0.0, eta) - n_pos @ eta
        return float(nll + 0.5 * penalty @ theta**2)

    theta = np.zeros(2)
    current = loss(theta)
    for _ in range(200):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        grad = design.T @ (n_all * p - n_pos) + penalty * theta
        hess = (design * (n_all * p * (1.0 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hess + 1e-12 * np.eye(2), grad)
        scale = 1.0
        while scale > 1e-8 and loss(theta - scale * step) > current:
            scale /= 2.0
        theta = theta - scale * step
        previous, current = current, loss(theta)
        if previous - current <= 1e-12 * max(1.0, abs(current)):
            break
    return float(theta[0]), float(theta[1])


def max_stable_lr(
    trials: pd.DataFrame,
    by: Sequence[str] = CELL,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Largest learning rate that trains stably, per group of ``by`` (lr swept inside).

    Rule: within a group, an lr *diverges* when at least half of its runs at risk
    (neither error nor pruned) diverged. ``max_stable_lr`` is the largest tested lr below the first diverging
    lr in increasing-lr order. Edge cases: no lr diverges -> the largest tested lr
    with ``censored=True`` ("at least this"); the smallest lr already diverges ->
    NaN (no stable lr in the grid).

    CI: percentile bootstrap over seeds: the seeds of a group are resampled with
    replacement (each drawn seed brings its runs at every lr) and the rule is
    re-applied; ``ci_low`` is the lower and ``ci_high`` the upper ``ci`` quantile, both
    on grid values (a replicate with no stable lr ranks below every lr; a CI end
    falling there is NaN). When all seeds agree the CI collapses to the estimate.
    A group with fewer than ``MIN_SEEDS_FOR_CI`` seeds gets no interval (NaN).

    ``lr_boundary_logistic``: a smoother estimate, the lr at which a nearly
    unregularized logistic regression of divergence (0/1 per run) on log10(lr) gives
    P(diverge) = 0.5. NaN when every run or no run diverged, or when divergence does
    not increase with lr. It may lie outside the grid when the fit extrapolates.

    Needs ``by``, ``lr``, ``seed``, ``outcome``. Returns ``by``, ``max_stable_lr``,
    ``censored``, ``first_diverging_lr`` (NaN if none), ``ci_low``, ``ci_high``,
    ``lr_boundary_logistic``, ``n_lrs``, ``n_seeds``.
    """
    by = list(by)
    require_columns(trials, [*by, "lr", "seed", "outcome"], "max_stable_lr")
    if not 0 < ci < 1:
        raise UserInputError(f"ci must be in (0, 1), got {ci!r}")
    if n_boot < 1:
        raise UserInputError(f"n_boot must be at least 1, got {n_boot!r}")
    keys, tables = _divergence_tables(runs_at_risk(trials), by)
    rng = np.random.default_rng(seed)
    alpha = (1.0 - ci) / 2.0
    rows = []
    for lrs, div, run in tables:
        n_seeds = div.shape[0]
        point, censored = _last_stable_index(np.ones((1, n_seeds)), div, run)
        lo = hi = -1
        if n_seeds >= MIN_SEEDS_FOR_CI:
            boot, _ = _last_stable_index(_resample_counts(n_seeds, n_boot, rng), div, run)
            lo = int(np.quantile(boot, alpha, method="lower"))
            hi = int(np.quantile(boot, 1.0 - alpha, method="higher"))
        totals_div, totals_run = div.sum(axis=0), run.sum(axis=0)
        tested = totals_run > 0
        diverging = tested & (totals_div >= 0.5 * totals_run)
        rows.append(
            {
                "max_stable_lr": _lr_at(lrs, int(point[0])),
                "censored": bool(censored[0]),
                "first_diverging_lr": lrs[diverging.argmax()] if diverging.any() else np.nan,
                "ci_low": _lr_at(lrs, lo),
                "ci_high": _lr_at(lrs, hi),
                "lr_boundary_logistic": _logistic_boundary(
                    lrs[tested], totals_div[tested], totals_run[tested]
                ),
                "n_lrs": int(tested.sum()),
                "n_seeds": n_seeds,
            }
        )
    return pd.concat([keys, _frame(rows, _MAX_STABLE_COLUMNS)], axis=1)


_MAX_STABLE_COLUMNS = (
    "max_stable_lr",
    "censored",
    "first_diverging_lr",
    "ci_low",
    "ci_high",
    "lr_boundary_logistic",
    "n_lrs",
    "n_seeds",
)


def _lr_at(lrs: np.ndarray, index: int) -> float:
    return float(lrs[index]) if index >= 0 else float("nan")


def _frame(rows: list[dict], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns))


# --------------------------------------------------------------------------- lr sensitivity


def lr_band_width(
    trials: pd.DataFrame,
    metric: str = "final_val_loss",
    tolerance: float | None = None,
    by: Sequence[str] = CELL,
    direction: Direction | None = None,
) -> pd.DataFrame:
    """Width, in decades of lr, of the contiguous band of near-best learning rates.

    Per group of ``by`` and per lr, the seed-median of the capped metric (module
    docstring). ``best`` is the best of these over lr (lowest for a minimized
    metric, highest for a maximized one; ties go to the smallest lr). An lr is
    *good* when its median is within ``tolerance`` of ``best``
    (``robustness.results.band``, the rule the boundary sampler's band search uses):

    - minimized (losses): relative, ``value <= best * (1 + tolerance)`` (default 0.1);
    - maximized (accuracies): absolute, ``value >= best - tolerance`` (default 0.01).

    The band is the *contiguous* run of good lrs (in increasing order among the lrs
    tested in that group) that contains the best lr; a good lr cut off from it by a
    bad one does not count. Its edges are interpolated in log10(lr): between the
    band's outermost good lr and the bad lr next to it, the median is taken as linear
    in log10(lr) and the edge is where it crosses the threshold (``band_edges``).
    Where the band reaches the end of the tested range its edge is that end lr and
    ``censored`` is True (the band may be wider). ``width_decades =
    log10(band_hi / band_lo)``. ``grid_step_decades`` is the group's median spacing
    of tested lrs in decades; ``resolved`` is False when the band is narrower than
    that step: the grid cannot resolve its width, only bound it.

    Needs ``by``, ``lr``, ``outcome``, ``metric`` (and ``initial_loss`` for a loss).
    Returns ``by``, ``best``, ``best_lr``, ``band_lo``, ``band_hi``, ``width_decades``,
    ``grid_step_decades``, ``resolved``, ``censored``, ``n_lrs_in_band``, ``n_lrs``,
    ``tolerance``.
    """
    by = list(by)
    require_columns(trials, [*by, "lr", "outcome"], "lr_band_width")
    maximize = _direction(metric, direction) == "maximize"
    tolerance = band_tolerance(tolerance, maximize=maximize)
    usable = usable_runs(trials)
    per_lr = (
        usable[[*by, "lr"]]
        .assign(value=capped_metric(usable, metric).to_numpy())
        .groupby([*by, "lr"], dropna=False, sort=True)["value"]
        .median()
        .reset_index()
        .dropna(subset=["value"])
        .reset_index(drop=True)
    )
    gid = per_lr.groupby(by, dropna=False, sort=True).ngroup().to_numpy()
    per_lr["_gid"] = gid  # rows are already sorted by (group, lr)
    score = per_lr["value"].to_numpy() * (-1.0 if maximize else 1.0)
    best_row = pd.Series(score).groupby(gid).idxmin().to_numpy()  # first = smallest lr
    best = per_lr["value"].to_numpy()[best_row][gid]
    good = in_band(per_lr["value"].to_numpy(), best, tolerance, maximize=maximize)
    # contiguous segments of equal `good` within a group; the band is the best row's one
    new_segment = np.r_[True, (np.diff(gid) != 0) | (good[1:] != good[:-1])]
    segment = np.cumsum(new_segment)
    member = segment == segment[best_row][gid]
    threshold = band_threshold(best, tolerance, maximize=maximize)
    x = np.log10(per_lr["lr"].to_numpy(dtype=float))
    values = per_lr["value"].to_numpy()
    edges = []
    for g, start in enumerate(np.flatnonzero(np.r_[True, np.diff(gid) != 0])):
        rows = np.flatnonzero(gid == g)
        members = np.flatnonzero(member[rows])
        lo, hi, censored = band_edges(x[rows], values[rows], threshold[start], members)
        steps = np.diff(x[rows])
        edges.append((lo, hi, censored, float(np.median(steps)) if len(steps) else np.nan))
    out = per_lr.iloc[best_row][[*by, "value", "lr"]].reset_index(drop=True)
    out = out.rename(columns={"value": "best", "lr": "best_lr"})
    lo, hi, censored, step = (np.array(c) for c in zip(*edges, strict=True)) if edges else [[]] * 4
    out["band_lo"] = 10.0 ** np.asarray(lo, dtype=float)
    out["band_hi"] = 10.0 ** np.asarray(hi, dtype=float)
    out["width_decades"] = np.asarray(hi, dtype=float) - np.asarray(lo, dtype=float)
    out["grid_step_decades"] = np.asarray(step, dtype=float)
    # a one-lr group has no step: its band is unresolved (no neighbour bounds it)
    out["resolved"] = (out["width_decades"] >= out["grid_step_decades"] - 1e-12).astype(bool)
    out["censored"] = np.asarray(censored, dtype=bool)
    out["n_lrs_in_band"] = np.bincount(gid[member], minlength=len(out)).astype("int64")
    out["n_lrs"] = np.bincount(gid).astype("int64") if len(gid) else np.zeros(0, "int64")
    out["tolerance"] = float(tolerance)
    return out


def band_edges(
    x: np.ndarray, values: np.ndarray, threshold: float, members: np.ndarray
) -> tuple[float, float, bool]:
    """Interpolated edges, in log10(lr), of a band of grid points.

    ``x`` are the group's log10(lr) in increasing order, ``values`` its medians,
    ``members`` the (contiguous) indices of the band. Each edge lies between the
    band's outermost point ``i`` and its outside neighbour ``j``, where the line
    through ``(x_i, v_i)`` and ``(x_j, v_j)`` crosses ``threshold``; a band that
    reaches an end of the grid keeps that end. Returns (lo, hi, censored), censored
    when either edge is a grid end.
    """
    first, last = int(members[0]), int(members[-1])

    def cross(inside: int, outside: int) -> float:
        v_in, v_out = values[inside], values[outside]
        t = (threshold - v_in) / (v_out - v_in)  # in [0, 1): v_in is good, v_out is not
        return float(x[inside] + t * (x[outside] - x[inside]))

    lo = cross(first, first - 1) if first > 0 else float(x[first])
    hi = cross(last, last + 1) if last < len(x) - 1 else float(x[last])
    return lo, hi, first == 0 or last == len(x) - 1


def lr_sensitivity(
    trials: pd.DataFrame,
    metric: str = "final_train_loss",
    by: Sequence[str] = CELL,
) -> pd.DataFrame:
    """LR sensitivity of Wortsman et al. 2023 (arXiv 2309.14322), per group of ``by``.

    ``sensitivity = E_lr[min(l(lr), l0)] - min_lr min(l(lr), l0)``: ``l(lr)`` is the
    seed mean of the capped final loss at that lr (``capped_metric``: a diverged run
    counts as its initial loss); ``l0`` is the group's mean initial loss; the
    expectation is the plain mean over the tested lrs, i.e. uniform over log(lr) for a
    log-spaced grid. 0 means every lr is as good as the best; larger is more
    sensitive; it is at most ``l0 - best``.

    Loss metrics only (the definition clips at the initial loss). Needs ``by``,
    ``lr``, ``outcome``, ``metric`` and its step-0 column (``initial_column``). Returns ``by``,
    ``sensitivity``, ``best``, ``best_lr``, ``initial_loss``, ``n_lrs``.
    """
    by = list(by)
    if is_maximized(metric) or metric == "objective":
        raise UserInputError(
            f"lr_sensitivity needs a loss metric (e.g. final_train_loss), got {metric!r}"
        )
    require_columns(
        trials, [*by, "lr", "outcome", initial_column(metric), metric], "lr_sensitivity"
    )
    usable = usable_runs(trials)
    initial = usable[initial_column(metric)].to_numpy(dtype=float, na_value=np.nan)
    frame = usable[[*by, "lr"]].assign(loss=capped_metric(usable, metric).to_numpy(), l0=initial)
    frame = frame.dropna(subset=["loss"])  # a pruned seed never started: no value
    per_lr = frame.groupby([*by, "lr"], dropna=False, sort=True)[["loss", "l0"]].sum()
    per_lr["n"] = frame.groupby([*by, "lr"], dropna=False, sort=True).size()
    per_lr = per_lr.reset_index()
    group = per_lr.groupby(by, dropna=False, sort=True)
    l0 = (group["l0"].transform("sum") / group["n"].transform("sum")).to_numpy()
    per_lr["clipped"] = np.fmin(per_lr["loss"].to_numpy() / per_lr["n"].to_numpy(), l0)
    per_lr["l0"] = l0
    best_row = per_lr.groupby(by, dropna=False, sort=True)["clipped"].idxmin().to_numpy()
    out = per_lr.loc[best_row, [*by, "clipped", "lr", "l0"]].reset_index(drop=True)
    out.columns = [*by, "best", "best_lr", "initial_loss"]
    group = per_lr.groupby(by, dropna=False, sort=True)["clipped"]
    out.insert(len(by), "sensitivity", group.mean().to_numpy() - out["best"].to_numpy())
    out["n_lrs"] = group.size().to_numpy().astype("int64")
    return out


def lr_profile(
    trials: pd.DataFrame,
    metric: str = "final_val_loss",
    by: Sequence[str] = ("optimizer", "init"),
    direction: Direction | None = None,
) -> pd.DataFrame:
    """The capped metric against learning rate at the best coefficients, per group of ``by``.

    Per cell (``by``, ``beta``, ``beta2``, ``lr``): the seed median of the capped
    metric, its inter-quartile range (``low``, ``high``), the fraction of runs that
    diverged and the run count. Per group of ``by`` and lr, the (``beta``, ``beta2``)
    cell with the best median is kept (lowest for a minimized metric, highest for a
    maximized one); cells whose median is NaN are dropped.

    Needs ``by``, ``beta``, ``beta2``, ``lr``, ``outcome``, ``metric`` (and
    ``initial_loss`` for a loss). Returns ``by``, ``beta``, ``beta2``, ``lr``,
    ``median``, ``low``, ``high``, ``diverged``, ``n_runs``; one row per (``by``, lr).
    """
    by = list(by)
    keys = [*by, "beta", "beta2", "lr"]
    require_columns(trials, [*keys, "outcome"], "lr_profile")
    maximize = _direction(metric, direction) == "maximize"
    usable = usable_runs(trials)
    frame = usable[keys].assign(
        value=capped_metric(usable, metric).to_numpy(),
        diverged=diverged_flag(usable),
    )
    grouped = frame.groupby(keys, dropna=False, sort=True)
    stats = grouped["value"].median().rename("median").to_frame()
    stats["low"] = grouped["value"].quantile(0.25)
    stats["high"] = grouped["value"].quantile(0.75)
    stats["diverged"] = grouped["diverged"].mean()
    stats["n_runs"] = grouped.size()
    stats = stats.reset_index().dropna(subset=["median"])
    order = stats["median"] * (-1.0 if maximize else 1.0)
    best = order.groupby([stats[k] for k in (*by, "lr")], dropna=False).idxmin()
    return stats.loc[best.to_numpy()].sort_values([*by, "lr"]).reset_index(drop=True)


# --------------------------------------------------------------------------- tuning effort


def expected_max_curve(
    trials: pd.DataFrame,
    metric: str = "best_val_acc",
    ks: Sequence[int] | None = None,
    by: Sequence[str] = ("optimizer",),
    direction: Direction | None = None,
) -> pd.DataFrame:
    """Expected best value after ``k`` random configurations (Dodge et al. 2019).

    A configuration is one ``trial_id`` (one point of the searched grid); its value is
    the seed mean of the capped metric. Drawing ``k`` configurations uniformly with
    replacement from the ``n`` of a group, with values sorted ascending ``v_(1..n)``,
    ``E[max of k] = sum_i v_(i) [(i/n)^k - ((i-1)/n)^k]`` (arXiv 1909.03004, eq. 1);
    for a minimized metric the same with the min. ``std`` is the standard deviation of
    that best value (from ``E[max^2]``). At ``k = 1`` it is the mean over
    configurations; it tends to the best value as ``k`` grows. Tunability in the
    sense of Sivaprasad et al. 2020 summarizes this curve (``tunability``).

    ``ks`` default: ``1 .. n`` for the largest group (the same ks for every group, so
    curves line up; k may exceed a group's n since draws are with replacement).

    Needs ``by``, ``trial_id``, ``outcome``, ``metric``. Returns ``by``, ``k``,
    ``expected_best``, ``std``, ``n_configs``.
    """
    by = list(by)
    require_columns(trials, [*by, "trial_id", "outcome"], "expected_max_curve")
    sign = 1.0 if _direction(metric, direction) == "maximize" else -1.0
    configs = _mean_capped(usable_runs(trials), metric, [*by, "trial_id"]).dropna(subset=["value"])
    groups = _group_index(configs, by)
    if ks is None:
        ks = range(1, max((len(g) for g in groups), default=0) + 1)
    k = np.asarray(list(ks), dtype=float)
    if k.size and (k < 1).any():
        raise UserInputError(f"every k must be >= 1, got {sorted(set(k.tolist()))}")
    values = configs["value"].to_numpy()
    parts = []
    for rows in groups:
        v = np.sort(sign * values[rows])
        n = len(v)
        cdf = (np.arange(n + 1) / n)[None, :] ** k[:, None]  # P(max <= v_(i)), i = 0..n
        weight = np.diff(cdf, axis=1)
        mean = weight @ v
        var = np.maximum(weight @ v**2 - mean**2, 0.0)
        parts.append(
            pd.DataFrame(
                {"k": k.astype("int64"), "expected_best": sign * mean, "std": np.sqrt(var)}
            ).assign(n_configs=n)
        )
    keys = _keys_of(configs, by, groups)
    if not parts:
        return pd.DataFrame(columns=[*by, "k", "expected_best", "std", "n_configs"])
    repeated = keys.loc[np.repeat(np.arange(len(keys)), len(k))].reset_index(drop=True)
    return pd.concat([repeated, pd.concat(parts, ignore_index=True)], axis=1)


def tunability(
    curve: pd.DataFrame,
    by: Sequence[str] = ("optimizer",),
    weighting: Literal["uniform", "early", "late"] = "uniform",
) -> pd.DataFrame:
    """Summarize an ``expected_max_curve`` into one tunability score per group.

    Sivaprasad et al. 2020 (arXiv 1910.11758) score an optimizer by a weighted mean
    of its expected-best curve over budgets k: ``uniform`` weights every k alike,
    ``early`` weights k linearly decreasing (rewards being good with few trials),
    ``late`` linearly increasing. Returns ``by``, ``tunability``, ``weighting``.
    """
    by = list(by)
    require_columns(curve, [*by, "k", "expected_best"], "tunability")
    if weighting not in ("uniform", "early", "late"):
        raise UserInputError(f"weighting {weighting!r} is not allowed; use uniform, early or late")
    frame = curve.sort_values([*by, "k"])
    rank = frame.groupby(by, dropna=False, sort=True).cumcount().to_numpy() + 1.0
    count = frame.groupby(by, dropna=False, sort=True)["k"].transform("size").to_numpy()
    weight = {"uniform": np.ones_like(rank), "early": count - rank + 1.0, "late": rank}[weighting]
    frame = frame[by].assign(_wv=weight * frame["expected_best"].to_numpy(), _w=weight)
    sums = frame.groupby(by, dropna=False, sort=True)[["_wv", "_w"]].sum().reset_index()
    sums["tunability"] = sums["_wv"] / sums["_w"]
    return sums[[*by, "tunability"]].assign(weighting=weighting)


# --------------------------------------------------------------------------- init and pairs


def worst_case_over_init(
    trials: pd.DataFrame,
    metric: str = "final_val_loss",
    by: Sequence[str] = ("optimizer", "beta", "beta2", "lr"),
    direction: Direction | None = None,
) -> pd.DataFrame:
    """How much the init scheme matters: worst and best init per group of ``by``.

    Per group and init, the seed mean of the capped metric; ``worst``/``best`` are
    the worst/best of these over inits (worst = highest loss / lowest accuracy),
    ``spread = |worst - best|``. Needs ``by``, ``init``, ``outcome``, ``metric``.
    Returns ``by``, ``worst``, ``worst_init``, ``best``, ``best_init``, ``spread``,
    ``n_inits``.
    """
    by = list(by)
    require_columns(trials, [*by, "init", "outcome"], "worst_case_over_init")
    maximize = _direction(metric, direction) == "maximize"
    per_init = _mean_capped(usable_runs(trials), metric, [*by, "init"]).dropna(subset=["value"])
    per_init = per_init.reset_index(drop=True)
    group = per_init.groupby(by, dropna=False, sort=True)["value"]
    hi_row, lo_row = group.idxmax().to_numpy(), group.idxmin().to_numpy()
    worst_row, best_row = (lo_row, hi_row) if maximize else (hi_row, lo_row)
    out = per_init.loc[best_row, by].reset_index(drop=True)
    out["worst"] = per_init["value"].to_numpy()[worst_row]
    out["worst_init"] = per_init["init"].to_numpy()[worst_row]
    out["best"] = per_init["value"].to_numpy()[best_row]
    out["best_init"] = per_init["init"].to_numpy()[best_row]
    out["spread"] = (out["worst"] - out["best"]).abs()
    out["n_inits"] = group.size().to_numpy().astype("int64")
    return out


def cluster_bootstrap_means(
    values: np.ndarray, clusters: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Means of ``values`` over ``n_boot`` cluster-bootstrap resamples.

    A resample draws as many clusters as there are, with replacement; each drawn
    cluster brings all of its values, and the statistic is the mean over the values
    drawn (a cluster drawn twice counts twice). Values that share a cluster (runs that
    share a seed: the same data order and init draw) are correlated, so resampling
    them one by one would treat them as independent and give too narrow an interval.
    """
    ids, index = np.unique(clusters, return_inverse=True)
    sums = np.bincount(index, weights=values, minlength=len(ids))
    sizes = np.bincount(index, minlength=len(ids)).astype(float)
    weights = _resample_counts(len(ids), n_boot, rng)
    return (weights @ sums) / (weights @ sizes)


def paired_comparison(
    trials: pd.DataFrame,
    metric: str = "final_val_loss",
    baseline: str = "sgd",
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    level: Literal["run", "tuned"] = "run",
    direction: Direction | None = None,
    axes: Sequence[str] = (),
) -> pd.DataFrame:
    """Each optimizer's metric minus the baseline's on matched runs, with a seed-level interval.

    ``level="run"``: a pair is an optimizer's run and the baseline's run that share
    ``(init, beta, *axes, lr, seed)``; runs of the optimizer that differ in other
    axes (e.g. a swept ``beta2``) are averaged within the pair first.

    ``level="tuned"``, cross-fitted: the seeds (sorted) are split into two halves,
    alternately (1st, 3rd, ... and 2nd, 4th, ...). Per (optimizer, init, *axes) the
    configuration (``trial_id``) with the best mean over one half is chosen and
    its runs on the *other* half are the optimizer's values; then the halves swap
    roles. So every seed is scored by a choice that never saw it, and the winner of
    a selection is not inflated by the noise it was selected on. Pairs share
    ``(init, *axes, seed)``. Needs at least two seeds (else no tuned pairs).

    Values are capped (``capped_metric``); error runs drop their pair.
    ``mean_diff`` is the mean over pairs of optimizer - baseline;
    ``frac_pairs_better`` the fraction of pairs in which the optimizer is strictly
    better. The interval is a cluster bootstrap over seeds
    (``cluster_bootstrap_means``): ``ci_low``/``ci_high`` the percentile ``ci``
    interval, ``p_better`` the fraction of bootstrap means on the optimizer's better
    side (< 0 for a minimized metric, > 0 for a maximized one). With fewer than
    ``MIN_SEEDS_FOR_CI`` seeds in the pairs, these three are missing (NaN).

    Needs ``optimizer``, ``init``, ``beta``, ``lr``, ``seed``, ``outcome``,
    ``metric`` and ``axes`` (and ``trial_id`` for ``tuned``). Returns ``optimizer``,
    ``axes``, ``baseline``, ``mean_diff``, ``ci_low``, ``ci_high``, ``n_pairs``,
    ``n_seeds``, ``p_better``, ``frac_pairs_better``, ``level``; one row per
    optimizer other than the baseline and value of ``axes``.
    """
    axes = list(axes)
    require_columns(
        trials, ["optimizer", "init", "beta", "lr", "seed", "outcome", *axes], "paired_comparison"
    )
    if level not in ("run", "tuned"):
        raise UserInputError(f"level {level!r} is not allowed; use run or tuned")
    present = sorted(trials["optimizer"].dropna().unique())
    if baseline not in present:
        raise UserInputError(
            f"baseline optimizer {baseline!r} is not in the trials; "
            f"present: {', '.join(present) or 'none'}"
        )
    maximize = _direction(metric, direction) == "maximize"
    usable = usable_runs(trials)
    if level == "run":
        pair_on = ["init", "beta", *axes, "lr", "seed"]
        per_run = _mean_capped(usable, metric, ["optimizer", *pair_on])
    else:
        require_columns(trials, ["trial_id"], "paired_comparison(level='tuned')")
        pair_on = ["init", *axes, "seed"]
        per_run = _crossfit_tuned_runs(usable, metric, maximize, axes)
    base = per_run[per_run["optimizer"] == baseline].drop(columns="optimizer")
    rng = np.random.default_rng(seed)
    alpha = (1.0 - ci) / 2.0
    rows = []
    for name in (p for p in present if p != baseline):
        mine = per_run[per_run["optimizer"] == name].drop(columns="optimizer")
        pairs = mine.merge(base, on=pair_on, suffixes=("", "_base"))
        pairs = pairs.dropna(subset=["value", "value_base"])
        groups = [((), pairs)] if not axes else pairs.groupby(axes, dropna=False, sort=True)
        if not len(pairs):
            groups = [((), pairs)]
        for key, own in groups:
            row = {"optimizer": name, "baseline": baseline, "level": level}
            row |= dict(zip(axes, key if isinstance(key, tuple) else (key,), strict=False))
            diff = (own["value"] - own["value_base"]).to_numpy()
            seeds = own["seed"].to_numpy()
            row |= {"n_pairs": len(diff), "n_seeds": len(np.unique(seeds))}
            if len(diff):
                better = diff > 0 if maximize else diff < 0
                row |= {"mean_diff": float(diff.mean()), "frac_pairs_better": float(better.mean())}
            if row["n_seeds"] >= MIN_SEEDS_FOR_CI:
                boot = cluster_bootstrap_means(diff, seeds, n_boot, rng)
                boot_better = boot > 0 if maximize else boot < 0
                row |= {
                    "ci_low": float(np.quantile(boot, alpha)),
                    "ci_high": float(np.quantile(boot, 1.0 - alpha)),
                    "p_better": float(boot_better.mean()),
                }
            rows.append(row)
    columns = ("optimizer", *axes, "baseline", "mean_diff", "ci_low", "ci_high", "n_pairs")
    return _frame(rows, (*columns, "n_seeds", "p_better", "frac_pairs_better", "level"))


def seed_halves(seeds: Sequence[int]) -> tuple[list, list]:
    """The two halves of the cross-fit: sorted seeds taken alternately (1st, 3rd, ...
    and 2nd, 4th, ...), so both halves span the seed list alike."""
    ordered = sorted(set(seeds))
    return ordered[0::2], ordered[1::2]


def _crossfit_tuned_runs(
    usable: pd.DataFrame, metric: str, maximize: bool, axes: list[str]
) -> pd.DataFrame:
    """Per-seed values of each (optimizer, init, *axes)'s best configuration, where the
    configuration scoring a seed is chosen on the other half of the seeds."""
    cell = ["optimizer", "init", *axes]
    halves = seed_halves(usable["seed"].dropna().tolist())
    frames = [pd.DataFrame(columns=[*cell, "seed", "value"])]
    if not halves[1]:
        return frames[0]
    for select, evaluate in ((halves[0], halves[1]), (halves[1], halves[0])):
        chosen_on = usable[usable["seed"].isin(select).to_numpy(dtype=bool)]
        configs = _mean_capped(chosen_on, metric, [*cell, "trial_id"])
        configs = configs.dropna(subset=["value"]).reset_index(drop=True)
        group = configs.groupby(cell, dropna=False, sort=True)["value"]
        best = configs.loc[(group.idxmax() if maximize else group.idxmin()).to_numpy(), "trial_id"]
        scored = usable[
            usable["seed"].isin(evaluate).to_numpy(dtype=bool)
            & usable["trial_id"].isin(set(best)).to_numpy(dtype=bool)
        ]
        frames.append(_mean_capped(scored, metric, [*cell, "seed"]))
    return pd.concat(frames[1:], ignore_index=True)


def _resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``n`` items is drawn in each of ``n_boot`` resamples, (n_boot, n).

    A bootstrap resample as a weight vector: statistics that are sums over items
    become one matrix product over all resamples at once.
    """
    draws = rng.integers(0, n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(float)


# --------------------------------------------------------------------------- counts


def outcome_counts(trials: pd.DataFrame, by: Sequence[str] = ("optimizer",)) -> pd.DataFrame:
    """Runs per outcome, long format: every outcome of ``OUTCOMES`` for every group.

    Needs ``by`` and ``outcome``. Returns ``by``, ``outcome``, ``n_runs``, ``fraction``
    (of all the group's runs, errors included).
    """
    by = list(by)
    require_columns(trials, [*by, "outcome"], "outcome_counts")
    wide = _outcome_table(trials, by)
    long = wide.melt(id_vars=by, value_vars=list(OUTCOMES), var_name="outcome", value_name="n_runs")
    long["outcome"] = pd.Categorical(long["outcome"], categories=list(OUTCOMES))
    long = long.sort_values([*by, "outcome"], kind="stable").reset_index(drop=True)
    long["outcome"] = long["outcome"].astype(str)
    total = long.groupby(by, dropna=False, sort=False)["n_runs"].transform("sum")
    long["fraction"] = long["n_runs"] / total
    return long


def _outcome_table(trials: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """``by`` plus one int count column per outcome, sorted by ``by``."""
    flags = trials[by].assign(**{o: trials["outcome"].eq(o).to_numpy(dtype=bool) for o in OUTCOMES})
    table = flags.groupby(by, dropna=False, sort=True)[list(OUTCOMES)].sum().reset_index()
    return table.astype(dict.fromkeys(OUTCOMES, "int64"))


def summary_by_optimizer(
    trials: pd.DataFrame,
    by: Sequence[str] = ("optimizer",),
    direction: Direction = "minimize",
) -> pd.DataFrame:
    """One row per optimizer (or per ``by``): outcome counts and the best configuration.

    Counts: ``n_runs`` (all), one ``n_<outcome>`` per outcome, ``n_assessed`` (the
    runs at risk, whose divergence is known: neither ``error`` nor ``pruned``),
    ``p_diverged`` = n_diverged / n_assessed, ``n_configs``. Best:
    the configuration (``trial_id``) with the best seed-mean ``objective`` over its
    non-error runs (``direction`` is the study's search direction), as
    ``best_objective``, ``best_trial_id`` and ``best_<axis>`` for ``lr``, ``beta``,
    ``beta2``, ``init``. Needs ``by``, ``outcome``, ``trial_id``, ``objective`` and
    those axes.
    """
    by = list(by)
    axes = ["init", "beta", "beta2", "lr"]
    require_columns(
        trials, [*by, "outcome", "trial_id", "objective", *axes], "summary_by_optimizer"
    )
    maximize = _direction("objective", direction) == "maximize"
    out = _outcome_table(trials, by)
    out = out.rename(columns={o: f"n_{o}" for o in OUTCOMES})
    counts = out[[f"n_{o}" for o in OUTCOMES]]
    out.insert(len(by), "n_runs", counts.sum(axis=1).astype("int64"))
    at_risk = out["n_runs"] - out["n_error"] - out["n_pruned"]
    out["n_assessed"] = at_risk.astype("int64")
    out["p_diverged"] = out["n_diverged"] / out["n_assessed"].where(out["n_assessed"] > 0)
    out["n_configs"] = trials.groupby(by, dropna=False, sort=True)["trial_id"].nunique().to_numpy()
    usable = usable_runs(trials)
    configs = _mean_capped(usable, "objective", [*by, "trial_id"]).dropna(subset=["value"])
    configs = configs.reset_index(drop=True)
    group = configs.groupby(by, dropna=False, sort=True)["value"]
    best = configs.loc[(group.idxmax() if maximize else group.idxmin()).to_numpy()]
    first_run = usable.drop_duplicates("trial_id")[["trial_id", *[a for a in axes if a not in by]]]
    best = best.merge(first_run, on="trial_id", how="left")
    best = best.rename(
        columns={"value": "best_objective", "trial_id": "best_trial_id"}
        | {a: f"best_{a}" for a in axes}
    )
    return out.merge(best, on=by, how="left")
