"""The boundary sampler: bisection for the maximum stable lr per cell, driven through
the Optuna searcher with simulated workers (no Ray), and against theory on
full-batch linear regression with momentum (real runs, no Ray)."""

from __future__ import annotations

import math
import random

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from ray.tune.search import Searcher

from robustness.engine._boundary import (
    CENSORED,
    DIVERGES,
    OPEN,
    RESOLVED,
    BoundarySampler,
    Probe,
    decide,
)
from robustness.engine._searcher import LabelSearch, OptunaStudySearcher
from robustness.errors import UserInputError
from robustness.results import store
from robustness.spec import make_plan, parse_spec
from robustness.spec._plan import max_probes

LO, HI = 1e-4, 1e4  # 8 decades


def _space(betas=(0.0, 0.5, 0.9), lo=LO, hi=HI):
    return {
        "lr": FloatDistribution(lo, hi, log=True),
        "beta": CategoricalDistribution(list(betas)),
    }


_STORAGES: dict[str, optuna.storages.BaseStorage] = {}


def _storage(path):
    """One in-memory storage per directory (the study's optuna.journal in the engine)."""
    return _STORAGES.setdefault(str(path), optuna.storages.InMemoryStorage())


def _searcher(tmp_path, sampler, distributions, *, concurrency=4, pack_size=1):
    label = LabelSearch(
        label="a",
        distributions=distributions,
        target=len(sampler.cells) * sampler.max_probes_per_cell,
        sampler=sampler,
        make_config=lambda trial_id, params: {"trial_id": trial_id, "params": params},
        error_records=lambda trial_id, params, message: [],
    )
    return OptunaStudySearcher(
        [label],
        study_name="s",
        storage=_storage(tmp_path),
        direction="minimize",
        results_dir=str(tmp_path),
        pack_size=pack_size,
        concurrency=concurrency,
    )


def _run(tmp_path, config, outcomes, objective=None):
    """What the trainable does for one configuration: one record per seed, persisted
    (``objective``: params -> the capped objective of each seed; 1.0 when None)."""
    trial_id = config["trial_id"]
    value = 1.0 if objective is None else objective(config["params"])
    rows = [
        {
            "trial_id": trial_id,
            "run_id": f"{trial_id}-s{seed}",
            "seed": seed,
            "steps_done": 1,
            "outcome": outcome,
            "objective": value,
            "wall_seconds": 0.01,
        }
        for seed, outcome in enumerate(outcomes(config["params"]))
    ]
    store.write_part(tmp_path, trial_id, rows, [])


def _drive(searcher, tmp_path, outcomes, *, workers, rng, stop_after=None, objective=None):
    """Simulated Tune: keep ``workers`` Ray trials in flight, finish them in random
    order. Returns (configs asked, most distinct cells in flight at once)."""
    in_flight: dict[str, list[dict]] = {}
    asked, widest, n, finished = [], 0, 0, False
    while True:
        while not finished and len(in_flight) < workers:
            suggested = searcher.suggest(f"ray{n}")
            if suggested == Searcher.FINISHED:
                finished = True
            elif suggested is None:
                break
            else:
                in_flight[f"ray{n}"] = suggested["pack"]
                asked += suggested["pack"]
                n += 1
        cells = {c["params"]["beta"] for pack in in_flight.values() for c in pack}
        widest = max(widest, len(cells))
        if not in_flight:
            assert finished, "nothing in flight, yet the searcher neither asks nor finishes"
            return asked, widest
        if stop_after is not None and len(asked) >= stop_after:
            return asked, widest  # a killed driver: what is in flight stays RUNNING
        ray_id = rng.choice(sorted(in_flight))
        for config in in_flight.pop(ray_id):
            _run(tmp_path, config, outcomes, objective)
        searcher.on_trial_complete(ray_id, {})


def _threshold_outcomes(thresholds, n_seeds=2):
    """Deterministic: diverged above the cell's threshold lr, on every seed."""

    def outcomes(params):
        bad = params["lr"] > thresholds[params["beta"]]
        return ["diverged" if bad else "converged"] * n_seeds

    return outcomes


