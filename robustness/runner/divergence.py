"""The divergence watch: every step's loss is checked without a host sync per step.

The train loop hands each step's loss tensor to ``DivergenceWatch.record`` (no
device work at all: it keeps a reference). ``check()`` stacks the losses seen since
the last check, tests them on the device (non-finite, or above
``loss_factor x initial_loss``) and reads a single flag on the host, so the
loop syncs once per check instead of once per step. Because every loss is kept,
the first bad step is exact whatever the check interval. The same pass adds the
losses to a device-side running sum, which gives the mean training loss between
two evaluations (``pop_mean``) without another sync per step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class Divergence(NamedTuple):
    """Where a run diverged: the first bad step (1-based) and why."""

    step: int
    cause: str  # "nonfinite" | "explosion" (schema.DIVERGENCE_CAUSES)


class DivergenceWatch:
    """Watches a run's per-step training losses for divergence.

    Args:
        initial_loss: the training loss before the first step.
        loss_factor: a loss above ``loss_factor * initial_loss`` is an explosion.
        device: where the losses live.
    """

    def __init__(self, initial_loss: float, loss_factor: float, device: torch.device) -> None:
        self.limit = loss_factor * initial_loss
        self._pending: list[torch.Tensor] = []
        self._first_pending_step = 1
        self._sum = torch.zeros((), dtype=torch.float64, device=device)
        self._count = 0

    def record(self, loss: torch.Tensor) -> None:
        """Remember the loss of the next step (a 0-d tensor; no device work, no sync)."""
        self._pending.append(loss.detach())

    def check(self) -> Divergence | None:
        """Test the losses recorded since the last check; one host sync.

        Returns the first divergence among them, or None. After a divergence the
        running mean includes the bad losses (it is then non-finite or huge).
        """
        if not self._pending:
            return None
        losses = torch.stack(self._pending)
        first_step = self._first_pending_step
        self._first_pending_step += len(self._pending)
        self._count += len(self._pending)
        self._pending.clear()
        self._sum += losses.sum(dtype=torch.float64)
        bad = ~torch.isfinite(losses) | (losses > self.limit)
        if not bool(bad.any()):
            return None
        index = int(bad.nonzero()[0, 0])
        cause = "explosion" if math.isfinite(float(losses[index])) else "nonfinite"
        return Divergence(first_step + index, cause)

    def pop_mean(self) -> float:
        """Mean of the losses checked since the previous call (NaN if none); resets it.

        Call ``check()`` first so that every recorded loss is included.
        """
        mean = float(self._sum) / self._count if self._count else math.nan
        self._sum.zero_()
        self._count = 0
        return mean


class PopulationWatch:
    """``DivergenceWatch`` for K members trained together: the same rules per member.

    ``record`` takes the step's per-member losses (a length-K tensor); ``check``
    returns one ``Divergence`` or None per member with one host sync, and
    ``pop_mean`` one mean per member. ``select_members`` drops members (their
    pending losses too), so it is called right after a ``check``.

    Args:
        initial_losses: each member's training loss before the first step.
        loss_factor: a loss above ``loss_factor * initial_loss`` is an explosion.
        like: a tensor with the losses' dtype and device.
    """

    def __init__(self, initial_losses: list[float], loss_factor: float, like: torch.Tensor) -> None:
        # the limit in the losses' dtype, as the sequential watch's Python float
        # is when compared with a loss tensor
        self.limit = torch.tensor(
            [loss_factor * loss for loss in initial_losses], dtype=like.dtype, device=like.device
        )
        self._pending: list[torch.Tensor] = []
        self._first_pending_step = 1
        self._sum = torch.zeros(len(initial_losses), dtype=torch.float64, device=like.device)
        self._count = 0

    def record(self, losses: torch.Tensor) -> None:
        """Remember the next step's per-member losses (no device work, no sync)."""
        self._pending.append(losses.detach())

    def check(self) -> list[Divergence | None]:
        """Test the losses recorded since the last check; one host sync."""
        members = self.limit.shape[0]
        if not self._pending:
            return [None] * members
        losses = torch.stack(self._pending)  # (steps, K)
        first_step = self._first_pending_step
        self._first_pending_step += len(self._pending)
        self._count += len(self._pending)
        self._pending.clear()
        self._sum += losses.sum(0, dtype=torch.float64)
        bad = ~torch.isfinite(losses) | (losses > self.limit)
        first = bad.to(torch.uint8).argmax(0)  # the first bad step's index, per member
        finite = torch.isfinite(losses.gather(0, first.unsqueeze(0)).squeeze(0))
        any_bad, index, nonfinite = torch.stack(
            [bad.any(0).long(), first.long(), (~finite).long()]
        ).tolist()
        return [
            Divergence(first_step + i, "nonfinite" if nan else "explosion") if hit else None
            for hit, i, nan in zip(any_bad, index, nonfinite, strict=True)
        ]

    def mean(self) -> list[float]:
        """Each member's mean loss since the last ``pop_mean`` (NaN if none)."""
        return [s / self._count if self._count else math.nan for s in self._sum.tolist()]

    def pop_mean(self) -> list[float]:
        """``mean()``, then reset (for every member)."""
        means = self.mean()
        self._sum.zero_()
        self._count = 0
        return means

    def select_members(self, keep: torch.Tensor) -> None:
        """Keep only members ``keep`` (indices, in order)."""
        keep = keep.to(self.limit.device)
        self.limit = self.limit.index_select(0, keep)
        self._sum = self._sum.index_select(0, keep)
        self._pending = [losses.index_select(0, keep) for losses in self._pending]
