"""`robustness validate` (placeholder until its owner implements it)."""

from robustness.cli._app import app
from robustness.errors import UserInputError


@app.command("validate")
def validate_command() -> None:
    """Not implemented yet."""
    raise UserInputError("'robustness validate' is not implemented yet")