def _probes(sampler, tmp_path):
    study = optuna.load_study(study_name="s/a", storage=_storage(tmp_path))
    return dict(zip(sampler.cells, sampler.states(study), strict=True))


# --- the rule on its own ---------------------------------------------------------------


def test_decide_probes_both_ends_then_bisects_between_last_stable_and_first_unstable():
    kw = {"lo": 1e-3, "hi": 1e1, "resolution": 1.1}
    assert decide([], [], **kw).next_lrs == (1e-3, 1e1)
    assert decide([], [1e-3], **kw).next_lrs == (1e1,)  # never a pending lr twice
    assert decide([Probe(1e-3, 0, 2)], [1e1], **kw).next_lrs == ()  # waits for hi
    state = decide([Probe(1e-3, 0, 2), Probe(1e1, 2, 2)], [], **kw)
    assert (state.status, state.next_lrs) == (OPEN, (0.1,))  # geometric mean of the ends
    # one stable probe above a diverging one: the first diverging lr bounds the bracket
    probes = [Probe(1e-3, 0, 2), Probe(0.1, 1, 2), Probe(1.0, 0, 2), Probe(1e1, 2, 2)]
    state = decide(probes, [], **kw)
    assert (state.last_stable, state.first_unstable) == (1e-3, 0.1)
    assert state.next_lrs == (pytest.approx(0.01),)
    state = decide(
        [Probe(1.0, 0, 2), Probe(1.08, 1, 2), Probe(1e-3, 0, 2), Probe(1e1, 2, 2)], [], **kw
    )
    assert (state.status, state.last_stable, state.first_unstable) == (RESOLVED, 1.0, 1.08)
    assert decide([Probe(1e-3, 0, 2), Probe(1e1, 0, 2)], [], **kw).status == CENSORED
    assert decide([Probe(1e-3, 2, 2), Probe(1e1, 2, 2)], [], **kw).status == DIVERGES
    # error runs are no evidence: 1 diverged of 1 non-error run is unstable
    assert Probe(1.0, 1, 1).unstable and not Probe(1.0, 0, 1).unstable


def test_error_and_pruned_runs_are_no_divergence_evidence():
    from optuna.trial import TrialState, create_trial

    from robustness.engine._boundary import probe_evidence

    def trial(state=TrialState.COMPLETE, **counts):
        attrs = {f"n_{o}": n for o, n in counts.items()}
        return create_trial(
            state=state,
            value=1.0 if state == TrialState.COMPLETE else None,
            params={},
            distributions={},
            user_attrs=attrs,
        )

    assert probe_evidence(trial(diverged=1, converged=2, error=3, pruned=4)) == (1, 3)
    assert probe_evidence(trial(TrialState.FAIL, diverged=2)) == (2, 2)  # NaN objective
    assert probe_evidence(trial(TrialState.FAIL, error=2)) == (0, 0)
    abandoned = create_trial(
        state=TrialState.FAIL, params={}, distributions={}, user_attrs={"abandoned": True}
    )
    assert probe_evidence(abandoned) is None
    assert probe_evidence(trial(TrialState.PRUNED, diverged=1)) is None
    lost = create_trial(
        state=TrialState.COMPLETE,
        value=1.0,
        params={},
        distributions={},
        user_attrs={"trial_id": "a-0003", "n_diverged": 1},
    )
    assert probe_evidence(lost, {"a-0003"}) is None  # its part was damaged: asked again


def test_max_probes_is_both_ends_plus_one_bisection_per_halving():
    # 8 decades to 1.1: ln(1e8)/ln(1.1) = 193.3 -> 8 halvings
    assert max_probes(1e-4, 1e4, 1.1) == 10
    assert max_probes(1e-3, 1e2, 1.1) == 9  # 120.8 -> 7
    assert max_probes(1.0, 1.05, 1.1) == 2  # already resolved by the ends


# --- driven through the searcher --------------------------------------------------------


