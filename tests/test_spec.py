"""The study spec and its plan: axes, dropped axes, counts, TrialConfig, loading."""

from __future__ import annotations

import copy
from pathlib import Path

import optuna
import pytest
import yaml

from robustness.errors import UserInputError
from robustness.runner.config import TrialConfig
from robustness.spec import AxisSpec, load_spec, make_plan, parse_spec

BASE: dict = {
    "name": "t",
    "problem": {"dataset": "digits", "model": "mlp", "model_args": {"widths": [8]}, "steps": 20},
    "optimizers": {"sgd": {}, "insgd": {}, "novograd": {}},
    "space": {"lr": [0.01, 0.1], "init": ["default", "kaiming_normal"], "beta": [0.0, 0.9]},
    "seeds": [0, 1],
}


def spec_with(**changes) -> dict:
    """BASE with top-level keys replaced; a ``section__key`` sets one nested key."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if "__" in key:
            section, sub = key.split("__")
            data[section][sub] = value
        else:
            data[key] = value
    return data


def plan_of(**changes):
    return make_plan(parse_spec(spec_with(**changes)))


# --- axes -------------------------------------------------------------------------------


def axis(raw) -> AxisSpec:
    return AxisSpec[float].model_validate(raw)


def test_log_grid_is_evenly_spaced_in_log_scale_with_exact_ends():
    assert axis({"log": [1e-3, 10], "points": 5}).grid_values() == [0.001, 0.01, 0.1, 1.0, 10.0]


def test_linear_grid_includes_both_ends():
    assert axis({"linear": [0, 1], "points": 5}).grid_values() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_int_range_enumerates_every_integer_and_samples_integers():
    spec = AxisSpec[int].model_validate({"int": [2, 5]})
    assert spec.grid_values() == [2, 3, 4, 5]
    assert spec.distribution() == optuna.distributions.IntDistribution(2, 5)


def test_scalar_and_choice_are_value_lists():
    assert axis(0.5).grid_values() == [0.5]
    assert axis({"choice": [0.1, 0.2]}).grid_values() == [0.1, 0.2]


def test_exponent_without_dot_is_a_number_although_yaml_reads_a_string():
    data = yaml.safe_load("lr: [1e-3]\nweight_decay: {log: [1e-5, 1e-3], points: 3}\n")
    assert data["lr"] == ["1e-3"]  # PyYAML's YAML 1.1 reading
    spec = parse_spec(spec_with(space=data))
    assert spec.space.lr.grid_values() == [0.001]
    assert spec.space.given()["weight_decay"].grid_values() == [1e-5, 1e-4, 1e-3]


def test_string_extra_axis_is_swept_as_strings():
    plan = plan_of(optimizers={"insgd": {}}, space={"lr": [0.1], "norm": ["l1", "l2"]})
    assert plan.grid("insgd") == {"lr": [0.1], "norm": ["l1", "l2"]}
    assert plan.trial_config("insgd", {"lr": 0.1, "norm": "l1"}).optimizer_args == {"norm": "l1"}


def test_distributions_map_to_optuna():
    assert axis({"log": [1e-4, 1]}).distribution() == optuna.distributions.FloatDistribution(
        1e-4, 1.0, log=True
    )
    assert axis({"uniform": [0, 0.5]}).distribution() == optuna.distributions.FloatDistribution(
        0.0, 0.5
    )
    grid = axis({"log": [1e-2, 1], "points": 3})
    assert grid.distribution() == optuna.distributions.CategoricalDistribution([0.01, 0.1, 1.0])
    assert axis({"uniform": [0, 0.5]}).size() is None


# --- plan ---------------------------------------------------------------------------------


def test_plan_counts_configurations_seeds_and_runs():
    plan = plan_of()
    assert plan.labels == ("sgd", "insgd", "novograd")
    assert [plan.n_configurations(label) for label in plan.labels] == [8, 8, 8]
    assert (plan.n_configurations(), plan.n_seeds, plan.n_runs()) == (24, 2, 48)


def test_axis_that_does_not_apply_to_sgd_is_dropped_without_duplicates():
    plan = plan_of(space__beta2=[0.9, 0.99])
    sgd_points = plan.grid_points("sgd")
    assert plan.grid("sgd").keys() == {"lr", "init", "beta"}
    assert len(sgd_points) == 8
    assert len({tuple(sorted(p.items())) for p in sgd_points}) == 8
    assert plan.grid("insgd")["beta2"] == [0.9, 0.99]
    assert plan.n_configurations("novograd") == 16
    assert plan.optimizer("sgd").dropped == (("beta2", "does not apply to sgd"),)
    assert "beta2  not swept: does not apply to sgd" in plan.describe()
    assert "total: 40 configurations x 2 seeds = 80 runs" in plan.describe()


def test_override_replaces_a_study_axis_for_one_label_only():
    plan = plan_of(optimizers={"sgd": {}, "novograd": {"space": {"lr": [0.001]}}})
    assert plan.grid("sgd")["lr"] == [0.01, 0.1]
    assert plan.grid("novograd")["lr"] == [0.001]
    assert plan.optimizer("novograd").sources["lr"] == "optimizers.novograd.space.lr"


def test_null_override_drops_an_extra_axis_for_that_label():
    plan = plan_of(
        space={"lr": [0.1], "eps": [1e-8, 1e-6]},
        optimizers={"insgd": {"space": {"eps": None}}, "novograd": {}},
    )
    assert "eps" not in plan.grid("insgd")
    assert plan.grid("novograd")["eps"] == [1e-8, 1e-6]


def test_grid_is_optuna_grid_sampler_search_space():
    plan = plan_of()
    seen = []

    def objective(trial: optuna.Trial) -> float:
        params = {name: trial.suggest_categorical(name, d.choices) for name, d in dists.items()}
        seen.append(tuple(sorted(params.items())))
        return 0.0

    dists = plan.distributions("sgd")
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(plan.grid("sgd"), seed=0))
    study.optimize(objective, n_trials=100)
    assert len(seen) == plan.n_configurations("sgd") == 8
    assert sorted(seen) == sorted(tuple(sorted(p.items())) for p in plan.grid_points("sgd"))


def test_non_grid_budget_is_n_trials_per_optimizer():
    plan = plan_of(space__lr={"log": [1e-4, 1]}, search={"sampler": "tpe", "n_trials": 7})
    assert [plan.n_configurations(label) for label in plan.labels] == [7, 7, 7]
    assert plan.n_runs() == 42
    assert plan.distributions("sgd")["lr"] == optuna.distributions.FloatDistribution(
        1e-4, 1.0, log=True
    )


def test_trial_config_maps_axes_fixed_kwargs_and_extra_axes():
    plan = plan_of(
        optimizers={"insgd_ref": {"base": "insgd", "mode": "reference"}},
        space={"lr": [0.1], "beta": [0.9], "beta2": [0.95], "weight_decay": [0.0, 1e-4]},
        problem={**BASE["problem"], "schedule": {"name": "step", "milestones": [0.5]}},
        search={"objective": "best_val_acc"},
    )
    config = plan.trial_config(
        "insgd_ref", {"lr": 0.1, "beta": 0.9, "beta2": 0.95, "weight_decay": 1e-4}
    )
    assert isinstance(config, TrialConfig)
    assert (config.optimizer, config.lr, config.beta, config.beta2) == ("insgd", 0.1, 0.9, 0.95)
    assert config.init == "default"
    assert config.optimizer_args == {"mode": "reference", "weight_decay": 1e-4}
    assert config.tags == {"weight_decay": 1e-4}
    assert (config.model, config.model_args, config.dataset) == ("mlp", {"widths": [8]}, "digits")
    assert (config.steps, config.seeds, config.objective) == (20, (0, 1), "best_val_acc")
    assert config.schedule.name == "step" and config.schedule.milestones == (0.5,)


def test_trial_config_for_sgd_leaves_beta2_unset():
    plan = plan_of(space__beta2=[0.9])
    config = plan.trial_config("sgd", {"lr": 0.1, "init": "kaiming_normal", "beta": 0.0})
    assert (config.beta, config.beta2, config.init) == (0.0, None, "kaiming_normal")


def test_trial_config_refuses_params_that_do_not_match_the_axes():
    plan = plan_of(space__beta2=[0.9])
    with pytest.raises(ValueError, match="exactly the axes"):
        plan.trial_config("sgd", {"lr": 0.1, "init": "default", "beta": 0.0, "beta2": 0.9})


# --- spec values ----------------------------------------------------------------------------


def test_direction_is_derived_from_the_objective():
    assert parse_spec(spec_with(search={"objective": "best_val_acc"})).search.direction == (
        "maximize"
    )
    assert parse_spec(spec_with()).search.direction == "minimize"


def test_every_problem_is_reported_on_its_own_line():
    bad = spec_with(seeds=[], space__lr=[-1.0], search={"sampler": "nope"})
    with pytest.raises(UserInputError) as info:
        parse_spec(bad, "bad.yaml")
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid study spec bad.yaml:"
    assert len(lines) == 4
    assert any(line.startswith("  - space.lr[0]: ") for line in lines)
    assert any(line.startswith("  - seeds: ") for line in lines)
    assert any(line.startswith("  - search.sampler: ") for line in lines)


def test_resolved_spec_round_trips_through_yaml():
    spec = parse_spec(
        spec_with(
            space={"lr": {"log": [1e-3, 1], "points": 4}, "weight_decay": [0.0, 1e-4]},
            optimizers={"sgd": {}, "novograd": {"grad_averaging": True, "space": {"lr": [0.01]}}},
        )
    )
    data = yaml.safe_load(yaml.safe_dump(spec.resolved()))
    assert data["space"]["lr"] == {"log": [0.001, 1.0], "points": 4}
    assert data["search"]["direction"] == "minimize"
    assert parse_spec(data) == spec


def test_bundled_study_is_found_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_spec("quickstart").name == "quickstart"
    assert load_spec("quickstart.yaml").name == "quickstart"


def test_a_file_path_wins_over_a_bundled_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("quickstart").write_text(yaml.safe_dump(spec_with(name="mine")))
    assert load_spec("quickstart").name == "mine"
