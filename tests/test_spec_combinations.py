"""Keys valid one at a time and wrong together are refused at validation (exit 2),
each with one line naming both keys and their values, and no traceback; the
combinations that are fine stay accepted."""

from __future__ import annotations

import pytest
import yaml

from robustness.data import TASKS, load_dataset
from robustness.spec import make_plan, parse_spec
from tests.test_spec import spec_with

ASHA = {"scheduler": "asha"}

CONFLICTS = {
    "accuracy objective on a regression dataset": (
        spec_with(
            problem__dataset="linreg",
            problem__model="linear",
            problem__model_args={},
            search={"objective": "final_val_acc"},
        ),
        [
            "search.objective: objective 'final_val_acc' is not allowed for a regression task",
            "problem.dataset 'linreg' is regression",
            "allowed: final_val_loss",
        ],
    ),
    "mse loss on a classification dataset": (
        spec_with(problem__loss="mse"),
        [
            "problem.loss: loss 'mse' does not fit a classification task; allowed: auto, "
            "cross_entropy (problem.dataset 'digits' is classification)"
        ],
    ),
    "warmup as long as the step budget": (
        spec_with(problem__schedule={"name": "cosine", "warmup_steps": 20}),
        [
            "problem.schedule.warmup_steps: 20 with problem.steps: 20",
            "must be smaller than the step budget",
        ],
    ),
    "milestones without the step schedule": (
        spec_with(problem__schedule={"name": "cosine", "milestones": [0.5]}),
        [
            "problem.schedule.milestones: [0.5] apply only to the 'step' schedule, and "
            "problem.schedule.name is 'cosine'"
        ],
    ),
    "gamma without the step schedule": (
        spec_with(problem__schedule={"gamma": 0.5}),
        [
            "problem.schedule.gamma: 0.5 applies only to the 'step' schedule, and "
            "problem.schedule.name is 'constant'"
        ],
    ),
    "more threads than reserved CPUs": (
        spec_with(problem__threads=4, resources={"cpu": 2}),
        ["problem.threads: 4 is more than resources.cpu: 2", "allowed: at most 2"],
    ),
    "asha grace period of the whole configuration": (
        spec_with(
            search={"scheduler": {"name": "asha", "grace_period": 2.0}}, problem__eval_every=5
        ),
        [
            "search.scheduler.grace_period: 2 runs is not below the 2 seed(s)",
            "asha could stop no configuration",
        ],
    ),
    "asha with no evaluation before the end": (
        spec_with(search=ASHA, seeds=[0], problem__eval_every=20),
        [
            "search.scheduler: asha decides at evaluations, but problem.eval_every: 20 with "
            "problem.steps: 20 and one seed leaves none"
        ],
    ),
    "cmaes with list axes only": (
        spec_with(search={"sampler": "cmaes", "n_trials": 4}),
        [
            "search.sampler: 'cmaes' searches numeric ranges only, and every axis of "
            "optimizers.sgd (lr, init, beta) is a set of values"
        ],
    ),
    "packs with asha": (
        spec_with(search=ASHA, problem__eval_every=5, resources={"configs_per_trial": 4}),
        [
            "resources.configs_per_trial: 4 configurations per Ray trial cannot be used with "
            "the asha scheduler"
        ],
    ),
    "n_trials with grid": (
        spec_with(search={"sampler": "grid", "n_trials": 5}),
        ["search: n_trials is not used by the grid sampler"],
    ),
}


@pytest.mark.parametrize("case", list(CONFLICTS))
def test_conflicting_keys_exit_2_naming_both(cli, tmp_path, case):
    data, expected = CONFLICTS[case]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    result = cli("validate", path)
    assert result.code == 2, (result.out, result.err)
    assert "Traceback" not in result.err and result.out == ""
    message = " ".join(result.err.split())
    for text in expected:
        assert " ".join(text.split()) in message, message


@pytest.mark.parametrize(
    "changes",
    [
        {"problem__eval_every": 500},  # no curve in between: allowed without a scheduler
        {"problem__schedule": {"name": "step", "milestones": [0.5], "gamma": 0.5}},
        {"problem__schedule": {"name": "cosine", "warmup_steps": 19}},
        {"problem__threads": 2, "resources": {"cpu": 2}},
        {"search": {"scheduler": "asha"}, "problem__eval_every": 20},  # seed 0 ends before 1
        {"search": {"sampler": "cmaes", "n_trials": 4}, "space__lr": {"log": [1e-3, 1.0]}},
        {
            "problem__dataset": "linreg",
            "problem__model": "linear",
            "problem__model_args": {},
            "problem__loss": "mse",
        },
    ],
)
def test_combinations_that_work_are_accepted(changes):
    make_plan(parse_spec(spec_with(**changes)))


@pytest.mark.parametrize("name", ["digits", "blobs", "linreg", "grammar"])
def test_dataset_tasks_known_without_loading_match_the_datasets(name):
    assert TASKS[name] == load_dataset(name).task
