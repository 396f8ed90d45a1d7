"""The good band's tolerance rule: which values count as near the best.

One rule for the two places that ask it: the report's ``lr_band`` table
(``analysis.metrics.lr_band_width``) and the boundary sampler's band search
(``search: {sampler: boundary, band: true}``, ``robustness.engine._boundary``). Both
apply it to capped values (``robustness.runner.outcome.capped_value``), so the edges
the sampler locates are where the report's band ends.

A value is *good* when it is within ``tolerance`` of the best:

- minimized (losses): relative, ``value <= best * (1 + tolerance)`` (default 0.1),
  since losses of different problems differ in scale;
- maximized (accuracies): absolute, ``value >= best - tolerance`` (default 0.01),
  since accuracies share the scale [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robustness.errors import UserInputError

LOSS_TOLERANCE = 0.1
"""Default tolerance of a minimized metric (relative)."""
ACCURACY_TOLERANCE = 0.01
"""Default tolerance of a maximized metric (absolute)."""


def band_tolerance(tolerance: float | None, *, maximize: bool) -> float:
    """``tolerance``, or the default for the metric's direction when None; a clear
    error when negative."""
    if tolerance is None:
        return ACCURACY_TOLERANCE if maximize else LOSS_TOLERANCE
    if not tolerance >= 0:
        raise UserInputError(f"tolerance must be >= 0, got {tolerance!r}")
    return float(tolerance)


def band_threshold(best: Any, tolerance: float, *, maximize: bool) -> Any:
    """The worst value still good (vectorised over ``best``)."""
    return best - tolerance if maximize else best * (1.0 + tolerance)


def in_band(value: Any, best: Any, tolerance: float, *, maximize: bool) -> Any:
    """Whether ``value`` is good relative to ``best`` (vectorised; NaN is never good)."""
    threshold = band_threshold(best, tolerance, maximize=maximize)
    good = np.greater_equal(value, threshold) if maximize else np.less_equal(value, threshold)
    return bool(good) if np.ndim(good) == 0 else good
