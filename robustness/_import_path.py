"""Objects named by import path: a user's optimizer class, model factory or dataset loader.

A spec or the CLI may name, instead of a registered name, an object of the
user's own code as ``package.module:Name`` (or ``package.module.Name``; a
dotted name after the colon reaches a nested attribute). Registered names
contain neither ``:`` nor ``.``, so the two never clash.

Security: only the user's own spec or command line names what is imported
(never a results directory or any other file the toolkit reads), and importing
is all this module does with it. The module is looked up on ``sys.path`` and,
after it, in the current directory, as ``python -m`` would: appended, so a file
there never shadows an installed package. The same lookup happens in each Ray
worker when it builds the trial (Ray puts the driver's current directory on its
workers' path); on a cluster the module must be importable on every node.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from robustness.errors import UserInputError

_SHIP_HINT = (
    "the module must be importable where the study runs: installed, on PYTHONPATH, or "
    "under the current directory (on a Ray cluster, on every node; see the README)"
)


def is_import_path(name: str) -> bool:
    """Whether ``name`` is an import path rather than a registered name."""
    return ":" in name or "." in name


def resolve_import_path(path: str, kind: str) -> Any:
    """The object ``path`` names (``package.module:Name`` or ``package.module.Name``).

    Args:
        path: the import path, as the user wrote it.
        kind: what it should be, for messages (``"optimizer class"``, ``"model factory"``).

    Raises:
        UserInputError: a malformed path, a module that cannot be imported (with the
            import's own error), or a missing attribute.
    """
    module_name, colon, attribute = path.partition(":")
    if not colon:
        module_name, _, attribute = path.rpartition(".")
    parts = module_name.split(".") + attribute.split(".")
    if not module_name or not attribute or not all(p.isidentifier() for p in parts):
        raise UserInputError(
            f"{kind} {path!r} is not an import path; write 'package.module:Name' "
            "(or 'package.module.Name')"
        )
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may raise anything while importing
        raise UserInputError(
            f"{kind} {path!r}: cannot import module {module_name!r} "
            f"({type(exc).__name__}: {exc}); {_SHIP_HINT}"
        ) from None
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise UserInputError(
                f"{kind} {path!r}: module {module_name!r} has no attribute {attribute!r}"
            )
        found = getattr(found, part)
    return found