def test_deterministic_cells_are_bracketed_to_the_resolution_within_the_probe_bound(tmp_path):
    thresholds = {0.0: 0.0123, 0.5: 3.7, 0.9: 1e5}  # 1e5 > hi: censored
    sampler = BoundarySampler(_space(), resolution=1.1)
    searcher = _searcher(tmp_path, sampler, _space())
    asked, _ = _drive(
        searcher, tmp_path, _threshold_outcomes(thresholds), workers=4, rng=random.Random(0)
    )
    states = _probes(sampler, tmp_path)
    for beta in (0.0, 0.5):
        state = states[(beta,)]
        assert state.status == RESOLVED
        assert state.last_stable <= thresholds[beta] < state.first_unstable
        assert state.first_unstable / state.last_stable <= 1.1
        assert len(state.probes) <= 10  # 8 decades: 2 ends + 8 bisections
    assert states[(0.9,)].status == CENSORED and len(states[(0.9,)].probes) == 2
    assert states[(0.9,)].last_stable == HI
    assert searcher.finished()
    # no probe was run twice
    points = [(c["params"]["beta"], c["params"]["lr"]) for c in asked]
    assert len(points) == len(set(points))


def test_a_cell_that_diverges_everywhere_stops_after_its_two_ends(tmp_path):
    sampler = BoundarySampler(_space(betas=(0.0,)), resolution=1.1)
    searcher = _searcher(tmp_path, sampler, _space(betas=(0.0,)))
    asked, _ = _drive(
        searcher, tmp_path, _threshold_outcomes({0.0: 1e-6}), workers=4, rng=random.Random(1)
    )
    (state,) = _probes(sampler, tmp_path).values()
    assert state.status == DIVERGES and state.last_stable is None
    assert state.first_unstable == LO
    assert sorted(c["params"]["lr"] for c in asked) == [LO, HI]


def test_noisy_cell_brackets_the_half_crossing_with_seed_evidence(tmp_path):
    """P(diverge) rises smoothly around lr = 0.3 (logistic in log10 lr, scale 0.15
    decades); each seed's outcome is drawn from it. The bracket's ends must be what
    their seeds say (stable: < half diverged; unstable: >= half), with no probe
    inside, and the crossing found within a factor 2 of the true one."""
    rng = random.Random(7)
    n_seeds = 8

    def outcomes(params):
        p = 1 / (1 + math.exp(-(math.log10(params["lr"]) - math.log10(0.3)) / 0.15))
        return ["diverged" if rng.random() < p else "converged" for _ in range(n_seeds)]

    sampler = BoundarySampler(_space(betas=(0.0,)), resolution=1.1)
    searcher = _searcher(tmp_path, sampler, _space(betas=(0.0,)))
    _drive(searcher, tmp_path, outcomes, workers=2, rng=random.Random(2))
    (state,) = _probes(sampler, tmp_path).values()
    assert state.status == RESOLVED
    by_lr = {p.lr: p for p in state.probes}
    assert by_lr[state.last_stable].n_diverged < n_seeds / 2
    assert by_lr[state.first_unstable].n_diverged >= n_seeds / 2
    assert not [lr for lr in by_lr if state.last_stable < lr < state.first_unstable]
    assert state.last_stable > 0.15 and state.first_unstable < 0.6
    assert state.first_unstable / state.last_stable <= 1.1


def test_four_workers_keep_probes_of_several_cells_in_flight(tmp_path):
    thresholds = {b: 0.01 * (i + 1) for i, b in enumerate((0.0, 0.3, 0.6, 0.9))}
    space = _space(betas=tuple(thresholds))
    sampler = BoundarySampler(space, resolution=1.1)
    searcher = _searcher(tmp_path, sampler, space, concurrency=4)
    asked, widest = _drive(
        searcher, tmp_path, _threshold_outcomes(thresholds), workers=4, rng=random.Random(3)
    )
    assert widest == 4
    assert len({c["params"]["beta"] for c in asked[:4]}) == 4  # fewest-probes cell first
    for beta, state in _probes(sampler, tmp_path).items():
        assert state.last_stable <= thresholds[beta[0]] < state.first_unstable


