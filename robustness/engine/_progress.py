"""Progress of a running study on the terminal: configurations done/total, runs that
diverged or errored so far, elapsed time and ETA (rich). Silent when disabled."""

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
    """Counts finished configurations; a context manager that draws while open."""

    def __init__(self, total: int, *, enabled: bool = True) -> None:
        self.diverged = 0
        self.errors = 0
        self._progress = (
            Progress(
                TextColumn("[bold]trials"),
                BarColumn(),
                MofNCompleteColumn(),
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
            self._progress.add_task("study", total=total, diverged=0, errors=0)
            if self._progress is not None
            else None
        )

    def set_done(self, done: int) -> None:
        """Configurations already done before this session (a resumed study)."""
        if self._progress is not None:
            self._progress.update(self._task, completed=done)

    def trial_done(self, counts: dict[str, int]) -> None:
        """One configuration finished with these per-seed outcome counts."""
        self.diverged += int(counts.get("diverged", 0))
        self.errors += int(counts.get("error", 0))
        if self._progress is not None:
            self._progress.update(self._task, advance=1, diverged=self.diverged, errors=self.errors)

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
