"""SGD with momentum for a population: K members' ``torch.optim.SGD`` in one update.

Every parameter has the member dimension first (``robustness.models.population``)
and each member has its own ``lr``, momentum ``μ``, dampening ``τ`` and weight
decay ``wd``, held as length-K tensors, so one elementwise op per parameter
updates all members. The math is ``torch.optim.SGD``'s, member by member::

    d = g + wd·w;  buf = d on the first step, then μ·buf + (1−τ)·d
    d = d + μ·buf (Nesterov) or buf;  w ← w − lr·d

A member with ``μ = 0`` takes ``d`` itself, as ``torch.optim.SGD`` does without
momentum (no buffer of its own), while the others use their buffers.
``nesterov`` is one flag for the whole population. ``(1−τ)`` is computed from
the Python floats, as ``torch.optim.SGD`` does, so in float64 each member's step
is the sequential one to rounding.

:class:`PopulationSGD` does the bookkeeping (per-member tensors, the schedule's
factor, dropping members); :func:`sgd` is the math.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["PopulationSGD", "sgd"]


class PopulationSGD(torch.optim.Optimizer):
    """``torch.optim.SGD`` for K members at once (see the module docstring).

    Args:
        params: the population's parameters (member dimension first).
        lr, momentum, dampening, weight_decay: one value per member.
        nesterov: Nesterov momentum for every member.

    ``param_groups[i]["lr_scale"]`` (1.0) multiplies every member's ``lr``: the
    learning-rate schedule's factor, set by the training loop before each step.
    State per parameter: ``momentum_buffer`` (member dimension first).
    """

    def __init__(
        self,
        params,
        *,
        lr: Sequence[float],
        momentum: Sequence[float],
        dampening: Sequence[float],
        weight_decay: Sequence[float],
        nesterov: bool,
    ) -> None:
        super().__init__(params, {"lr_scale": 1.0, "nesterov": bool(nesterov)})
        like = self.param_groups[0]["params"][0]
        sizes = {len(lr), len(momentum), len(dampening), len(weight_decay)}
        if len(sizes) != 1 or like.shape[0] not in sizes:
            raise ValueError("one lr, momentum, dampening and weight_decay per member")
        self.members = {
            "lr": member_vector(lr, like),
            "momentum": member_vector(momentum, like),
            "dampening_keep": member_vector([1.0 - t for t in dampening], like),
            "weight_decay": member_vector(weight_decay, like),
        }
        self._any_momentum = any(m != 0 for m in momentum)
        self._all_momentum = all(m != 0 for m in momentum)
        self._any_decay = any(w != 0 for w in weight_decay)

    @classmethod
    def from_members(cls, params, optimizers: Sequence[torch.optim.Optimizer]) -> PopulationSGD:
        """The population of the members' own ``torch.optim.SGD`` optimizers (their
        hyperparameters, as built and validated by ``build_optimizer``)."""
        groups = [only_group(opt, torch.optim.SGD) for opt in optimizers]
        nesterov = {g["nesterov"] for g in groups}
        if len(nesterov) != 1:
            raise ValueError("population members must agree on nesterov")
        return cls(
            params,
            lr=[g["lr"] for g in groups],
            momentum=[g["momentum"] for g in groups],
            dampening=[g["dampening"] for g in groups],
            weight_decay=[g["weight_decay"] for g in groups],
            nesterov=nesterov.pop(),
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One SGD step of every member on every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        m = self.members
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            scale = group["lr_scale"]
            buffers = [self.state[p].get("momentum_buffer") for p in params]
            sgd(
                params,
                [p.grad for p in params],
                buffers,
                lr=m["lr"] if scale == 1.0 else m["lr"] * scale,
                weight_decay=m["weight_decay"] if self._any_decay else None,
                momentum=m["momentum"] if self._any_momentum else None,
                dampening_keep=m["dampening_keep"],
                nesterov=group["nesterov"],
                uses_momentum=None if self._all_momentum else m["momentum"] != 0,
            )
            if self._any_momentum:
                for p, buf in zip(params, buffers, strict=True):
                    self.state[p]["momentum_buffer"] = buf
        return loss

    def select_members(self, keep: Tensor, replaced: dict[Tensor, Tensor]) -> None:
        """Keep only members ``keep`` (indices, in order): per-member values and state.

        ``replaced`` maps each old parameter to its new, sliced one, as
        ``robustness.models.population.select_members`` returns it.
        """
        select_members(self, keep, replaced)


def sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: Tensor,
    weight_decay: Tensor | None,
    momentum: Tensor | None,
    dampening_keep: Tensor,
    nesterov: bool,
    uses_momentum: Tensor | None = None,
    grad_scales: Sequence[Tensor | None] | None = None,
    update_scales: Sequence[Tensor | None] | None = None,
) -> None:
    """One population SGD step, in place; the member values are length-K tensors.

    ``weight_decay`` None: no decay; ``momentum`` None: no member has momentum
    (no buffers). ``dampening_keep`` is ``1 − τ``. ``uses_momentum`` (bool per
    member, None = all) picks ``buf`` or ``d`` per member. A None entry of
    ``momentum_buffers`` is a first step: the new buffer is written into the list.
    ``grad_scales`` and ``update_scales`` (INSGD's, per parameter, each
    broadcastable to it, None = 1) scale the gradient before the decay and the
    step after the momentum: ``d = s_g·g + wd·w`` ... ``w ← w − lr·s_u·d``.
    ``grads`` are read only.
    """
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        shape = (-1,) + (1,) * (p.dim() - 1)
        g_scale = None if grad_scales is None else grad_scales[i]
        u_scale = None if update_scales is None else update_scales[i]
        d = g if g_scale is None else g * g_scale
        if weight_decay is not None:
            d = d.addcmul(weight_decay.view(shape), p)
        if momentum is not None:
            mu = momentum.view(shape)
            buf = momentum_buffers[i]
            if buf is None:
                buf = momentum_buffers[i] = d.clone()
            else:
                buf.mul_(mu).addcmul_(dampening_keep.view(shape), d)
            if nesterov:
                d = d.addcmul(mu, buf)
            elif uses_momentum is None:
                d = buf
            else:
                d = torch.where(uses_momentum.view(shape), buf, d)
        if u_scale is not None:
            d = d * u_scale
        p.addcmul_(lr.view(shape), d, value=-1.0)


def select_members(
    optimizer: torch.optim.Optimizer, keep: Tensor, replaced: dict[Tensor, Tensor]
) -> None:
    """Slice a population optimizer's per-member values (``optimizer.members``) and
    state to members ``keep``, and move its groups and state to the new
    parameters (``replaced``). Shared by the population optimizers."""
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


def member_vector(values: Sequence[float], like: Tensor) -> Tensor:
    """Per-member values as a length-K tensor in ``like``'s dtype and device."""
    return torch.tensor([float(v) for v in values], dtype=like.dtype, device=like.device)


def only_group(optimizer: torch.optim.Optimizer, kind: type) -> dict:
    """The one param group of a member's ``kind`` optimizer (its hyperparameters)."""
    if not isinstance(optimizer, kind) or len(optimizer.param_groups) != 1:
        raise ValueError(f"expected a {kind.__name__} with one parameter group")
    return optimizer.param_groups[0]
