"""The Typer application and the one place that maps errors to exit codes.

Exit codes (docs/design.md, "CLI"): 0 success, 2 bad input (arguments, spec, missing
data, a results directory another driver holds), 1 anything else. Bad input, and a
study stopped by its environment (``StudyStoppedError``: its results cannot be
written), are printed as one clear message with no traceback; set
``ROBUSTNESS_DEBUG=1`` to see the traceback of an unexpected error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer
from rich.console import Console
from rich.markup import escape

from robustness.errors import StudyStoppedError, UserInputError

app = typer.Typer(
    name="robustness",
    help="Hyperparameter-robustness studies of optimizers (INSGD, NovoGrad, SGD).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run the app and translate errors to exit codes."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="robustness")
    except UserInputError as exc:
        stderr.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(2)
    except StudyStoppedError as exc:
        stderr.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        stderr.print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("ROBUSTNESS_DEBUG"):
            raise
        stderr.print(
            f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
            "(set ROBUSTNESS_DEBUG=1 to see the traceback)",
            soft_wrap=True,
        )
        sys.exit(1)
