"""End to end through Ray Tune + Optuna: one small study (2 optimizer labels, 6
configurations, 1 seed, 30 steps on digits) run once for the module, then its
results directory checked; plus the checks that refuse a run before it starts."""

from __future__ import annotations

import math

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from robustness.results import store
from robustness.results.schema import CURVE_COLUMNS, SPEC_FILE, TRIAL_COLUMNS


def tiny_problem(steps: int = 30, eval_every: int = 10) -> dict:
    """The ``problem`` of the engine's test studies: a 16-wide MLP on digits, batch 64."""
    return {
        "dataset": "digits",
        "model": "mlp",
        "model_args": {"widths": [16]},
        "batch_size": 64,
        "steps": steps,
        "eval_every": eval_every,
    }


# sgd: beta 0 with nesterov is refused by torch at run time (the plan probes each
# axis alone, so it passes validation): one configuration errors, the study goes on.
SMALL = {
    "name": "tiny",
    "problem": tiny_problem(),
    "optimizers": {
        "sgd": {"space": {"lr": [0.1], "beta": [0.9, 0.0], "nesterov": [False, True]}},
        "novograd": {},
    },
    "space": {"lr": [0.01, 0.1]},
    "seeds": [0],
    "resources": {"cpu": 1, "max_concurrent": 2, "configs_per_trial": 1},
}


