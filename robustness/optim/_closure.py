"""The closure of ``Optimizer.step``, evaluated as every optimizer here does."""

from __future__ import annotations

from collections.abc import Callable

import torch


def closure_loss(closure: Callable[[], float] | None) -> float | None:
    """The loss ``closure`` returns, computed with gradients enabled (``step`` runs
    under ``torch.no_grad``, and the closure must backpropagate), or None without
    one: ``torch.optim.Optimizer.step``'s contract."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()
