"""INSGD, input-normalized SGD with momentum, in paper and reference mode.

Only the weights of ``nn.Linear`` and ``nn.Conv2d`` layers are normalized; every
other parameter (biases, normalization layers, ...) takes plain SGD with momentum.
Forward pre-hooks measure each normalized layer's input (``_input_stats``).

Paper mode (ALGORITHMS.md), per normalized weight, with ``p_t`` the batch input
power::

    P_1 = p_1;  P_t = β·P_{t−1} + (1−β)·p_t
    d = g / max(ln P_t, ε) + wd·w;  buf = d, then μ·buf + (1−τ)·d;  w ← w − lr·buf

Reference mode (the authors' ``insgd.py``), per normalized weight, with ``S`` the
standardized-input statistic of the current batch (no momentum on it)::

    d = g + wd·w;  buf as above;  w ← w − lr·buf·√(1+1e−6) / (max(ln S, ε)·(√(1−μ)+1e−6))

Nesterov as ``torch.optim.SGD`` in both. The per-layer scalars stay on the device.

``INSGD`` does the bookkeeping; the math is :func:`paper_scales`,
:func:`reference_scales` (per-layer factors) and :func:`insgd` (the update), each
with a per-tensor path and a multi-tensor path chosen by ``foreach``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from robustness.errors import UserInputError
from robustness.optim._input_stats import (
    NORMALIZED_LAYERS,
    NORMS,
    InputProbe,
    input_power,
    standardized_input_statistic,
)
from robustness.optim._multi_tensor import (
    device_scalar,
    group_by_device_and_dtype,
    map_concatenated,
)
from robustness.optim._validation import (
    check_choice,
    check_coefficient,
    check_flag,
    check_non_negative,
    check_positive,
)

__all__ = ["INSGD", "MODES", "insgd", "paper_scales", "reference_scales"]

MODES = ("paper", "reference")
# the authors' code: numerator and momentum offset of the reference-mode factor
_REF_NUMERATOR = math.sqrt(1 + 1e-6)
_REF_OFFSET = 1e-6


class INSGD(torch.optim.Optimizer):
    """Input-normalized SGD with momentum (see the module docstring for the math).

    Args:
        model: the module to train. Its trainable parameters are optimized; the
            weights of its ``nn.Linear``/``nn.Conv2d`` layers (grouped and depthwise
            convolutions included) are normalized, and those layers get a forward
            pre-hook that measures their input.
        lr: learning rate, > 0.
        momentum: ``μ`` in [0, 1).
        beta: input-power momentum ``β`` in [0, 1) (paper mode; unused in reference mode).
        eps: floor ``ε`` of ``ln P`` (of ``ln S`` in reference mode), ≥ 0.
        weight_decay: L2 penalty added to the (scaled) gradient, ≥ 0.
        dampening: ``τ`` in [0, 1].
        nesterov: Nesterov momentum (needs momentum > 0 and no dampening).
        mode: ``"paper"`` or ``"reference"``.
        norm: ``"l2"`` (``‖·‖²``) or ``"l1"`` (``‖·‖₁``) in the input statistic.
        foreach: use the multi-tensor path (default) instead of the per-tensor loop.

    Measurement contract: a layer's input is recorded only by forward passes in
    training mode with grad enabled (those a backward can follow), so evaluation
    passes under ``model.eval()`` or ``torch.no_grad()`` do not disturb ``P``.
    Several recorded passes between two steps are averaged. ``step()`` raises
    ``RuntimeError`` if a normalized weight has a gradient but no recorded input
    since the previous step (a step before any forward pass, or after ``close()``).

    State per parameter: ``momentum_buffer``; per normalized weight in paper mode
    also ``input_power`` (``P``, 0-dim). Both are in ``state_dict()``. ``mode`` and
    ``norm`` are fixed at construction (they decide what the hooks measure), so
    they are attributes, not param-group entries. For a grouped convolution the
    paper-mode ``P`` is one scalar per layer (averaged over the groups too).
    Call :meth:`close` (or use ``with INSGD(...) as opt:``) to remove the hooks;
    they are also removed when the optimizer is garbage-collected.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float,
        momentum: float = 0.9,
        beta: float = 0.99,
        eps: float = 0.01,
        weight_decay: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        mode: str = "paper",
        norm: str = "l2",
        *,
        foreach: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"INSGD takes the model (an nn.Module) to hook its layers, got {type(model).__name__}"
            )
        check_positive("lr", lr)
        check_coefficient("momentum", momentum)
        check_coefficient("beta", beta)
        check_non_negative("eps", eps)
        check_non_negative("weight_decay", weight_decay)
        check_coefficient("dampening", dampening, closed=True)
        check_flag("nesterov", nesterov)
        check_choice("mode", mode, MODES)
        check_choice("norm", norm, NORMS)
        check_flag("foreach", foreach)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise UserInputError(
                f"nesterov needs momentum > 0 and dampening 0, got momentum={momentum!r}, "
                f"dampening={dampening!r}"
            )
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "beta": beta,
            "eps": eps,
            "weight_decay": weight_decay,
            "dampening": dampening,
            "nesterov": nesterov,
            "foreach": foreach,
        }
        super().__init__(params, defaults)
        self.mode = mode
        self.norm = norm
        statistic = input_power if mode == "paper" else standardized_input_statistic
        self._probes: dict[Tensor, InputProbe] = {}
        self._layer_names: dict[Tensor, str] = {}
        for name, layer in model.named_modules():
            if not isinstance(layer, NORMALIZED_LAYERS) or not layer.weight.requires_grad:
                continue
            probe = self._probes.setdefault(layer.weight, InputProbe(statistic, norm))
            self._layer_names.setdefault(layer.weight, name or type(layer).__name__)
            probe.attach(layer)
        self._finalizer = weakref.finalize(self, _remove_probes, list(self._probes.values()))

    def close(self) -> None:
        """Remove the forward hooks from the model (idempotent)."""
        self._finalizer()

    def __enter__(self) -> INSGD:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One INSGD step on every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            weights, stats, plain = [], [], []
            for p in group["params"]:
                probe = self._probes.get(p)
                stat = None if probe is None else probe.take()
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("INSGD does not support sparse gradients")
                if probe is None:
                    plain.append(p)
                    continue
                if stat is None:
                    raise RuntimeError(self._unmeasured_message(p))
                weights.append(p)
                stats.append(stat)
            hyper = {
                "lr": group["lr"],
                "weight_decay": group["weight_decay"],
                "momentum": group["momentum"],
                "dampening": group["dampening"],
                "nesterov": group["nesterov"],
                "foreach": group["foreach"],
            }
            if weights and self.mode == "paper":
                powers = [
                    self._input_power(p, stat) for p, stat in zip(weights, stats, strict=True)
                ]
                scales = paper_scales(
                    powers, stats, beta=group["beta"], eps=group["eps"], foreach=group["foreach"]
                )
                self._update(weights, hyper, grad_scales=scales)
            elif weights:
                scales = reference_scales(
                    stats, momentum=group["momentum"], eps=group["eps"], foreach=group["foreach"]
                )
                self._update(weights, hyper, update_scales=scales)
            self._update(plain, hyper)
        return loss

    def _input_power(self, p: Tensor, batch_power: Tensor) -> Tensor:
        state = self.state[p]
        if "input_power" not in state:  # P_1 = p_1: start at the first batch power
            state["input_power"] = batch_power.detach().clone()
        return state["input_power"]

    def _update(self, params: list[Tensor], hyper: dict, **scales: list[Tensor]) -> None:
        buffers = [self.state[p].get("momentum_buffer") for p in params]
        insgd(params, [p.grad for p in params], buffers, **scales, **hyper)
        if hyper["momentum"]:
            for p, buf in zip(params, buffers, strict=True):
                self.state[p]["momentum_buffer"] = buf

    def _unmeasured_message(self, p: Tensor) -> str:
        name = self._layer_names[p]
        return (
            f"INSGD.step(): layer {name!r} has a gradient but no input was measured since the "
            "last step. Run a forward pass in training mode with grad enabled before each "
            "step (evaluation passes under model.eval() or torch.no_grad() are not measured), "
            "and do not step after close()."
        )


