"""The base of every spec section: frozen, and strict about its keys.

A key a section does not know is refused with the keys it does know (and the
closest one, for typos), instead of pydantic's bare "Extra inputs are not
permitted".
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError


def known_keys(model: type[BaseModel]) -> list[str]:
    """The keys a section accepts in YAML (field aliases where set)."""
    return [field.alias or name for name, field in model.model_fields.items()]


def refuse_unknown_keys(allowed: list[str], data: Any) -> None:
    """Raise a validation error naming every key of ``data`` that is not in ``allowed``."""
    if not isinstance(data, dict):
        return
    unknown = [key for key in data if key not in allowed]
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    raise PydanticCustomError(
        "unknown_key",
        "unknown key {keys}; allowed: {allowed}",
        {"keys": ", ".join(hints), "allowed": ", ".join(allowed)},
    )


class KnownKeys(BaseModel):
    """Refuses unknown keys with the allowed ones; mixed into models defined elsewhere
    (``ScheduleConfig``) to give them the spec's message."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        refuse_unknown_keys(known_keys(cls), data)
        return data


class Section(KnownKeys):
    """A spec section: immutable, unknown keys refused with the allowed ones."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
