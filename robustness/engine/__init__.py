"""The study engine: Ray Tune runs the trials, Optuna drives the search.

Public API: ``run_study(spec, out_dir, ...) -> Path`` (see ``robustness.engine._study``).
Everything else here is private. ``run_study`` is imported lazily, so the Ray workers
that import the trainable (``robustness.engine._trainable``) do not pay for Optuna
and Tune's search modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from robustness.engine._study import run_study

__all__ = ["run_study"]


def __getattr__(name: str):
    if name == "run_study":
        from robustness.engine._study import run_study

        return run_study
    raise AttributeError(f"module 'robustness.engine' has no attribute {name!r}")
