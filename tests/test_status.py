"""`robustness status`: a study's state read from its files only, while a driver
holds it, after it was killed, and after it finished; never writing anything."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time

import pytest
import yaml
from optuna.distributions import CategoricalDistribution
from optuna.storages import JournalStorage

from robustness.engine._optuna_storage import AppendOnlyJournal, close_journal
from robustness.engine._samplers import make_sampler
from robustness.engine._searcher import LabelSearch, OptunaStudySearcher
from robustness.results import store
from tests.test_driver_lock import _HOLD
from tests.test_engine import tiny_problem

LRS = [0.01, 0.1, 1.0]
SPEC = {
    "name": "watched",
    "problem": tiny_problem(steps=100, eval_every=10),
    "optimizers": {"novograd": {}},
    "space": {"lr": LRS},
    "seeds": [0, 1],
}
# (outcome, objective) per seed of the two finished configurations
FINISHED = [[("converged", 0.4), ("converged", 0.6)], [("converged", 0.2), ("diverged", 2.0)]]


def _record(trial_id, lr, seed, outcome, objective):
    return {
        "trial_id": trial_id,
        "run_id": f"{trial_id}-s{seed}",
        "optimizer": "novograd",
        "lr": lr,
        "init": "default",
        "seed": seed,
        "outcome": outcome,
        "objective": objective,
        "wall_seconds": 1.0,
        "steps_done": 100,
    }


@pytest.fixture
def study_dir(tmp_path):
    """A study a driver left mid-way: two configurations done, one RUNNING with a
    report of how far it is, through the real searcher, journal and part files."""
    out = tmp_path / "out"
    store.write_spec(out, SPEC, {"started": "2026-01-01T00:00:00+00:00", "finished": None})
    storage = JournalStorage(AppendOnlyJournal(out / "optuna.journal"))
    grid = {"lr": LRS}
    label = LabelSearch(
        label="novograd",
        distributions={"lr": CategoricalDistribution(LRS)},
        target=3,
        sampler=make_sampler("grid", seed=0, grid=grid),
        make_config=lambda trial_id, params: {"trial_id": trial_id, "params": params},
        error_records=lambda *a: [],
    )
    searcher = OptunaStudySearcher(
        [label],
        study_name="watched",
        storage=storage,
        direction="minimize",
        results_dir=str(out),
        pack_size=1,
    )
    configs = [searcher.suggest(f"ray{i}")["pack"][0] for i in range(3)]
    for i, config in enumerate(configs[:2]):
        rows = [
            _record(config["trial_id"], config["params"]["lr"], seed, *run)
            for seed, run in enumerate(FINISHED[i])
        ]
        store.write_part(out, config["trial_id"], rows, [])
        searcher.on_trial_complete(f"ray{i}", {})
    store.write_running(
        out,
        configs[2]["trial_id"],
        {
            "label": "novograd",
            "seed_index": 1,
            "seeds": 2,
            "step": 40,
            "total_steps": 100,
            "time": time.time(),
        },
    )
    close_journal(storage)
    return out, configs


def _files(out):
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in out.rglob("*")}


def test_status_after_the_driver_was_killed(study_dir, cli):
    out, configs = study_dir
    before = _files(out)
    result = cli("status", out, "--json")
    assert result.code == 0, result.err
    status = json.loads(result.out)
    assert status["state"] == "interrupted" and status["driver"] is None
    assert status["configurations"] == {
        "total": 3,
        "done": 2,
        "pruned": 0,
        "running": 0,
        "interrupted": 1,
        "left": 1,
    }
    assert status["runs"] == {"total": 6, "done": 4, "running": 0, "left": 2}
    assert status["outcomes"] == {
        "converged": 3,
        "diverged": 1,
        "stalled": 0,
        "pruned": 0,
        "error": 0,
    }
    # seed means: config 0 -> 0.5, config 1 -> 1.1; minimized
    best = status["best"]["novograd"]
    assert best == {
        "trial_id": configs[0]["trial_id"],
        "objective": 0.5,
        "params": {"lr": configs[0]["params"]["lr"], "init": "default"},
    }
    assert status["eta_seconds"] is None and status["elapsed_seconds"] > 0
    text = cli("status", out)
    assert text.code == 0 and "interrupted" in text.out and f"--out {out} --resume" in text.out
    assert _files(out) == before  # read only


def test_status_while_a_driver_holds_the_study(study_dir, cli):
    out, configs = study_dir
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _files(out)
        result = cli("status", out, "--json")
        status = json.loads(result.out)
        assert status["state"] == "running" and status["driver"]["pid"] == holder.pid
        assert status["configurations"]["running"] == 1 and status["configurations"]["left"] == 0
        # the running configuration is in its second seed: two runs begun, none left
        assert status["runs"] == {"total": 6, "done": 4, "running": 2, "left": 0}
        assert status["running"] == [
            {
                "trial_id": configs[2]["trial_id"],
                "label": "novograd",
                "seed": 2,
                "seeds": 2,
                "step": 40,
                "total_steps": 100,
            }
        ]
        text = cli("status", out).out
        assert f"pid {holder.pid}" in text and "seed 2/2, step 40/100" in text
        assert _files(out) == before
    finally:
        with contextlib.suppress(ProcessLookupError):
            holder.kill()
        holder.wait()


def test_status_of_a_finished_study_and_of_a_directory_without_one(study_dir, cli, tmp_path):
    out, _ = study_dir
    data = yaml.safe_load((out / "spec.yaml").read_text())
    data["provenance"]["finished"] = "2026-01-01T01:30:00+00:00"
    (out / "spec.yaml").write_text(yaml.safe_dump(data))
    status = json.loads(cli("status", out, "--json").out)
    assert status["state"] == "finished" and status["elapsed_seconds"] == 5400.0
    assert "elapsed 1:30:00" in cli("status", out).out
    result = cli("status", tmp_path / "nothing")
    assert result.code == 2 and "holds no study" in result.err
