"""run_population against run_trial: members are exactly the runs they stand for."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from robustness.errors import UserInputError
from robustness.runner import TrialConfig, population_key, run_population, run_trial
from robustness.runner import population as population_module
from robustness.runner import trial as trial_module

# what legitimately differs between a member and its sequential run
_TIMING = ("wall_seconds", "node_id")
_FLOATS = (
    "initial_loss",
    "initial_train_acc",
    "initial_val_loss",
    "initial_val_acc",
    "insgd_normalized_fraction",
    "final_train_loss",
    "best_train_loss",
    "final_train_acc",
    "best_train_acc",
    "final_val_loss",
    "best_val_loss",
    "final_val_acc",
    "best_val_acc",
    "objective",
)


def config(**overrides) -> TrialConfig:
    fields = {
        "optimizer": "sgd",
        "lr": 0.1,
        "beta": 0.9,
        "model_args": {"widths": [16]},
        "batch_size": 32,
        "steps": 60,
        "eval_every": 20,
        "seeds": (0,),
        "threads": 1,
        "device": "cpu",
    }
    fields.update(overrides)
    return TrialConfig(**fields)


@pytest.fixture
def population_only(monkeypatch):
    """Fail a test whose population would fall back to run_trial (which would pass
    the equivalence checks trivially); the tests call run_trial directly."""

    def forbidden(*args, **kwargs):
        raise AssertionError("run_population fell back to run_trial")

    monkeypatch.setattr(trial_module, "run_trial", forbidden)


@pytest.fixture
def float64(monkeypatch):
    """Models and data in float64 for both runners."""
    real_load = trial_module.load_dataset

    def load_dataset(*args, **kwargs):
        data = real_load(*args, **kwargs)
        return dataclasses.replace(data, x_train=data.x_train.double(), x_val=data.x_val.double())

    monkeypatch.setattr(trial_module, "load_dataset", load_dataset)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def assert_same_runs(population, sequential, *, rel: float, curves: bool = True) -> None:
    """Same records (floats to ``rel``, everything else exactly) and curves."""
    assert len(population) == len(sequential)
    for pop, seq in zip(population, sequential, strict=True):
        assert pop.config == seq.config
        assert len(pop.records) == len(seq.records)
        for p, s in zip(pop.records, seq.records, strict=True):
            assert list(p) == list(s)
            for key in p:
                if key in _TIMING:
                    continue
                if key in _FLOATS and key.endswith("_acc") and rel > 1e-6:
                    # float32: a near-tie logit may flip one sample's argmax
                    assert abs(p[key] - s[key]) <= 0.005 or _close(p[key], s[key], rel), key
                elif key in _FLOATS:
                    assert _close(p[key], s[key], rel), (key, p[key], s[key], p["run_id"])
                else:
                    assert p[key] == s[key], (key, p[key], s[key], p["run_id"])
        assert _close(pop.objective, seq.objective, rel)
        assert pop.dataset_metadata == seq.dataset_metadata
        if curves:
            assert [(c["run_id"], c["step"]) for c in pop.curves] == [
                (c["run_id"], c["step"]) for c in seq.curves
            ]
            for p, s in zip(pop.curves, seq.curves, strict=True):
                assert p["lr"] == s["lr"] and p["epoch"] == s["epoch"]
                for key in ("train_loss", "val_loss"):
                    assert _close(p[key], s[key], rel), (key, p, s)
                assert _close(p["val_acc"], s["val_acc"], rel) or (
                    rel > 1e-6 and abs(p["val_acc"] - s["val_acc"]) <= 0.005
                )


def _close(a: float, b: float, rel: float) -> bool:
    if isinstance(a, float) and isinstance(b, float) and (math.isnan(a) or math.isnan(b)):
        return math.isnan(a) and math.isnan(b)
    return a == pytest.approx(b, rel=rel, abs=0.0)


def sgd_configs(**common) -> list[TrialConfig]:
    """SGD variety: momentum 0 and not, dampening, weight decay, init schemes,
    several seeds, learning rates from converging to diverging."""
    return [
        config(lr=0.05, beta=0.0, seeds=(0, 1), **common),
        config(lr=0.2, beta=0.9, init="kaiming_normal", **common),
        config(lr=0.1, beta=0.5, optimizer_args={"dampening": 0.3}, seeds=(2,), **common),
        config(
            lr=0.1, beta=0.9, optimizer_args={"weight_decay": 1e-3}, init="xavier_uniform", **common
        ),
        config(lr=3.0, beta=0.9, seeds=(0, 1), **common),
        config(lr=40.0, beta=0.0, **common),
    ]


def test_float64_per_step_losses_of_every_member_match_run_trial(float64, population_only):
    configs = sgd_configs(eval_every=1)  # a curve row per step: that step's minibatch loss
    population = run_population(configs, trial_ids=[f"t{i}" for i in range(len(configs))])
    sequential = [run_trial(c, trial_id=f"t{i}") for i, c in enumerate(configs)]
    assert_same_runs(population, sequential, rel=1e-9)
    steps = [r["steps_done"] for result in population for r in result.records]
    assert max(steps) == 60  # at least 50 steps compared
    assert {r["outcome"] for result in population for r in result.records} >= {
        "converged",
        "diverged",
    }


@pytest.mark.parametrize("nesterov", [False, True])
def test_float32_members_agree_in_outcome_and_diverged_step(population_only, nesterov):
    common = {"optimizer_args": {"nesterov": True}} if nesterov else {}
    configs = [
        config(lr=lr, beta=0.9, seeds=(0, 1), init=init, **common)
        for lr in (0.01, 0.3, 30.0)
        for init in ("default", "kaiming_normal")
    ]
    population = run_population(configs)
    sequential = [run_trial(c) for c in configs]
    assert_same_runs(population, sequential, rel=1e-3)
    outcomes = {r["outcome"] for result in population for r in result.records}
    assert outcomes == {"converged", "diverged"}


def test_members_diverging_at_step_0_at_different_steps_and_in_the_same_step(
    population_only,
):
    configs = [
        config(lr=0.1, init="kaiming_normal", init_args={"gain": 1e20}),  # NaN initial loss
        config(lr=30.0, beta=0.0, seeds=(0, 1), init="kaiming_normal"),
        config(lr=12.0, beta=0.5, seeds=(0, 1)),
        config(lr=8.0, beta=0.5, seeds=(0, 1)),
        config(lr=0.1, seeds=(0, 1)),
    ]
    population = run_population(configs)
    sequential = [run_trial(c) for c in configs]
    assert_same_runs(population, sequential, rel=1e-4)
    steps = [[r["diverged_step"] for r in result.records] for result in population]
    assert steps[0] == [0]
    assert population[0].records[0]["divergence_cause"] == "nonfinite"
    assert steps[1][0] == steps[1][1] == 2  # two members in the same step
    assert steps[2:] == [[3, 5], [4, None], [None, None]]  # later steps; survivors


def test_compaction_does_not_change_the_survivors(population_only):
    survivors = [config(lr=0.1, seeds=(0, 1)), config(lr=0.3, beta=0.5)]
    doomed = [
        config(lr=30.0, seeds=(0, 1, 2), init="kaiming_normal"),
        config(lr=12.0, beta=0.5, seeds=(0, 1)),
    ]
    alone = run_population(survivors)
    mixed = run_population([doomed[0], survivors[0], doomed[1], survivors[1]])
    assert all(r["outcome"] == "diverged" for r in mixed[0].records + mixed[2].records)
    for a, b in zip(alone, [mixed[1], mixed[3]], strict=True):
        assert [{k: v for k, v in r.items() if k not in _TIMING} for r in a.records] == [
            {k: v for k, v in r.items() if k not in _TIMING} for r in b.records
        ]
        assert a.curves == b.curves


def test_each_configuration_is_reported_when_its_seeds_are_done(population_only):
    configs = [config(lr=0.1), config(lr=30.0, seeds=(0, 1), init="kaiming_normal"), config(lr=0.2)]
    reported = []
    results = run_population(configs, trial_ids=["a", "b", "c"], on_result=reported.append)
    # the all-diverged configuration finishes first, the others at the end
    assert [r.records[0]["trial_id"] for r in reported] == ["b", "a", "c"]
    assert [r.records[0]["trial_id"] for r in results] == ["a", "b", "c"]
    walls = [r["wall_seconds"] for result in results for r in result.records]
    assert all(w > 0 for w in walls)
    assert results[1].records[0]["wall_seconds"] < results[0].records[0]["wall_seconds"]


def test_no_population_form_falls_back_to_run_trial_with_identical_results(monkeypatch):
    monkeypatch.setattr(population_module, "has_population_form", lambda *a, **k: False)
    configs = [config(lr=0.1, seeds=(0, 1)), config(lr=0.5, beta=0.0)]
    population = run_population(configs)
    sequential = [run_trial(c) for c in configs]
    for pop, seq in zip(population, sequential, strict=True):
        assert [{k: v for k, v in r.items() if k not in _TIMING} for r in pop.records] == [
            {k: v for k, v in r.items() if k not in _TIMING} for r in seq.records
        ]
        assert pop.curves == seq.curves and pop.objective == seq.objective


def test_population_key_ignores_member_values_only():
    base = config()
    same = config(
        lr=3.0,
        beta=0.0,
        init="orthogonal",
        init_args={"gain": 2.0},
        seeds=(5, 6),
        tags={"x": 1},
        optimizer_args={"weight_decay": 0.1, "dampening": 0.5},
    )
    assert population_key(same) == population_key(base)
    for other in (
        config(model_args={"widths": [32]}),
        config(batch_size=64),
        config(steps=61),
        config(optimizer_args={"nesterov": True}),
        config(optimizer="insgd", optimizer_args={"mode": "paper"}),
    ):
        assert population_key(other) != population_key(base)


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"model_args": {"widths": [32]}}, "differs from configuration 0 in model_args"),
        ({"steps": 30}, "in steps;"),
        ({"optimizer": "insgd"}, "in optimizer;"),
    ],
)
def test_configurations_that_cannot_share_a_population_are_refused(other, message):
    with pytest.raises(UserInputError, match=message):
        run_population([config(), config(**other)])


def test_bad_trial_ids_and_bad_configurations_are_user_errors():
    with pytest.raises(UserInputError, match="2 trial ids for 1 configurations"):
        run_population([config()], trial_ids=["a", "b"])
    with pytest.raises(UserInputError, match="weight_decay must be a finite number >= 0"):
        run_population([config(), config(optimizer_args={"weight_decay": -1.0})])


_OPTIMIZERS = [
    ("novograd", {}, {"beta2": 0.9}),
    ("novograd", {"grad_averaging": True}, {"beta2": 0.5, "weight_decay": 0.01}),
    ("insgd", {"mode": "paper", "norm": "l2"}, {"beta2": 0.9}),
    ("insgd", {"mode": "paper", "norm": "l1"}, {"weight_decay": 0.01, "eps": 0.5}),
    ("insgd", {"mode": "reference", "norm": "l2"}, {"beta2": 0.5}),
    ("insgd", {"mode": "reference", "norm": "l1"}, {"dampening": 0.1}),
]
_MODELS = [
    ("mlp", {"widths": [16]}, 50),
    ("cnn", {"channels": [4, 8], "batchnorm": True}, 50),
    ("resnet20", {}, 6),
]
# every optimizer on the MLP; on the CNN and ResNet-20 (seconds each) one INSGD
# case by default, all with -m slow (tests/test_optim_population.py checks every
# optimizer on a CNN with BatchNorm at the optimizer level, fast)
_CASES = [
    pytest.param(
        *opt,
        *model,
        marks=[]
        if model[0] == "mlp" or (model[0] == "cnn" and opt == _OPTIMIZERS[2])
        else [pytest.mark.slow],
    )
    for model in _MODELS
    for opt in _OPTIMIZERS
]


def members_of(optimizer, shared, varied, model, model_args, steps, eval_every=1):
    """Three configurations: defaults, the varied values, a large lr; two seeds."""
    common = {
        "optimizer": optimizer,
        "model": model,
        "model_args": model_args,
        "steps": steps,
        "eval_every": eval_every,
    }
    beta2 = varied.get("beta2")
    numeric = {k: v for k, v in varied.items() if k != "beta2"}
    return [
        config(lr=0.05, beta=0.9, seeds=(0, 1), optimizer_args=shared, **common),
        config(
            lr=0.02,
            beta=0.0,
            beta2=beta2,
            init="kaiming_normal",
            optimizer_args={**shared, **numeric},
            **common,
        ),
        config(lr=2.0, beta=0.5, seeds=(3,), optimizer_args=shared, **common),
    ]


@pytest.mark.parametrize(("optimizer", "shared", "varied", "model", "model_args", "steps"), _CASES)
def test_float64_every_optimizer_and_model_match_run_trial_step_by_step(
    float64, population_only, optimizer, shared, varied, model, model_args, steps
):
    configs = members_of(optimizer, shared, varied, model, model_args, steps)
    population = run_population(configs)
    sequential = [run_trial(c) for c in configs]
    assert_same_runs(population, sequential, rel=1e-9)


@pytest.mark.parametrize(
    ("model", "model_args", "steps"),
    [_MODELS[0], _MODELS[1], pytest.param(*_MODELS[2], marks=pytest.mark.slow)],
)
def test_float32_insgd_and_novograd_agree_with_run_trial(population_only, model, model_args, steps):
    for optimizer, shared, varied in (_OPTIMIZERS[0], _OPTIMIZERS[2]):
        # away from the stability boundary (the third, large-lr member is chaotic)
        configs = members_of(optimizer, shared, varied, model, model_args, steps, eval_every=25)[:2]
        population = run_population(configs)
        sequential = [run_trial(c) for c in configs]
        assert_same_runs(population, sequential, rel=1e-3)


def test_max_members_splits_into_consecutive_populations(population_only, monkeypatch):
    sizes = []
    real = population_module._Population

    def spy(configs, *args, **kwargs):
        sizes.append([len(c.seeds) for c in configs])
        return real(configs, *args, **kwargs)

    monkeypatch.setattr(population_module, "_Population", spy)
    configs = [config(lr=lr, seeds=(0, 1)) for lr in (0.01, 0.02, 0.03)] + [
        config(lr=0.04, seeds=(0, 1, 2, 3))
    ]
    results = run_population(configs, max_members=5)
    assert sizes == [[2, 2], [2], [4]]  # a configuration is never split
    assert [len(r.records) for r in results] == [2, 2, 2, 4]
    with pytest.raises(UserInputError, match="max_members must be a positive integer"):
        run_population(configs, max_members=0)


def test_auto_trains_dense_models_as_populations_and_cpu_conv_nets_run_by_run(monkeypatch):
    from robustness.runner.population import auto_members
    from robustness.runner.trial import prepared

    mlp = config()
    cnn = config(model="cnn", model_args={"channels": [4]})
    with prepared(mlp) as (device, data, _):
        assert auto_members(mlp, data, device) > 1
        assert auto_members(cnn, data, device) == 1  # measured no faster on a CPU
    calls = []
    monkeypatch.setattr(population_module, "_Population", lambda *a, **k: calls.append(a))
    run_population([cnn, cnn.model_copy(update={"lr": 0.2})], max_members="auto")
    assert calls == []  # run_trial, one configuration at a time