def _remove_probes(probes: list[InputProbe]) -> None:
    for probe in probes:
        probe.remove()


# ---------------------------------------------------------------------------- the math


def _paper_scale(power: Tensor, batch_power: Tensor, *, beta: float, eps: float):
    """``P_t = lerp(P_{t−1}, p_t, 1−β)`` and ``s = 1 / max(ln P_t, ε)``, elementwise."""
    power = power.lerp(batch_power.to(power.dtype), 1.0 - beta)
    return power, power.log().clamp_min(eps).reciprocal()


def _reference_scale(statistic: Tensor, *, momentum: float, eps: float):
    """``√(1+1e−6) / (max(ln S, ε)·(√(1−μ)+1e−6))``, elementwise."""
    denominator = statistic.log().clamp_min(eps) * (math.sqrt(1.0 - momentum) + _REF_OFFSET)
    return (_REF_NUMERATOR / denominator,)


def paper_scales(
    input_powers: list[Tensor],
    batch_powers: Sequence[Tensor],
    *,
    beta: float,
    eps: float,
    foreach: bool = True,
) -> list[Tensor]:
    """Paper mode: advance each ``P`` in place; return the gradient scales ``1 / max(ln P_t, ε)``.

    ``input_powers`` are the 0-dim ``P_{t−1}`` (set to ``p_1`` before a tensor's
    first step, so that step gives ``P_1 = p_1``); ``batch_powers`` the ``p_t``.
    """
    if not foreach:
        scales = []
        for power, batch_power in zip(input_powers, batch_powers, strict=True):
            new_power, scale = _paper_scale(power, batch_power, beta=beta, eps=eps)
            power.copy_(new_power)
            scales.append(scale)
        return scales
    new_powers, scales = map_concatenated(
        lambda P, p: _paper_scale(P, p, beta=beta, eps=eps), input_powers, batch_powers
    )
    torch._foreach_copy_(input_powers, new_powers)
    return scales