def test_searcher_waits_while_every_open_cell_has_its_probe_in_flight(tmp_path):
    space = _space(betas=(0.0,))
    sampler = BoundarySampler(space, resolution=1.1)
    searcher = _searcher(tmp_path, sampler, space)
    ends = [searcher.suggest(f"ray{i}")["pack"][0] for i in range(2)]
    assert sorted(c["params"]["lr"] for c in ends) == [LO, HI]
    assert searcher.suggest("ray2") is None  # both ends in flight: nothing to ask yet
    outcomes = _threshold_outcomes({0.0: 1.0})
    _run(tmp_path, ends[0], outcomes)
    searcher.on_trial_complete("ray0", {})
    assert searcher.suggest("ray3") is None  # one end is not enough to bisect
    _run(tmp_path, ends[1], outcomes)
    searcher.on_trial_complete("ray1", {})
    (middle,) = searcher.suggest("ray4")["pack"]
    assert middle["params"]["lr"] == pytest.approx(1.0)  # geometric mean of 1e-4 and 1e4
    assert searcher.suggest("ray5") is None


def test_resume_mid_search_continues_the_bisection_without_running_a_probe_twice(tmp_path):
    thresholds = {0.0: 0.0123, 0.5: 3.7, 0.9: 0.2}
    outcomes = _threshold_outcomes(thresholds)
    space = _space()
    first = _searcher(tmp_path, BoundarySampler(space), space)
    done_before, _ = _drive(
        first, tmp_path, outcomes, workers=3, rng=random.Random(4), stop_after=12
    )
    del first  # killed: up to 3 probes RUNNING, never told

    sampler = BoundarySampler(space)
    second = _searcher(tmp_path, sampler, space)
    study = optuna.load_study(study_name="s/a", storage=_storage(tmp_path))
    abandoned = [t.params for t in study.trials if t.user_attrs.get("abandoned")]
    assert len(abandoned) == 3  # the probes in flight at the kill: queued again
    asked_after, _ = _drive(second, tmp_path, outcomes, workers=3, rng=random.Random(5))
    assert [c["params"] for c in asked_after[:3]] == abandoned  # asked again first
    finished_ids = set(second.done_trial_ids())
    runs = [
        (c["params"]["beta"], c["params"]["lr"])
        for c in done_before + asked_after
        if c["trial_id"] in finished_ids
    ]
    assert len(runs) == len(set(runs))  # every finished probe once
    uninterrupted = BoundarySampler(space)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    _drive(_searcher(fresh, uninterrupted, space), fresh, outcomes, workers=1, rng=random.Random(6))
    resumed, reference = _probes(sampler, tmp_path), _probes(uninterrupted, fresh)
    for cell, state in resumed.items():  # the same probes as a search never interrupted
        assert [p.lr for p in state.probes] == [p.lr for p in reference[cell].probes]
        assert state.last_stable <= thresholds[cell[0]] < state.first_unstable


# --- against theory: full-batch linear regression with momentum -------------------------


def _linreg_spec(**search):
    return {
        "name": "linreg_boundary",
        "problem": {
            "dataset": "linreg",
            "model": "linear",
            "batch_size": "full",
            "steps": 300,
            "eval_every": 300,
            "threads": 1,
        },
        "optimizers": {"sgd": {}},
        "space": {"lr": {"log": [1e-4, 1e4]}, "beta": [0.0, 0.5, 0.9]},  # 8 decades
        "seeds": [0],
        "search": {"sampler": "boundary", **search},
    }


def test_heavy_ball_boundary_on_linear_regression_matches_theory(tmp_path):
    """Heavy ball on a quadratic is stable iff lr < 2 (1 + beta) / lambda_max: the
    bracket of every beta must contain it, to 10%, in at most 9 probes (5 decades; the
    slow engine test below does 8)."""
    from robustness.runner import run_trial

    data = _linreg_spec()
    data["space"] = {**data["space"], "lr": {"log": [1e-3, 1e2]}}
    plan = make_plan(parse_spec(data))
    space = plan.distributions("sgd")
    sampler = BoundarySampler(space, resolution=1.1)
    searcher = _searcher(tmp_path, sampler, space, concurrency=2)
    metadata = {}

    def outcomes(params):
        result = run_trial(plan.trial_config("sgd", params))
        metadata.update(result.dataset_metadata)
        return [r["outcome"] for r in result.records]

    _drive(searcher, tmp_path, outcomes, workers=2, rng=random.Random(0))
    lam = metadata["hessian_max_eig"]
    for (beta,), state in _probes(sampler, tmp_path).items():
        theory = 2 * (1 + beta) / lam
        assert state.status == RESOLVED
        assert state.last_stable <= theory < state.first_unstable, beta
        assert state.first_unstable / state.last_stable <= 1.1
        assert len(state.probes) <= plan.max_probes_per_cell("sgd") == 9


