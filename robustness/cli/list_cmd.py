"""`robustness list` (placeholder until its owner implements it)."""

from robustness.cli._app import app
from robustness.errors import UserInputError


@app.command("list")
def list_command() -> None:
    """Not implemented yet."""
    raise UserInputError("'robustness list' is not implemented yet")