def reference_scales(
    statistics: Sequence[Tensor], *, momentum: float, eps: float, foreach: bool = True
) -> list[Tensor]:
    """Reference mode: the factor applied to each normalized weight's momentum step."""
    if not foreach:
        return [_reference_scale(s, momentum=momentum, eps=eps)[0] for s in statistics]
    (scales,) = map_concatenated(
        lambda s: _reference_scale(s, momentum=momentum, eps=eps), statistics
    )
    return scales


def insgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    grad_scales: Sequence[Tensor] | None = None,
    update_scales: Sequence[Tensor] | None = None,
    lr: float,
    weight_decay: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    foreach: bool = True,
) -> None:
    """SGD with momentum whose gradient and/or step is scaled per tensor.

    ``d = s_g·g + wd·w``; ``buf = d`` on the first step (a ``None`` entry of
    ``momentum_buffers``, replaced by the new buffer), then ``μ·buf + (1−τ)·d``;
    ``d = buf`` (Nesterov: ``d + μ·buf``); ``w ← w − lr·s_u·d``. ``s_g`` are the
    ``grad_scales`` (paper mode), ``s_u`` the ``update_scales`` (reference mode),
    each broadcastable to its tensor; None means 1 (plain SGD with momentum,
    identical to ``torch.optim.SGD``). ``grads`` are read only.
    """
    if not params:
        return
    path = _multi_tensor_insgd if foreach else _single_tensor_insgd
    path(
        params,
        grads,
        momentum_buffers,
        grad_scales,
        update_scales,
        lr=lr,
        weight_decay=weight_decay,
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
    )


def _single_tensor_insgd(
    params,
    grads,
    buffers,
    grad_scales,
    update_scales,
    *,
    lr,
    weight_decay,
    momentum,
    dampening,
    nesterov,
) -> None:
    for i, p in enumerate(params):
        d = grads[i] if grad_scales is None else grads[i] * grad_scales[i]
        if weight_decay:
            d = d.add(p, alpha=weight_decay)
        if momentum:
            buf = buffers[i]
            if buf is None:
                buf = buffers[i] = torch.clone(d).detach()
            else:
                buf.mul_(momentum).add_(d, alpha=1 - dampening)
            d = d.add(buf, alpha=momentum) if nesterov else buf
        if update_scales is not None:
            d = d * update_scales[i]
        p.add_(d, alpha=-lr)


def _multi_tensor_insgd(
    params,
    grads,
    buffers,
    grad_scales,
    update_scales,
    *,
    lr,
    weight_decay,
    momentum,
    dampening,
    nesterov,
) -> None:
    groups = group_by_device_and_dtype(
        params,
        grads,
        buffers,
        [None] * len(params) if grad_scales is None else grad_scales,
        [None] * len(params) if update_scales is None else update_scales,
    )
    for idx, ps, gs, bufs, g_scales, u_scales in groups:
        started = momentum and all(buf is not None for buf in bufs)
        if started and not nesterov:
            # buf = μ·buf + (1−τ)·(s·g + wd·w) in place, without materializing d
            torch._foreach_mul_(bufs, device_scalar(momentum, bufs[0]))
            if grad_scales is None:
                torch._foreach_add_(bufs, gs, alpha=1 - dampening)
            else:
                torch._foreach_addcmul_(bufs, gs, g_scales, value=1 - dampening)
            if weight_decay:
                torch._foreach_add_(bufs, ps, alpha=(1 - dampening) * weight_decay)
            d = bufs
        else:
            d = gs if grad_scales is None else torch._foreach_mul(gs, g_scales)
            if weight_decay:
                d = torch._foreach_add(d, ps, alpha=weight_decay)
            if started:  # Nesterov
                torch._foreach_mul_(bufs, device_scalar(momentum, bufs[0]))
                torch._foreach_add_(bufs, d, alpha=1 - dampening)
            elif momentum:  # some tensor's first step creates its buffer
                for j, i in enumerate(idx):
                    if bufs[j] is None:
                        bufs[j] = buffers[i] = torch.clone(d[j]).detach()
                    else:
                        bufs[j].mul_(momentum).add_(d[j], alpha=1 - dampening)
            if momentum:
                d = torch._foreach_add(d, bufs, alpha=momentum) if nesterov else bufs
        if update_scales is None:
            torch._foreach_add_(ps, d, alpha=-lr)
        else:
            torch._foreach_addcmul_(ps, d, u_scales, value=-lr)
