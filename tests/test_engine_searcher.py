"""The Optuna-backed Ray searcher on its own (no Ray started): asking, telling,
reproducibility, and reconciling the storage a killed driver left behind."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from ray.tune.search import Searcher

from robustness.engine._samplers import make_sampler
from robustness.engine._searcher import LabelSearch, OptunaStudySearcher
from robustness.results import store

GRID = {"lr": [0.01, 0.1, 1.0], "beta": [0.0, 0.9]}


def _label(label, sampler, *, target, distributions=None):
    return LabelSearch(
        label=label,
        distributions=distributions or {k: CategoricalDistribution(v) for k, v in GRID.items()},
        target=target,
        sampler=sampler,
        make_config=lambda trial_id, params: {"trial_id": trial_id, "params": params},
        error_records=lambda trial_id, params, message: [
            {
                "trial_id": trial_id,
                "run_id": f"{trial_id}-s0",
                "seed": 0,
                "steps_done": 0,
                "outcome": "error",
                "error": message,
                "objective": math.nan,
                **params,
            }
        ],
    )


def _searcher(tmp_path, labels, name="s"):
    return OptunaStudySearcher(
        labels,
        study_name=name,
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        direction="minimize",
        results_dir=str(tmp_path),
    )


def _finish(tmp_path, config, objective=0.5, outcome="converged"):
    """What the trainable does: persist the trial's part."""
    trial_id = config["trial_id"]
    record = {
        "trial_id": trial_id,
        "run_id": f"{trial_id}-s0",
        "seed": 0,
        "steps_done": 3,
        "outcome": outcome,
        "objective": objective,
        "node_id": "n1",
    }
    store.write_part(tmp_path, trial_id, [record], [{"run_id": f"{trial_id}-s0", "step": 0}])


def _load(tmp_path, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")


def test_grid_is_asked_once_per_point_interleaving_labels_then_finished(tmp_path):
    labels = [
        _label("a", make_sampler("grid", seed=0, grid=GRID), target=6),
        _label("b", make_sampler("grid", seed=0, grid=GRID), target=6),
    ]
    searcher = _searcher(tmp_path, labels)
    configs = [searcher.suggest(f"ray{i}") for i in range(12)]
    assert searcher.suggest("ray12") == Searcher.FINISHED
    assert [c["trial_id"].split("-")[0] for c in configs[:4]] == ["a", "b", "a", "b"]
    for label in "ab":
        points = {tuple(sorted(c["params"].items())) for c in configs if c["trial_id"][0] == label}
        assert len(points) == 6  # every grid point, none twice
    for i, config in enumerate(configs):
        _finish(tmp_path, config, objective=0.1 * i)
        searcher.on_trial_complete(f"ray{i}", {"objective": 0.1 * i})
    study = _load(tmp_path, "s/a")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    assert study.trials[0].user_attrs["n_converged"] == 1
    assert study.trials[0].user_attrs["node_id"] == "n1"
    assert sorted(searcher.done_trial_ids()) == sorted(c["trial_id"] for c in configs)


@pytest.mark.parametrize("sampler", ["random", "qmc"])
def test_budgeted_sampler_with_same_seed_suggests_same_configurations(tmp_path, sampler):
    space = {"lr": FloatDistribution(1e-4, 1.0, log=True), "beta": FloatDistribution(0.0, 0.99)}

    def suggestions(path, seed):
        path.mkdir()
        searcher = _searcher(
            path, [_label("a", make_sampler(sampler, seed=seed), target=5, distributions=space)]
        )
        return [searcher.suggest(f"r{i}")["params"] for i in range(5)]

    first = suggestions(tmp_path / "one", seed=3)
    assert first == suggestions(tmp_path / "two", seed=3)
    assert first != suggestions(tmp_path / "three", seed=4)
    assert len({p["lr"] for p in first}) == 5


def test_crashed_ray_trial_is_told_fail_and_recorded_as_error(tmp_path):
    searcher = _searcher(tmp_path, [_label("a", make_sampler("grid", seed=0, grid=GRID), target=6)])
    config = searcher.suggest("ray0")
    searcher.on_trial_complete("ray0", None, error=True)
    (trial,) = _load(tmp_path, "s/a").trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["n_error"] == 1
    records = store.read_part_records(tmp_path, config["trial_id"])
    assert list(records["outcome"]) == ["error"]
    assert "Ray trial failed" in records["error"].iloc[0]
    assert config["trial_id"] in searcher.done_trial_ids()  # recorded, not re-run


def test_non_finite_objective_is_never_told_to_optuna(tmp_path):
    searcher = _searcher(tmp_path, [_label("a", make_sampler("grid", seed=0, grid=GRID), target=6)])
    config = searcher.suggest("ray0")
    _finish(tmp_path, config, objective=math.nan, outcome="error")
    searcher.on_trial_complete("ray0", {"objective": math.nan})
    (trial,) = _load(tmp_path, "s/a").trials
    assert trial.state == TrialState.FAIL and trial.value is None


def test_reconcile_closes_trials_a_killed_driver_left_running(tmp_path):
    grid = make_sampler("grid", seed=0, grid=GRID)
    first = _searcher(tmp_path, [_label("a", grid, target=6)])
    configs = [first.suggest(f"ray{i}") for i in range(3)]
    _finish(tmp_path, configs[0], objective=0.25)  # told before the kill
    first.on_trial_complete("ray0", {"objective": 0.25})
    _finish(tmp_path, configs[1], objective=0.75)  # persisted, but the driver died before telling
    del first  # configs[2] was running when the driver died

    second = _searcher(tmp_path, [_label("a", make_sampler("grid", seed=0, grid=GRID), target=6)])
    study = _load(tmp_path, "s/a")
    states = {t.user_attrs.get("trial_id"): t for t in study.trials}
    assert states[configs[1]["trial_id"]].state == TrialState.COMPLETE
    assert states[configs[1]["trial_id"]].value == pytest.approx(0.75)
    abandoned = states[configs[2]["trial_id"]]
    assert abandoned.state == TrialState.FAIL and abandoned.user_attrs["abandoned"] is True
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]

    rest = []
    while (config := second.suggest(f"new{len(rest)}")) != Searcher.FINISHED:
        rest.append(config)
    assert len(rest) == 4  # 6 grid points - 2 done; the abandoned one is asked again first
    assert rest[0]["params"] == configs[2]["params"]
    seen = [tuple(sorted(c["params"].items())) for c in configs[:2] + rest]
    assert len(set(seen)) == 6
    assert configs[2]["trial_id"] not in second.done_trial_ids()


