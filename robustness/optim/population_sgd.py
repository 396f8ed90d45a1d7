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

:class:`PopulationSGD` does the bookkeeping (the momentum buffers; per-member
tensors, the schedule's factor and dropping members are
:class:`~robustness.optim._population_base.PopulationOptimizer`'s); :func:`sgd`
is the math.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from robustness.optim._population_base import PopulationOptimizer, agreed, only_group

__all__ = ["PopulationSGD", "sgd"]


class PopulationSGD(PopulationOptimizer):
    """``torch.optim.SGD`` for K members at once (see the module docstring).

    Args:
        params: the population's parameters (member dimension first).
        lr, momentum, dampening, weight_decay: one value per member.
        nesterov: Nesterov momentum for every member.

    ``param_groups[i]["lr_scale"]`` (1.0) multiplies every member's ``lr``: the
    learning-rate schedule's factor, set by the training loop before each step.
    State per parameter: ``momentum_buffer`` (member dimension first).
    :class:`~robustness.optim.population_insgd.PopulationINSGD` builds on this
    class: its update is this one with INSGD's scales.
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
        super().__init__(
            params,
            {"nesterov": bool(nesterov)},
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
        )
        self.members.update(
            lr=self.member_vector(lr),
            momentum=self.member_vector(momentum),
            dampening_keep=self.member_vector(1.0 - t for t in dampening),
            weight_decay=self.member_vector(weight_decay),
        )
        self._any_momentum = any(m != 0 for m in momentum)
        self._all_momentum = all(m != 0 for m in momentum)
        self._any_decay = any(w != 0 for w in weight_decay)

    @classmethod
    def from_members(cls, params, optimizers: Sequence[torch.optim.Optimizer]) -> PopulationSGD:
        """The population of the members' own ``torch.optim.SGD`` optimizers (their
        hyperparameters, as built and validated by ``build_optimizer``)."""
        groups = [only_group(opt, torch.optim.SGD) for opt in optimizers]
        return cls(
            params,
            **{key: [g[key] for g in groups] for key in SGD_MEMBER_KEYS},
            nesterov=agreed((g["nesterov"] for g in groups), "nesterov"),
        )

    def _step_group(self, group: dict) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if params:
            self._sgd_update(group, params)

    def _sgd_update(
        self,
        group: dict,
        params: list[Tensor],
        grad_scales: Sequence[Tensor | None] | None = None,
        update_scales: Sequence[Tensor | None] | None = None,
    ) -> None:
        """:func:`sgd` on ``params`` of ``group`` with every member's values, keeping
        the momentum buffers in the state; the scales are INSGD's (None: plain SGD)."""
        m = self.members
        buffers = [self.state[p].get("momentum_buffer") for p in params]
        sgd(
            params,
            [p.grad for p in params],
            buffers,
            lr=self.scaled_lr(group),
            weight_decay=m["weight_decay"] if self._any_decay else None,
            momentum=m["momentum"] if self._any_momentum else None,
            dampening_keep=m["dampening_keep"],
            nesterov=group["nesterov"],
            uses_momentum=None if self._all_momentum else m["momentum"] != 0,
            grad_scales=grad_scales,
            update_scales=update_scales,
        )
        if self._any_momentum:
            for p, buf in zip(params, buffers, strict=True):
                self.state[p]["momentum_buffer"] = buf


#: the per-member hyperparameters of ``torch.optim.SGD``'s param group
SGD_MEMBER_KEYS = ("lr", "momentum", "dampening", "weight_decay")


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
