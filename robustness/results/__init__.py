"""The results directory: the contract between the engine and the analysis."""

from robustness.results.schema import (
    CURVE_COLUMNS,
    DIVERGENCE_CAUSES,
    OUTCOMES,
    TRIAL_COLUMNS,
)

__all__ = ["CURVE_COLUMNS", "DIVERGENCE_CAUSES", "OUTCOMES", "TRIAL_COLUMNS"]
