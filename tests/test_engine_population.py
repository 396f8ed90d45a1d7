"""Population training in the engine: the spec key, packs grouped into populations,
each configuration persisted as it finishes, label packs, validate/--dry-run."""

from __future__ import annotations

import math

import pytest
import yaml
from optuna.distributions import CategoricalDistribution
from ray.tune.search import Searcher

from robustness.engine._samplers import make_sampler
from robustness.engine._searcher import LabelSearch, OptunaStudySearcher
from robustness.engine._trainable import population_groups, run_population_group, trial_payload
from robustness.errors import UserInputError
from robustness.results import store
from robustness.runner import TrialConfig, run_trial
from robustness.spec import parse_spec
from tests.test_spec import spec_with


def test_population_defaults_to_auto_and_takes_off_or_a_count():
    assert parse_spec(spec_with()).resources.population == "auto"
    for value in ("off", "auto", 64):
        spec = parse_spec(spec_with(resources={"population": value}))
        assert spec.resources.population == value


def test_population_off_written_bare_in_yaml_is_off():
    """The safe loader reads a bare ``off`` as False; the spec means 'off'."""
    resources = yaml.safe_load("population: off")
    assert resources == {"population": False}
    assert parse_spec(spec_with(resources=resources)).resources.population == "off"


@pytest.mark.parametrize("bad", [0, -3, 2.5, "on", True, None])
def test_bad_population_names_key_value_and_what_is_allowed(bad):
    with pytest.raises(UserInputError) as info:
        parse_spec(spec_with(resources={"population": bad}), "bad.yaml")
    (line,) = [x for x in str(info.value).splitlines() if "population" in x]
    assert line.startswith("  - resources.population: must be 'auto', 'off' or a positive")
    assert f"(got {bad!r})" in line


def config(**overrides) -> TrialConfig:
    fields = {
        "optimizer": "sgd",
        "lr": 0.1,
        "beta": 0.9,
        "model_args": {"widths": [16]},
        "steps": 30,
        "eval_every": 10,
        "seeds": (0, 1),
        "threads": 1,
        "device": "cpu",
    }
    fields.update(overrides)
    return TrialConfig(**fields)


def payload(tmp_path, trial_id, cfg, population="auto", report_evals=False):
    return trial_payload(
        cfg,
        trial_id=trial_id,
        label=cfg.optimizer,
        study="s",
        results_dir=str(tmp_path),
        report_evals=report_evals,
        population=population,
    )


def test_a_pack_is_grouped_by_population_key_in_order_of_appearance(tmp_path):
    pack = [
        payload(tmp_path, "a0", config(lr=0.1)),
        payload(tmp_path, "b0", config(optimizer="novograd", lr=0.01)),
        payload(tmp_path, "a1", config(lr=1.0, beta=0.0, init="kaiming_normal")),
        payload(tmp_path, "b1", config(optimizer="novograd", lr=0.02)),
        payload(tmp_path, "c0", config(optimizer="insgd", lr=0.1)),
    ]
    groups = population_groups(pack)
    assert [[p["trial_id"] for p in g] for g in groups] == [["a0", "a1"], ["b0", "b1"], ["c0"]]
    off = [{**p, "population": "off"} for p in pack]
    assert [len(g) for g in population_groups(off)] == [1] * 5
    # a scheduler's single-configuration pack reports every evaluation: alone
    (alone,) = population_groups([payload(tmp_path, "a0", config(), report_evals=True)])
    assert len(alone) == 1


def test_a_population_group_persists_each_configuration_as_run_trial_would(tmp_path):
    configs = [config(lr=0.1), config(lr=40.0, beta=0.0), config(lr=0.5, init="xavier_uniform")]
    group = [payload(tmp_path, f"t{i}", c) for i, c in enumerate(configs)]
    summaries = run_population_group(group, node_id="n1")
    assert list(summaries) == ["t1", "t0", "t2"]  # persisted as each finished: t1 diverged
    for i, cfg in enumerate(configs):
        assert store.has_part(tmp_path, f"t{i}")
        expected = run_trial(cfg, trial_id=f"t{i}")
        counts = {
            o: sum(r["outcome"] == o for r in expected.records) for o in ("converged", "diverged")
        }
        assert {k: summaries[f"t{i}"]["counts"][k] for k in counts} == counts
        assert summaries[f"t{i}"]["objective"] == pytest.approx(expected.objective, rel=1e-4)
        assert summaries[f"t{i}"]["node_id"] == "n1"