def test_reconcile_closes_a_trial_the_driver_died_inside_ask(tmp_path):
    first = _searcher(tmp_path, [_label("a", make_sampler("grid", seed=0, grid=GRID), target=6)])
    first.suggest("ray0")
    _load(tmp_path, "s/a").ask()  # created, but no parameters yet when the driver died
    second = _searcher(tmp_path, [_label("a", make_sampler("grid", seed=0, grid=GRID), target=6)])
    assert not [t for t in _load(tmp_path, "s/a").trials if t.state == TrialState.RUNNING]
    asked = []
    while (config := second.suggest(f"new{len(asked)}")) != Searcher.FINISHED:
        asked.append(config)
    assert len(asked) == 6  # nothing was done: every grid point is asked, none twice
    assert len({tuple(sorted(c["params"].items())) for c in asked}) == 6


def test_trial_stopped_without_result_is_asked_again_unless_a_scheduler_pruned_it(tmp_path):
    for pruning, state in ((False, TrialState.FAIL), (True, TrialState.PRUNED)):
        path = tmp_path / str(pruning)
        path.mkdir()
        grid = make_sampler("grid", seed=0, grid=GRID)
        searcher = OptunaStudySearcher(
            [_label("a", grid, target=6)],
            study_name="s",
            storage=f"sqlite:///{path / 'optuna.db'}",
            direction="minimize",
            results_dir=str(path),
            pruning=pruning,
        )
        config = searcher.suggest("ray0")
        searcher.on_trial_complete("ray0", {"objective": 0.4})
        (trial, *queued) = _load(path, "s/a").trials
        assert trial.state == state
        assert (config["trial_id"] in searcher.done_trial_ids()) is pruning
        if not pruning:  # queued again with the same parameters
            assert [t.state for t in queued] == [TrialState.WAITING]
            assert searcher.suggest("ray1")["params"] == config["params"]
