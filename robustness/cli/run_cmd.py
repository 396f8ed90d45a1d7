"""`robustness run [SPEC]`: run a study through Ray Tune + Optuna into a results dir.

With no SPEC, the bundled quickstart, except with ``--resume``: then the study of
``--out`` is continued from its own record (``--out/spec.yaml``). A results
directory's ``spec.yaml`` is itself a spec (its ``provenance`` is ignored), so
``robustness run DIR/spec.yaml --out NEW`` reruns a study. The default ``--out``
is ``results/<spec name>``.
``--dry-run`` prints the plan and its size and exits without starting Ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from robustness.cli._app import app, stderr, stdout
from robustness.errors import UserInputError
from robustness.results.schema import REPORT_DIR, SPEC_FILE

_DEFAULT_STUDY = "quickstart"


@app.command("run")
def run_command(
    spec: Annotated[
        str | None,
        typer.Argument(
            help="study spec: a YAML path or a bundled study's name (default quickstart)"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="results directory (default results/<spec name>)")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="join the Ray cluster at this address (default: a private local Ray)"),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="continue the study already in --out (without SPEC: from its spec.yaml)",
        ),
    ] = False,
    max_concurrent: Annotated[
        int | None,
        typer.Option("--max-concurrent", min=1, help="trials at once (overrides the spec)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the plan and its size, start nothing")
    ] = False,
    no_report: Annotated[
        bool, typer.Option("--no-report", help="skip writing report/ at the end")
    ] = False,
    shared_storage: Annotated[
        bool,
        typer.Option(
            "--shared-storage",
            help="assert that --out is seen by every node of a multi-node cluster "
            "(needed when it is not on a network file system)",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress display")] = False,
) -> None:
    """Run a study: every configuration on every seed, results in --out."""
    from robustness.spec import load_spec, make_plan

    if spec is None and resume:
        if out is None:
            raise UserInputError(
                "--resume without a spec continues the study of --out: give --out DIR "
                "(or the spec as well)"
            )
        spec = str(out / SPEC_FILE)
        if not (out / SPEC_FILE).is_file():
            raise UserInputError(
                f"cannot resume in {str(out)!r}: it has no {SPEC_FILE}, so it holds no "
                "study; give the spec to start one there"
            )
    study = load_spec(spec or _DEFAULT_STUDY)
    plan = make_plan(study)
    if dry_run:
        stdout.print(plan.describe(), soft_wrap=True)
        return
    out_dir = out if out is not None else Path("results") / study.name
    from robustness.engine import run_study

    try:
        path = run_study(
            study,
            out_dir,
            address=address,
            resume=resume,
            max_concurrent=max_concurrent,
            progress=not quiet,
            shared_storage=shared_storage,
            report=not no_report,
        )
    except KeyboardInterrupt:
        stderr.print(
            f"what finished is kept in {str(out_dir)!r}; continue with "
            f"`robustness run --out {out_dir} --resume`"
        )
        raise
    stdout.print(f"results: {path}")
    index = path / REPORT_DIR / "index.html"
    if not no_report and index.exists():
        stdout.print(f"report:  {index}")
