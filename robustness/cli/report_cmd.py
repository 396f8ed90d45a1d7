"""`robustness report RESULTS_DIR [--out DIR]`: analysis and report of a results directory.

Writes ``index.html``, ``report.md``, ``figures/`` and ``tables/`` (default into
``RESULTS_DIR/report``), then prints where, with a one-line summary. A missing,
empty or malformed results directory is bad input: one message, exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from robustness.cli._app import app, stdout


@app.command("report")
def report_command(
    results_dir: Annotated[
        Path, typer.Argument(help="a results directory written by `robustness run`")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="where to write the report (default RESULTS_DIR/report)"),
    ] = None,
) -> None:
    """Write the study report (HTML, Markdown, figures, tables) of a results directory."""
    from analysis.load import load_results
    from analysis.report import build_report, render_report

    report = build_report(load_results(results_dir))
    index = render_report(report, out)
    stdout.print(report.headline, soft_wrap=True)
    for failure in report.failures:
        stdout.print(f"[yellow]warning:[/] not in the report: {failure}", soft_wrap=True)
    stdout.print(f"report written to {index}", soft_wrap=True)
