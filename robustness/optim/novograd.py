"""NovoGrad (Ginsburg et al. 2019, arXiv 1905.11286, Algorithm 1), exactly.

Per parameter tensor, with ``n_t = ‖g_t‖²``::

    v_1 = n_1;  v_t = β2·v_{t−1} + (1−β2)·n_t
    u_t = g_t / (√v_t + ε) + wd·w_t        (× (1−β1) with grad_averaging)
    m_t = β1·m_{t−1} + u_t,  m_0 = 0
    w  ← w − lr·m_t

No bias correction (``v_1 = n_1`` removes it). A tensor whose gradient is all
zeros before its first non-zero one has not started: ``v`` stays 0 and ``w`` does
not move (its weight decay waits too). ``p.grad`` is never modified.

Compared with public implementations (docs/algorithms.md): the same math as NeMo,
timm's NvNovoGrad and ``torch_optimizer.NovoGrad`` *with betas set explicitly*
(its default β2 is 0). ``torch_optimizer`` divides ``p.grad`` in place, keeps
``v`` in the default dtype (float32 even for float64 parameters), and on a zero
first gradient with weight decay it still moves ``w`` by the decay; here none of
that happens. ``pytorch_optimizer.NovoGrad`` skips ``(1−β1)`` on the first step
under grad_averaging.

``NovoGrad`` does the bookkeeping; :func:`novograd` is the math, with a simple
per-tensor path and a multi-tensor ``torch._foreach_*`` path that treats the
per-tensor scalars as one vector (no host sync in either). The optimizer's
multi-tensor path keeps ``exp_avg`` and ``exp_avg_sq`` in flat buffers
(``FlatState``): the state entries are views of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from robustness.errors import UserInputError
from robustness.optim._closure import closure_loss
from robustness.optim._multi_tensor import (
    FlatState,
    Spread,
    Spreads,
    device_scalar,
    foreach_axpy_,
    group_by_device_and_dtype,
    spreads_scales,
)
from robustness.optim._validation import (
    check_coefficient,
    check_flag,
    check_non_negative,
    check_positive,
)

__all__ = ["NovoGrad", "novograd"]

# the paper's (β1, β2), docs/algorithms.md's defaults
DEFAULT_BETAS = (0.95, 0.98)
# the state the multi-tensor path keeps flat (``FlatState`` layouts)
_STATE_LAYOUT = {"exp_avg": "tensor", "exp_avg_sq": "scalar"}


class NovoGrad(torch.optim.Optimizer):
    """NovoGrad, the paper's Algorithm 1 (see the module docstring).

    Args:
        params: parameters or parameter groups, as for any ``torch.optim`` optimizer.
        lr: learning rate, > 0.
        betas: ``(β1, β2)``, each in [0, 1): first-moment and second-moment
            (squared gradient norm) coefficients.
        eps: added to ``√v`` in the denominator, ≥ 0.
        weight_decay: L2 penalty added to the normalized gradient, ≥ 0.
        grad_averaging: scale ``u_t`` by ``(1−β1)``.
        foreach: use the multi-tensor path (default) instead of the per-tensor loop.

    State per tensor: ``exp_avg`` (``m``, shaped like the tensor) and ``exp_avg_sq``
    (``v``, a 0-dim tensor, 0 until the tensor's first non-zero gradient).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float,
        betas: tuple[float, float] = DEFAULT_BETAS,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        grad_averaging: bool = False,
        *,
        foreach: bool = True,
    ) -> None:
        check_positive("lr", lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise UserInputError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        check_coefficient("beta1", betas[0])
        check_coefficient("beta2", betas[1])
        check_non_negative("eps", eps)
        check_non_negative("weight_decay", weight_decay)
        check_flag("grad_averaging", grad_averaging)
        check_flag("foreach", foreach)
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "grad_averaging": grad_averaging,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One NovoGrad step on every parameter that has a gradient."""
        loss = closure_loss(closure)
        for index, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("NovoGrad does not support sparse gradients")
            beta1, beta2 = group["betas"]
            hyper = {
                "lr": group["lr"],
                "beta1": beta1,
                "beta2": beta2,
                "eps": group["eps"],
                "weight_decay": group["weight_decay"],
                "averaging": (1.0 - beta1) if group["grad_averaging"] else 1.0,
            }
            if group["foreach"]:
                self._flat_step(index, params, hyper)
                continue
            for p in params:
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros((), dtype=p.dtype, device=p.device)
            _single_tensor_novograd(
                params,
                [p.grad for p in params],
                [self.state[p]["exp_avg"] for p in params],
                [self.state[p]["exp_avg_sq"] for p in params],
                **hyper,
            )
        return loss

    def _flat_step(self, index: int, params: list[Tensor], hyper: dict) -> None:
        """The multi-tensor path, with each state kept in one flat buffer (``FlatState``)
        and, where ``spreads_scales``, the per-tensor factors spread over buffers
        shaped like the parameters (``Spread``), so every foreach op has matching
        shapes."""
        if not hasattr(self, "_flat_state"):  # not pickled with the optimizer
            self._flat_state, self._spreads = FlatState(), Spreads()
        for k, slot in enumerate(self._flat_state.get(index, self.state, params, _STATE_LAYOUT)):
            spread = None
            if spreads_scales(slot.params[0].device):
                rows = 2 if hyper["weight_decay"] else 1
                shapes = [torch.Size()] * len(slot.params)
                spread = self._spreads.get((index, k), slot.params, shapes, rows)
            _foreach_novograd(
                slot.params,
                [p.grad for p in slot.params],
                slot.views["exp_avg"],
                slot.flats["exp_avg_sq"],
                exp_avg_flat=slot.flats["exp_avg"],
                spread=spread,
                **hyper,
            )


def novograd(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    grad_averaging: bool,
    foreach: bool = True,
) -> None:
    """One NovoGrad step, updating ``params``, ``exp_avgs`` and ``exp_avg_sqs`` in place.

    ``exp_avg_sqs`` are 0-dim tensors, 0 for a tensor that has not started.
    ``grads`` are read only.
    """
    if not params:
        return
    path = _multi_tensor_novograd if foreach else _single_tensor_novograd
    path(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        averaging=(1.0 - beta1) if grad_averaging else 1.0,
    )


def _second_moment(
    v: Tensor, norm_sq: Tensor, *, beta2: float, eps: float, weight_decay: float, averaging: float
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Per-tensor scalars of one step: ``v_t``, and ``a``, ``b`` with ``u_t = a·g + b·w``.

    Elementwise, so it serves one tensor's 0-dim state or all tensors' stacked.
    Before a tensor's first non-zero gradient ``v`` stays 0 and ``a = b = 0``.
    ``b`` is None without weight decay.
    """
    v = torch.where(v > 0, v.lerp(norm_sq, 1.0 - beta2), norm_sq)
    not_started = v == 0
    a = (v.sqrt() + eps).reciprocal().mul_(averaging).masked_fill_(not_started, 0.0)
    if not weight_decay:
        return v, a, None
    b = torch.full_like(v, weight_decay * averaging).masked_fill_(not_started, 0.0)
    return v, a, b


def _single_tensor_novograd(
    params, grads, exp_avgs, exp_avg_sqs, *, lr, beta1, beta2, eps, weight_decay, averaging
) -> None:
    for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs, strict=True):
        norm_sq = torch.linalg.vector_norm(g).square()
        v_new, a, b = _second_moment(
            v, norm_sq, beta2=beta2, eps=eps, weight_decay=weight_decay, averaging=averaging
        )
        v.copy_(v_new)
        m.mul_(beta1).addcmul_(g, a)
        if b is not None:
            m.addcmul_(p, b)
        p.add_(m, alpha=-lr)


