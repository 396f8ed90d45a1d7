"""Hyperparameter-robustness studies of deep-learning optimizers.

Public surface (imported lazily so that `import robustness` stays cheap and does
not start Ray):

- ``robustness.optim``: ``INSGD``, ``NovoGrad``, ``build_optimizer``
- ``robustness.run_trial``: one configuration on its seeds, no Ray
- ``robustness.run_study``: a whole study through Ray Tune + Optuna
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "run_study", "run_trial"]


def __getattr__(name: str):
    if name == "run_trial":
        from robustness.runner import run_trial

        return run_trial
    if name == "run_study":
        from robustness.engine import run_study

        return run_study
    raise AttributeError(f"module 'robustness' has no attribute {name!r}")
