"""`robustness list [what]`: what the toolkit offers, by registry.

``what`` is one of optimizers, models, datasets, inits, studies; without it, all.
Each line is a name and a short summary (a builder's options, an optimizer's
class and which constructor argument each swept axis sets, a bundled study's description). Each registry is imported only
when it is listed.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Annotated, Any

import typer

from robustness.cli._app import app, stdout
from robustness.errors import unknown_choice


def _summary(builder: Callable[..., Any]) -> str:
    from robustness._options import keyword_options

    doc = (builder.__doc__ or "").strip()
    first = doc.splitlines()[0] if doc else ""
    options = keyword_options(builder)
    listed = f"options: {', '.join(options)}" if options else ""
    return " ".join(part for part in (first, f"({listed})" if first and listed else listed) if part)


def _optimizers() -> dict[str, str]:
    from robustness.optim import OPTIMIZERS, optimizer_entry

    return {name: optimizer_entry(name).describe() for name in OPTIMIZERS}


def _models() -> dict[str, str]:
    from robustness.models import MODELS

    return {name: _summary(builder) for name, builder in MODELS.items()}


def _datasets() -> dict[str, str]:
    from robustness.data import DATASETS

    return {name: _summary(builder) for name, builder in DATASETS.items()}


def _inits() -> dict[str, str]:
    from robustness.init_schemes import INIT_SCHEMES

    return {name: _summary(builder) for name, builder in INIT_SCHEMES.items()}


def _studies() -> dict[str, str]:
    from robustness.spec import bundled_studies

    return {name: " ".join(text.split()) for name, text in bundled_studies().items()}


_LISTS: dict[str, Callable[[], dict[str, str]]] = {
    "optimizers": _optimizers,
    "models": _models,
    "datasets": _datasets,
    "inits": _inits,
    "studies": _studies,
}


def _render(title: str, entries: dict[str, str]) -> str:
    width = max(map(len, entries), default=0)
    indent = " " * (width + 4)
    lines = [title]
    for name, summary in entries.items():
        head = f"  {name:<{width}}  "
        body = textwrap.fill(summary, 100, initial_indent=head, subsequent_indent=indent)
        lines.append(body if summary else head.rstrip())
    return "\n".join(lines)


@app.command("list")
def list_command(
    what: Annotated[
        str | None,
        typer.Argument(help=f"one of {', '.join(_LISTS)} (default: all)", show_default=False),
    ] = None,
) -> None:
    """List optimizers, models, datasets, init schemes or bundled studies."""
    if what is not None and what not in _LISTS:
        raise unknown_choice("thing to list", what, _LISTS)
    kinds = [what] if what is not None else list(_LISTS)
    stdout.print("\n\n".join(_render(k, _LISTS[k]()) for k in kinds), markup=False, soft_wrap=True)
