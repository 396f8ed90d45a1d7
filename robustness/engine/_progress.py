"""Progress of a running study on the terminal: configurations done/total, runs
done/total, runs that diverged or errored so far, elapsed time and ETA (rich).
Silent when disabled.

It counts configurations and their runs, never Ray trials: a Ray trial may carry a
pack of configurations, each counted when it is told to Optuna."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class StudyProgress:
    """Counts finished configurations and runs; a context manager that draws while open.

    ``total``: configurations in the study; ``seeds``: runs per configuration.
    """

    def __init__(self, total: int, seeds: int = 1, *, enabled: bool = True) -> None:
        self.diverged = 0
        self.errors = 0
        self.done = 0
        self.total = total
        self.seeds = seeds
        self._progress = (
            Progress(
                TextColumn("[bold]configurations"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("runs: {task.fields[runs]}"),
                TextColumn("diverged runs: {task.fields[diverged]}"),
                TextColumn("errors: {task.fields[errors]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            if enabled
            else None
        )
        self._task = (
            self._progress.add_task("study", total=total, runs=self._runs(), diverged=0, errors=0)
            if self._progress is not None
            else None
        )

    def _runs(self) -> str:
        return f"{self.done * self.seeds}/{self.total * self.seeds}"

    def set_done(self, done: int) -> None:
        """Configurations already done before this session (a resumed study)."""
        self.done = done
        if self._progress is not None:
            self._progress.update(self._task, completed=done, runs=self._runs())

    def configuration_done(self, counts: dict[str, int]) -> None:
        """One configuration finished with these per-seed outcome counts."""
        self.done += 1
        self.diverged += int(counts.get("diverged", 0))
        self.errors += int(counts.get("error", 0))
        if self._progress is not None:
            self._progress.update(
                self._task,
                advance=1,
                runs=self._runs(),
                diverged=self.diverged,
                errors=self.errors,
            )

    def __enter__(self) -> StudyProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