def write_spec(path, spec=SMALL, **changes):
    data = {**spec, **changes}
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module, declared without GPUs whatever the machine has
    (so the checks below mean the same on a CUDA machine); run_study reuses it and
    leaves it running."""
    import ray

    from robustness.engine._cluster import connect

    owned = connect(None, num_cpus=2, num_gpus=0)
    yield
    if owned:
        ray.shutdown()


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory, ray_session):
    """A tiny study run once for the module: its results directory, and the parts the
    driver read back from disk while it ran."""
    from robustness.engine import run_study

    root = tmp_path_factory.mktemp("engine")
    spec = write_spec(root / "tiny.yaml")
    reads = []
    read_part_records = store.read_part_records
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            store, "read_part_records", lambda *a: reads.append(a[1]) or read_part_records(*a)
        )
        out = run_study(str(spec), root / "out", progress=False, report=False)
    return out, reads


@pytest.fixture(scope="module")
def study_dir(engine_run):
    return engine_run[0]


def test_the_driver_tells_optuna_from_the_trials_reports_not_from_disk(engine_run):
    study_dir, reads = engine_run
    assert len(list((study_dir / "parts").glob("*.trials.arrow"))) == 6
    assert reads == []  # every configuration's summary came with its Ray trial's result


def test_results_directory_holds_the_contract_files(study_dir):
    names = {p.name for p in study_dir.iterdir()}
    assert {"spec.yaml", "trials.parquet", "curves.parquet", "optuna.db", "ray", "parts"} <= names
    spec = yaml.safe_load((study_dir / SPEC_FILE).read_text())
    assert spec["name"] == "tiny" and spec["seeds"] == [0]
    prov = spec["provenance"]
    assert set(prov["versions"]) >= {"torch", "ray", "optuna", "pandas", "optim-robustness"}
    assert prov["finished"] is not None and prov["started"] <= prov["finished"]


def test_trials_table_has_schema_dtypes_and_each_run_once(study_dir):
    trials = pd.read_parquet(study_dir / "trials.parquet")
    for column, dtype in TRIAL_COLUMNS.items():
        assert str(trials[column].dtype) == str(pd.Series([], dtype=dtype).dtype), column
    assert len(trials) == 6 and trials["run_id"].is_unique
    assert sorted(trials["optimizer"].unique()) == ["novograd", "sgd"]
    assert set(trials["study"]) == {"tiny"}
    assert trials["node_id"].notna().all()
    assert "nesterov" in trials.columns  # an extra swept axis is its own column
    novograd = trials[trials["optimizer"] == "novograd"]
    assert sorted(novograd["lr"]) == [0.01, 0.1]
    assert (novograd["steps_done"] == 30).all()
    curves = pd.read_parquet(study_dir / "curves.parquet")
    assert list(curves.columns) == list(CURVE_COLUMNS)
    assert set(curves["run_id"]) <= set(trials["run_id"])
    assert set(curves["run_id"]) >= set(novograd["run_id"])


def test_erroring_configuration_is_recorded_and_the_study_goes_on(study_dir):
    trials = pd.read_parquet(study_dir / "trials.parquet")
    errors = trials[trials["outcome"] == "error"]
    assert len(errors) == 1
    (row,) = errors.to_dict("records")
    assert row["beta"] == 0.0 and row["nesterov"] == True  # noqa: E712
    assert "nesterov" in row["error"]
    assert (trials["outcome"] != "error").sum() == 5


def test_optuna_storage_is_loadable_with_no_running_trial_and_no_nan(study_dir):
    storage = f"sqlite:///{study_dir / 'optuna.db'}"
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == ["tiny/novograd", "tiny/sgd"]
    trial_ids = set()
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        for trial in study.trials:
            assert trial.state in (TrialState.COMPLETE, TrialState.FAIL)
            assert trial.value is None or math.isfinite(trial.value)
            trial_ids.add(trial.user_attrs["trial_id"])
    trials = pd.read_parquet(study_dir / "trials.parquet")
    assert trial_ids == set(trials["trial_id"])
    sgd = optuna.load_study(study_name="tiny/sgd", storage=storage)
    assert len(sgd.trials) == 4 and "nesterov" in sgd.trials[0].params


def test_gpu_request_on_a_cluster_without_gpus_fails_fast(tmp_path, ray_session, cli):
    spec = write_spec(tmp_path / "gpu.yaml", resources={"cpu": 1, "gpu": 0.5})
    result = cli("run", spec, "--out", tmp_path / "out", "--no-report", "--quiet")
    assert result.code == 2
    assert "resources.gpu" in result.err and "no GPUs" in result.err
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_more_cpus_per_trial_than_any_node_has_fails_fast(tmp_path, ray_session, cli):
    spec = write_spec(tmp_path / "cpu.yaml", resources={"cpu": 64})
    result = cli("run", spec, "--out", tmp_path / "out", "--no-report", "--quiet")
    assert result.code == 2 and "resources.cpu" in result.err


@pytest.mark.parametrize(
    ("device", "gpu", "expected"),
    [("auto", 0.5, "cuda"), ("auto", 0.0, "cpu"), ("cuda", 1.0, "cuda"), ("cpu", 0.0, "cpu")],
)
def test_a_trial_trains_on_the_device_its_resources_give_it(tmp_path, device, gpu, expected):
    from robustness.engine._study import _label_search
    from robustness.spec import load_spec, make_plan

    problem = {**SMALL["problem"], "device": device}
    resources = {**SMALL["resources"], "gpu": gpu}
    spec = load_spec(write_spec(tmp_path / "tiny.yaml", problem=problem, resources=resources))
    plan = make_plan(spec)
    entry = _label_search(spec, plan, "novograd", tmp_path, gpu=gpu, threads=1, scheduler=None)
    payload = entry.make_config("novograd-0000", {"lr": 0.1})
    assert payload["trial"]["device"] == expected
    assert payload["trial"]["threads"] == 1 and payload["trial"]["seeds"] == [0]


def _ray_trial_dirs(out):
    (session,) = (out / "ray").iterdir()
    return [p for p in session.iterdir() if p.is_dir()]


def test_packed_study_gives_the_same_runs_as_one_configuration_per_trial(
    tmp_path, ray_session, study_dir
):
    """Packing regroups configurations into Ray trials and changes nothing else: on CPU
    the same spec and seeds give identical per-run results (timing and node aside)."""
    from robustness.engine import run_study

    resources = {**SMALL["resources"], "configs_per_trial": 4}
    spec = write_spec(tmp_path / "packed.yaml", resources=resources)
    packed = run_study(str(spec), tmp_path / "out", progress=False, report=False)
    assert len(_ray_trial_dirs(study_dir)) == 6  # one configuration per Ray trial
    assert len(_ray_trial_dirs(packed)) == 2  # packs of 4 and 2

    def runs(out):
        trials = pd.read_parquet(out / "trials.parquet")
        trials = trials.drop(columns=["wall_seconds", "node_id"])
        return trials.sort_values("run_id").reset_index(drop=True)

    one, four = runs(study_dir), runs(packed)
    assert len(four) == 6 and list(four["run_id"]) == list(one["run_id"])
    pd.testing.assert_frame_equal(one, four)  # trial ids, outcomes and every metric
    assert (four["outcome"] == "error").sum() == 1  # the erroring configuration only
    curves_one = pd.read_parquet(study_dir / "curves.parquet").sort_values(["run_id", "step"])
    curves_four = pd.read_parquet(packed / "curves.parquet").sort_values(["run_id", "step"])
    pd.testing.assert_frame_equal(
        curves_one.reset_index(drop=True), curves_four.reset_index(drop=True)
    )
    study = optuna.load_study(study_name="tiny/sgd", storage=f"sqlite:///{packed / 'optuna.db'}")
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 3 + ["FAIL"]
    assert all(t.user_attrs["node_id"] for t in study.trials)


def test_asha_prunes_in_budget_fractions_and_every_configuration_x_seed_is_a_row(
    tmp_path, ray_session
):
    from robustness.engine import run_study

    spec = write_spec(
        tmp_path / "asha.yaml",
        optimizers={"novograd": {}},
        space={"lr": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]},
        problem={**SMALL["problem"], "steps": 60},
        seeds=[0, 1],
        search={"sampler": "grid", "scheduler": {"name": "asha", "grace_period": 0.5}},
    )
    out = run_study(str(spec), tmp_path / "out", progress=False, report=False)
    study = optuna.load_study(study_name="tiny/novograd", storage=f"sqlite:///{out / 'optuna.db'}")
    states = {t.user_attrs["trial_id"]: t.state for t in study.trials}
    assert len(states) == 6
    assert set(states.values()) == {TrialState.COMPLETE, TrialState.PRUNED}
    trials = pd.read_parquet(out / "trials.parquet")
    # nothing planned is missing: 6 configurations x 2 seeds, pruned ones included
    assert len(trials) == 12 and trials["run_id"].is_unique
    assert sorted(trials["trial_id"].unique()) == sorted(states)
    curves = pd.read_parquet(out / "curves.parquet")
    for trial_id, state in states.items():
        runs = trials[trials["trial_id"] == trial_id].sort_values("seed")
        if state == TrialState.COMPLETE:
            assert not runs["outcome"].eq("pruned").any()
            continue
        assert runs["outcome"].iloc[-1] == "pruned"
        stopped = runs[runs["outcome"] == "pruned"].iloc[0]
        seed_index = int(runs["seed"].tolist().index(stopped["seed"]))
        # grace_period 0.5 is half of one run's budget (30 of 60 steps), so no
        # configuration is stopped before it: never at step 0, never at step 10 or 20
        assert seed_index * 60 + stopped["steps_done"] >= 30
        if stopped["steps_done"] > 0:  # its partial curve, up to the step it reached
            steps = curves.loc[curves["run_id"] == stopped["run_id"], "step"].tolist()
            assert steps[0] == 0 and steps[-1] == stopped["steps_done"] < 60
        later = runs[runs["seed"] > stopped["seed"]]
        assert (later["outcome"] == "pruned").all() and (later["steps_done"] == 0).all()
    # the stopped workers wrote their parts themselves: partial curves, not placeholders
    assert (trials.loc[trials["outcome"] == "pruned", "steps_done"] > 0).any()
