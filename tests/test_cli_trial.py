"""`robustness trial`: readable output, --json, and bad input (exit 2, no traceback)."""

from __future__ import annotations

import json

import pytest

from robustness.cli.trial_cmd import parse_assignments, parse_value
from robustness.errors import UserInputError

FAST = ("--steps", "40", "--eval-every", "20", "--threads", "1", "--device", "cpu")


def test_trial_prints_a_readable_summary_per_seed(cli):
    result = cli("trial", "--optimizer", "sgd", "--lr", "0.1", "--seed", "0,1", *FAST)
    assert result.code == 0, result.err
    assert "sgd lr=0.1" in result.out and "mlp on digits" in result.out
    assert "seed 0" in result.out and "seed 1" in result.out
    assert result.out.count("converged") == 2
    assert "objective (final_val_loss" in result.out


def test_trial_json_has_config_dataset_metadata_and_one_record_per_seed(cli):
    result = cli(
        "trial",
        "--optimizer", "sgd",
        "--lr", "0.05",
        "--beta", "0.5",
        "--seed", "3",
        "--seed", "4,5",
        "--model-arg", "widths=32,16",
        "--opt", "nesterov=true",
        "--json",
        *FAST,
    )  # fmt: skip
    assert result.code == 0, result.err
    payload = json.loads(result.out)  # stdout is the JSON object and nothing else
    assert payload["config"]["model_args"] == {"widths": [32, 16]}
    assert payload["config"]["optimizer_args"] == {"nesterov": True}
    assert payload["config"]["seeds"] == [3, 4, 5]
    assert payload["dataset_metadata"]["n_train"] > 0
    assert [r["seed"] for r in payload["records"]] == [3, 4, 5]
    assert {r["beta"] for r in payload["records"]} == {0.5}
    assert all(r["steps_done"] == 40 for r in payload["records"])
    assert payload["objective"] == pytest.approx(
        sum(r["objective"] for r in payload["records"]) / 3
    )


def test_trial_trains_with_adamw_from_the_registry(cli):
    result = cli(
        "trial", "--optimizer", "adamw", "--lr", "0.01", "--beta", "0.8", "--beta2", "0.99",
        "--opt", "weight_decay=0.05", "--json", *FAST,
    )  # fmt: skip
    assert result.code == 0, result.err
    record = json.loads(result.out)["records"][0]
    assert (record["optimizer"], record["beta"], record["beta2"]) == ("adamw", 0.8, 0.99)
    assert record["outcome"] == "converged"
    assert record["final_train_loss"] < 0.5 * record["initial_loss"]


def test_comma_lists_of_lr_and_beta_run_every_combination_as_one_population(cli):
    args = ("trial", "--optimizer", "sgd", "--lr", "0.05,60", "--beta", "0,0.9", "--seed", "0,1")
    result = cli(*args, "--json", *FAST)
    assert result.code == 0, result.err
    payload = json.loads(result.out)  # one object per configuration, lr-major
    assert [(p["config"]["lr"], p["config"]["beta"]) for p in payload] == [
        (0.05, 0.0),
        (0.05, 0.9),
        (60.0, 0.0),
        (60.0, 0.9),
    ]
    assert [r["trial_id"] for p in payload for r in p["records"]] == [
        "c0", "c0", "c1", "c1", "c2", "c2", "c3", "c3"
    ]  # fmt: skip
    outcomes = [[r["outcome"] for r in p["records"]] for p in payload]
    assert outcomes[:2] == [["converged"] * 2] * 2 and outcomes[2:] == [["diverged"] * 2] * 2
    # the same as the configuration run alone
    alone = json.loads(cli("trial", "--optimizer", "sgd", "--lr", "60", "--beta", "0.9",
                           "--seed", "0,1", "--json", *FAST).out)  # fmt: skip
    assert [r["diverged_step"] for r in alone["records"]] == [
        r["diverged_step"] for r in payload[3]["records"]
    ]
    text = cli(*args, *FAST)
    assert text.code == 0 and text.out.count("objective (final_val_loss") == 4


def test_trial_json_writes_nonfinite_numbers_as_null(cli):
    result = cli(
        "trial", "--optimizer", "sgd", "--lr", "50", "--dataset", "linreg", "--model", "linear",
        "--batch-size", "full", "--json", *FAST,
    )  # fmt: skip
    assert result.code == 0, result.err
    record = json.loads(result.out)["records"][0]
    assert record["outcome"] == "diverged"
    assert record["final_val_acc"] is None  # regression: NaN accuracy -> null


def test_trial_schedule_and_divergence_options_reach_the_run(cli):
    result = cli(
        "trial", "--optimizer", "sgd", "--lr", "0.1", "--schedule", "step",
        "--milestones", "0.5", "--gamma", "0.5", "--loss-factor", "3", "--json", *FAST,
    )  # fmt: skip
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    assert payload["config"]["divergence"]["loss_factor"] == 3.0
    lrs = [(row["step"], row["lr"]) for row in payload["curves"]]
    assert lrs == [(0, 0.1), (20, 0.1), (40, 0.05)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--optimizer", "lion", "--lr", "0.1"), "unknown optimizer 'lion'"),
        (("--optimizer", "sgd", "--lr", "-1"), "lr: Input should be greater than 0"),
        (("--optimizer", "sgd", "--lr", "0.1", "--batch-size", "big"), "--batch-size"),
        (("--optimizer", "sgd", "--lr", "0.1", "--seed", "x"), "--seed takes integers"),
        (("--optimizer", "sgd", "--lr", "0.1", "--opt", "nesterov"), "--opt takes KEY=VALUE"),
        (("--optimizer", "sgd", "--lr", "0.1", "--steps", "5", "--epochs", "1"), "not both"),
        (("--optimizer", "sgd", "--lr", "0.1", "--model-arg", "depth=3"), "'depth'"),
        (("--optimizer", "sgd", "--lr", "0.1", "--beta2", "0.9"), "beta2"),
        (("--optimizer", "sgd", "--lr", "0.1", "--schedule", "sine"), "schedule.name"),
        (("--optimizer", "sgd", "--lr", "0.1", "--milestones", "half"), "--milestones"),
        (("--optimizer", "sgd", "--lr", "0.1", "--milestones", "1.5"), "in (0, 1)"),
        (("--optimizer", "sgd", "--lr", "0.1,fast"), "--lr takes a number or a comma list"),
        (("--optimizer", "sgd", "--lr", "0.1", "--beta", "0.9,"), "--beta takes a number"),
        (("--optimizer", "sgd", "--lr", "0.1,-1"), "lr: Input should be greater than 0"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message_and_no_traceback(cli, args, message):
    result = cli("trial", *args, "--device", "cpu")
    assert result.code == 2
    assert message in result.err
    assert "Traceback" not in result.err + result.out


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("1e-3", 0.001),
        ("-0.5", -0.5),
        ("true", True),
        ("False", False),
        ("none", None),
        ("relu", "relu"),
        ("256,128", [256, 128]),
        ("[0.5, 0.75]", [0.5, 0.75]),
        ("[]", []),
    ],
)
def test_command_line_values_are_parsed_to_python_values(text, value):
    assert parse_value(text) == value


def test_assignments_need_a_key_and_an_equals_sign():
    assert parse_assignments("--opt", ["a=1", " b = x "]) == {"a": 1, "b": "x"}
    with pytest.raises(UserInputError, match="--opt takes KEY=VALUE"):
        parse_assignments("--opt", ["=1"])
