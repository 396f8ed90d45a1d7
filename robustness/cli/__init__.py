"""Command-line interface: ``robustness run | trial | report | list | validate``.

Each verb lives in its own module and registers itself on the shared app.
"""

from robustness.cli import list_cmd, report_cmd, run_cmd, trial_cmd, validate_cmd  # noqa: F401
from robustness.cli._app import app, main

__all__ = ["app", "main"]
