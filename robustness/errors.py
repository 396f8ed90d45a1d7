"""Errors shared across the toolkit.

``UserInputError`` is the one exception type that means "the user asked for
something that is not allowed" (a bad spec value, an unknown optimizer name, a
missing data file). The CLI turns it into a one-paragraph message and exit code 2,
with no traceback. Its message must name what was wrong and what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable


class RobustnessError(Exception):
    """Base class of the toolkit's own errors."""


class UserInputError(RobustnessError, ValueError):
    """Bad input from the user: exit code 2 on the CLI, never a traceback."""


class StudyStoppedError(RobustnessError):
    """A study stopped by its environment (a results file that cannot be written):
    exit code 1 on the CLI, with the message alone (it says what was kept and how to
    continue), never a traceback."""


def unknown_choice(kind: str, value: object, allowed: Iterable[str]) -> UserInputError:
    """An error for a name that is not in a registry, listing what is allowed."""
    names = ", ".join(sorted(allowed))
    return UserInputError(f"unknown {kind} {value!r}; allowed: {names}")
