"""`robustness trial` (placeholder until its owner implements it)."""

from robustness.cli._app import app
from robustness.errors import UserInputError


@app.command("trial")
def trial_command() -> None:
    """Not implemented yet."""
    raise UserInputError("'robustness trial' is not implemented yet")
