"""Resume after the driver is killed with SIGKILL mid-study (from the results
directory's own spec.yaml, no spec given): completed trials are
neither lost nor re-run, and the final tables hold each run exactly once; with one
configuration per Ray trial, and with packs of three (a kill mid-pack loses at most
the configuration that was running)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from tests.test_engine import tiny_problem

LRS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]
SPEC = {
    "name": "killme",
    "problem": tiny_problem(steps=150, eval_every=50),
    "optimizers": {"novograd": {}},
    "space": {"lr": LRS},
    "seeds": [0],
    # population training off: a pack trained as one population persists its
    # configurations together, too fast to be killed between them reliably
    "resources": {"cpu": 1, "max_concurrent": 1, "population": "off"},
}


def _driver(spec, out, *extra):
    command = [sys.executable, "-c", "from robustness.cli import main; main()"]
    command += ["run", *([str(spec)] if spec else []), "--out", str(out)]
    command += ["--no-report", "--quiet", *extra]
    return subprocess.Popen(
        command,
        start_new_session=True,  # its own process group, so the test can clean up Ray
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _kill_group(process):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _parts(out):
    parts = out / "parts"
    return {p: p.stat().st_mtime_ns for p in parts.glob("*.trials.arrow")} if parts.exists() else {}


@pytest.fixture(params=[1, 3], ids=["one-per-trial", "packs-of-3"])
def killed_study(tmp_path, request):
    """A study whose driver was SIGKILLed after two configurations were persisted."""
    spec = tmp_path / "killme.yaml"
    resources = {**SPEC["resources"], "configs_per_trial": request.param}
    spec.write_text(yaml.safe_dump({**SPEC, "resources": resources}))
    out = tmp_path / "out"
    driver = _driver(spec, out)
    try:
        deadline = time.monotonic() + 240
        while len(_parts(out)) < 2:
            assert driver.poll() is None, driver.stdout.read()
            assert time.monotonic() < deadline, "the study persisted no trial in time"
            time.sleep(0.2)
        os.kill(driver.pid, signal.SIGKILL)  # the driver only, as a crash would
        driver.wait(timeout=30)
        persisted = _parts(out)
    finally:
        _kill_group(driver)  # Ray processes the dead driver may have left behind
    assert len(persisted) < len(LRS), "the study finished before it could be killed"
    return spec, out, persisted, request.param


@pytest.mark.slow  # two driver starts and six configurations: about a minute on 2 busy cores
def test_resume_after_sigkill_keeps_finished_trials_and_runs_each_once(killed_study):
    _, out, persisted, pack = killed_study
    resumed = _driver(None, out, "--resume")  # from the study's own record
    try:
        output, _ = resumed.communicate(timeout=400)
    finally:
        _kill_group(resumed)
    assert resumed.returncode == 0, output

    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == len(LRS) and trials["run_id"].is_unique
    assert sorted(trials["lr"]) == LRS
    for part, mtime in persisted.items():  # finished before the kill: kept, not re-run
        assert part.stat().st_mtime_ns == mtime
        assert part.name.removesuffix(".trials.arrow") in set(trials["trial_id"])

    study = optuna.load_study(
        study_name="killme/novograd", storage=f"sqlite:///{out / 'optuna.db'}"
    )
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert states.count(TrialState.COMPLETE) == len(LRS)
    abandoned = [t for t in study.trials if t.user_attrs.get("abandoned")]
    # at most the Ray trial running when the driver died: its configuration in progress
    # and, in a pack, the ones after it, which had not started (their work is not lost)
    assert len(abandoned) <= pack
    spec_yaml = yaml.safe_load((out / "spec.yaml").read_text())
    assert spec_yaml["provenance"]["resumed"] is True


@pytest.mark.slow  # one driver start, killed after two configurations
@pytest.mark.parametrize("killed_study", [1], indirect=True, ids=["one-per-trial"])
def test_a_sigkilled_study_is_reported_from_its_parts_as_incomplete(killed_study, cli):
    _, out, _, _ = killed_study
    assert not (out / "trials.parquet").exists()  # a SIGKILL skips every finally
    n_parts = len(_parts(out))  # the workers may have finished one more before dying
    result = cli("report", out)
    assert result.code == 0, result.err
    assert f"{n_parts} runs of 1 optimizer(s)" in result.out
    assert f"(incomplete: {n_parts} of {len(LRS)} runs)" in result.out
    assert (out / "report" / "index.html").is_file()


@pytest.mark.slow  # one driver start, interrupted after two configurations
def test_ctrl_c_still_writes_the_tables_of_what_was_done(tmp_path, cli):
    spec = tmp_path / "killme.yaml"
    spec.write_text(
        yaml.safe_dump({**SPEC, "resources": {**SPEC["resources"], "configs_per_trial": 1}})
    )
    out = tmp_path / "out"
    driver = _driver(spec, out)
    try:
        deadline = time.monotonic() + 240
        while len(_parts(out)) < 2:
            assert driver.poll() is None, driver.stdout.read()
            assert time.monotonic() < deadline, "the study persisted no trial in time"
            time.sleep(0.2)
        os.kill(driver.pid, signal.SIGINT)  # what Ctrl-C sends
        output, _ = driver.communicate(timeout=120)
    finally:
        _kill_group(driver)
    study = optuna.load_study(
        study_name="killme/novograd", storage=f"sqlite:///{out / 'optuna.db'}"
    )
    done = {t.user_attrs["trial_id"] for t in study.trials if t.state == TrialState.COMPLETE}
    trials = pd.read_parquet(out / "trials.parquet")  # written in the driver's finally
    assert 2 <= len(done) < len(LRS), output
    assert set(trials["trial_id"]) == done and len(trials) == len(done)
    result = cli("report", out)
    assert result.code == 0, result.err
    assert f"(incomplete: {len(done)} of {len(LRS)} runs)" in result.out
