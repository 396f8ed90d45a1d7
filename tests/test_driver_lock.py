"""One driver per results directory: a live holder of the lock refuses a second
driver (exit 2, naming its host and pid); a killed holder never blocks. Real
processes hold the lock, as two drivers would."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys

import pytest
import yaml

from robustness.engine._lock import driver_lock, lock_holder
from robustness.results.schema import LOCK_FILE
from tests.test_engine import SMALL

_HOLD = (
    "import sys, time; from pathlib import Path; from robustness.engine._lock import driver_lock\n"
    "with driver_lock(Path(sys.argv[1])):\n"
    "    print('held', flush=True); time.sleep(120)\n"
)


@pytest.fixture
def holder(tmp_path):
    """A separate process holding the lock of ``tmp_path/out`` (a study's results)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "spec.yaml").write_text(yaml.safe_dump(SMALL))
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "held"
        yield out, process
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()


def test_a_second_driver_is_refused_naming_the_holder(holder, tmp_path, cli):
    out, process = holder
    before = sorted(p.name for p in out.iterdir())
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(SMALL))
    for args in (("run", spec, "--out", out, "--resume"), ("run", spec, "--out", out)):
        result = cli(*args, "--no-report", "--quiet")
        assert result.code == 2, result.err
        assert f"pid {process.pid}" in result.err and socket.gethostname() in result.err
        assert "robustness status" in result.err and "Traceback" not in result.err
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written
    assert process.poll() is None  # the holder is unaffected
    assert lock_holder(out)["pid"] == process.pid


def test_a_killed_holder_never_blocks(holder):
    out, process = holder
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert (out / LOCK_FILE).exists()  # the file stays; the lock died with its process
    assert lock_holder(out) is None
    with driver_lock(out):
        assert lock_holder(out)["pid"] == os.getpid()
    assert lock_holder(out) is None


def test_the_lock_is_exclusive_within_one_host(tmp_path):
    with driver_lock(tmp_path):
        process = subprocess.run(
            [sys.executable, "-c", _HOLD, str(tmp_path)], capture_output=True, text=True
        )
    assert process.returncode != 0 and "in use by" in process.stderr
    assert f"pid {os.getpid()}" in process.stderr