# --- the spec ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"space": {"lr": {"log": [1e-3, 1e2], "points": 11}}}, "log range"),
        ({"space": {"lr": [0.1, 1.0]}}, "log range"),
        ({"search": {"sampler": "boundary", "n_trials": 20}}, "n_trials is not used"),
        ({"search": {"sampler": "boundary", "scheduler": "asha"}}, "asha scheduler cannot"),
        ({"search": {"sampler": "boundary", "resolution": 1.0}}, "greater than 1"),
        ({"search": {"sampler": "boundary", "resolution": 0.5}}, "greater than 1"),
        ({"search": {"sampler": "grid", "resolution": 1.2}}, "only by the boundary sampler"),
        ({"search": {"sampler": "grid", "band": True}}, "band is used only by the boundary"),
        ({"space": {"lr": {"log": [1e-3, 1e2]}, "beta": {"uniform": [0, 0.9]}}}, "enumerates"),
    ],
)
def test_spec_refuses_what_the_boundary_sampler_cannot_do(change, message):
    data = _linreg_spec()
    if "space" in change:
        data["space"] = {**data["space"], **change["space"]}
    if "search" in change:
        data["search"] = change["search"]
        if change["search"]["sampler"] == "grid":
            data["space"] = {"lr": [0.1, 1.0]}
    with pytest.raises(UserInputError, match=message):
        make_plan(parse_spec(data))


def test_resolution_is_in_the_resolved_spec_only_for_the_boundary_sampler():
    boundary = parse_spec(_linreg_spec(resolution=1.05))
    assert boundary.resolved()["search"]["resolution"] == 1.05
    assert parse_spec(boundary.resolved()) == boundary
    grid = parse_spec({**_linreg_spec(), "search": {"sampler": "grid"}, "space": {"lr": [0.1]}})
    assert "resolution" not in grid.resolved()["search"]


def test_band_is_in_the_resolved_spec_only_when_true_and_widens_the_probe_bound():
    plain = parse_spec(_linreg_spec())
    assert "band" not in plain.resolved()["search"]  # as before the key existed
    banded = parse_spec(_linreg_spec(band=True))
    assert banded.resolved()["search"]["band"] is True
    assert parse_spec(banded.resolved()) == banded
    # 8 decades at 1.1: 8 halvings; the boundary 2 + 8, with band 2 + 5 x 8
    assert make_plan(plain).max_probes_per_cell("sgd") == 10
    assert make_plan(banded).max_probes_per_cell("sgd") == 42


def test_plan_describes_cells_and_the_probe_bound():
    plan = make_plan(parse_spec(_linreg_spec()))
    assert plan.n_cells("sgd") == 3
    assert plan.n_configurations() == 30  # 3 cells x 10 probes at most
    text = plan.describe()
    assert "3 cells, at most 10 probes each" in text
    assert "total: at most 30 configurations" in text


