"""`robustness status RESULTS_DIR [--json]`: how a study stands, from its files.

Works while the study runs (from another terminal, without touching the driver),
after it finished, and after its driver was killed; reads only (see
``robustness.engine._status``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from robustness.cli._app import app, stdout


@app.command("status")
def status_command(
    results_dir: Annotated[
        Path, typer.Argument(help="a results directory written by `robustness run`")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Show a study's progress: configurations and runs done, running and left,
    outcomes, the best configuration per optimizer, elapsed time, ETA, its driver."""
    from robustness.engine._status import format_status, study_status

    status = study_status(results_dir)
    if as_json:
        typer.echo(json.dumps(status, indent=2))
    else:
        stdout.print(format_status(status), markup=False, soft_wrap=True)
