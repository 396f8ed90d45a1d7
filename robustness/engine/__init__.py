"""The study engine: Ray Tune runs the trials, Optuna drives the search.

Public API: ``run_study(spec, out_dir, ...) -> Path`` (see ``robustness.engine._study``).
Everything else here is private.
"""

from robustness.engine._study import run_study

__all__ = ["run_study"]
