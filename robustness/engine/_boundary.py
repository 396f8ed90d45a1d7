"""``search: {sampler: boundary}``: bisection for the maximum stable learning rate.

The question a robustness study asks first is where training stops being stable.
A grid answers it only to its own step; this sampler finds, per *cell* (one value
of every axis but ``lr``), the largest learning rate that trains stably to a given
``resolution`` (the ratio first unstable / last stable lr, default 1.1), with a
handful of configurations (*probes*). A probe is one configuration trained on all
of the spec's seeds; it is *unstable* when at least half of its runs that say
something about divergence diverged (``unstable``; ``error`` and ``pruned`` runs,
``NOT_AT_RISK``, are no evidence).
A scheduler's early stop (PRUNED) is no evidence either, which is why the spec
refuses ASHA with this sampler.

Per cell, in log lr on ``[lo, hi]`` (the ``{log: [LO, HI]}`` range of ``space.lr``):

1. probe ``lo`` and ``hi`` (both at once);
2. the bracket: ``first_unstable`` is the smallest unstable probe, ``last_stable``
   the largest stable probe below it, the same rule as the analysis's
   ``max_stable_lr``, so the report's table of a boundary study is this bracket.
   No unstable probe: the cell is *censored* (stable up to ``hi``). No stable probe
   below the first unstable one: it *diverges everywhere* (from ``lo``);
3. while ``first_unstable / last_stable > resolution``, probe their geometric
   mean (one probe of a cell in flight at a time: the next depends on it).

A probe with no evidence at all (every run an ``error``) stops its cell
(``no_evidence``): proposing the same lr again would fail the same way.

With ``band`` (``search.band: true``), once a cell's boundary search has ended
(resolved or censored) it also locates the two edges of the cell's *good band*,
the lrs whose capped objective is within the tolerance of the cell's best
(``robustness.results.band``: the rule of the report's ``lr_band`` table), from
every probe it already has (the trial's value: the seed mean of the capped
objective, what the engine tells Optuna):

4. ``best`` is the best probe value (ties to the smallest lr). While the interval
   between the best probe and either neighbour probe is wider than ``resolution``,
   probe the geometric mean of the wider one (a line search for the optimum, a
   golden-section search with halving steps: it needs no state, the best probe and
   its two neighbours are the bracket). Without it the band would be judged
   around whichever probe the boundary search left best, which sits near the
   boundary, not at the optimum;
5. the band is the contiguous run of good probes, in lr order, that holds the best
   (as in the report);
6. each edge lies between the band's outermost probe and its outside neighbour
   (a lower, or a higher probe, the unstable ones included: a diverged run counts
   as its untrained model, hence bad); while their ratio exceeds ``resolution``,
   probe their geometric mean, both edges at once. An edge at ``lo`` or ``hi`` is
   censored (nothing to locate).

The best is recomputed from all probes at every step, so an edge probe better than
the best moves it (and the search goes back to step 4). On a profile with several
dips the line search finds the dip the probes point to, not necessarily the
deepest. A band probe found unstable (random divergence) reopens the boundary
bracket, which is then bisected first. Band probes per cell: a few halvings of
each of the best's intervals, then of each edge's (``max_probes`` bounds it for
progress).

Each bisection keeps the invariant that no probe lies strictly inside the bracket,
so the bracket's ends are the two probes that bound the 0.5 crossing, also when
divergence is random (minibatch noise): a later probe never overturns an earlier
one, it only narrows the interval. Boundary probes per cell: ``2 + ceil(log2(ln(hi/lo) /
ln(resolution)))`` at most (10 for 8 decades at 1.1), fewer for a censored cell or
one that diverges everywhere (2).

The sampler keeps no state of its own: every decision is recomputed from the
study's trials (finished ones carry the outcome counts ``n_<outcome>`` the searcher
sets as user attributes; RUNNING ones and WAITING ones, parameters queued again
after a killed driver, are *pending*). So concurrency, resume and the journal need
nothing special, and no probe is handed out twice: a pending lr is never proposed
again. Cells are served fewest-probes first, so with many workers probes of many
cells are in flight at once. The probe lrs of a cell depend only on the outcomes of
its own probes, hence are the same whatever the order in which trials finish.

The engine asks only when ``ready(study)`` says a probe is available, and the
study is finished when ``resolved(study)``; ``sample_relative`` hands out the next
probe as the trial's whole parameter set.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from robustness.engine._done import counts_as_done, lost_parts
from robustness.results.band import band_tolerance, in_band
from robustness.results.schema import NOT_AT_RISK, OUTCOMES
from robustness.spec._plan import max_probes
from robustness.spec._schema import DEFAULT_RESOLUTION

LR = "lr"
UNSTABLE_FRACTION = 0.5
"""A probe is unstable when at least this fraction of its evidence runs diverged."""
_SIGNIFICANT_DIGITS = 12  # probe lrs are rounded so they print and compare cleanly

OPEN, RESOLVED, CENSORED, DIVERGES, NO_EVIDENCE = (
    "open",
    "resolved",
    "censored",
    "diverges_everywhere",
    "no_evidence",
)


def unstable(n_diverged: int, n_runs: int) -> bool:
    """The rule: a probe with ``n_runs`` evidence runs is unstable when at least half
    of them diverged (the analysis's ``max_stable_lr`` uses the same threshold)."""
    return n_runs > 0 and n_diverged >= UNSTABLE_FRACTION * n_runs


@dataclass(frozen=True)
class Probe:
    """A finished probe: its lr, diverged runs, and evidence runs (all but the
    ``NOT_AT_RISK`` outcomes, ``error`` and ``pruned``)."""

    lr: float
    n_diverged: int
    n_runs: int
    value: float | None = None
    """The trial's value (seed mean of the capped objective); None when it has none."""

    @property
    def unstable(self) -> bool:
        return unstable(self.n_diverged, self.n_runs)


@dataclass(frozen=True)
class CellState:
    """Where one cell's search stands (see ``decide``). ``status`` is the boundary
    search's; ``band_status`` the band search's (None when not searched: ``band``
    off, or the boundary search not ended, or no edge to look for), with the best
    probe's lr and each edge's bracket ``(outside, inside)`` / ``(inside, outside)``
    (None where the band reaches ``lo`` or ``hi``: censored)."""

    status: str
    last_stable: float | None = None
    first_unstable: float | None = None
    next_lrs: tuple[float, ...] = ()
    probes: tuple[Probe, ...] = field(default=())
    pending: tuple[float, ...] = ()
    band_status: str | None = None
    best_lr: float | None = None
    band_lo: tuple[float, float] | None = None
    band_hi: tuple[float, float] | None = None

    @property
    def open(self) -> bool:
        """Whether the cell still has probes to run (boundary or band)."""
        return OPEN in (self.status, self.band_status)


def decide(
    probes: Sequence[Probe],
    pending: Sequence[float],
    *,
    lo: float,
    hi: float,
    resolution: float,
    band: bool = False,
    maximize: bool = False,
    tolerance: float | None = None,
) -> CellState:
    """The state of a cell from its finished ``probes`` and ``pending`` lrs, and the
    lrs to probe next (see the module docstring for the rule); with ``band``, the
    band's edges once the boundary search has ended (``maximize``: the objective's
    direction; ``tolerance``: None for the report's default)."""
    state = _boundary(probes, pending, lo=lo, hi=hi, resolution=resolution)
    if not band or state.status not in (RESOLVED, CENSORED):
        return state
    return _with_band(state, resolution=resolution, maximize=maximize, tolerance=tolerance)


def _boundary(
    probes: Sequence[Probe], pending: Sequence[float], *, lo: float, hi: float, resolution: float
) -> CellState:
    pending_set = set(pending)
    by_lr = {p.lr: p for p in probes}
    if any(p.n_runs == 0 for p in probes):  # every run an error: nothing to bisect on
        return _state(NO_EVIDENCE, probes, pending)
    ends = [end for end in (lo, hi) if end not in by_lr and end not in pending_set]
    if lo not in by_lr or hi not in by_lr:
        return _state(OPEN, probes, pending, next_lrs=tuple(ends))
    unstable_lrs = sorted(p.lr for p in probes if p.unstable)
    if not unstable_lrs:
        top = max(by_lr)
        return _state(CENSORED, probes, pending, last_stable=top)
    first = unstable_lrs[0]
    below = [p.lr for p in probes if p.lr < first and not p.unstable]
    if not below:
        return _state(DIVERGES, probes, pending, first_unstable=first)
    last = max(below)
    bracket = {"last_stable": last, "first_unstable": first}
    if first / last <= resolution * (1 + 1e-9):
        return _state(RESOLVED, probes, pending, **bracket)
    if pending_set:
        return _state(OPEN, probes, pending, **bracket)
    middle = _clean(math.sqrt(last * first))
    if not last < middle < first or middle in by_lr:  # cannot be split further
        return _state(RESOLVED, probes, pending, **bracket)
    return _state(OPEN, probes, pending, next_lrs=(middle,), **bracket)


def _with_band(
    state: CellState, *, resolution: float, maximize: bool, tolerance: float | None
) -> CellState:
    """``state`` (boundary search ended) with the band search's state and next lrs."""
    tolerance = band_tolerance(tolerance, maximize=maximize)
    valued = [p for p in state.probes if p.value is not None and math.isfinite(p.value)]
    if not valued:
        return state
    lrs = [p.lr for p in valued]
    values = [p.value for p in valued]
    sign = -1.0 if maximize else 1.0
    best_i = min(range(len(values)), key=lambda i: (sign * values[i], i))
    good = [in_band(v, values[best_i], tolerance, maximize=maximize) for v in values]
    first = last = best_i
    while first > 0 and good[first - 1]:
        first -= 1
    while last < len(values) - 1 and good[last + 1]:
        last += 1
    band_lo = (lrs[first - 1], lrs[first]) if first > 0 else None
    band_hi = (lrs[last], lrs[last + 1]) if last < len(values) - 1 else None
    taken = {p.lr for p in state.probes} | set(state.pending)

    def split(interval: tuple[float, float] | None) -> float | None:
        """The geometric mean of a still too wide ``interval``, None when resolved."""
        if interval is None or interval[1] / interval[0] <= resolution * (1 + 1e-9):
            return None
        middle = _clean(math.sqrt(interval[0] * interval[1]))
        return middle if interval[0] < middle < interval[1] and middle not in taken else None

    # first the best: split the wider of its two neighbour intervals until both are
    # within the resolution (a line search for the optimum); then both edges at once
    below = (lrs[best_i - 1], lrs[best_i]) if best_i > 0 else None
    above = (lrs[best_i], lrs[best_i + 1]) if best_i < len(lrs) - 1 else None
    around = [(m, i) for i, m in enumerate((split(below), split(above))) if m is not None]
    if around:
        widths = [(below, above)[i][1] / (below, above)[i][0] for _, i in around]
        middles = [around[widths.index(max(widths))][0]]
    else:
        middles = [m for m in (split(band_lo), split(band_hi)) if m is not None]
    # one round at a time: the next round depends on this one, and waiting for the
    # whole round keeps the probe lrs independent of the order trials finish in
    searching = bool(middles) or bool(state.pending)
    return replace(
        state,
        band_status=OPEN if searching else RESOLVED,
        next_lrs=() if state.pending else tuple(middles),
        best_lr=lrs[best_i],
        band_lo=band_lo,
        band_hi=band_hi,
    )


def _state(status: str, probes, pending, **kw: Any) -> CellState:
    return CellState(
        status=status,
        probes=tuple(sorted(probes, key=lambda p: p.lr)),
        pending=tuple(sorted(pending)),
        **kw,
    )


def _clean(value: float) -> float:
    return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")


def _choices(name: str, distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution) and not distribution.log:
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    raise ValueError(
        f"the boundary sampler enumerates every axis but lr into cells; axis {name!r} is "
        f"a {type(distribution).__name__}, give it as a list of values"
    )


def probe_evidence(trial: FrozenTrial, lost: set[str] = frozenset()) -> tuple[int, int] | None:
    """``(n_diverged, n_runs)`` of a finished probe from its outcome counts, or None
    when the trial is no evidence: not done (``counts_as_done``: running, abandoned by
    a dead driver, or its part lost, so ``lost`` being asked again) or pruned."""
    if trial.state == TrialState.PRUNED or not counts_as_done(trial, lost):
        return None
    attrs = trial.user_attrs
    counts = {o: int(attrs.get(f"n_{o}", 0)) for o in OUTCOMES}
    return counts["diverged"], sum(n for o, n in counts.items() if o not in NOT_AT_RISK)


class BoundarySampler(optuna.samplers.BaseSampler):
    """Per-cell bracketing and bisection in log lr (see the module docstring).

    ``distributions``: the label's axes as ``study.ask`` gets them; ``lr`` must be a
    log ``FloatDistribution``, every other axis finite (its values form the cells).
    ``band``: also locate each cell's good band (``maximize``: the objective is
    maximized; ``tolerance``: None for the report's default).
    """

    def __init__(
        self,
        distributions: Mapping[str, BaseDistribution],
        *,
        resolution: float = DEFAULT_RESOLUTION,
        band: bool = False,
        maximize: bool = False,
        tolerance: float | None = None,
    ) -> None:
        lr = distributions.get(LR)
        if not (isinstance(lr, FloatDistribution) and lr.log):
            raise ValueError(
                f"the boundary sampler needs lr as a log range {{log: [LO, HI]}}, got {lr!r}"
            )
        if not resolution > 1:
            raise ValueError(f"resolution must be greater than 1, got {resolution!r}")
        self._space = dict(distributions)
        self._axes = [name for name in distributions if name != LR]
        self.cells: list[tuple[Any, ...]] = list(
            itertools.product(*(_choices(n, distributions[n]) for n in self._axes))
        )
        self._cell_set = set(self.cells)
        self.lo, self.hi = float(lr.low), float(lr.high)
        self.resolution = float(resolution)
        self.band = bool(band)
        self.maximize = bool(maximize)
        self.tolerance = band_tolerance(tolerance, maximize=self.maximize)

    @property
    def max_probes_per_cell(self) -> int:
        return max_probes(self.lo, self.hi, self.resolution, band=self.band)

    # -- the state, from the study's trials ----------------------------------------

    def states(self, study: optuna.Study, *, exclude: int | None = None) -> list[CellState]:
        """Every cell's ``CellState``, in ``cells`` order (``exclude``: a trial number
        being asked, not yet a probe)."""
        probes: dict[tuple, list[Probe]] = {cell: [] for cell in self.cells}
        pending: dict[tuple, list[float]] = {cell: [] for cell in self.cells}
        lost = lost_parts(study)
        for trial in study.get_trials(deepcopy=False):
            if trial.number == exclude:
                continue
            if trial.state in (TrialState.RUNNING, TrialState.WAITING):
                params = (
                    trial.params
                    if trial.state == TrialState.RUNNING
                    else trial.system_attrs.get("fixed_params", {})
                )
                cell = self._cell_of(params)
                if cell is not None:
                    pending[cell].append(float(params[LR]))
                continue
            evidence = probe_evidence(trial, lost)
            cell = self._cell_of(trial.params)
            if evidence is not None and cell is not None:
                value = trial.value if trial.state == TrialState.COMPLETE else None
                probes[cell].append(Probe(float(trial.params[LR]), *evidence, value=value))
        return [
            decide(
                _merged(probes[c]),
                pending[c],
                lo=self.lo,
                hi=self.hi,
                resolution=self.resolution,
                band=self.band,
                maximize=self.maximize,
                tolerance=self.tolerance,
            )
            for c in self.cells
        ]

    def _cell_of(self, params: Mapping[str, Any]) -> tuple | None:
        if LR not in params or any(a not in params for a in self._axes):
            return None
        cell = tuple(params[a] for a in self._axes)
        return cell if cell in self._cell_set else None

    def proposals(self, study: optuna.Study, *, exclude: int | None = None) -> list[dict[str, Any]]:
        """The probes that may start now, as parameter sets: cells with the fewest
        probes (finished + pending) first, then in cell order."""
        states = self.states(study, exclude=exclude)
        order = sorted(
            range(len(self.cells)),
            key=lambda i: (len(states[i].probes) + len(states[i].pending), i),
        )
        return [
            {LR: lr, **dict(zip(self._axes, self.cells[i], strict=True))}
            for i in order
            for lr in states[i].next_lrs
        ]

    def ready(self, study: optuna.Study) -> int:
        """How many trials may be asked now: queued ones (asked first) and proposals."""
        waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        return waiting + len(self.proposals(study))

    def resolved(self, study: optuna.Study) -> bool:
        """True when every cell's search has ended (nothing pending, nothing to ask):
        its boundary and, with ``band``, its band's edges."""
        return not any(state.open for state in self.states(study))

    # -- Optuna's sampler API ------------------------------------------------------

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def sample_relative(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        proposals = self.proposals(study, exclude=trial.number)
        return proposals[0] if proposals else {}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        raise RuntimeError(
            "the boundary sampler has no probe to hand out now: ask only while "
            "ready(study) > 0 (every open cell is waiting for a probe in flight)"
        )


def _merged(probes: list[Probe]) -> list[Probe]:
    """One probe per lr (a probe asked again after an abandoned one is the same lr;
    its value is the mean of the values told, over the seeds behind each)."""
    by_lr: dict[float, Probe] = {}
    for p in probes:
        if p.lr in by_lr:
            q = by_lr[p.lr]
            values = [(x.value, x.n_runs or 1) for x in (q, p) if x.value is not None]
            value = sum(v * w for v, w in values) / sum(w for _, w in values) if values else None
            p = Probe(p.lr, q.n_diverged + p.n_diverged, q.n_runs + p.n_runs, value)
        by_lr[p.lr] = p
    return list(by_lr.values())
