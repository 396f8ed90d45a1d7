"""NovoGrad for a population: K members' ``NovoGrad`` in one update.

Every parameter has the member dimension first; each member has its own ``lr``,
``β1``, ``β2``, ``eps`` and weight decay (length-K tensors), and its own
per-layer second moment ``v`` (one value per member and parameter tensor, from
the squared norm of that member's slice of the gradient). The math is
:mod:`robustness.optim.novograd`'s, member by member::

    v_1 = n_1;  v_t = β2·v_{t−1} + (1−β2)·n_t          (n_t = ‖g_t‖², per member)
    u_t = g_t / (√v_t + ε) + wd·w_t   (× (1−β1) with grad_averaging)
    m_t = β1·m_{t−1} + u_t;  w ← w − lr·m_t

A member whose slice of a tensor's gradient has been all zeros so far has not
started on that tensor (``v`` 0, ``w`` unchanged), as in the sequential form.
``PopulationNovoGrad`` does the bookkeeping (its state; the rest is
:class:`~robustness.optim._population_base.PopulationOptimizer`'s);
:func:`novograd` is the math.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from robustness.optim._population_base import PopulationOptimizer, only_group
from robustness.optim.novograd import NovoGrad

__all__ = ["PopulationNovoGrad", "novograd"]


class PopulationNovoGrad(PopulationOptimizer):
    """``NovoGrad`` for K members at once (see the module docstring).

    Args:
        params: the population's parameters (member dimension first).
        lr, beta1, beta2, eps, weight_decay: one value per member.
        grad_averaging: one value per member.

    ``param_groups[i]["lr_scale"]`` multiplies every member's ``lr`` (the
    schedule's factor). State per parameter: ``exp_avg`` (like the parameter)
    and ``exp_avg_sq`` (``(K,)``).
    """

    def __init__(
        self,
        params,
        *,
        lr: Sequence[float],
        beta1: Sequence[float],
        beta2: Sequence[float],
        eps: Sequence[float],
        weight_decay: Sequence[float],
        grad_averaging: Sequence[bool],
    ) -> None:
        super().__init__(
            params,
            {},
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            weight_decay=weight_decay,
            grad_averaging=grad_averaging,
        )
        averaging = [1.0 - b if avg else 1.0 for b, avg in zip(beta1, grad_averaging, strict=True)]
        self.members.update(
            lr=self.member_vector(lr),
            beta1=self.member_vector(beta1),
            beta2_keep=self.member_vector(1.0 - b for b in beta2),
            eps=self.member_vector(eps),
            averaging=self.member_vector(averaging),
            decay=self.member_vector(w * a for w, a in zip(weight_decay, averaging, strict=True)),
        )
        self._any_decay = any(w != 0 for w in weight_decay)

    @classmethod
    def from_members(cls, params, optimizers: Sequence[torch.optim.Optimizer]):
        """The population of the members' own ``NovoGrad`` optimizers."""
        groups = [only_group(opt, NovoGrad) for opt in optimizers]
        return cls(
            params,
            lr=[g["lr"] for g in groups],
            beta1=[g["betas"][0] for g in groups],
            beta2=[g["betas"][1] for g in groups],
            eps=[g["eps"] for g in groups],
            weight_decay=[g["weight_decay"] for g in groups],
            grad_averaging=[g["grad_averaging"] for g in groups],
        )

    def _step_group(self, group: dict) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            state = self.state[p]
            if not state:
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = p.new_zeros(p.shape[0])
        m = self.members
        novograd(
            params,
            [p.grad for p in params],
            [self.state[p]["exp_avg"] for p in params],
            [self.state[p]["exp_avg_sq"] for p in params],
            lr=self.scaled_lr(group),
            beta1=m["beta1"],
            beta2_keep=m["beta2_keep"],
            eps=m["eps"],
            averaging=m["averaging"],
            decay=m["decay"] if self._any_decay else None,
        )


def novograd(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    lr: Tensor,
    beta1: Tensor,
    beta2_keep: Tensor,
    eps: Tensor,
    averaging: Tensor,
    decay: Tensor | None,
) -> None:
    """One population NovoGrad step, in place; member values are length-K tensors.

    ``beta2_keep`` is ``1 − β2``, ``averaging`` ``1 − β1`` (grad_averaging) or 1,
    ``decay`` ``wd·averaging`` (None: no weight decay). ``exp_avg_sqs`` are
    ``(K,)``, 0 where a member has not started. ``grads`` are read only.
    """
    for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs, strict=True):
        shape = (-1,) + (1,) * (p.dim() - 1)
        norm_sq = torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1).square()
        v.copy_(torch.where(v > 0, v.lerp(norm_sq, beta2_keep), norm_sq))
        not_started = v == 0
        a = (v.sqrt() + eps).reciprocal().mul_(averaging).masked_fill_(not_started, 0.0)
        m.mul_(beta1.view(shape)).addcmul_(g, a.view(shape))
        if decay is not None:
            b = decay.masked_fill(not_started, 0.0)
            m.addcmul_(p, b.view(shape))
        p.addcmul_(lr.view(shape), m, value=-1.0)
