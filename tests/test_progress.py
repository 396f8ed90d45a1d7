"""The progress display: it counts runs and outcomes (a resumed study's included),
shows how far running configurations are from their ``running/`` reports, and
without a terminal prints plain lines every N seconds instead of a cut-off bar."""

from __future__ import annotations

import io
import time

from rich.console import Console

from robustness.engine._progress import StudyProgress
from robustness.results import store


def _plain_console():
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=200), buffer


def test_counts_runs_and_outcomes_including_a_resumed_studys(tmp_path):
    console, _ = _plain_console()
    bar = StudyProgress(10, 3, results_dir=tmp_path, console=console, every=60)
    bar.set_done(4, {"converged": 9, "diverged": 2, "error": 1, "n_trials": 5})
    bar.configuration_done({"converged": 1, "diverged": 1, "stalled": 1, "error": 0}, "a-0004")
    assert bar.done == 5 and bar.runs_done == 15
    assert bar.outcomes == {"converged": 10, "diverged": 3, "stalled": 1, "error": 1, "pruned": 0}
    line = bar.line()
    assert "configurations 5/10; runs 15/30; converged 10, diverged 3, stalled 1, error 1" in line


def test_running_configurations_report_their_share_done(tmp_path):
    console, _ = _plain_console()
    bar = StudyProgress(4, 2, results_dir=tmp_path, console=console, every=60)
    now = time.time()
    # seed 2 of 2 at step 250 of 1000: (1 + 0.25) / 2 = 62.5%; seed 1 at 500/1000: 25%
    store.write_running(
        tmp_path,
        "a-0000",
        {"seed_index": 1, "seeds": 2, "step": 250, "total_steps": 1000, "time": now},
    )
    store.write_running(
        tmp_path,
        "a-0001",
        {"seed_index": 0, "seeds": 2, "step": 500, "total_steps": 1000, "time": now},
    )
    store.write_running(
        tmp_path,
        "a-0002",
        {"seed_index": 0, "seeds": 2, "step": 1, "total_steps": 1000, "time": now - 3600},
    )
    assert bar.running_text() == "running 2: 44%"  # the stale report of an earlier session ignored
    assert "running 2: 44%" in bar.line()


def test_without_a_terminal_it_prints_plain_lines_every_n_seconds(tmp_path):
    console, buffer = _plain_console()
    with StudyProgress(3, 1, results_dir=tmp_path, console=console, every=0.05) as bar:
        time.sleep(0.3)
        bar.configuration_done({"converged": 1}, "a-0000")
        time.sleep(0.2)
    lines = buffer.getvalue().splitlines()
    assert len(lines) >= 4  # a line every 0.05 s, and one at the end
    assert all(line.startswith("[0:00:0") and "configurations" in line for line in lines)
    assert "━" not in buffer.getvalue()  # no bar
    assert "configurations 1/3; runs 1/3" in lines[-1] and "ETA" in lines[-1]


def test_disabled_prints_nothing(tmp_path):
    console, buffer = _plain_console()
    with StudyProgress(3, 1, enabled=False, console=console, every=0.01) as bar:
        bar.configuration_done({"converged": 1})
        time.sleep(0.05)
    assert buffer.getvalue() == ""
