"""How spec problems reach the user: one line per problem, each naming its key path.

Pydantic's errors are rewritten as ``space.lr[2]: Input should be greater than 0
(got -0.1)``; problems found later (against the registries) use the same form, and
all of them travel in one ``UserInputError`` so a user fixes a spec in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from robustness.errors import UserInputError

# Error types whose message already says everything, or whose input is not worth echoing.
_NO_ECHO = {
    "missing",
    "unknown_key",
    "value_error",
    "batch_size",
    "configs_per_trial",
    "population",
    "scalar",
    "optimizer_entry",
    "name",
}


def key_path(loc: Sequence[str | int]) -> str:
    """``("space", "lr", "values", 2)`` -> ``space.lr[2]`` (``values`` is the axis's list)."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "values" and i + 1 < len(loc) and isinstance(loc[i + 1], int):
            continue
        elif part == "[key]":
            out += " (the name)"
        else:
            out += f".{part}" if out else str(part)
    return out


def _echo(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validation_problems(exc: ValidationError, prefix: Sequence[str | int] = ()) -> list[str]:
    """One ``path: message`` line per pydantic error, paths under ``prefix``."""
    lines = []
    for err in exc.errors():
        path = key_path((*prefix, *err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] not in _NO_ECHO and not isinstance(err["input"], dict):
            msg += f" (got {_echo(err['input'])})"
        lines.append(f"{path}: {msg}" if path else msg)
    return lines


def invalid_spec(source: str, problems: Sequence[str]) -> UserInputError:
    """The error for a refused spec, listing every problem on its own line."""
    listed = "\n".join(f"  - {p}" for p in problems)
    return UserInputError(f"invalid study spec {source}:\n{listed}")
