"""The Optuna-backed Ray searcher on its own (no Ray started): asking, telling,
reproducibility, and reconciling the storage a killed driver left behind."""

from __future__ import annotations

import json
import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from ray.tune.search import Searcher

from robustness.engine._samplers import make_sampler
from robustness.engine._searcher import LabelSearch, OptunaStudySearcher
from robustness.engine._trainable import SUMMARIES, WRITE_FAILED, summarize
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


def _finish(tmp_path, config, objective=0.5, outcome="converged", seconds=0.1):
    """What the trainable does: persist the configuration's part."""
    trial_id = config["trial_id"]
    record = {
        "trial_id": trial_id,
        "run_id": f"{trial_id}-s0",
        "seed": 0,
        "steps_done": 3,
        "outcome": outcome,
        "objective": objective,
        "wall_seconds": seconds,
        "node_id": "n1",
    }
    store.write_part(tmp_path, trial_id, [record], [{"run_id": f"{trial_id}-s0", "step": 0}])


def _one(searcher, ray_id):
    """Ask for a Ray trial of one configuration: its payload (or FINISHED)."""
    suggested = searcher.suggest(ray_id)
    if suggested == Searcher.FINISHED:
        return suggested
    (payload,) = suggested["pack"]
    return payload


def _load(tmp_path, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")


def test_grid_is_asked_once_per_point_interleaving_labels_then_finished(tmp_path):
    labels = [
        _label("a", make_sampler("grid", seed=0, grid=GRID), target=6),
        _label("b", make_sampler("grid", seed=0, grid=GRID), target=6),
    ]
    searcher = _searcher(tmp_path, labels)
    configs = [_one(searcher, f"ray{i}") for i in range(12)]
    assert _one(searcher, "ray12") == Searcher.FINISHED
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
        return [_one(searcher, f"r{i}")["params"] for i in range(5)]

    first = suggestions(tmp_path / "one", seed=3)
    assert first == suggestions(tmp_path / "two", seed=3)
    assert first != suggestions(tmp_path / "three", seed=4)
    assert len({p["lr"] for p in first}) == 5


def test_crashed_ray_trial_is_told_fail_and_recorded_as_error(tmp_path):
    searcher = _searcher(tmp_path, [_label("a", make_sampler("grid", seed=0, grid=GRID), target=6)])
    config = _one(searcher, "ray0")
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
    config = _one(searcher, "ray0")
    _finish(tmp_path, config, objective=math.nan, outcome="error")
    searcher.on_trial_complete("ray0", {"objective": math.nan})
    (trial,) = _load(tmp_path, "s/a").trials
    assert trial.state == TrialState.FAIL and trial.value is None


def test_reconcile_closes_trials_a_killed_driver_left_running(tmp_path):
    grid = make_sampler("grid", seed=0, grid=GRID)
    first = _searcher(tmp_path, [_label("a", grid, target=6)])
    configs = [_one(first, f"ray{i}") for i in range(3)]
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
    while (config := _one(second, f"new{len(rest)}")) != Searcher.FINISHED:
        rest.append(config)
    assert len(rest) == 4  # 6 grid points - 2 done; the abandoned one is asked again first
    assert rest[0]["params"] == configs[2]["params"]
    seen = [tuple(sorted(c["params"].items())) for c in configs[:2] + rest]
    assert len(set(seen)) == 6
    assert configs[2]["trial_id"] not in second.done_trial_ids()


def test_reconcile_closes_a_trial_the_driver_died_inside_ask(tmp_path):
    first = _searcher(tmp_path, [_label("a", make_sampler("grid", seed=0, grid=GRID), target=6)])
    _one(first, "ray0")
    _load(tmp_path, "s/a").ask()  # created, but no parameters yet when the driver died
    second = _searcher(tmp_path, [_label("a", make_sampler("grid", seed=0, grid=GRID), target=6)])
    assert not [t for t in _load(tmp_path, "s/a").trials if t.state == TrialState.RUNNING]
    asked = []
    while (config := _one(second, f"new{len(asked)}")) != Searcher.FINISHED:
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
        config = _one(searcher, "ray0")
        searcher.on_trial_complete("ray0", {"objective": 0.4})
        (trial, *queued) = _load(path, "s/a").trials
        assert trial.state == state
        assert (config["trial_id"] in searcher.done_trial_ids()) is pruning
        if not pruning:  # queued again with the same parameters
            assert [t.state for t in queued] == [TrialState.WAITING]
            assert _one(searcher, "ray1")["params"] == config["params"]


def test_a_pruned_configuration_always_ends_with_its_part(tmp_path):
    """Told PRUNED when the scheduler stops it; its worker writes the part later.
    ``settle_pruned`` waits for it, and writes ``pruned`` rows for one never written."""
    searcher = OptunaStudySearcher(
        [_label("a", make_sampler("grid", seed=0, grid=GRID), target=6)],
        study_name="s",
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        direction="minimize",
        results_dir=str(tmp_path),
        pruning=True,
    )
    written, lost = _one(searcher, "ray0"), _one(searcher, "ray1")
    searcher.on_trial_complete("ray0", {"objective": 0.4, "training_iteration": 3})
    searcher.on_trial_complete("ray1", {"objective": 0.9, "training_iteration": 2})
    _finish(tmp_path, written, objective=0.4, outcome="pruned")  # the worker's part
    assert searcher.settle_pruned(wait_seconds=0.0) == [lost["trial_id"]]
    rows = store.read_part_records(tmp_path, lost["trial_id"])
    assert rows[["outcome", "steps_done"]].to_dict("records") == [
        {"outcome": "pruned", "steps_done": 0}
    ]
    assert rows["error"].isna().all()
    assert store.read_part_records(tmp_path, written["trial_id"])["steps_done"].tolist() == [3]
    store.write_tables(tmp_path, searcher.done_trial_ids())  # every done trial has its part


def test_resume_abandons_a_running_trial_whose_part_was_cut_short_by_shutdown(tmp_path):
    """Tune stopping its trials on Ctrl-C makes the workers write ``pruned`` parts;
    the driver never told Optuna, so such a trial is run again, not kept."""
    first = _searcher(tmp_path, [_label("a", make_sampler("grid", seed=0, grid=GRID), target=6)])
    config = _one(first, "ray0")
    _finish(tmp_path, config, objective=0.4, outcome="pruned")
    del first
    second = _searcher(tmp_path, [_label("a", make_sampler("grid", seed=0, grid=GRID), target=6)])
    (trial, *_) = _load(tmp_path, "s/a").trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["abandoned"] is True
    assert config["trial_id"] not in second.done_trial_ids()
    assert _one(second, "ray1")["params"] == config["params"]


# --- packing: several configurations per Ray trial -----------------------------------


def _packing_searcher(tmp_path, *, pack_size, target=18, concurrency=2, on_done=None):
    grid = {"lr": [0.001, 0.01, 0.1], "beta": [0.0, 0.5, 0.9], "init": ["a", "b"]}
    label = LabelSearch(
        label="a",
        distributions={k: CategoricalDistribution(v) for k, v in grid.items()},
        target=target,
        sampler=make_sampler("grid", seed=0, grid=grid),
        make_config=lambda trial_id, params: {"trial_id": trial_id, "params": params},
        error_records=_label("a", None, target=1).error_records,
    )
    return OptunaStudySearcher(
        [label],
        study_name="s",
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        direction="minimize",
        results_dir=str(tmp_path),
        pack_size=pack_size,
        concurrency=concurrency,
        target_seconds=2.5,
        on_done=on_done,
    )


def _finish_pack(tmp_path, pack, seconds):
    for config in pack:
        _finish(tmp_path, config, seconds=seconds)


def test_fixed_pack_asks_one_optuna_trial_per_configuration_and_tells_each(tmp_path):
    done = []
    searcher = _packing_searcher(
        tmp_path, pack_size=4, target=10, on_done=lambda i, counts: done.append(i)
    )
    packs = []
    while (suggested := searcher.suggest(f"ray{len(packs)}")) != Searcher.FINISHED:
        packs.append(suggested["pack"])
    assert [len(p) for p in packs] == [4, 4, 2]  # the last pack holds what is left
    ids = [c["trial_id"] for p in packs for c in p]
    assert ids == [f"a-{n:04d}" for n in range(10)]  # per-configuration ids, in ask order
    assert len({tuple(sorted(c["params"].items())) for p in packs for c in p}) == 10
    running = [t for t in _load(tmp_path, "s/a").trials if t.state == TrialState.RUNNING]
    assert len(running) == 10  # asked, not told before their Ray trial ends
    for i, pack in enumerate(packs):
        _finish_pack(tmp_path, pack, seconds=0.1)
        searcher.on_trial_complete(f"ray{i}", {"objective": 0.5})
    study = _load(tmp_path, "s/a")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 10
    assert [t.user_attrs["trial_id"] for t in study.trials] == ids
    assert done == ids  # progress counts configurations, not Ray trials


def test_adaptive_pack_is_one_until_results_then_sized_to_target_and_balanced(tmp_path):
    searcher = _packing_searcher(tmp_path, pack_size=None, target=18, concurrency=2)
    first = searcher.suggest("ray0")["pack"]
    second = searcher.suggest("ray1")["pack"]
    assert (len(first), len(second)) == (1, 1)  # nothing finished: no estimate yet
    _finish_pack(tmp_path, first, seconds=0.5)  # 0.5 s per configuration
    searcher.on_trial_complete("ray0", {"objective": 0.5})
    # ceil(2.5 / 0.5) = 5 wanted; 16 remaining // (2 x 2) = 4 keeps the tail balanced
    assert len(searcher.suggest("ray2")["pack"]) == 4
    assert searcher.next_pack_size() == 3  # 12 remaining // 4


def test_adaptive_pack_size_follows_the_mean_seconds_of_finished_configurations(tmp_path):
    searcher = _packing_searcher(tmp_path, pack_size=None, target=18, concurrency=1)
    pack = searcher.suggest("ray0")["pack"]
    _finish_pack(tmp_path, pack, seconds=1.0)
    searcher.on_trial_complete("ray0", {"objective": 0.5})
    assert searcher.next_pack_size() == 3  # ceil(2.5 / 1.0); cap 17 // 2 = 8
    pack = searcher.suggest("ray1")["pack"]
    _finish_pack(tmp_path, pack, seconds=0.1)  # mean (1.0 + 3 x 0.1) / 4 = 0.325 s
    searcher.on_trial_complete("ray1", {"objective": 0.5})
    assert searcher.next_pack_size() == 7  # ceil(2.5 / 0.325) = 8, cap 14 // 2 = 7


def test_crash_mid_pack_blames_the_running_configuration_and_asks_the_rest_again(tmp_path):
    searcher = _packing_searcher(tmp_path, pack_size=4, target=8)
    pack = searcher.suggest("ray0")["pack"]
    _finish_pack(tmp_path, pack[:1], seconds=0.1)  # the first finished, the second was running
    searcher.on_trial_complete("ray0", None, error=True)
    study = _load(tmp_path, "s/a")
    by_id = {t.user_attrs["trial_id"]: t for t in study.trials if "trial_id" in t.user_attrs}
    assert by_id[pack[0]["trial_id"]].state == TrialState.COMPLETE
    crashed = by_id[pack[1]["trial_id"]]
    assert crashed.state == TrialState.FAIL and crashed.user_attrs["n_error"] == 1
    assert (
        "Ray trial failed"
        in store.read_part_records(tmp_path, pack[1]["trial_id"])["error"].iloc[0]
    )
    for config in pack[2:]:  # never started: abandoned and queued again
        assert by_id[config["trial_id"]].user_attrs["abandoned"] is True
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert sorted(searcher.done_trial_ids()) == sorted(c["trial_id"] for c in pack[:2])
    rest = []
    while (suggested := searcher.suggest(f"next{len(rest)}")) != Searcher.FINISHED:
        rest.extend(suggested["pack"])
    assert [c["params"] for c in rest[:2]] == [c["params"] for c in pack[2:]]
    assert len(rest) == 6  # 8 - the two done


def test_adaptive_pack_keeps_min_seconds_of_compute_near_the_end(tmp_path):
    searcher = _packing_searcher(tmp_path, pack_size=None, target=18, concurrency=2)
    pack = searcher.suggest("ray0")["pack"]
    _finish_pack(tmp_path, pack, seconds=0.05)  # tiny configurations: 0.05 s each
    searcher.on_trial_complete("ray0", {"objective": 0.5})
    # 17 remaining // (2 x 2) = 4 would balance, but 4 x 0.05 s is below the 0.5 s
    # floor: ceil(0.5 / 0.05) = 10 (a tail of tiny Ray trials costs more than it saves)
    assert len(searcher.suggest("ray1")["pack"]) == 10
    assert searcher.next_pack_size() == 7  # never more than remain


def test_summaries_in_the_final_report_are_told_without_reading_the_parts(tmp_path, monkeypatch):
    searcher = _packing_searcher(tmp_path, pack_size=2, target=2)
    pack = searcher.suggest("ray0")["pack"]
    _finish_pack(tmp_path, pack, seconds=0.1)

    def no_reads(*args):
        raise AssertionError("the driver re-read a part it was sent")

    monkeypatch.setattr(store, "read_part_records", no_reads)
    first, second = (c["trial_id"] for c in pack)
    counts = dict.fromkeys(("converged", "diverged", "stalled", "error"), 0)
    summaries = {
        first: {
            "objective": 0.25,
            "counts": {**counts, "converged": 2},
            "node_id": "n2",
            "seconds": 0.2,
        },
        second: {
            "objective": math.nan,
            "counts": {**counts, "error": 2},
            "node_id": "n2",
            "seconds": 0.2,
        },
    }
    searcher.on_trial_complete("ray0", {"objective": 0.25, SUMMARIES: json.dumps(summaries)})
    by_id = {t.user_attrs["trial_id"]: t for t in _load(tmp_path, "s/a").trials}
    assert by_id[first].state == TrialState.COMPLETE and by_id[first].value == 0.25
    assert (
        by_id[first].user_attrs["n_converged"] == 2 and by_id[first].user_attrs["node_id"] == "n2"
    )
    assert by_id[second].state == TrialState.FAIL and by_id[second].user_attrs["n_error"] == 2
    assert searcher.pace.configs == 2 and searcher.pace.seconds == 0.4


def test_summarize_aggregates_seeds_as_the_part_would():
    rows = [
        {"outcome": "converged", "objective": 0.2, "wall_seconds": 0.1, "node_id": "n1"},
        {"outcome": "diverged", "objective": 2.4, "wall_seconds": 0.05, "node_id": "n1"},
        {"outcome": "error", "objective": math.nan, "wall_seconds": 0.0, "node_id": "n1"},
    ]
    summary = summarize(rows)
    assert summary["objective"] == (0.2 + 2.4) / 2  # the error seed has no objective
    assert summary["counts"] == {
        "converged": 1,
        "diverged": 1,
        "stalled": 0,
        "pruned": 0,
        "error": 1,
    }
    assert summary["node_id"] == "n1" and summary["seconds"] == pytest.approx(0.15)
    assert summarize([{"outcome": "error", "objective": None}])["seconds"] is None
    assert math.isnan(summarize([{"outcome": "error", "objective": None}])["objective"])
    assert summarize([{"outcome": "stalled", "objective": math.inf}])["objective"] == math.inf


def test_a_damaged_part_is_no_longer_done_and_its_parameters_are_asked_again(tmp_path):
    grid = {"lr": [0.01, 0.1, 1.0]}
    labels = [
        _label(
            "a",
            make_sampler("grid", seed=0, grid=grid),
            target=3,
            distributions={"lr": CategoricalDistribution(grid["lr"])},
        )
    ]
    searcher = _searcher(tmp_path, labels)
    configs = [_one(searcher, f"ray{i}") for i in range(3)]
    for i, config in enumerate(configs):
        _finish(tmp_path, config, objective=0.1 * i)
        searcher.on_trial_complete(f"ray{i}", {})
    damaged = configs[1]
    part = store.part_paths(tmp_path, damaged["trial_id"])[0]
    part.write_bytes(part.read_bytes()[:100])  # truncated
    assert store.intact_part(tmp_path, damaged["trial_id"]) is None
    assert store.intact_part(tmp_path, configs[0]["trial_id"]) is not None

    resumed = _searcher(tmp_path, labels)  # a resume
    assert resumed.reran == [damaged["trial_id"]]
    assert not part.exists() and part.with_name(part.name + ".damaged").exists()
    assert sorted(resumed.done_trial_ids()) == sorted(
        c["trial_id"] for c in configs if c is not damaged
    )
    again = _one(resumed, "ray3")
    assert again["params"] == damaged["params"] and again["trial_id"] == "a-0003"
    assert _one(resumed, "ray4") == Searcher.FINISHED
    _finish(tmp_path, again)
    resumed.on_trial_complete("ray3", {})
    assert len(resumed.done_trial_ids()) == 3
    assert _load(tmp_path, "s/a").user_attrs["lost_parts"] == [damaged["trial_id"]]
    assert _searcher(tmp_path, labels).reran == []  # a second resume finds nothing new


def test_a_part_not_written_stops_asking_and_leaves_the_unwritten_to_a_resume(tmp_path):
    searcher = OptunaStudySearcher(
        [_label("a", make_sampler("grid", seed=0, grid=GRID), target=6)],
        study_name="s",
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        direction="minimize",
        results_dir=str(tmp_path),
        pack_size=3,
    )
    pack = searcher.suggest("ray0")["pack"]
    _finish(tmp_path, pack[0])
    failed = "writing the part of a-0001 failed: OSError: [Errno 28] No space left on device"
    searcher.on_trial_complete("ray0", {SUMMARIES: "{}", WRITE_FAILED: failed})
    assert searcher.stopped == failed
    assert searcher.suggest("ray1") == Searcher.FINISHED
    states = [t.state for t in _load(tmp_path, "s/a").trials]
    # the two unwritten are abandoned and their parameters queued for a resume
    assert states == [TrialState.COMPLETE, *[TrialState.FAIL] * 2, *[TrialState.WAITING] * 2]
    assert searcher.done_trial_ids() == [pack[0]["trial_id"]]  # the others: asked on resume
    assert not store.has_part(tmp_path, pack[1]["trial_id"])


def test_a_crash_after_the_last_try_records_tunes_cause(tmp_path):
    text = (
        "Failure # 1 (occurred at 2026-12-02_10-00-00)\nTraceback ...\n"
        "Failure # 2 (occurred at 2026-12-02_10-00-09)\nray.exceptions.ActorDiedError: "
        "The actor died unexpectedly before finishing this task.\n"
    )
    searcher = OptunaStudySearcher(
        [_label("a", make_sampler("grid", seed=0, grid=GRID), target=6)],
        study_name="s",
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        direction="minimize",
        results_dir=str(tmp_path),
        error_text={"ray0": text}.get,
    )
    config = _one(searcher, "ray0")
    searcher.on_trial_complete("ray0", None, error=True)
    (message,) = store.read_part_records(tmp_path, config["trial_id"])["error"]
    assert message == (
        "the Ray trial failed 2 time(s), the last with: ray.exceptions.ActorDiedError: "
        "The actor died unexpectedly before finishing this task."
    )


def test_a_resumed_searcher_counts_the_outcomes_of_what_was_done(tmp_path):
    """What a resumed study's progress starts from: runs per outcome of the
    configurations done before, from the storage."""
    labels = [_label("a", make_sampler("grid", seed=0, grid=GRID), target=6)]
    searcher = _searcher(tmp_path, labels)
    for i, outcome in enumerate(["converged", "diverged", "converged"]):
        config = _one(searcher, f"ray{i}")
        _finish(tmp_path, config, objective=0.5, outcome=outcome)
        searcher.on_trial_complete(f"ray{i}", {})
    _one(searcher, "ray3")  # left running by a killed driver: not counted
    resumed = _searcher(tmp_path, labels)
    counts = resumed.done_counts()
    assert {k: v for k, v in counts.items() if v} == {"converged": 2, "diverged": 1}
