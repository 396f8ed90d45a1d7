"""Per-configuration parts and the final tables built from them (``robustness.results.store``)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from robustness.results import store
from robustness.results.schema import CURVE_COLUMNS, CURVES_FILE, TRIAL_COLUMNS, TRIALS_FILE


def _record(trial_id, seed, **values):
    return {
        "study": "s",
        "trial_id": trial_id,
        "run_id": f"{trial_id}-s{seed}",
        "optimizer": trial_id.split("-")[0],
        "lr": 0.1,
        "seed": seed,
        "outcome": "converged",
        "steps_done": 30,
        "wall_seconds": 0.25,
        "objective": 0.5,
        **values,
    }


def _schema_dtype(dtype):
    return str(pd.Series([], dtype=dtype).dtype)


def test_parts_become_tables_in_schema_dtypes_keeping_extra_axes(tmp_path):
    sgd = [
        _record("sgd-0000", 0, nesterov=True),
        _record("sgd-0000", 1, nesterov=False, outcome="diverged", diverged_step=7),
    ]
    sgd[1].update(divergence_cause="explosion", objective=2.3)
    novograd = [_record("novograd-0001", 0, beta2=0.98, weight_decay=5e-4, error=math.nan)]
    curves = [{"run_id": "sgd-0000-s0", "step": 0, "train_loss": 2.3, "val_loss": 2.2}]
    store.write_part(tmp_path, "sgd-0000", sgd, curves)
    store.write_part(tmp_path, "novograd-0001", novograd, [])
    store.write_part(tmp_path, "sgd-0002", [_record("sgd-0002", 0)], [])  # not listed: left out

    assert store.write_tables(tmp_path, ["sgd-0000", "novograd-0001"]) == (3, 1)
    trials = pd.read_parquet(tmp_path / TRIALS_FILE)
    assert list(trials.columns)[: len(TRIAL_COLUMNS)] == list(TRIAL_COLUMNS)
    for column, dtype in TRIAL_COLUMNS.items():
        assert str(trials[column].dtype) == _schema_dtype(dtype), column
    assert list(trials["run_id"]) == ["novograd-0001-s0", "sgd-0000-s0", "sgd-0000-s1"]
    assert trials["diverged_step"].tolist()[1:] == [pd.NA, 7]
    assert trials["divergence_cause"].isna().tolist() == [True, True, False]
    assert trials["error"].isna().all()  # a NaN in a text column is missing, not "nan"
    assert trials["beta2"].tolist()[0] == 0.98 and trials["beta2"].isna().tolist()[1:] == [True] * 2
    # each optimizer's own axes are columns; missing where they do not apply
    assert trials["nesterov"].tolist()[1:] == [True, False] and pd.isna(trials["nesterov"][0])
    assert trials["weight_decay"].tolist()[0] == 5e-4 and trials["weight_decay"][1:].isna().all()
    curves_table = pd.read_parquet(tmp_path / CURVES_FILE)
    assert list(curves_table.columns) == list(CURVE_COLUMNS)
    assert curves_table.iloc[0][["step", "train_loss"]].tolist() == [0, 2.3]


def test_a_part_is_readable_back_as_it_was_written(tmp_path):
    records = [_record("insgd-0003", 0, outcome="stalled", objective=1.9)]
    store.write_part(tmp_path, "insgd-0003", records, [])
    assert store.has_part(tmp_path, "insgd-0003") and not store.has_part(tmp_path, "insgd-0004")
    back = store.read_part_records(tmp_path, "insgd-0003")
    assert back[["run_id", "outcome", "objective", "seed"]].to_dict("records") == [
        {"run_id": "insgd-0003-s0", "outcome": "stalled", "objective": 1.9, "seed": 0}
    ]


def test_no_parts_give_empty_tables_with_the_schema(tmp_path):
    assert store.write_tables(tmp_path, []) == (0, 0)
    trials = pd.read_parquet(tmp_path / TRIALS_FILE)
    assert list(trials.columns) == list(TRIAL_COLUMNS) and len(trials) == 0


def test_a_finished_trial_without_a_part_fails_loudly_and_writes_nothing(tmp_path):
    store.write_part(tmp_path, "sgd-0000", [_record("sgd-0000", 0)], [])
    with pytest.raises(
        store.MissingPartsError, match=r"1 finished configuration\(s\) have no part .*: sgd-0001"
    ):
        store.write_tables(tmp_path, ["sgd-0000", "sgd-0001"])
    assert not (tmp_path / TRIALS_FILE).exists()


def test_parts_written_by_pandas_join_arrow_parts(tmp_path):
    # a results directory from before Arrow parts: pandas wrote them (large strings)
    old = pd.DataFrame([_record("sgd-0000", 0, nesterov=True)])
    for column in TRIAL_COLUMNS:
        if column not in old.columns:
            old[column] = None
    old = old.astype(TRIAL_COLUMNS)
    (tmp_path / "parts").mkdir()
    old.to_parquet(tmp_path / "parts" / "sgd-0000.trials.parquet", index=False)
    store.write_part(tmp_path, "sgd-0001", [_record("sgd-0001", 0, nesterov=False)], [])

    assert store.write_tables(tmp_path, ["sgd-0000", "sgd-0001"]) == (2, 0)
    trials = pd.read_parquet(tmp_path / TRIALS_FILE)
    assert trials["run_id"].tolist() == ["sgd-0000-s0", "sgd-0001-s0"]
    assert str(trials["run_id"].dtype) == _schema_dtype("string")
    assert trials["nesterov"].tolist() == [True, False]