@pytest.mark.slow  # a local Ray and about 60 configurations: a minute on 2 busy cores
def test_a_boundary_study_through_the_engine_brackets_theory_and_resumes(tmp_path):
    """As a user runs it: ``run_study`` on a spec file, then the report's table. A
    resume of the finished study runs nothing again."""
    import pandas as pd
    import yaml

    from analysis.boundary import boundary_table
    from robustness.data import load_dataset
    from robustness.engine import run_study

    data = _linreg_spec()
    data["seeds"] = [0, 1]
    data["resources"] = {"cpu": 1, "max_concurrent": 2}
    spec = tmp_path / "linreg.yaml"
    spec.write_text(yaml.safe_dump(data))
    out = run_study(str(spec), tmp_path / "out", progress=False, report=False)
    trials = pd.read_parquet(out / "trials.parquet")
    assert trials["trial_id"].nunique() <= 30 and len(trials) == 2 * trials["trial_id"].nunique()
    lam = load_dataset("linreg").metadata["hessian_max_eig"]
    for row in boundary_table(trials).to_dict("records"):
        theory = 2 * (1 + row["beta"]) / lam
        assert row["max_stable_lr"] <= theory < row["first_diverging_lr"], row
        assert row["ratio"] <= 1.1 and row["n_probes"] <= 10
    run_study(str(spec), out, resume=True, progress=False, report=False)
    again = pd.read_parquet(out / "trials.parquet")
    assert sorted(again["run_id"]) == sorted(trials["run_id"])  # nothing ran twice


# --- band: the good band's edges ---------------------------------------------------------

BAND_MIN, BAND_BOUNDARY, L0 = {0.0: 1e-2, 0.5: 0.3}, {0.0: 3.7, 0.5: 2.0}, 5.0


def _v_objective(params):
    """A V-shaped capped loss in log10 lr: 1 at the cell's optimum, +1 per decade away,
    capped at the untrained loss L0 = 5 and equal to it where training diverges. With
    the report's tolerance (a loss within 10% of the best: <= 1.1), the band's true
    edges are 0.1 decades either side of the optimum."""
    lr, beta = params["lr"], params["beta"]
    if lr > BAND_BOUNDARY[beta]:
        return L0
    return min(L0, 1.0 + abs(math.log10(lr) - math.log10(BAND_MIN[beta])))


def _band_run(tmp_path, *, band, seed=0):
    space = _space(betas=(0.0, 0.5))
    sampler = BoundarySampler(space, resolution=1.1, band=band)
    searcher = _searcher(tmp_path, sampler, space)
    asked, _ = _drive(
        searcher,
        tmp_path,
        _threshold_outcomes(BAND_BOUNDARY),
        workers=4,
        rng=random.Random(seed),
        objective=_v_objective,
    )
    assert searcher.finished()
    return sampler, asked, _probes(sampler, tmp_path)


def test_band_edges_are_located_to_the_resolution_around_the_true_edges(tmp_path):
    sampler, asked, states = _band_run(tmp_path, band=True)
    points = [(c["params"]["beta"], c["params"]["lr"]) for c in asked]
    assert len(points) == len(set(points))  # no probe twice
    for beta, optimum in BAND_MIN.items():
        state = states[(beta,)]
        assert state.status == RESOLVED and state.band_status == RESOLVED
        # the boundary's bracket is as without band
        assert state.last_stable <= BAND_BOUNDARY[beta] < state.first_unstable
        assert state.first_unstable / state.last_stable <= 1.1
        true_lo, true_hi = optimum * 10**-0.1, optimum * 10**0.1
        (out_lo, in_lo), (in_hi, out_hi) = state.band_lo, state.band_hi
        assert in_lo / out_lo <= 1.1 and out_hi / in_hi <= 1.1  # each edge to resolution
        # the best probe's value sets the threshold: the edges bracket its crossings
        best = min(p.value for p in state.probes)
        threshold = 1.1 * best
        assert _v_objective({"lr": out_lo, "beta": beta}) > threshold
        assert _v_objective({"lr": in_lo, "beta": beta}) <= threshold
        assert _v_objective({"lr": out_hi, "beta": beta}) > threshold
        assert _v_objective({"lr": in_hi, "beta": beta}) <= threshold
        # and the true edges (best = 1) lie within the resolution of them
        assert out_lo / 1.1 <= true_lo <= in_lo * 1.1
        assert in_hi / 1.1 <= true_hi <= out_hi * 1.1
        assert len(state.probes) <= sampler.max_probes_per_cell


