"""A user's own optimizer class, model factory and dataset loader, by import path:
the axes mapping into constructor arguments, what the class takes, the contracts,
and the refusals (a ``UserInputError``; exit 2 without a traceback on the CLI)."""

from __future__ import annotations

import json
import re
import sys

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from robustness.data import Dataset, load_dataset
from robustness.errors import UserInputError
from robustness.models import build_model
from robustness.optim import build_optimizer, optimizer_entry
from robustness.spec import make_plan, parse_spec
from tests.test_spec import spec_with

MODULE = "user_code_under_test"
USER_CODE = '''
import math

import torch
from torch import nn

from robustness.data import Dataset


class Lion(torch.optim.Optimizer):
    """Chen et al. 2023: w -= lr * sign(b1*m + (1-b1)*g); m = b2*m + (1-b2)*g."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_((m * b1 + p.grad * (1 - b1)).sign(), alpha=-group["lr"])
                m.mul_(b2).add_(p.grad, alpha=1 - b2)


class CountsLayers(torch.optim.SGD):
    """Takes the model (declared by the class attribute), counts its Linear layers."""

    takes_model = True

    def __init__(self, model, lr, momentum=0.0):
        self.linear_layers = sum(isinstance(m, nn.Linear) for m in model.modules())
        super().__init__(model.parameters(), lr=lr, momentum=momentum)


class NotAnOptimizer:
    pass


def build(input_shape, num_classes, width=16):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(), nn.Linear(width, num_classes)
    )


def not_a_model(input_shape, num_classes):
    return "a string"


def load(n=120, root=None):
    """Two Gaussian blobs in 6-D, seeded: class 1 is shifted by +1 on every feature."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n, 6, generator=gen) + y[:, None].float()
    cut = n * 3 // 4
    return Dataset(
        name="user_blobs", task="classification", x_train=x[:cut], y_train=y[:cut],
        x_val=x[cut:], y_val=y[cut:], input_shape=(6,), num_outputs=2,
        metadata={"root": root},
    )


def load_a_dict():
    return {"x": [1, 2]}
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``user_code_under_test``, a module of the user's in a temporary directory."""
    (tmp_path / f"{MODULE}.py").write_text(USER_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    yield MODULE
    sys.modules.pop(MODULE, None)


def _lion(**axes):
    return optimizer_entry(f"{MODULE}:Lion", axes=axes or {"beta": "betas.0", "beta2": "betas.1"})


# --- optimizer classes --------------------------------------------------------------


def test_axes_set_the_mapped_constructor_arguments_the_rest_keep_the_class_defaults(
    user_module,
):
    model = nn.Linear(2, 1)
    opt = build_optimizer(_lion(), model, lr=0.01, beta=0.8, weight_decay=0.1)
    assert type(opt).__name__ == "Lion"
    assert opt.param_groups[0]["betas"] == (0.8, 0.99)  # betas[1]: Lion's default
    assert opt.param_groups[0]["weight_decay"] == 0.1
    opt = build_optimizer(_lion(), model, lr=0.01, beta=0.8, beta2=0.95)
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["betas"]) == (0.01, (0.8, 0.95))
    # a torch class by dotted path, beta -> momentum: torch's own default (0) when unswept
    sgd = optimizer_entry("torch.optim.SGD", axes={"beta": "momentum"})
    assert build_optimizer(sgd, model, lr=0.1, beta=0.7).param_groups[0]["momentum"] == 0.7
    assert build_optimizer(sgd, model, lr=0.1).param_groups[0]["momentum"] == 0


def test_the_swept_betas_drive_the_users_update(user_module):
    """Two Lion steps on w = 0 with gradients +1 then -1. Step 1: w = -lr. Step 2's
    sign is sign(b1·(1−b2) − (1−b1)): with the defaults (0.9, 0.99) it is −1 (w back
    to 0); with beta=0.99, beta2=0.5 it is +1 (w = −2·lr)."""

    def two_steps(**betas):
        holder = nn.Module()
        holder.w = w = nn.Parameter(torch.zeros(1))
        opt = build_optimizer(_lion(), holder, lr=0.1, **betas)
        for grad in (1.0, -1.0):
            w.grad = torch.tensor([grad])
            opt.step()
        return w.item()

    assert two_steps() == pytest.approx(0.0)
    assert two_steps(beta=0.99, beta2=0.5) == pytest.approx(-0.2)


def test_a_class_that_takes_the_model_says_so_by_attribute_or_by_takes(user_module):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    by_attribute = optimizer_entry(f"{MODULE}:CountsLayers", axes={"beta": "momentum"})
    assert by_attribute.takes_model
    assert build_optimizer(by_attribute, model, lr=0.1, beta=0.5).linear_layers == 2
    # the built-in INSGD declares it the same way
    insgd = optimizer_entry("robustness.optim:INSGD", axes={"beta": "momentum"})
    assert insgd.takes_model
    build_optimizer(insgd, model, lr=0.1).close()
    # a class without the attribute: takes: model in the spec (the CLI's --takes)
    assert optimizer_entry("torch.optim:SGD", takes="model").takes_model
    assert not optimizer_entry(f"{MODULE}:CountsLayers", takes="params").takes_model


@pytest.mark.parametrize(
    ("path", "axes", "message"),
    [
        ("no_such_module_xyz:Lion", None, "cannot import module 'no_such_module_xyz'"),
        (f"{MODULE}:Lino", None, f"module '{MODULE}' has no attribute 'Lino'"),
        ("Lion", None, "unknown optimizer 'Lion'; allowed: adam, adamw"),
        (
            f"{MODULE}:NotAnOptimizer",
            None,
            "is the class NotAnOptimizer, not a torch.optim.Optimizer subclass",
        ),
        (f"{MODULE}:build", None, "is function, not a torch.optim.Optimizer subclass"),
        (
            f"{MODULE}:Lion",
            {"beta": "momentum"},
            "axes.beta sets 'momentum', but Lion takes no argument 'momentum'; its "
            "arguments: lr, betas, weight_decay",
        ),
        (f"{MODULE}:Lion", {"gamma": "betas.0"}, "axes maps 'gamma', which is not a swept axis"),
        (f"{MODULE}:Lion", {"beta": "betas[0]"}, "axes.beta is 'betas[0]', not an argument name"),
    ],
)
def test_a_class_that_cannot_be_used_is_refused_saying_why(user_module, path, axes, message):
    with pytest.raises(UserInputError) as caught:
        optimizer_entry(path, axes=axes)
    assert message in str(caught.value)


def test_an_axis_mapped_nowhere_is_refused_for_that_class(user_module):
    only_beta = _lion(beta="betas.0")
    with pytest.raises(UserInputError) as caught:
        build_optimizer(only_beta, nn.Linear(2, 1), lr=0.1, beta=0.9, beta2=0.9)
    assert (
        f"optimizer class '{MODULE}:Lion' maps no constructor argument to the beta2 axis "
        "(its axes: lr -> lr, beta -> betas.0)"
    ) in str(caught.value)


def test_an_argument_an_axis_sets_cannot_also_be_fixed(user_module):
    with pytest.raises(UserInputError) as caught:
        build_optimizer(_lion(beta="betas.0"), nn.Linear(2, 1), lr=0.1, betas=(0.5, 0.5))
    assert (
        f"argument 'betas' of optimizer '{MODULE}:Lion' is set by the beta axis "
        "(beta -> betas.0); give its value as that axis"
    ) in str(caught.value)


def test_axes_for_a_built_in_are_refused_its_mapping_is_fixed():
    with pytest.raises(
        UserInputError, match=re.escape("built-in 'adamw' is fixed: beta -> betas.0")
    ):
        optimizer_entry("adamw", axes={"beta": "betas.1"})


# --- models and datasets -------------------------------------------------------------


def test_a_model_factory_gets_the_datasets_shape_and_its_options(user_module):
    model = build_model(f"{MODULE}:build", (1, 8, 8), 10, width=5)
    assert [m.weight.shape for m in model if isinstance(m, nn.Linear)] == [(5, 64), (10, 5)]
    with pytest.raises(UserInputError, match=re.escape("returned a str, not a torch.nn.Module")):
        build_model(f"{MODULE}:not_a_model", (4,), 2)
    with pytest.raises(UserInputError, match="options it takes: width"):
        build_model(f"{MODULE}:build", (4,), 2, depth=3)


def test_a_dataset_loader_returns_the_dataset_contract(user_module, tmp_path):
    data = load_dataset(f"{MODULE}:load", root=str(tmp_path), n=40)
    assert isinstance(data, Dataset)
    assert (data.x_train.shape, data.x_val.shape, data.num_outputs) == ((30, 6), (10, 6), 2)
    assert data.metadata["root"] == str(tmp_path)  # root passed to a loader that takes it
    with pytest.raises(
        UserInputError, match=re.escape("returned a dict, not a robustness.data.Dataset")
    ):
        load_dataset(f"{MODULE}:load_a_dict")


# --- the spec and the CLI ------------------------------------------------------------


def _lion_spec(**entry):
    lion = {"class": f"{MODULE}:Lion", "axes": {"beta": "betas.0", "beta2": "betas.1"}}
    return spec_with(
        optimizers={"adamw": {"weight_decay": 0.01}, "lion": {**lion, **entry}},
        space={"lr": [0.001, 0.01], "beta": [0.9], "beta2": [0.99]},
    )


def test_a_class_entry_plans_its_axes_and_its_trial_config_carries_the_mapping(user_module):
    plan = make_plan(parse_spec(_lion_spec(weight_decay=0.1)))
    lion = plan.optimizer("lion")
    assert lion.base == f"{MODULE}:Lion"
    assert list(lion.axes) == ["lr", "beta", "beta2"]
    config = plan.trial_config("lion", {"lr": 0.01, "beta": 0.9, "beta2": 0.99})
    assert config.optimizer == f"{MODULE}:Lion"
    assert config.optimizer_axes == {"beta": "betas.0", "beta2": "betas.1"}
    assert config.optimizer_args == {"weight_decay": 0.1}
    assert (
        plan.trial_config("adamw", {"lr": 0.01, "beta": 0.9, "beta2": 0.99}).optimizer_axes is None
    )


def _write(tmp_path, data):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


BAD = {
    "class that does not resolve": (
        {"class": "no_such_module_xyz:Lion"},
        "optimizers.lion.class: optimizer class 'no_such_module_xyz:Lion': cannot import module",
    ),
    "class that is not an optimizer": (
        {"class": f"{MODULE}:NotAnOptimizer"},
        "optimizers.lion.class: optimizer class 'user_code_under_test:NotAnOptimizer' is the "
        "class NotAnOptimizer, not a torch.optim.Optimizer subclass",
    ),
    "axis mapped nowhere": (
        {"axes": {"beta": "betas.0"}},
        "optimizers.lion: optimizer class 'user_code_under_test:Lion' maps no constructor "
        "argument to the beta2 axis (its axes: lr -> lr, beta -> betas.0)",
    ),
    "unknown constructor argument": (
        {"momentum": 0.9},
        "optimizers.lion: unknown argument(s) 'momentum' for optimizer "
        "'user_code_under_test:Lion'; allowed: weight_decay",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_class_entries_exit_2_with_the_key_and_the_reason(cli, tmp_path, user_module, case):
    entry, expected = BAD[case]
    result = cli("validate", _write(tmp_path, _lion_spec(**entry)))
    assert result.code == 2, (result.out, result.err)
    assert "Traceback" not in result.err
    assert expected in " ".join(result.err.split())


def test_axes_on_a_built_in_and_a_bad_model_factory_exit_2(cli, tmp_path, user_module):
    spec = spec_with(optimizers={"adam": {"axes": {"beta": "betas.1"}}})
    result = cli("validate", _write(tmp_path, spec))
    assert result.code == 2
    assert "optimizers.adam.axes: only for an optimizer class given by import path" in " ".join(
        result.err.split()
    )
    spec = spec_with(problem__model=f"{MODULE}:not_a_model", problem__model_args={})
    result = cli("validate", _write(tmp_path, spec))
    assert result.code == 2 and "Traceback" not in result.err
    assert (
        "problem.model: model factory 'user_code_under_test:not_a_model' returned a str, not a "
        "torch.nn.Module"
    ) in " ".join(result.err.split())


TRIAL = ("--steps", "30", "--eval-every", "10", "--threads", "1", "--device", "cpu", "--json")


def test_cli_trial_runs_a_users_class_model_and_dataset(cli, user_module):
    result = cli(
        "trial", "--optimizer", f"{MODULE}:Lion", "--axis", "beta=betas.0",
        "--axis", "beta2=betas.1", "--lr", "0.01", "--beta", "0.9", "--beta2", "0.99",
        "--model", f"{MODULE}:build", "--model-arg", "width=8",
        "--dataset", f"{MODULE}:load", *TRIAL,
    )  # fmt: skip
    assert result.code == 0, result.err
    record = json.loads(result.out)["records"][0]
    assert record["optimizer"] == f"{MODULE}:Lion"
    assert record["outcome"] == "converged"
    assert record["final_train_loss"] < 0.8 * record["initial_loss"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--optimizer", "no_such_module_xyz:Lion"), "cannot import module 'no_such_module_xyz'"),
        (("--optimizer", f"{MODULE}:NotAnOptimizer"), "not a torch.optim.Optimizer subclass"),
        (
            ("--optimizer", f"{MODULE}:Lion", "--beta", "0.9"),
            "maps no constructor argument to the beta axis",
        ),
        (("--optimizer", "sgd", "--model", f"{MODULE}:not_a_model"), "returned a str"),
        (("--optimizer", "sgd", "--axis", "beta=momentum"), "built-in 'sgd' is fixed"),
    ],
)
def test_cli_trial_refuses_unusable_user_code_with_exit_2(cli, user_module, args, message):
    result = cli("trial", *args, "--lr", "0.1", *TRIAL)
    assert result.code == 2, (result.out, result.err)
    assert "Traceback" not in result.err
    assert message in " ".join(result.err.split())


@pytest.mark.slow
def test_a_study_of_adamw_and_a_users_class_on_a_users_model_and_data_runs_end_to_end(
    cli, tmp_path, monkeypatch, user_module
):
    """``robustness run`` through Ray Tune: the user's module sits in the current
    directory, which Ray puts on its workers' path, so each worker imports it too."""
    import ray

    assert not ray.is_initialized()
    monkeypatch.chdir(tmp_path)
    spec = {
        "name": "user_code",
        "problem": {
            "dataset": f"{MODULE}:load",
            "model": f"{MODULE}:build",
            "model_args": {"width": 8},
            "batch_size": 32,
            "steps": 30,
            "eval_every": 10,
        },
        "optimizers": {
            "adamw": {"weight_decay": 0.01},
            "lion": {"class": f"{MODULE}:Lion", "axes": {"beta": "betas.0", "beta2": "betas.1"}},
        },
        "space": {"lr": [0.003, 0.03], "beta": [0.9], "beta2": [0.99]},
        "seeds": [0],
        "resources": {"cpu": 1, "max_concurrent": 2},
    }
    result = cli("run", _write(tmp_path, spec), "--out", tmp_path / "out", "--quiet")
    assert result.code == 0, result.err
    trials = pd.read_parquet(tmp_path / "out" / "trials.parquet")
    assert sorted(trials["optimizer"]) == ["adamw", "adamw", "lion", "lion"]
    assert set(trials["model"]) == {f"{MODULE}:build"}
    assert (trials["outcome"] == "converged").all(), trials[["optimizer", "outcome", "error"]]
    assert (trials["final_train_loss"] < trials["initial_loss"]).all()
    page = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "lion" in page and "adamw" in page


def test_a_results_directory_never_causes_an_import(cli, tmp_path, monkeypatch):
    """The report reads the stored spec; an optimizer class named there (say, in a
    results directory someone sent) is shown, never imported: import paths come
    only from the user's own spec or command line."""
    from tests._synthetic import write_synthetic_results

    sentinel = tmp_path / "imported"
    (tmp_path / "planted_module.py").write_text(
        f"open({str(sentinel)!r}, 'w').close()\nimport torch\nLion = torch.optim.SGD\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    results = write_synthetic_results(tmp_path / "results", optimizers=("sgd", "sgd_lion"))
    stored = yaml.safe_load((results / "spec.yaml").read_text())
    stored["optimizers"] = {
        "sgd": {},
        "sgd_lion": {"class": "planted_module:Lion", "axes": {"beta": "momentum"}},
    }
    (results / "spec.yaml").write_text(yaml.safe_dump(stored))
    result = cli("report", results)
    assert result.code == 0, result.err
    assert not sentinel.exists()
    assert "planted_module" not in sys.modules
    axes = pd.read_csv(results / "report" / "tables" / "axes.csv").set_index("optimizer")
    assert axes.loc["sgd_lion", "base"] == "planted_module:Lion"
    assert axes.loc["sgd_lion", "beta means"] == "sets momentum"
