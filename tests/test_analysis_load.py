"""``load_results`` reads a results directory and refuses malformed ones clearly."""

from __future__ import annotations

import pandas as pd
import pytest
import typer

from analysis.document import Report
from analysis.load import Results, ResultsError, load_results
from robustness.errors import UserInputError
from robustness.results import store
from robustness.results.schema import CURVE_COLUMNS, TRIAL_COLUMNS, TRIALS_FILE
from tests._synthetic import write_synthetic_results


@pytest.fixture
def results_dir(tmp_path):
    return write_synthetic_results(tmp_path / "res", inits=("default",), betas=(0.9,))


def test_load_results_reads_trials_curves_and_spec(results_dir):
    results = load_results(results_dir)
    assert isinstance(results, Results)
    assert results.path == results_dir
    n_runs = 3 * 1 * 1 * 9 * 2  # optimizers x inits x betas x lrs x seeds
    assert len(results.trials) == n_runs
    assert list(results.trials.columns)[: len(TRIAL_COLUMNS)] == list(TRIAL_COLUMNS)
    assert results.trials["lr"].dtype == "float64"
    assert results.trials.loc[results.trials["optimizer"] == "sgd", "beta2"].isna().all()
    assert len(results.curves) > 0 and set(CURVE_COLUMNS) <= set(results.curves.columns)
    assert results.spec["name"] == "synthetic"
    assert results.spec["search"]["direction"] == "minimize"


def test_load_results_keeps_extra_axis_columns(results_dir):
    trials = pd.read_parquet(results_dir / TRIALS_FILE)
    trials["weight_decay"] = 1e-4
    trials.to_parquet(results_dir / TRIALS_FILE)
    assert (load_results(results_dir).trials["weight_decay"] == 1e-4).all()


def test_missing_curves_and_spec_give_empty_defaults(results_dir):
    (results_dir / "curves.parquet").unlink()
    (results_dir / "spec.yaml").unlink()
    results = load_results(results_dir)
    assert results.curves.empty and list(results.curves.columns) == list(CURVE_COLUMNS)
    assert results.spec == {}


def test_missing_directory_is_refused_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ResultsError, match=r"nowhere.*does not exist"):
        load_results(missing)


def test_a_file_is_not_a_results_directory(tmp_path):
    file = tmp_path / "results.txt"
    file.write_text("x")
    with pytest.raises(ResultsError, match="not a directory"):
        load_results(file)


def test_empty_directory_is_refused_for_lack_of_trials(tmp_path):
    with pytest.raises(ResultsError, match=r"no trials.parquet"):
        load_results(tmp_path)


def test_unreadable_parquet_is_refused(results_dir):
    (results_dir / TRIALS_FILE).write_bytes(b"this is not parquet")
    with pytest.raises(ResultsError, match=r"cannot read .*trials.parquet"):
        load_results(results_dir)


def test_unreadable_curves_are_refused(results_dir):
    (results_dir / "curves.parquet").write_bytes(b"garbage")
    with pytest.raises(ResultsError, match=r"curves.parquet"):
        load_results(results_dir)


def test_missing_required_column_is_refused_naming_it(results_dir):
    trials = pd.read_parquet(results_dir / TRIALS_FILE).drop(columns=["outcome", "lr"])
    trials.to_parquet(results_dir / TRIALS_FILE)
    with pytest.raises(ResultsError, match=r"lacks required column.*lr, outcome"):
        load_results(results_dir)


def test_zero_runs_are_refused(results_dir):
    pd.read_parquet(results_dir / TRIALS_FILE).iloc[:0].to_parquet(results_dir / TRIALS_FILE)
    with pytest.raises(ResultsError, match="no runs"):
        load_results(results_dir)


def test_unknown_outcome_is_refused_listing_the_allowed_ones(results_dir):
    trials = pd.read_parquet(results_dir / TRIALS_FILE)
    trials.loc[0, "outcome"] = "exploded"
    trials.to_parquet(results_dir / TRIALS_FILE)
    with pytest.raises(ResultsError, match=r"exploded.*allowed: converged, diverged"):
        load_results(results_dir)


