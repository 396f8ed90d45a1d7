"""Robustness relative to each optimizer's own optimum, and the effective learning-rate shift.

Two questions a robustness map alone does not answer:

- *How far is the cliff from where the optimizer is best?* ``stability_margin``
  joins the good-band table and the stability-limit table of one cell: its best lr,
  its max stable lr, the margin ``log10(max_stable_lr / best_lr)`` in decades and the
  band's width in decades.
- *Is an optimizer's robustness more than a rescaled learning rate?* ``lr_shift``
  finds the shift ``s`` (in decades) that best aligns the optimizer's learning-rate
  profile with the baseline's: "the optimizer at 10^s x lr behaves like the baseline
  at lr". A ``residual`` near 0 after the shift means the two differ only by an
  effective learning rate; a large one means the shapes differ too.

The shift estimator (``align_profiles``):

- a profile is the seed mean of the capped metric (``capped_metric``) at each
  tested lr of one cell, taken as a function of ``x = log10(lr)``, linear between
  grid points;
- for each candidate ``s`` on a grid of step ``SHIFT_STEP`` decades, the
  discrepancy is the mean squared difference over the overlap of the two shifted
  grids, taken both ways so neither grid is favoured: ``(f_opt(x + s) -
  f_base(x))^2`` at the baseline's tested lrs ``x`` that land inside the
  optimizer's tested range, and ``(f_base(y - s) - f_opt(y))^2`` at the
  optimizer's tested lrs ``y`` that land inside the baseline's; nothing is
  extrapolated beyond a grid. Candidates whose overlap holds fewer than half of
  either grid's lrs (at least 2) are not considered, so an alignment never rests
  on a sliver of the two profiles;
- the shift is chosen where both optimizers train: a tested lr where at least half
  the runs diverged is left out of the discrepancy (and so is an interpolated value
  made from one), because the capped values there are a plateau that says where
  training breaks, not how fast it goes. The cliff still counts in the residual;
- ``shift_decades`` is the minimizer. Where several candidates tie (a flat
  discrepancy: flat profiles, or plateaus matching plateaus) it is the middle of
  the run of tied candidates around the minimizer nearest 0, and
  ``flat_decades`` is that run's width (0 when the minimum is sharp);
- ``residual`` is the root mean square of that difference at the chosen shift
  over the whole overlap, diverged lrs included, in the metric's units: a
  stability limit that moved by more (or less) than the shift shows here. Only
  values the grids measured are compared: an interpolated value drawn across a
  divergence cliff (between a grid point that trains and one that diverged) is
  left out, since the cliff's position between two grid points is unknown;
  ``residual_trained`` the same where both train (what the shift was fitted on);
  ``residual_unshifted`` the same as ``residual`` at ``s = 0``;
- the interval is a cluster bootstrap over seeds: the seeds both optimizers share
  are resampled with replacement (400 times by default), both profiles are
  recomputed from the same drawn seeds and the shift re-estimated on candidates
  ``BOOT_SHIFT_STEP`` apart (every replicate costs a full search); with fewer than
  ``MIN_SEEDS_FOR_CI`` seeds there is no interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.frames import require_columns, usable_runs
from analysis.metrics import MIN_SEEDS_FOR_CI, _resample_counts, capped_metric
from robustness.errors import UserInputError

__all__ = ["SHIFT_STEP", "align_profiles", "aligned_profiles", "lr_shift", "stability_margin"]

SHIFT_STEP = 0.01  # decades between candidate shifts
BOOT_SHIFT_STEP = 0.02  # the same for bootstrap replicates (an interval end is never finer)
_BOOT_CHUNK = 100  # bootstrap replicates aligned at once (memory: chunk x candidates x lrs)


def stability_margin(band: pd.DataFrame, stable: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per cell: best lr, max stable lr, margin in decades, good-band width in decades.

    ``band`` is ``lr_band_width``'s table and ``stable`` ``max_stable_lr``'s, both
    per ``by``. ``margin_decades = log10(max_stable_lr / best_lr)``: how many decades
    the learning rate can grow beyond the optimum before training diverges (a lower
    bound where ``censored``: nothing diverged in the grid; NaN where no lr was
    stable). Returns ``by``, ``best`` (the band table's best value), ``best_lr``,
    ``max_stable_lr``, ``censored``,
    ``margin_decades``, ``band_width_decades``, ``band_resolved``.
    """
    by = list(by)
    require_columns(band, [*by, "best", "best_lr", "width_decades", "resolved"], "stability_margin")
    require_columns(stable, [*by, "max_stable_lr", "censored"], "stability_margin")
    left = band[[*by, "best", "best_lr", "width_decades", "resolved"]]
    right = stable[[*by, "max_stable_lr", "censored"]]
    out = left.merge(right, on=by, how="outer", sort=True)
    out["margin_decades"] = np.log10(out["max_stable_lr"] / out["best_lr"])
    out = out.rename(columns={"width_decades": "band_width_decades", "resolved": "band_resolved"})
    columns = ["best", "best_lr", "max_stable_lr", "censored", "margin_decades"]
    return out[[*by, *columns, "band_width_decades", "band_resolved"]]


