"""`robustness report` (placeholder until its owner implements it)."""

from robustness.cli._app import app
from robustness.errors import UserInputError


@app.command("report")
def report_command() -> None:
    """Not implemented yet."""
    raise UserInputError("'robustness report' is not implemented yet")