def test_spec_that_is_not_a_mapping_is_refused(results_dir):
    (results_dir / "spec.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ResultsError, match="mapping"):
        load_results(results_dir)


def test_spec_is_read_with_a_safe_loader(results_dir):
    (results_dir / "spec.yaml").write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ResultsError, match="YAML"):
        load_results(results_dir)


def test_results_error_reaches_the_cli_as_exit_2_without_traceback(tmp_path, monkeypatch, capsys):
    """Through the real error mapping of ``robustness.cli._app.main``."""
    from robustness.cli import _app

    probe = typer.Typer()

    @probe.command()
    def load(path: str) -> None:
        load_results(path)

    @probe.command()
    def other() -> None:  # a second command so Typer keeps the verb name
        pass

    monkeypatch.setattr(_app, "app", probe)
    with pytest.raises(SystemExit) as exit_info:
        _app.main(["load", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert issubclass(ResultsError, UserInputError)
    assert "error:" in err and "no trials.parquet" in err and str(tmp_path.name) in err
    assert "Traceback" not in err


def _part(results_dir, trial_id, seeds, outcome="converged"):
    records = [
        {
            "trial_id": trial_id,
            "run_id": f"{trial_id}-s{s}",
            "optimizer": "sgd",
            "lr": 0.1,
            "seed": s,
            "outcome": outcome,
            "steps_done": 30,
            "objective": 0.5,
        }
        for s in seeds
    ]
    curves = [{"run_id": f"{trial_id}-s{s}", "step": step} for s in seeds for step in (0, 30)]
    store.write_part(results_dir, trial_id, records, curves)


def test_a_killed_study_is_loaded_from_its_parts_and_says_how_incomplete(tmp_path):
    """No trials.parquet (the driver was SIGKILLed): every part is read, and the
    spec's plan (12 runs) against the 5 recorded gives the headline's note."""
    _part(tmp_path, "sgd-0000", [0, 1])
    _part(tmp_path, "sgd-0001", [0, 1])
    _part(tmp_path, "sgd-0002", [0], outcome="pruned")
    store.write_spec(tmp_path, {"name": "killed"}, {"planned_runs": 12})
    results = load_results(tmp_path)
    assert results.from_parts and len(results.trials) == 5 and len(results.curves) == 10
    assert list(results.trials.columns)[: len(TRIAL_COLUMNS)] == list(TRIAL_COLUMNS)
    assert results.planned_runs == 12
    assert results.incomplete == "incomplete: 5 of 12 runs"
    headline = Report(results=results, metric="objective", maximize=False).headline
    assert headline == (
        "5 runs of 1 optimizer(s) (sgd): 4 converged, 1 pruned (incomplete: 5 of 12 runs)"
    )


def test_a_complete_study_or_one_without_a_plan_is_not_called_incomplete(tmp_path):
    _part(tmp_path, "sgd-0000", [0, 1])
    assert load_results(tmp_path).incomplete is None  # no spec.yaml: plan unknown
    store.write_spec(tmp_path, {"name": "done"}, {"planned_runs": 2})
    store.write_tables(tmp_path, ["sgd-0000"])
    results = load_results(tmp_path)
    assert not results.from_parts and results.incomplete is None


def test_a_directory_from_before_the_step_0_columns_loads_them_as_missing(results_dir):
    trials = pd.read_parquet(results_dir / TRIALS_FILE)
    old = ["initial_train_acc", "initial_val_loss", "initial_val_acc", "insgd_normalized_fraction"]
    trials.drop(columns=old).to_parquet(results_dir / TRIALS_FILE)
    loaded = load_results(results_dir).trials
    assert loaded[old].isna().all().all() and loaded["initial_loss"].notna().all()
    # still refused: a column the analysis cannot do without
    trials.drop(columns=["initial_loss"]).to_parquet(results_dir / TRIALS_FILE)
    with pytest.raises(ResultsError, match=r"lacks required column.*initial_loss"):
        load_results(results_dir)
