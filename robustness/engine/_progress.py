"""Progress of a running study: configurations and runs done of the total, outcomes
so far, how far the running configurations are, elapsed time and ETA.

It counts configurations and their runs, never Ray trials: a Ray trial may carry a
pack of configurations, each counted when it is told to Optuna. A resumed study
starts from what was done before (``set_done``: configurations, runs and their
outcomes), so its counts are the study's, not the session's.

Running configurations report how far they are without any per-step cost: the
trainable writes ``running/<trial_id>.json`` at evaluations, at most every few
seconds (``store.write_running``); the display reads those files at most every
``_RUNNING_EVERY`` seconds, so a CIFAR configuration (seeds x hundreds of epochs)
shows its seed and step instead of 0 for hours.

On a terminal it is a live bar (rich). Without one (CI, ``nohup``, a cluster job's
log) a bar would be cut off, so it prints one plain line every ``every`` seconds
(default 30, ``ROBUSTNESS_PROGRESS_EVERY``), and one at the end. Silent when
disabled.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from robustness.results import store
from robustness.results.schema import OUTCOMES

EVERY_ENV = "ROBUSTNESS_PROGRESS_EVERY"
_DEFAULT_EVERY = 30.0
_RUNNING_EVERY = 2.0  # seconds between two reads of running/


class StudyProgress:
    """Counts finished configurations, runs and outcomes; a context manager that
    displays while open.

    ``total``: configurations in the study; ``seeds``: runs per configuration;
    ``results_dir``: where running configurations report (None: not shown);
    ``every``: seconds between plain lines without a terminal; ``console``: where
    to write (default stderr).
    """

    def __init__(
        self,
        total: int,
        seeds: int = 1,
        *,
        enabled: bool = True,
        results_dir: str | Path | None = None,
        every: float | None = None,
        console: Console | None = None,
    ) -> None:
        self.total = total
        self.seeds = seeds
        self.done = 0
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self._results_dir = results_dir
        self._finished: set[str] = set()
        self._since = time.time()
        self._start = time.monotonic()
        self._session_done = 0
        self._running_cache: tuple[float, str] = (-_RUNNING_EVERY, "")
        self._enabled = enabled
        self._console = console or Console(stderr=True)
        self._every = (
            every if every is not None else float(os.environ.get(EVERY_ENV, _DEFAULT_EVERY))
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress: Progress | None = None
        self._task: Any = None
        if enabled and self._console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]configurations"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("runs: {task.fields[runs]}"),
                TextColumn("{task.fields[outcomes]}"),
                _Running(self),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self._console,
                refresh_per_second=2,
                transient=False,
            )
            self._task = self._progress.add_task("study", total=total, **self._fields())

    # -- counts -------------------------------------------------------------------

    @property
    def runs_done(self) -> int:
        return sum(self.outcomes.values())

    @property
    def diverged(self) -> int:
        return self.outcomes["diverged"]

    @property
    def errors(self) -> int:
        return self.outcomes["error"]

    def set_done(self, done: int, counts: dict[str, int] | None = None) -> None:
        """What was done before this session (a resumed study): configurations, and
        their runs per outcome."""
        self.done = done
        for outcome, n in (counts or {}).items():
            if outcome in self.outcomes:
                self.outcomes[outcome] = int(n)
        self._update(completed=done)

    def configuration_done(self, counts: dict[str, int], trial_id: str | None = None) -> None:
        """One configuration finished with these per-seed outcome counts."""
        self.done += 1
        self._session_done += 1
        if trial_id is not None:
            self._finished.add(trial_id)
        for outcome, n in counts.items():
            if outcome in self.outcomes:
                self.outcomes[outcome] += int(n)
        self._update(completed=self.done)

    def _fields(self) -> dict[str, str]:
        return {
            "runs": f"{self.runs_done}/{self.total * self.seeds}",
            "outcomes": self._outcome_text(converged=False),
        }

    def _outcome_text(self, *, converged: bool) -> str:
        """``diverged 3, stalled 1, error 0``; ``pruned`` only once a run was pruned
        (only a study with a scheduler has any)."""
        return ", ".join(
            f"{k} {v}"
            for k, v in self.outcomes.items()
            if (converged or k != "converged") and (v or k != "pruned")
        )

    def _update(self, **changes: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, **changes, **self._fields())

    # -- running configurations ---------------------------------------------------

    def running_text(self) -> str:
        """``running 2: 45%`` (the mean fraction of their runs done), read from
        ``running/`` at most every ``_RUNNING_EVERY`` seconds; '' when unknown."""
        if self._results_dir is None:
            return ""
        now = time.monotonic()
        if now - self._running_cache[0] < _RUNNING_EVERY:
            return self._running_cache[1]
        fractions = []
        for trial_id, info in store.read_running(self._results_dir).items():
            if trial_id in self._finished or float(info.get("time", 0)) < self._since:
                continue  # done since, or left by a worker of an earlier session
            fractions.append(_fraction(info))
        text = ""
        if fractions:
            text = f"running {len(fractions)}: {100 * sum(fractions) / len(fractions):.0f}%"
        self._running_cache = (now, text)
        return text

    # -- plain lines --------------------------------------------------------------

    def line(self) -> str:
        """One plain line of the counts (what a log without a terminal gets)."""
        elapsed = time.monotonic() - self._start
        parts = [
            f"[{_duration(elapsed)}] configurations {self.done}/{self.total}",
            f"runs {self.runs_done}/{self.total * self.seeds}",
            self._outcome_text(converged=True),
        ]
        running = self.running_text()
        if running:
            parts.append(running)
        if self._session_done:
            left = self.total - self.done
            parts.append(f"ETA {_duration(left * elapsed / self._session_done)}")
        return "; ".join(parts)

    def _print_lines(self) -> None:
        while not self._stop.wait(self._every):
            self._console.print(self.line(), markup=False, highlight=False, soft_wrap=True)

    # -- context manager ----------------------------------------------------------

    def __enter__(self) -> StudyProgress:
        if self._progress is not None:
            self._progress.start()
        elif self._enabled:
            self._thread = threading.Thread(target=self._print_lines, daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._console.print(self.line(), markup=False, highlight=False, soft_wrap=True)


class _Running(ProgressColumn):
    """The running configurations' share done, for the live bar."""

    def __init__(self, owner: StudyProgress) -> None:
        super().__init__()
        self._owner = owner

    def render(self, task: Any) -> Text:
        return Text(self._owner.running_text())


def _fraction(info: dict[str, Any]) -> float:
    """How much of a running configuration's runs is done, from its report."""
    seeds = max(1, int(info.get("seeds") or 1))
    total = info.get("total_steps")
    within = min(1.0, float(info.get("step", 0)) / float(total)) if total else 0.0
    return min(1.0, (int(info.get("seed_index", 0)) + within) / seeds)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
