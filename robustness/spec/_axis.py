"""One swept axis of the search space, in any of the forms a spec may write it.

Forms (YAML):

- a list ``[a, b, c]`` (or ``{choice: [a, b, c]}``), or one scalar: exactly these values;
- ``{log: [lo, hi], points: n}``: ``n`` values spaced evenly in log scale, ends included;
- ``{linear: [lo, hi], points: n}``: ``n`` values spaced evenly, ends included;
- ``{int: [lo, hi]}``: every integer from ``lo`` to ``hi``;
- ``{log: [lo, hi]}``: a log-uniform distribution (non-grid samplers only);
- ``{uniform: [lo, hi]}``: a uniform distribution (non-grid samplers only).

The first four forms are finite: the grid sampler enumerates them. A non-grid
sampler draws ``int`` ranges from an ``IntDistribution`` and picks among the values
of the others (a ``CategoricalDistribution``, so the values a study can run are
exactly the ones written). ``AxisSpec[V]`` checks every
written value against ``V`` (e.g. ``PositiveFloat`` for ``lr``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import Field, PositiveInt, StrictInt, model_serializer, model_validator

from robustness.spec._section import Section, refuse_unknown_keys

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

V = TypeVar("V")

# The forms as a user reads them, for messages. Placeholders are upper case: the CLI
# prints messages through rich, which would take "[lo, hi]" for a markup tag.
AXIS_FORMS = (
    "a list [A, B, ...]",
    "{log: [LO, HI], points: N}",
    "{linear: [LO, HI], points: N}",
    "{int: [LO, HI]}",
    "{choice: [A, B, ...]}",
    "{log: [LO, HI]} or {uniform: [LO, HI]} (non-grid samplers)",
)

_AXIS_KEYS = ["log", "linear", "points", "int", "choice", "uniform"]
_SIGNIFICANT_DIGITS = 12  # grid points are rounded so 1e-3..1e1 gives 0.01, not 0.009999...


def _clean(value: float) -> float:
    return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class AxisSpec(Section, Generic[V]):
    """A validated axis. Build it from YAML with ``AxisSpec[V].model_validate(raw)``."""

    values: list[V] | None = None
    log: tuple[V, V] | None = None
    linear: tuple[V, V] | None = None
    points: PositiveInt | None = None
    uniform: tuple[V, V] | None = None
    int_: tuple[StrictInt, StrictInt] | None = Field(None, alias="int")

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        """Normalize a list, scalar or ``choice`` into ``values``; refuse unknown keys."""
        if isinstance(data, AxisSpec):
            return data
        if isinstance(data, (list, tuple)):
            return {"values": list(data)}
        if not isinstance(data, dict):
            return {"values": [data]}
        refuse_unknown_keys(_AXIS_KEYS, data)
        data = dict(data)
        if "choice" in data:
            data["values"] = data.pop("choice")
        return data

    @model_validator(mode="after")
    def _one_form(self) -> AxisSpec[V]:
        forms = [
            name for name in ("values", "log", "linear", "uniform", "int_") if self._given(name)
        ]
        if len(forms) != 1:
            raise ValueError(
                "give the axis in exactly one of these forms: " + "; ".join(AXIS_FORMS)
            )
        if self.points is not None and forms[0] not in ("log", "linear"):
            raise ValueError("'points' goes only with {log: [LO, HI]} or {linear: [LO, HI]}")
        if self.values is not None:
            if not self.values:
                raise ValueError("the list of values is empty; give at least one value")
            if len(set(map(repr, self.values))) != len(self.values):
                raise ValueError(f"the values {self.values} repeat; list each value once")
            return self
        key = forms[0].rstrip("_")
        lo, hi = getattr(self, forms[0])
        if not (_is_number(lo) and _is_number(hi)):
            raise ValueError(f"{key}: [LO, HI] must be two numbers, got [{lo!r}, {hi!r}]")
        if key == "log" and lo <= 0:
            raise ValueError(f"log: LO must be > 0 for a log scale, got [{lo}, {hi}]")
        if lo >= hi:
            raise ValueError(f"{key}: [LO, HI] needs LO < HI, got [{lo}, {hi}]")
        return self

    def _given(self, name: str) -> bool:
        return getattr(self, name) is not None

    @model_serializer
    def _as_written(self) -> Any:
        """Serialize back to the YAML form it was written in (so a dump round-trips)."""
        if self.values is not None:
            return list(self.values)
        if self.int_ is not None:
            return {"int": list(self.int_)}
        key = next(k for k in ("log", "linear", "uniform") if self._given(k))
        out: dict[str, Any] = {key: list(getattr(self, key))}
        if self.points is not None:
            out["points"] = self.points
        return out

    @property
    def is_finite(self) -> bool:
        """True when the axis is a finite set of values the grid sampler can enumerate."""
        return self.values is not None or self.int_ is not None or self.points is not None

    @property
    def form(self) -> str:
        """``list``, ``log grid``, ``linear grid``, ``int range``, ``log-uniform`` or ``uniform``."""
        if self.values is not None:
            return "list"
        if self.int_ is not None:
            return "int range"
        if self.points is not None:
            return "log grid" if self.log is not None else "linear grid"
        return "log-uniform" if self.log is not None else "uniform"

    def grid_values(self) -> list[Any]:
        """The axis's values, in order. ``ValueError`` for a distribution axis."""
        if self.values is not None:
            return list(self.values)
        if self.int_ is not None:
            return list(range(self.int_[0], self.int_[1] + 1))
        if self.points is None:
            raise ValueError(f"a {self.form} axis has no finite set of values")
        n = self.points
        if self.log is not None:
            lo, hi = math.log10(self.log[0]), math.log10(self.log[1])
            return [_clean(10 ** (lo + (hi - lo) * i / max(n - 1, 1))) for i in range(n)]
        lo, hi = self.linear  # type: ignore[misc]
        return [_clean(lo + (hi - lo) * i / max(n - 1, 1)) for i in range(n)]

    def size(self) -> int | None:
        """The number of values, or None for a distribution axis."""
        return len(self.grid_values()) if self.is_finite else None

    def extreme_values(self) -> list[Any]:
        """Values that exercise the axis when checking it: all values, or both bounds."""
        if self.is_finite:
            return self.grid_values()
        bounds = self.log if self.log is not None else self.uniform
        return list(bounds)  # type: ignore[arg-type]

    def distribution(self) -> BaseDistribution:
        """The axis as an Optuna distribution: ``int`` ranges are integer distributions,
        the other finite axes categorical, ``log``/``uniform`` float distributions."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.int_ is not None:
            return IntDistribution(self.int_[0], self.int_[1])
        if self.is_finite:
            return CategoricalDistribution(self.grid_values())
        if self.log is not None:
            return FloatDistribution(float(self.log[0]), float(self.log[1]), log=True)
        return FloatDistribution(float(self.uniform[0]), float(self.uniform[1]))  # type: ignore[index]

    def describe(self) -> str:
        """A one-line summary, e.g. ``log grid 0.001..10, 7 values: 0.001, 0.00464, ...``."""
        if not self.is_finite:
            lo, hi = self.extreme_values()
            return f"{self.form} on [{_short(lo)}, {_short(hi)}]"
        values = self.grid_values()
        shown = ", ".join(_short(v) for v in values)
        if self.form == "list":
            return f"{len(values)} value{'s' * (len(values) != 1)}: {shown}"
        return f"{self.form}, {len(values)} values: {shown}"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