def _multi_tensor_novograd(
    params, grads, exp_avgs, exp_avg_sqs, *, lr, beta1, beta2, eps, weight_decay, averaging
) -> None:
    for _, ps, gs, ms, vs in group_by_device_and_dtype(params, grads, exp_avgs, exp_avg_sqs):
        v = torch.stack(vs)
        _foreach_novograd(
            ps,
            gs,
            ms,
            v,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            weight_decay=weight_decay,
            averaging=averaging,
        )
        torch._foreach_copy_(vs, v.unbind())


def _foreach_novograd(
    ps: list[Tensor],
    gs: list[Tensor],
    ms: list[Tensor],
    v: Tensor,
    *,
    exp_avg_flat: Tensor | None = None,
    spread: Spread | None = None,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    averaging: float,
) -> None:
    """One step on same-device, same-dtype tensors; ``v`` holds every tensor's ``v``
    as one vector, updated in place. ``exp_avg_flat``, when the ``ms`` are views of
    one buffer, scales them all with one kernel. ``spread`` (one row per factor,
    ``a`` then ``b``) turns the per-tensor factors into tensors shaped like the
    parameters."""
    norm_sq = torch.stack(torch._foreach_norm(gs)).square_()
    new_v, a, b = _second_moment(
        v, norm_sq, beta2=beta2, eps=eps, weight_decay=weight_decay, averaging=averaging
    )
    v.copy_(new_v)
    if exp_avg_flat is None:
        torch._foreach_mul_(ms, device_scalar(beta1, ms[0]))
    else:
        exp_avg_flat.mul_(beta1)
    if spread is not None:
        factors = spread(torch.stack([a, b]) if b is not None else a[None])
        torch._foreach_addcmul_(ms, gs, factors[0])
        if b is not None:
            torch._foreach_addcmul_(ms, ps, factors[1])
    else:
        foreach_axpy_(ms, gs, a)
        if b is not None:
            foreach_axpy_(ms, ps, b)
    torch._foreach_add_(ps, ms, alpha=-lr)
