"""Every bundled study validates, with the plan size it is meant to have."""

from __future__ import annotations

import pytest

from robustness.spec import bundled_studies, load_spec, make_plan

# name -> (configurations per label, seeds)
EXPECTED = {
    "quickstart": ({"sgd": 99, "insgd": 99, "novograd": 99}, 2),
    "insgd_modes": ({"insgd_paper": 44, "insgd_reference": 44, "sgd": 44}, 3),
    "cifar10_resnet20": ({"sgd": 21, "insgd": 21, "novograd": 21}, 3),
    "tpe_best": ({"sgd": 40, "insgd": 40, "novograd": 40}, 2),
    "lm_novograd": ({"novograd": 10, "adamw": 10, "sgd": 10}, 1),
    "stability_boundary": ({"sgd": 81, "insgd": 81, "novograd": 81}, 2),  # at most
}


def test_every_bundled_study_has_an_expected_plan():
    assert set(bundled_studies()) == set(EXPECTED)
    assert all(bundled_studies().values())  # each has a description


@pytest.mark.parametrize("name", list(EXPECTED))
def test_bundled_study_validates_with_its_plan_size(name):
    per_label, seeds = EXPECTED[name]
    plan = make_plan(load_spec(name))
    assert {label: plan.n_configurations(label) for label in plan.labels} == per_label
    assert plan.n_seeds == seeds
    assert plan.n_runs() == sum(per_label.values()) * seeds


def test_quickstart_is_the_small_grid_the_demo_needs():
    plan = make_plan(load_spec("quickstart"))
    spec = plan.spec
    assert (spec.problem.dataset, spec.search.sampler) == ("digits", "grid")
    assert spec.problem.steps <= 300
    for label in ("sgd", "insgd", "novograd"):
        grid = plan.grid(label)
        assert plan.optimizer(label).axes["lr"].form == "log grid"
        assert len(grid["lr"]) >= 7 and len(grid["init"]) >= 3 and len(grid["beta"]) >= 3
        # wide enough to cross every optimizer's divergence boundary (checked with run_trial)
        assert min(grid["lr"]) <= 1e-3 and max(grid["lr"]) >= 10
        assert "beta2" not in grid  # same grid size for SGD as for the others


def test_insgd_modes_compares_paper_and_reference_modes_with_sgd_on_one_grid():
    plan = make_plan(load_spec("insgd_modes"))
    assert plan.optimizer("insgd_paper").fixed_args == {"mode": "paper"}
    assert plan.optimizer("insgd_reference").fixed_args == {"mode": "reference"}
    assert plan.grid("insgd_paper") == plan.grid("insgd_reference") == plan.grid("sgd")
    assert "smaller effective learning rate" in " ".join(plan.spec.description.split())


def test_cifar10_resnet20_is_the_papers_recipe_on_fractional_gpus():
    plan = make_plan(load_spec("cifar10_resnet20"))
    config = plan.trial_config("sgd", {"lr": 0.1, "init": "default", "beta": 0.9})
    assert (config.model, config.dataset, config.batch_size) == ("resnet20", "cifar10", 128)
    assert config.optimizer_args == {"weight_decay": 5e-4}
    assert config.schedule.milestones == (0.5, 0.75) and config.schedule.gamma == 0.1
    assert 0.1 in plan.grid("sgd")["lr"]
    assert plan.spec.resources.gpu == 0.25


def test_lm_novograd_is_the_transformer_on_grammar_over_lr_and_beta():
    plan = make_plan(load_spec("lm_novograd"))
    config = plan.trial_config("adamw", {"lr": 0.01, "beta": 0.9})
    assert (config.model, config.dataset, config.objective) == (
        "transformer",
        "grammar",
        "final_val_loss",
    )
    for label in ("novograd", "adamw", "sgd"):
        grid = plan.grid(label)
        assert set(grid) == {"lr", "beta"}
        # decade steps that hold each optimizer's good learning rates (AdamW, NovoGrad
        # near 1e-2, SGD near 1e-1) and reach past them on both sides
        assert grid["lr"] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
        assert grid["beta"] == [0.0, 0.9]


def test_stability_boundary_asks_the_quickstarts_question_with_fewer_runs():
    boundary, grid = make_plan(load_spec("stability_boundary")), make_plan(load_spec("quickstart"))
    assert boundary.spec.problem == grid.spec.problem
    assert boundary.spec.seeds == grid.spec.seeds and boundary.labels == grid.labels
    assert (boundary.spec.search.sampler, boundary.spec.search.resolution) == ("boundary", 1.1)
    for label in boundary.labels:
        assert boundary.n_cells(label) == 9  # init x beta, as in the quickstart
        assert boundary.optimizer(label).axes["lr"].extreme_values() == [1e-3, 1e2]
    assert boundary.n_runs() < grid.n_runs()  # 486 at most against 594
