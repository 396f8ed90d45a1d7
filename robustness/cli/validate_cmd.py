"""`robustness validate SPEC`: check a study spec and print its plan, start nothing.

Exit 0 with the plan (axes per optimizer, configurations, seeds, runs) for a good
spec; exit 2 with every problem, one line each naming its key path, for a bad one.
"""

from __future__ import annotations

from typing import Annotated

import typer

from robustness.cli._app import app, stdout


@app.command("validate")
def validate_command(
    spec: Annotated[str, typer.Argument(help="a spec YAML path, or a bundled study's name")],
) -> None:
    """Check a study spec and print its plan: axes, configurations, seeds, runs."""
    from robustness.spec import load_spec, make_plan

    plan = make_plan(load_spec(spec))
    stdout.print(plan.describe(), markup=False, soft_wrap=True)
    stdout.print(f"\nspec {plan.spec.name!r} is valid", markup=False)
