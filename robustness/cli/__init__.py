"""Command-line interface: ``robustness run | status | trial | report | list | validate``.

Each verb lives in its own module and registers itself on the shared app.
"""

from robustness.cli import (  # noqa: F401
    list_cmd,
    report_cmd,
    run_cmd,
    status_cmd,
    trial_cmd,
    validate_cmd,
)
from robustness.cli._app import app, main

__all__ = ["app", "main"]