def test_band_costs_a_few_probes_per_cell_and_band_false_is_unchanged(tmp_path):
    _, plain, plain_states = _band_run(tmp_path / "plain", band=False)
    _, _, banded_states = _band_run(tmp_path / "band", band=True)
    for beta in BAND_MIN:
        before = plain_states[(beta,)]
        assert before.band_status is None and before.band_lo is None
        # band: false probes exactly what the boundary search probes
        lrs = {c["params"]["lr"] for c in plain if c["params"]["beta"] == beta}
        assert lrs == {p.lr for p in before.probes}
        after = banded_states[(beta,)]
        assert {p.lr for p in before.probes} <= {p.lr for p in after.probes}
        extra = len(after.probes) - len(before.probes)
        print(f"beta={beta}: {len(before.probes)} boundary probes + {extra} band probes")
        assert 0 < extra <= 16


def test_band_probes_are_the_same_whatever_the_finish_order(tmp_path):
    runs = [_band_run(tmp_path / str(seed), band=True, seed=seed)[2] for seed in (0, 1)]
    for cell in runs[0]:
        assert [p.lr for p in runs[0][cell].probes] == [p.lr for p in runs[1][cell].probes]


def test_band_edge_at_an_end_of_the_range_is_censored():
    kw = {"lo": 1e-3, "hi": 1e1, "resolution": 1.1, "band": True}
    # stable everywhere, loss falling with lr: the band reaches hi
    probes = [Probe(1e-3, 0, 2, 3.0), Probe(1e1, 0, 2, 1.0)]
    state = decide(probes, [], **kw)
    assert state.status == CENSORED and state.band_status == OPEN
    assert state.best_lr == 1e1 and state.band_hi is None
    assert state.band_lo == (1e-3, 1e1)
    assert state.next_lrs == (pytest.approx(0.1),)  # first the best's lower interval
    # a maximized objective (accuracy) with an absolute tolerance of 0.01: every probe
    # is good, both edges censored; only the best's lower interval is left to refine
    acc = [Probe(1e-3, 0, 2, 0.90), Probe(1e-1, 0, 2, 0.905), Probe(1e1, 0, 2, 0.91)]
    state = decide(acc, [], **kw, maximize=True)
    assert state.best_lr == 1e1 and state.band_lo is None and state.band_hi is None
    assert state.band_status == OPEN and state.next_lrs == (pytest.approx(1.0),)
    # halving (0.1, 10] toward 10: the best's lower interval is 10 / 9.3 < 1.1
    halved = (1.0, 3.16227766017, 5.6234132519, 7.49894209332, 8.6596432336, 9.30572040929)
    done = [*acc, *(Probe(lr, 0, 2, 0.905) for lr in halved)]
    state = decide(done, [], **kw, maximize=True)
    assert state.band_status == RESOLVED and state.next_lrs == ()
    assert state.band_lo is None and state.band_hi is None  # the band is the whole range
    # while a band probe is in flight the cell waits (one round at a time)
    state = decide(acc, [1.0], **kw, maximize=True)
    assert state.band_status == OPEN and state.next_lrs == ()
    # without band nothing of it
    assert decide(probes, [], **{**kw, "band": False}).band_status is None


def test_report_band_table_of_a_boundary_study_interpolates_between_exact_probes(tmp_path):
    """The report's ``lr_band`` on the band search's probes: edges interpolated in
    log10 lr between the exact probe lrs, within the resolution of the true edges."""
    import pandas as pd

    from analysis.metrics import lr_band_width

    _, _, states = _band_run(tmp_path, band=True)
    rows = [
        {"beta": beta, "lr": p.lr, "outcome": "converged", "objective": p.value, "seed": 0}
        for (beta,), state in states.items()
        for p in state.probes
    ]
    table = lr_band_width(
        pd.DataFrame(rows), metric="objective", by=["beta"], direction="minimize"
    ).set_index("beta")
    for beta, optimum in BAND_MIN.items():
        assert table.loc[beta, "band_lo"] == pytest.approx(optimum * 10**-0.1, rel=0.1)
        assert table.loc[beta, "band_hi"] == pytest.approx(optimum * 10**0.1, rel=0.1)
        assert not table.loc[beta, "censored"]
