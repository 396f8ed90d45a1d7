"""``resources.configs_per_trial``: validation, what ``auto`` resolves to for each
sampler and scheduler, and how ``validate`` / ``run --dry-run`` show it."""

from __future__ import annotations

import pytest
import yaml

from robustness.errors import UserInputError
from robustness.spec import parse_spec
from tests.test_spec import spec_with

GRID = {"sampler": "grid"}
ASHA = {"sampler": "grid", "scheduler": "asha"}


def packing(configs_per_trial="auto", search=None):
    resources = (
        {"cpu": 1} if configs_per_trial is None else {"configs_per_trial": configs_per_trial}
    )
    return parse_spec(spec_with(resources=resources, search=search or GRID))


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        (GRID, None),  # adaptive
        ({"sampler": "random", "n_trials": 5}, None),
        ({"sampler": "qmc", "n_trials": 5}, None),
        ({"sampler": "tpe", "n_trials": 5}, 1),  # learns from every result: no packing
        ({"sampler": "gp", "n_trials": 5}, 1),
        ({"sampler": "cmaes", "n_trials": 5}, 1),
        (ASHA, 1),  # a scheduler stops Ray trials: one configuration each
    ],
)
def test_auto_packs_only_for_samplers_that_ignore_results_and_without_a_scheduler(search, expected):
    assert packing("auto", search).pack_size() == expected
    assert packing(None, search).pack_size() == expected  # auto is the default


@pytest.mark.parametrize("sampler", ["grid", "tpe"])
def test_an_explicit_pack_size_applies_to_any_sampler(sampler):
    search = GRID if sampler == "grid" else {"sampler": sampler, "n_trials": 5}
    spec = packing(4, search)
    assert spec.resources.configs_per_trial == 4 and spec.pack_size() == 4


def test_one_configuration_per_trial_is_allowed_with_a_scheduler():
    assert packing(1, ASHA).pack_size() == 1


@pytest.mark.parametrize("bad", [0, -2, 1.5, "many", True, None, [2]])
def test_bad_configs_per_trial_names_key_value_and_what_is_allowed(bad):
    data = spec_with(resources={"configs_per_trial": bad})
    with pytest.raises(UserInputError) as info:
        parse_spec(data, "bad.yaml")
    (line,) = [x for x in str(info.value).splitlines() if "configs_per_trial" in x]
    assert line.startswith("  - resources.configs_per_trial: must be a positive integer")
    assert "or 'auto'" in line and f"(got {bad!r})" in line


def test_pack_of_several_with_a_scheduler_is_a_spec_error():
    with pytest.raises(UserInputError) as info:
        packing(3, ASHA)
    message = str(info.value)
    assert "resources.configs_per_trial: 3 configurations per Ray trial" in message
    assert "asha scheduler" in message and "1 or 'auto'" in message


def test_resolved_spec_keeps_the_packing_setting():
    assert packing(None).resolved()["resources"]["configs_per_trial"] == "auto"
    assert parse_spec(packing(6).resolved()).resources.configs_per_trial == 6


@pytest.mark.parametrize(
    ("resources", "search", "shown"),
    [
        ({}, GRID, "packing    auto: adaptive, several configurations per Ray trial (about 2.5 s"),
        ({"configs_per_trial": 8}, GRID, "packing    8 configurations per Ray trial"),
        (
            {},
            {"sampler": "tpe", "n_trials": 4},
            "packing    auto: 1 configuration per Ray trial (the tpe sampler learns",
        ),
        (
            {"configs_per_trial": 1},
            ASHA,
            "packing    1 configuration per Ray trial",
        ),
    ],
)
def test_validate_and_dry_run_show_the_packing(cli, tmp_path, resources, search, shown):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_with(resources=resources, search=search)))
    for args in (("validate", path), ("run", path, "--dry-run")):
        result = cli(*args)
        assert result.code == 0, result.err
        assert shown in result.out


def test_cli_refuses_a_bad_value_with_exit_2_and_no_traceback(cli, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_with(resources={"configs_per_trial": "lots"})))
    result = cli("validate", path)
    assert result.code == 2
    assert "resources.configs_per_trial: must be a positive integer" in result.err
    assert "'lots'" in result.err and "Traceback" not in result.err
