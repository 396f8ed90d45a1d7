"""`robustness validate`: a good spec prints its plan; every kind of bad spec exits 2
with one line per problem naming the key path, the value and what is allowed."""

from __future__ import annotations

import pytest
import yaml

from tests.test_spec import spec_with


def write(tmp_path, data, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def test_validate_prints_the_plan_of_a_good_spec(cli):
    result = cli("validate", "quickstart")
    assert result.code == 0, result.err
    assert "sgd: 99 configurations, 198 runs" in result.out
    assert (
        "lr    log grid, 11 values: 0.001, 0.00316, 0.01, 0.0316, 0.1, 0.316, 1, 3.16, 10, 31.6, 100"
        in result.out
    )
    assert "total: 297 configurations x 2 seeds = 594 runs" in result.out


BAD_SPECS = {
    "unknown key": (
        spec_with(problem__batchsize=32),
        ["problem: unknown key 'batchsize' (did you mean 'batch_size'?); allowed: dataset,"],
    ),
    "unknown top-level key": (spec_with(seed=[0]), ["unknown key 'seed'", "seeds"]),
    "baseline not an optimizer": (
        spec_with(analysis={"baseline": "adam"}),
        ["analysis.baseline 'adam' is not an optimizer of this study; allowed: sgd"],
    ),
    "wrong type": (
        spec_with(problem__steps="many"),
        ["problem.steps: ", "valid integer", "'many'"],
    ),
    "lr <= 0 in a list": (
        spec_with(space__lr=[0.1, 0.0]),
        ["space.lr[1]: Input should be greater than 0 (got 0.0)"],
    ),
    "log grid lo >= hi": (
        spec_with(space__lr={"log": [1.0, 0.1], "points": 3}),
        ["space.lr: log: [LO, HI] needs LO < HI, got [1.0, 0.1]"],
    ),
    "points < 1": (
        spec_with(space__lr={"log": [1e-3, 1.0], "points": 0}),
        ["space.lr.points: Input should be greater than 0 (got 0)"],
    ),
    "unknown axis form": (
        spec_with(space__lr={"logscale": [1e-3, 1.0]}),
        ["space.lr: unknown key 'logscale'", "allowed: log, linear, points"],
    ),
    "beta >= 1": (
        spec_with(space__beta=[0.9, 1.0]),
        ["space.beta[1]: Input should be less than 1 (got 1.0)"],
    ),
    "unknown sampler": (
        spec_with(search={"sampler": "annealing"}),
        [
            "search.sampler: Input should be 'grid', 'random', 'tpe', 'gp', 'qmc', 'cmaes' or 'boundary'"
        ],
    ),
    "grid with a distribution axis": (
        spec_with(space__lr={"log": [1e-3, 1.0]}),
        ["space.lr: a log-uniform distribution cannot be enumerated by the grid sampler"],
    ),
    "non-grid sampler without n_trials": (
        spec_with(search={"sampler": "random"}),
        ["search: the 'random' sampler needs n_trials"],
    ),
    "grid sampler with n_trials": (
        spec_with(search={"sampler": "grid", "n_trials": 5}),
        ["search: n_trials is not used by the grid sampler"],
    ),
    "unknown objective": (
        spec_with(search={"objective": "val_loss"}),
        ["search.objective: unknown objective 'val_loss'; allowed: final_train_loss,"],
    ),
    "direction contradicting objective": (
        spec_with(search={"objective": "final_val_acc", "direction": "minimize"}),
        ["direction 'minimize' contradicts objective 'final_val_acc'"],
    ),
    "unknown optimizer label without base": (
        spec_with(optimizers={"lion": {}}),
        [
            "optimizers.lion: 'lion' is not an optimizer (sgd, insgd, novograd, adam, adamw)",
            "base:",
        ],
    ),
    "unknown base": (
        spec_with(optimizers={"mine": {"base": "lion"}}),
        ["optimizers.mine.base: unknown optimizer 'lion'; allowed: sgd, insgd, novograd, adam"],
    ),
    "bad optimizer kwarg": (
        spec_with(optimizers={"sgd": {"nesterovv": True}}),
        ["optimizers.sgd: unknown argument(s) 'nesterovv' for optimizer 'sgd'; allowed:"],
    ),
    "bad optimizer kwarg value": (
        spec_with(optimizers={"insgd": {"mode": "fast"}}),
        ["optimizers.insgd: ", "fast"],
    ),
    "swept axis written as a fixed kwarg": (
        spec_with(optimizers={"sgd": {"beta": 0.9}}),
        ["optimizers.sgd: beta: swept axes, not fixed arguments", "space: {beta: [0.9]}"],
    ),
    "extra axis an optimizer does not take": (
        spec_with(space__eps=[1e-8]),
        ["space.eps: unknown argument(s) 'eps' for optimizer 'sgd'", "under optimizers.sgd"],
    ),
    "kwarg both fixed and swept": (
        spec_with(optimizers={"sgd": {"weight_decay": 0.1}}, space__weight_decay=[0.0, 1e-4]),
        ["optimizers.sgd.weight_decay: fixed here and swept at space.weight_decay"],
    ),
    "beta2 override for sgd": (
        spec_with(optimizers={"sgd": {"space": {"beta2": [0.9]}}}),
        ["optimizers.sgd.space.beta2: beta2 does not apply to sgd (its axes: beta)"],
    ),
    "label that cannot name a column": (
        spec_with(optimizers={"my sgd": {"base": "sgd"}}),
        ["optimizers.my sgd (the name): a name is letters, digits, '_', '.' and '-'"],
    ),
    "empty seeds": (spec_with(seeds=[]), ["seeds: List should have at least 1 item"]),
    "repeated seeds": (spec_with(seeds=[0, 1, 0]), ["seeds: seeds repeat: [0]"]),
    "both steps and epochs": (
        spec_with(problem__epochs=2),
        ["problem: give one budget, 'steps' or 'epochs', not both"],
    ),
    "no budget": (
        spec_with(problem={"dataset": "digits", "model": "mlp"}),
        ["problem: give a budget: 'steps' or 'epochs'"],
    ),
    "batch size": (
        spec_with(problem__batch_size="all"),
        ["problem.batch_size: must be a positive integer or 'full' (got 'all')"],
    ),
    "unknown dataset": (
        spec_with(problem__dataset="imagenet"),
        ["problem.dataset: unknown dataset 'imagenet'; allowed: digits,"],
    ),
    "unknown model option": (
        spec_with(problem__model_args={"depth": 3}),
        ["problem.model_args: unknown option(s) 'depth'; allowed: widths, activation"],
    ),
    "unknown init scheme": (
        spec_with(space__init=["default", "he"]),
        ["space.init[1]: unknown init scheme 'he'; allowed: default,"],
    ),
    "missing lr": (
        spec_with(space={"beta": [0.9]}),
        ["space: the learning-rate axis 'lr' is required"],
    ),
    "missing required key": (
        {k: v for k, v in spec_with().items() if k != "problem"},
        ["problem: required key is missing"],
    ),
    "fractional gpu above one": (
        spec_with(resources={"gpu": 1.5}),
        ["resources.gpu: a trial may take a fraction of one GPU"],
    ),
    "cuda without a gpu per trial": (
        spec_with(problem__device="cuda"),
        [
            "problem.device 'cuda' needs a GPU per trial, but resources.gpu is 0",
            "set resources.gpu (e.g. 1, or 0.25 for four trials per GPU), or use device "
            "'auto' or 'cpu'",
        ],
    ),
    "cpu with a gpu per trial": (
        spec_with(problem__device="cpu", resources={"gpu": 0.5}),
        [
            "problem.device 'cpu' with resources.gpu = 0.5",
            "set resources.gpu to 0 to train on CPUs, or device 'auto' or 'cuda'",
        ],
    ),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_exits_2_naming_key_and_allowed(cli, tmp_path, case):
    data, expected = BAD_SPECS[case]
    result = cli("validate", write(tmp_path, data))
    assert result.code == 2, (result.out, result.err)
    assert "Traceback" not in result.err
    message = " ".join(result.err.split())
    for text in expected:
        assert " ".join(text.split()) in message, message


def test_malformed_yaml_names_the_line(cli, tmp_path):
    path = write(tmp_path, "name: t\nproblem:\n  dataset: digits\n   model: mlp\n")
    result = cli("validate", path)
    assert result.code == 2
    assert "line 4" in result.err and "not valid YAML" in result.err


def test_python_object_tag_is_refused_by_the_safe_loader(cli, tmp_path):
    sentinel = tmp_path / "pwned"
    text = f"name: !!python/object/apply:os.system ['touch {sentinel}']\n"
    result = cli("validate", write(tmp_path, text))
    assert result.code == 2
    assert "line 1" in result.err and "no !!python tags" in " ".join(result.err.split())
    assert not sentinel.exists()


def test_missing_file_lists_the_bundled_studies(cli, tmp_path):
    result = cli("validate", tmp_path / "nope.yaml")
    assert result.code == 2
    assert "no spec file" in result.err
    assert "quickstart" in result.err


def test_empty_and_non_mapping_specs_are_refused(cli, tmp_path):
    assert "the spec is empty" in cli("validate", write(tmp_path, "")).err
    result = cli("validate", write(tmp_path, "- a\n- b\n", "list.yaml"))
    assert result.code == 2 and "got list" in result.err


def test_a_results_directorys_spec_yaml_validates_and_equals_its_spec(tmp_path, cli):
    """spec.yaml = the resolved spec + provenance: validate accepts it, and it parses
    back to the very spec that was run (so it can be rerun)."""
    from robustness.results import store
    from robustness.spec import load_spec

    spec = load_spec("quickstart")
    path = store.write_spec(tmp_path, spec.resolved(), store.provenance(store.utc_now()))
    assert "provenance" in path.read_text()
    result = cli("validate", path)
    assert result.code == 0, result.err
    assert "is valid" in result.out
    assert load_spec(path) == spec
