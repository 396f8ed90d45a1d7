"""What every population optimizer shares: per-member tensors, the step loop, dropping members.

A population optimizer updates K members at once; every parameter has the member
dimension first (``robustness.models.population``) and each hyperparameter is a
length-K tensor in ``members`` (in the parameters' dtype and device), so one
elementwise op per parameter serves all members. The bookkeeping around that math
is the same for SGD, NovoGrad and INSGD and lives here once:

- the check that every per-member hyperparameter has one value per member;
- ``param_groups[i]["lr_scale"]`` (1.0): the learning-rate schedule's factor,
  set by the training loop before each step, multiplying every member's ``lr``;
- ``step``: the closure, then :meth:`PopulationOptimizer._step_group` per group;
- ``select_members``: slicing the per-member values and state when members are
  dropped (diverged runs), and moving them to the sliced parameters;
- building a population from the members' own optimizers (:func:`only_group`,
  :func:`agreed`), so their defaults and checks stay the registry's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from robustness.optim._closure import closure_loss

__all__ = ["PopulationOptimizer", "agreed", "only_group", "select_members"]


class PopulationOptimizer(torch.optim.Optimizer):
    """Base of the population optimizers (see the module docstring).

    Args:
        params: the population's parameters (member dimension first).
        defaults: the group options shared by all members (``lr_scale`` is added).
        **values: the per-member hyperparameters, each checked to hold one value
            per member; the subclass turns them into ``members`` with
            :meth:`member_vector`.

    Subclasses implement :meth:`_step_group`.
    """

    def __init__(self, params, defaults: dict[str, Any], **values: Sequence[Any]) -> None:
        super().__init__(params, {"lr_scale": 1.0, **defaults})
        self.members: dict[str, Tensor] = {}
        self.check_member_values(**values)

    def check_member_values(self, **values: Sequence[Any]) -> None:
        """Every sequence in ``values`` has one value per member, or ``ValueError``."""
        count = self.param_groups[0]["params"][0].shape[0]
        if {len(v) for v in values.values()} != {count}:
            raise ValueError(f"one {', '.join(values)} per member ({count} members)")

    def member_vector(self, values: Iterable[float]) -> Tensor:
        """Per-member values as a length-K tensor in the parameters' dtype and device."""
        like = self.param_groups[0]["params"][0]
        return torch.tensor([float(v) for v in values], dtype=like.dtype, device=like.device)

    def scaled_lr(self, group: dict) -> Tensor:
        """Every member's ``lr`` times the group's schedule factor ``lr_scale``."""
        scale = group["lr_scale"]
        return self.members["lr"] if scale == 1.0 else self.members["lr"] * scale

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One step of every member on every parameter that has a gradient."""
        loss = closure_loss(closure)
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict) -> None:
        """Update every member on ``group``'s parameters that have a gradient."""
        raise NotImplementedError

    def select_members(self, keep: Tensor, replaced: dict[Tensor, Tensor]) -> None:
        """Keep only members ``keep`` (indices, in order): per-member values and state.

        ``replaced`` maps each old parameter to its new, sliced one, as
        ``robustness.models.population.select_members`` returns it.
        """
        select_members(self, keep, replaced)


def select_members(
    optimizer: torch.optim.Optimizer, keep: Tensor, replaced: dict[Tensor, Tensor]
) -> None:
    """Slice a population optimizer's per-member values (``optimizer.members``) and
    state to members ``keep``, and move its groups and state to the new
    parameters (``replaced``)."""
    members = optimizer.members
    for name, value in members.items():
        members[name] = value.index_select(0, keep.to(value.device))
    for group in optimizer.param_groups:
        group["params"] = [replaced.get(p, p) for p in group["params"]]
    old_state = optimizer.state
    optimizer.state = defaultdict(dict)
    for param, state in old_state.items():
        optimizer.state[replaced.get(param, param)] = {
            name: value.index_select(0, keep.to(value.device))
            if isinstance(value, Tensor) and value.dim() > 0
            else value
            for name, value in state.items()
        }


def only_group(optimizer: torch.optim.Optimizer, kind: type) -> dict:
    """The one param group of a member's ``kind`` optimizer (its hyperparameters)."""
    if not isinstance(optimizer, kind) or len(optimizer.param_groups) != 1:
        raise ValueError(f"expected a {kind.__name__} with one parameter group")
    return optimizer.param_groups[0]


def agreed(values: Iterable[Any], what: str) -> Any:
    """The one value all members share for an option the population cannot vary
    per member (``nesterov``, INSGD's ``mode``), or ``ValueError`` naming it."""
    distinct = set(values)
    if len(distinct) != 1:
        raise ValueError(f"population members must agree on {what}")
    return distinct.pop()
