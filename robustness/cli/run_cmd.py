"""`robustness run` (placeholder until its owner implements it)."""

from robustness.cli._app import app
from robustness.errors import UserInputError


@app.command("run")
def run_command() -> None:
    """Not implemented yet."""
    raise UserInputError("'robustness run' is not implemented yet")
