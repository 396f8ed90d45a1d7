"""One driver per results directory: an exclusive ``flock`` on ``driver.lock``.

Two drivers on one results directory would ask Optuna for the same trial numbers
and overwrite each other's parts. So the driver takes an exclusive lock on
``<out>/driver.lock`` before it reads or writes anything there, and holds it for
the whole run. Why ``flock`` and not a pid file: the kernel releases the lock when
its holder dies, however it dies (SIGKILL, OOM, a lost node), so a stale lock from
a killed driver never blocks a resume; there is nothing to clean up.

The file also says who holds it (host, pid, start time, as one JSON line), written
in place after the lock is taken, so a refused driver and ``robustness status``
can name the holder. It is never deleted: unlinking a lock file while another
process has it open would let two processes lock two different files.

``lock_holder`` tells whether a driver holds the lock without taking it for more
than an instant (a shared, non-blocking try on a read-only descriptor), which is
what ``status`` uses; ``acquire`` retries for a moment so such a probe never makes
a starting driver refuse.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from robustness.errors import UserInputError
from robustness.results.schema import LOCK_FILE

_TRIES = 10
_PAUSE = 0.1  # seconds between tries: a status probe holds the lock for microseconds


def holder_info(out: Path) -> dict[str, Any]:
    """What the lock file says about its last holder ({} when unreadable)."""
    try:
        text = (out / LOCK_FILE).read_text(encoding="utf-8")
        info = json.loads(text.strip().splitlines()[0]) if text.strip() else {}
    except (OSError, ValueError, IndexError):
        return {}
    return info if isinstance(info, dict) else {}


def lock_holder(out: Path) -> dict[str, Any] | None:
    """The holder's info when a driver holds ``out``'s lock now, else None.

    Reads only: the file is opened read-only and locked shared for an instant.
    """
    path = out / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return holder_info(out)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def describe_holder(info: dict[str, Any]) -> str:
    """``pid 123 on host h (since 2026-...)``, or what of it is known."""
    if not info:
        return "another driver (its host and pid are not recorded)"
    since = f", since {info['started']}" if info.get("started") else ""
    return f"the driver with pid {info.get('pid', '?')} on host {info.get('host', '?')}{since}"


def in_use_error(out: Path, info: dict[str, Any]) -> UserInputError:
    """The refusal of a second driver: who holds ``out`` and what to do."""
    return UserInputError(
        f"the results directory {str(out)!r} is in use by {describe_holder(info)}: one "
        f"driver per results directory. Watch it with `robustness status {out}`; to run "
        "this study again, choose another --out; if that driver is stuck, stop it (its "
        "lock is released when it exits), then continue with `robustness run --out "
        f"{out} --resume`"
    )


def refuse_if_held(out: Path) -> None:
    """Raise ``in_use_error`` when a live driver holds ``out``'s lock (reads only)."""
    info = lock_holder(out) if out.is_dir() else None
    if info is not None:
        raise in_use_error(out, info)


@contextlib.contextmanager
def driver_lock(out: Path, *, command: str = "robustness run") -> Iterator[None]:
    """Hold ``out``'s driver lock for the ``with`` block (``out`` must exist).

    Raises:
        UserInputError: another live driver holds it; the message names its host
            and pid and what to do.
    """
    path = out / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for attempt in range(_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == _TRIES - 1:
                    raise in_use_error(out, holder_info(out)) from None
                time.sleep(_PAUSE)
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": command,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
