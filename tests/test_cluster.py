"""A study on a real two-node Ray cluster (both nodes on loopback): trials run on both
nodes, and a results path on local disk needs the --shared-storage opt-in.

Teardown ends exactly the processes of this cluster (found by its own temp dir, and
their children), never with ``ray stop``, which would end every Ray on the machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.test_engine import write_spec

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes_of(marker: str) -> set[int]:
    """PIDs whose command line names ``marker``, with all their descendants."""
    parents: dict[int, int] = {}
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            parents[int(entry.name)] = int(
                (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            )
        except (OSError, ValueError, IndexError):
            continue
        if marker in cmdline:
            found.add(int(entry.name))
    grew = True
    while grew:
        children = {pid for pid, ppid in parents.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return found


def _end(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def two_node_cluster(monkeypatch):
    temp = tempfile.mkdtemp(prefix="rtc", dir="/tmp")  # short: Ray's socket paths
    token = Path(temp) / "token"
    token.write_text(secrets.token_hex(32))
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    for key, value in auth.items():
        monkeypatch.setenv(key, value)  # the in-process driver authenticates too
    # Ray caches its token settings when first used; another test module may have
    # imported Ray before these variables were set (pytest collects them all).
    _reset_ray_auth_cache()
    env = {**os.environ, **auth}
    port = _free_port()
    # 127.0.0.2, not 127.0.0.1: Ray rewrites 127.0.0.1 to the host's outward address.
    common = ["--node-ip-address=127.0.0.2", "--num-cpus=1", "--disable-usage-stats"]
    try:
        subprocess.run(
            [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false",
             f"--temp-dir={temp}", *common],
            env=env, check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        subprocess.run(
            [RAY, "start", f"--address=127.0.0.2:{port}", *common],
            env=env, check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        yield f"127.0.0.2:{port}"
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        _end(_processes_of(temp))
        time.sleep(1)
        shutil.rmtree(temp, ignore_errors=True)
        monkeypatch.undo()
        _reset_ray_auth_cache()


def _reset_ray_auth_cache() -> None:
    from ray._private.authentication_test_utils import reset_auth_token_state

    reset_auth_token_state()


@pytest.mark.slow  # starting two Ray nodes takes most of a minute on 2 busy cores
def test_study_on_two_node_cluster_runs_trials_on_both_nodes(tmp_path, two_node_cluster, cli):
    spec = write_spec(tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    args = ["run", spec, "--out", out, "--address", two_node_cluster, "--no-report", "--quiet"]

    refused = cli(*args)
    assert refused.code == 2
    assert "local file system" in refused.err and "--shared-storage" in refused.err
    assert not out.exists()

    result = cli(*args, "--shared-storage")
    assert result.code == 0, result.err
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == 6 and trials["run_id"].is_unique
    assert trials["node_id"].nunique() == 2
