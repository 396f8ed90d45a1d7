"""Faults a long study survives, with real Ray workers, processes and files: a
damaged part found on resume (its configuration runs again), a part that cannot be
written (the study stops, nothing written before is lost, a resume completes it),
and a Ray worker SIGKILLed mid-configuration (retried; after the last try an
``error`` row with the cause; every other run kept)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from robustness.errors import StudyStoppedError
from tests import test_engine
from tests.test_engine import tiny_problem
from tests.test_resume import _driver, _kill_group

ray_session = test_engine.ray_session  # one local Ray for the module's in-process studies

LRS = [0.001, 0.01, 0.1, 0.3]


def _spec(path: Path, *, steps: int = 30, **resources) -> Path:
    data = {
        "name": "faults",
        "problem": tiny_problem(steps=steps, eval_every=10),
        "optimizers": {"novograd": {}},
        "space": {"lr": LRS},
        "seeds": [0],
        "resources": {"cpu": 1, "max_concurrent": 1, "configs_per_trial": 1, **resources},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def _trials(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "trials.parquet")


@pytest.mark.slow  # two studies on a local Ray (the searcher's own test is fast)
def test_a_damaged_part_is_found_on_resume_and_its_configuration_runs_again(tmp_path, ray_session):
    from robustness.engine import run_study

    spec, out = _spec(tmp_path / "s.yaml"), tmp_path / "out"
    run_study(str(spec), out, progress=False, report=False)
    first = _trials(out)
    damaged = first.loc[first["lr"] == 0.1, "trial_id"].item()
    part = out / "parts" / f"{damaged}.trials.arrow"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # a truncated copy
    kept = {p: p.stat().st_mtime_ns for p in (out / "parts").glob("*.trials.arrow") if p != part}

    run_study(str(spec), out, resume=True, progress=False, report=False)
    trials = _trials(out)
    assert sorted(trials["lr"]) == LRS and trials["run_id"].is_unique
    assert damaged not in set(trials["trial_id"])  # run again under a new trial id
    rerun = trials.loc[trials["lr"] == 0.1].iloc[0]
    assert rerun["outcome"] == first.loc[first["lr"] == 0.1, "outcome"].item()
    assert rerun["final_val_loss"] == first.loc[first["lr"] == 0.1, "final_val_loss"].item()
    assert (part.parent / f"{part.name}.damaged").exists() and not part.exists()
    assert all(p.stat().st_mtime_ns == m for p, m in kept.items())  # the others not re-run
    study = optuna.load_study(study_name="faults/novograd", storage=f"sqlite:///{out}/optuna.db")
    assert study.user_attrs["lost_parts"] == [damaged]


@pytest.mark.slow  # two studies on a local Ray (the searcher's own test is fast)
def test_a_part_that_cannot_be_written_stops_the_study_and_loses_nothing(tmp_path, ray_session):
    from robustness.engine import run_study

    spec, out = _spec(tmp_path / "s.yaml"), tmp_path / "out"
    blocked = out / "parts" / "novograd-0002.trials.arrow"

    def block() -> None:  # once the study has started: its third part cannot be renamed
        while not blocked.parent.exists():
            time.sleep(0.005)
        blocked.mkdir()

    blocker = threading.Thread(target=block, daemon=True)
    blocker.start()
    with pytest.raises(StudyStoppedError) as stopped:
        run_study(str(spec), out, progress=False, report=False)
    blocker.join(timeout=5)
    message = str(stopped.value)
    assert "novograd-0002" in message and "IsADirectoryError" in message
    assert f"robustness run --out {out} --resume" in message
    written = {p: p.stat().st_mtime_ns for p in (out / "parts").glob("*.trials.arrow")}
    assert sorted(p.name for p in written if p.is_file()) == [
        "novograd-0000.trials.arrow",
        "novograd-0001.trials.arrow",
    ]

    blocked.rmdir()
    run_study(str(spec), out, resume=True, progress=False, report=False)
    trials = _trials(out)
    assert sorted(trials["lr"]) == LRS and trials["run_id"].is_unique
    assert (trials["outcome"] != "error").all()
    for path, mtime in written.items():
        if path.is_file():
            assert path.stat().st_mtime_ns == mtime  # kept, not re-run


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _trial_workers(driver_pid: int) -> list[int]:
    """The Ray workers of this driver's local Ray that run a Tune trial."""
    workers = []
    for pid in _descendants(driver_pid):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if title.startswith(b"ray::ImplicitFunc"):
            workers.append(pid)
    return workers


@pytest.mark.slow  # a driver and a local Ray in a subprocess, four configurations
@pytest.mark.parametrize("retries", [1, 0])
def test_a_worker_killed_mid_configuration_is_retried_then_recorded(tmp_path, retries):
    spec = _spec(tmp_path / "s.yaml", steps=1500, max_retries=retries)
    out = tmp_path / "out"
    driver = _driver(spec, out)
    try:
        deadline = time.monotonic() + 300
        while (
            not list((out / "parts").glob("*.trials.arrow")) if (out / "parts").exists() else True
        ):
            assert driver.poll() is None, driver.stdout.read()
            assert time.monotonic() < deadline, "no configuration finished in time"
            time.sleep(0.2)
        time.sleep(0.5)  # into the next configuration
        workers = _trial_workers(driver.pid)
        assert workers, "no Ray trial worker found"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        output, _ = driver.communicate(timeout=400)
    finally:
        _kill_group(driver)
    assert driver.returncode == 0, output
    trials = _trials(out)
    assert sorted(trials["lr"]) == LRS and trials["run_id"].is_unique  # every run kept once
    errors = trials[trials["outcome"] == "error"]
    failures = list((out / "ray").glob("*/*/error.txt"))
    assert failures, "Tune recorded no failure"
    if retries:
        assert errors.empty  # the retry ran the configuration
    else:
        assert len(errors) == 1
        assert "the Ray trial failed 1 time(s), the last with:" in errors["error"].item()