class _Interpolation:
    """Linear interpolation of any profile on grid ``x`` at fixed ``queries`` (clamped
    to the grid), as two gathers: ``f[:, lo] * (1 - t) + f[:, hi] * t``."""

    def __init__(self, x: np.ndarray, queries: np.ndarray) -> None:
        q = np.clip(queries, x[0], x[-1])
        self.lo = np.clip(np.searchsorted(x, q, side="right") - 1, 0, max(len(x) - 2, 0))
        self.hi = np.minimum(self.lo + 1, len(x) - 1)
        span = x[self.hi] - x[self.lo]
        self.t = np.where(span > 0, (q - x[self.lo]) / np.where(span > 0, span, 1.0), 0.0)

    def values(self, f: np.ndarray) -> np.ndarray:
        return f[:, self.lo] * (1.0 - self.t) + f[:, self.hi] * self.t

    def usable(self, ok: np.ndarray) -> np.ndarray:
        """Whether each interpolated value is made only from usable grid points."""
        return (ok[:, self.lo] | (self.t == 1.0)) & (ok[:, self.hi] | (self.t == 0.0))


class _Alignment:
    """The candidate shifts of two lr grids and the interpolation weights for each.

    Built once per pair of grids, then applied to any number of replicate profiles
    (the bootstrap) at once.
    """

    def __init__(self, x_opt: np.ndarray, x_base: np.ndarray, step: float = SHIFT_STEP) -> None:
        lo, hi = x_opt[0] - x_base[-1], x_opt[-1] - x_base[0]
        shifts = np.arange(np.floor(lo / step), np.ceil(hi / step) + 1) * step
        inside_base = _inside(x_base[None, :] + shifts[:, None], x_opt)
        inside_opt = _inside(x_opt[None, :] - shifts[:, None], x_base)
        enough = (inside_base.sum(axis=1) >= _needed(len(x_base))) & (
            inside_opt.sum(axis=1) >= _needed(len(x_opt))
        )
        self.shifts = shifts[enough]
        self.mask_base, self.mask_opt = inside_base[enough], inside_opt[enough]
        self.to_base = _Interpolation(x_opt, (self.shifts[:, None] + x_base).ravel())
        self.to_opt = _Interpolation(x_base, (x_opt - self.shifts[:, None]).ravel())

    def discrepancies(
        self,
        f_opt: np.ndarray,
        f_base: np.ndarray,
        ok_opt: np.ndarray | None = None,
        ok_base: np.ndarray | None = None,
        classes: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Mean squared difference per candidate shift, both ways over the overlap.

        Rows of ``f_*`` are replicates; the result is replicates x candidates.
        ``ok_*`` (same shape as ``f_*``, default all True) say which grid points may
        be compared: a point is left out where it is not ok, and an interpolated
        value where either grid point it is made from is not. ``classes`` (whether
        each grid point of the optimizer and of the baseline trains) leaves out an
        interpolated value made from one point that trains and one that diverged: a
        line drawn across a divergence cliff between two grid points says nothing
        the grid measured. Fewer than 2 points compared: NaN.
        """
        ok_opt = np.isfinite(f_opt) if ok_opt is None else ok_opt & np.isfinite(f_opt)
        ok_base = np.isfinite(f_base) if ok_base is None else ok_base & np.isfinite(f_base)
        n = len(self.shifts)
        f_opt, f_base = np.where(ok_opt, f_opt, 0.0), np.where(ok_base, f_base, 0.0)
        shape = (len(f_opt), n, -1)
        at_base = self.to_base.values(f_opt).reshape(shape) - f_base[:, None, :]
        at_opt = self.to_opt.values(f_base).reshape(shape) - f_opt[:, None, :]
        good_base = self.to_base.usable(ok_opt).reshape(shape)
        good_opt = self.to_opt.usable(ok_base).reshape(shape)
        if classes is not None:
            c_opt, c_base = classes
            good_base &= (self.to_base.usable(c_opt) | self.to_base.usable(~c_opt)).reshape(shape)
            good_opt &= (self.to_opt.usable(c_base) | self.to_opt.usable(~c_base)).reshape(shape)
        use_base = self.mask_base & good_base & ok_base[:, None, :]
        use_opt = self.mask_opt & good_opt & ok_opt[:, None, :]
        total = np.where(use_base, at_base**2, 0.0).sum(axis=2)
        total += np.where(use_opt, at_opt**2, 0.0).sum(axis=2)
        count = use_base.sum(axis=2) + use_opt.sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count >= 2, total / count, np.nan)


def _inside(points: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return (points >= grid[0] - 1e-9) & (points <= grid[-1] + 1e-9)


def _needed(n_points: int) -> int:
    """Overlap a candidate shift needs: half of a grid's lrs, and at least 2."""
    return max(2, int(np.ceil(n_points / 2)))


def _pick(shifts: np.ndarray, discrepancy: np.ndarray, scale: float) -> tuple[float, float, float]:
    """(shift, width of the tied run around it, discrepancy there) for one replicate."""
    if not np.isfinite(discrepancy).any():
        return np.nan, np.nan, np.nan
    best = np.nanmin(discrepancy)
    tied = discrepancy <= best + max(1e-12, (1e-4 * scale) ** 2)
    candidates = np.flatnonzero(tied & (discrepancy == discrepancy))
    centre = candidates[np.argmin(np.abs(shifts[candidates]))]
    lo = hi = centre
    while lo > 0 and tied[lo - 1]:
        lo -= 1
    while hi < len(shifts) - 1 and tied[hi + 1]:
        hi += 1
    return float((shifts[lo] + shifts[hi]) / 2), float(shifts[hi] - shifts[lo]), float(best)


_ALIGN_COLUMNS = (
    "shift_decades",
    "flat_decades",
    "residual",
    "residual_trained",
    "residual_unshifted",
)


def align_profiles(
    x_opt: np.ndarray,
    f_opt: np.ndarray,
    x_base: np.ndarray,
    f_base: np.ndarray,
    trains_opt: np.ndarray | None = None,
    trains_base: np.ndarray | None = None,
) -> dict[str, float]:
    """The shift that best aligns two profiles (module docstring), and what is left.

    ``x_*`` are log10(lr) in increasing order, ``f_*`` the profile values there,
    ``trains_*`` (default all True) whether most runs at that lr did not diverge:
    the shift is chosen on those points only, the residuals are over every point.
    Returns ``shift_decades``, ``flat_decades``, ``residual``, ``residual_trained``
    (the same where both train), ``residual_unshifted`` (NaN where no candidate shift
    has enough overlap; ``residual_unshifted`` also where 0 is not a candidate).
    """
    x_opt, f_opt = np.asarray(x_opt, float), np.asarray(f_opt, float)
    x_base, f_base = np.asarray(x_base, float), np.asarray(f_base, float)
    alignment = _Alignment(x_opt, x_base)
    if not len(alignment.shifts):
        return dict.fromkeys(_ALIGN_COLUMNS, np.nan)
    ok_opt = (
        np.ones((1, len(f_opt)), bool)
        if trains_opt is None
        else np.asarray(trains_opt, bool)[None, :]
    )
    ok_base = (
        np.ones((1, len(f_base)), bool)
        if trains_base is None
        else np.asarray(trains_base, bool)[None, :]
    )
    trained = alignment.discrepancies(f_opt[None, :], f_base[None, :], ok_opt, ok_base)[0]
    everywhere = alignment.discrepancies(
        f_opt[None, :], f_base[None, :], classes=(ok_opt, ok_base)
    )[0]
    scale = float(np.nanmax(f_base) - np.nanmin(f_base))
    shift, flat, best = _pick(alignment.shifts, trained, scale)
    at = np.flatnonzero(np.isclose(alignment.shifts, shift, atol=SHIFT_STEP / 2))
    zero = np.flatnonzero(np.isclose(alignment.shifts, 0.0, atol=SHIFT_STEP / 2))
    residual = float(np.sqrt(everywhere[at[0]])) if len(at) else np.nan
    return {
        "shift_decades": shift,
        "flat_decades": flat,
        "residual": residual,
        "residual_trained": float(np.sqrt(best)),
        "residual_unshifted": float(np.sqrt(everywhere[zero[0]])) if len(zero) else np.nan,
    }


def _seed_table(frame: pd.DataFrame, seeds: np.ndarray, lrs: np.ndarray) -> tuple:
    """(sums of the capped value, run counts, diverged counts, counts of runs at risk),
    each shaped seed x lr. A ``pruned`` run has a value but no say in divergence."""
    s = np.searchsorted(seeds, frame["seed"].to_numpy())
    j = np.searchsorted(lrs, frame["lr"].to_numpy(dtype=float))
    sums, counts, diverged, at_risk = (np.zeros((len(seeds), len(lrs))) for _ in range(4))
    np.add.at(sums, (s, j), frame["value"].to_numpy(dtype=float))
    np.add.at(counts, (s, j), 1.0)
    np.add.at(diverged, (s, j), frame["outcome"].eq("diverged").to_numpy(dtype=float))
    np.add.at(at_risk, (s, j), frame["outcome"].ne("pruned").to_numpy(dtype=float))
    return sums, counts, diverged, at_risk


def _profiles(weights: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ sums) / (weights @ counts)


def lr_shift(
    trials: pd.DataFrame,
    metric: str,
    baseline: str,
    axes: Sequence[str] = (),
    n_boot: int = 400,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """The learning-rate shift of every optimizer against ``baseline``, per cell.

    A cell is (init, β, β2, *axes) of the optimizer; the baseline's profile is taken
    at the same init, β and axes (and β2, where the baseline sweeps one). Estimator
    and interval: module docstring. Values are capped (``capped_metric``); error
    runs are left out.

    Returns ``optimizer``, ``baseline``, ``init``, ``beta``, ``beta2``, ``axes``,
    ``shift_decades``, ``ci_low``, ``ci_high``, ``residual``, ``residual_trained``,
    ``residual_unshifted``, ``flat_decades``, ``n_lrs``, ``n_seeds``; one row per
    optimizer cell that has a baseline cell to compare with.
    """
    axes = list(axes)
    require_columns(
        trials, ["optimizer", "init", "beta", "beta2", "lr", "seed", "outcome", *axes], "lr_shift"
    )
    present = sorted(trials["optimizer"].dropna().unique())
    if baseline not in present:
        raise UserInputError(
            f"baseline optimizer {baseline!r} is not in the trials; "
            f"present: {', '.join(present) or 'none'}"
        )
    usable = usable_runs(trials)
    usable = usable.assign(value=capped_metric(usable, metric).to_numpy())
    usable = usable[np.isfinite(usable["value"].to_numpy(dtype=float)) & (usable["lr"] > 0)]
    base_all = usable[usable["optimizer"] == baseline]
    match = ["init", "beta", *axes]
    if base_all["beta2"].notna().any():
        match.insert(2, "beta2")
    cell = ["init", "beta", "beta2", *axes]
    rng = np.random.default_rng(seed)
    alpha = (1.0 - ci) / 2.0
    rows = []
    others = usable[usable["optimizer"] != baseline]
    for (name, *key), own in others.groupby(["optimizer", *cell], dropna=False, sort=True):
        keys = dict(zip(cell, key, strict=True))
        mask = np.ones(len(base_all), dtype=bool)
        for column in match:
            value = keys[column]
            column_values = base_all[column]
            mask &= (
                column_values.isna().to_numpy()
                if pd.isna(value)
                else (column_values == value).to_numpy(dtype=bool, na_value=False)
            )
        base = base_all[mask]
        if base.empty:
            continue
        row = {"optimizer": name, "baseline": baseline, **keys}
        row |= _shift_row(own, base, n_boot, rng, alpha)
        rows.append(row)
    columns = ["optimizer", "baseline", *cell, "shift_decades", "ci_low", "ci_high"]
    columns += ["residual", "residual_trained", "residual_unshifted", "flat_decades"]
    columns += ["n_lrs", "n_seeds"]
    return pd.DataFrame(rows, columns=columns)


def _shift_row(
    own: pd.DataFrame, base: pd.DataFrame, n_boot: int, rng: np.random.Generator, alpha: float
) -> dict:
    seeds = np.intersect1d(own["seed"].unique(), base["seed"].unique())
    own = own[own["seed"].isin(seeds)]
    base = base[base["seed"].isin(seeds)]
    lr_opt = np.unique(own["lr"].to_numpy(dtype=float))
    lr_base = np.unique(base["lr"].to_numpy(dtype=float))
    row = {"n_lrs": int(min(len(lr_opt), len(lr_base))), "n_seeds": len(seeds)}
    if len(seeds) == 0 or len(lr_opt) < 2 or len(lr_base) < 2:
        return row
    sums_o, counts_o, div_o, risk_o = _seed_table(own, seeds, lr_opt)
    sums_b, counts_b, div_b, risk_b = _seed_table(base, seeds, lr_base)
    ones = np.ones((1, len(seeds)))
    f_opt, f_base = _profiles(ones, sums_o, counts_o)[0], _profiles(ones, sums_b, counts_b)[0]
    # an lr trains unless at least half its runs at risk diverged (none at risk: it trains)
    trains_opt = ~(_profiles(ones, div_o, risk_o)[0] >= 0.5)
    trains_base = ~(_profiles(ones, div_b, risk_b)[0] >= 0.5)
    x_opt, x_base = np.log10(lr_opt), np.log10(lr_base)
    row |= align_profiles(x_opt, f_opt, x_base, f_base, trains_opt, trains_base)
    if len(seeds) >= MIN_SEEDS_FOR_CI and np.isfinite(row["shift_decades"]):
        alignment = _Alignment(x_opt, x_base, BOOT_SHIFT_STEP)
        scale = float(np.nanmax(f_base) - np.nanmin(f_base))
        boot = []
        for start in range(0, n_boot, _BOOT_CHUNK):
            weights = _resample_counts(len(seeds), min(_BOOT_CHUNK, n_boot - start), rng)
            p_opt = _profiles(weights, sums_o, counts_o)
            p_base = _profiles(weights, sums_b, counts_b)
            ok_opt = ~(_profiles(weights, div_o, risk_o) >= 0.5)
            ok_base = ~(_profiles(weights, div_b, risk_b) >= 0.5)
            # a replicate that lost every run at some lr: that lr drops out (NaN)
            d = alignment.discrepancies(p_opt, p_base, ok_opt, ok_base)
            boot += [_pick(alignment.shifts, replicate, scale)[0] for replicate in d]
        boot = np.asarray(boot)
        boot = boot[np.isfinite(boot)]
        if len(boot):
            row |= {
                "ci_low": float(np.quantile(boot, alpha)),
                "ci_high": float(np.quantile(boot, 1.0 - alpha)),
            }
    return row


def aligned_profiles(
    trials: pd.DataFrame, metric: str, shifts: pd.DataFrame, axes: Sequence[str] = ()
) -> pd.DataFrame:
    """The profiles ``lr_shift`` aligned, for drawing: one row per cell and lr.

    ``shifts`` is ``lr_shift``'s table. Each of its optimizer cells gets its seed-mean
    capped profile with ``lr_aligned = lr / 10^shift_decades`` (where it behaves like
    the baseline), and each baseline cell it was compared with its own profile
    (shift 0). Returns ``optimizer``, ``init``, ``beta``, ``beta2``, ``axes``, ``lr``,
    ``value``, ``shift_decades``, ``lr_aligned``, ``role`` (optimizer or baseline).
    """
    axes = list(axes)
    cell = ["init", "beta", "beta2", *axes]
    columns = ["optimizer", *cell, "lr", "value", "shift_decades", "lr_aligned", "role"]
    if shifts.empty:
        return pd.DataFrame(columns=columns)
    usable = usable_runs(trials)
    values = usable[["optimizer", *cell, "lr"]].assign(
        value=capped_metric(usable, metric).to_numpy()
    )
    profiles = (
        values.groupby(["optimizer", *cell, "lr"], dropna=False, sort=True)["value"]
        .mean()
        .reset_index()
    )
    own = profiles.merge(
        shifts[["optimizer", *cell, "shift_decades"]].dropna(subset=["shift_decades"]),
        on=["optimizer", *cell],
    ).assign(role="optimizer")
    baseline = shifts["baseline"].iloc[0]
    base_keys = own[["init", "beta", *axes]].drop_duplicates()
    base = profiles[profiles["optimizer"] == baseline].merge(base_keys, on=["init", "beta", *axes])
    base = base.assign(shift_decades=0.0, role="baseline")
    out = pd.concat([own, base], ignore_index=True)
    out["lr_aligned"] = out["lr"] / 10.0 ** out["shift_decades"]
    return out[columns]