def test_a_bad_configuration_in_a_group_is_an_error_record_and_the_others_run(tmp_path):
    configs = [config(lr=0.1), config(lr=0.2, init_args={"bogus": 1}), config(lr=0.3)]
    group = [payload(tmp_path, f"t{i}", c) for i, c in enumerate(configs)]
    summaries = run_population_group(group, node_id=None)
    assert summaries["t1"]["counts"]["error"] == 2 and math.isnan(summaries["t1"]["objective"])
    assert summaries["t0"]["counts"]["converged"] == 2
    assert summaries["t2"]["counts"]["converged"] == 2


def _label(name: str, target: int) -> LabelSearch:
    grid = {"lr": [0.001, 0.01, 0.1, 1.0]}
    return LabelSearch(
        label=name,
        distributions={k: CategoricalDistribution(v) for k, v in grid.items()},
        target=target,
        sampler=make_sampler("grid", seed=0, grid=grid),
        make_config=lambda trial_id, params: {"trial_id": trial_id, "params": params},
        error_records=lambda trial_id, params, message: [],
    )


def test_label_packs_fill_a_pack_from_one_optimizer_and_take_turns(tmp_path):
    searcher = OptunaStudySearcher(
        [_label("a", 4), _label("b", 4), _label("c", 2)],
        study_name="s",
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        direction="minimize",
        results_dir=str(tmp_path),
        pack_size=3,
        label_packs=True,
    )
    packs = []
    while (suggested := searcher.suggest(f"ray{len(packs)}")) != Searcher.FINISHED:
        packs.append([c["trial_id"].split("-")[0] for c in suggested["pack"]])
    assert packs == [["a", "a", "a"], ["b", "b", "b"], ["c", "c", "a"], ["b"]]


def test_validate_shows_the_populations(cli, tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec_with(resources={"population": 32})))
    result = cli("validate", str(path))
    assert result.code == 0, result.err
    (line,) = [x for x in result.out.splitlines() if x.strip().startswith("population")]
    assert "up to 32 runs at once" in line


def test_a_population_stopped_mid_way_loses_only_what_was_not_persisted(tmp_path, monkeypatch):
    """A part that cannot be written stops the group (OSError, the study stops); what
    was persisted stays, and running the rest again (a retry or resume skips the
    persisted parts) completes the same records as an uninterrupted run."""
    configs = [config(lr=30.0, beta=0.0), config(lr=0.1), config(lr=0.3)]
    group = [payload(tmp_path / "a", f"t{i}", c) for i, c in enumerate(configs)]
    real_write = store.write_part
    writes = []

    def failing_write(results_dir, trial_id, *args, **kwargs):
        writes.append(trial_id)
        if len(writes) == 2:
            raise OSError("disk full")
        return real_write(results_dir, trial_id, *args, **kwargs)

    monkeypatch.setattr(store, "write_part", failing_write)
    with pytest.raises(OSError, match="disk full"):
        run_population_group(group, node_id=None)
    monkeypatch.setattr(store, "write_part", real_write)
    done = [p for p in group if store.intact_part(p["results_dir"], p["trial_id"]) is not None]
    assert [p["trial_id"] for p in done] == ["t0"]  # the diverged one finished first
    run_population_group([p for p in group if p not in done], node_id=None)
    whole = [payload(tmp_path / "b", f"t{i}", c) for i, c in enumerate(configs)]
    run_population_group(whole, node_id=None)
    for p, q in zip(group, whole, strict=True):
        resumed = store.intact_part(p["results_dir"], p["trial_id"])
        uninterrupted = store.intact_part(q["results_dir"], q["trial_id"])
        columns = ["run_id", "outcome", "diverged_step", "steps_done", "final_val_loss"]
        assert resumed[columns].equals(uninterrupted[columns])
