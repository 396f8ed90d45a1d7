"""Shared fixtures: an in-process CLI runner and the GPU skip rule."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run ``robustness ARGS...`` in-process through the real entry point.

    Returns exit code, stdout and stderr, exactly as a user would see them.
    """

    def run(*args: str) -> CliResult:
        from robustness.cli import main

        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``gpu`` where CUDA is not available.

    The marker itself is looked up: ``"gpu" in item.keywords`` would also match a
    test id or a directory named ``gpu`` and skip unmarked tests.
    """
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
