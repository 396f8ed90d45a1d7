"""INSGD, input-normalized SGD with momentum, in paper and reference mode.

The weights of ``nn.Linear``, ``nn.Conv2d`` and ``nn.Conv1d`` layers and the input
projection of ``nn.MultiheadAttention`` are normalized; every other parameter
(biases, normalization layers, embeddings, attention's output projection, ...)
takes plain SGD with momentum. ``_input_stats`` says why for each layer type, and
:attr:`INSGD.normalized_fraction` how much of a model that is. Forward pre-hooks
measure each normalized layer's input.

Paper mode (the paper's algorithm), per normalized weight, with ``p_t`` the batch
input power::

    P_1 = p_1;  P_t = β·P_{t−1} + (1−β)·p_t
    d = g / max(ln P_t, ε) + wd·w;  buf = d, then μ·buf + (1−τ)·d;  w ← w − lr·buf

Reference mode (the authors' ``insgd.py``), per normalized weight, with ``S`` the
standardized-input statistic of the current batch (no momentum on it)::

    d = g + wd·w;  buf as above;  w ← w − lr·buf·√(1+1e−6) / (max(ln S, ε)·(√(1−μ)+1e−6))

Nesterov as ``torch.optim.SGD`` in both. The per-layer scalars stay on the device.

``INSGD`` does the bookkeeping; the math is :func:`paper_scales`,
:func:`reference_scales` (per-layer factors) and :func:`insgd` (the update), each
with a per-tensor path and a multi-tensor path chosen by ``foreach``. The
optimizer's multi-tensor path keeps the momentum buffers and ``P`` in flat
buffers (``FlatState``; the state entries are views of them) and repeats each
reference-mode conv factor over the kernel positions, so the update runs over
contiguous memory.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from robustness.errors import UserInputError
from robustness.optim._closure import closure_loss
from robustness.optim._input_stats import (
    NORMS,
    InputProbe,
    input_power,
    normalized_weights,
    standardized_input_statistic,
)
from robustness.optim._multi_tensor import (
    FlatState,
    Spreads,
    device_scalar,
    group_by_device_and_dtype,
    map_concatenated,
    spreads_scales,
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
# the state the multi-tensor path keeps flat (``FlatState`` layouts)
_MOMENTUM_LAYOUT = {"momentum_buffer": "tensor"}
_POWER_LAYOUT = {"input_power": "scalar32"}


class INSGD(torch.optim.Optimizer):
    """Input-normalized SGD with momentum (see the module docstring for the math).

    Args:
        model: the module to train. Its trainable parameters are optimized; the
            weights of its ``nn.Linear``/``nn.Conv2d``/``nn.Conv1d`` layers (grouped
            and depthwise convolutions included) and the input projections of its
            ``nn.MultiheadAttention`` layers are normalized, and those layers get a
            forward pre-hook that measures their input.
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

    ``normalized_fraction``: the share of the trainable parameters (by count) that
    are input-normalized, the rest being stepped as plain SGD with momentum; the
    trial record's ``insgd_normalized_fraction``.

    State per parameter: ``momentum_buffer``; per normalized weight in paper mode
    also ``input_power`` (``P``, 0-dim). Both are in ``state_dict()``. ``mode`` and
    ``norm`` are fixed at construction (they decide what the hooks measure), so
    they are attributes, not param-group entries. For a grouped convolution the
    paper-mode ``P`` is one scalar per layer (averaged over the groups too), and so
    for an attention's fused input projection (averaged over its query, key and
    value inputs).
    Call :meth:`close` (or use ``with INSGD(...) as opt:``) to remove the hooks;
    they are also removed when the optimizer is garbage-collected.
    """

    takes_model = True
    """The constructor takes the model, not its parameters (the toolkit's factory reads this)."""

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
        for name, layer, weight, inputs in normalized_weights(model):
            if not weight.requires_grad:
                continue
            probe = self._probes.setdefault(weight, InputProbe(statistic, norm))
            self._layer_names.setdefault(weight, name or type(layer).__name__)
            probe.attach(layer, inputs)
        total = sum(p.numel() for p in params)
        self.normalized_fraction = sum(w.numel() for w in self._probes) / total
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
        loss = closure_loss(closure)
        for index, group in enumerate(self.param_groups):
            foreach = group["foreach"]
            spread = (
                foreach
                and bool(group["momentum"])
                and bool(group["params"])
                and spreads_scales(group["params"][0].device)
            )
            params, stats = self._measured(group, flat=spread)
            if not params:
                continue
            if spread and all("momentum_buffer" in self.state[p] for p in params):
                self._spread_update(index, params, stats, group)
                continue
            if spread:  # a first step: the paths below take the statistics shaped
                stats = [
                    None if s is None else s.view(self._probes[p].shape)
                    for p, s in zip(params, stats, strict=True)
                ]
            weights = [i for i, stat in enumerate(stats) if stat is not None]
            grad_scales = update_scales = None
            if weights and self.mode == "paper":
                scales = self._paper_scales(index, [params[i] for i in weights], stats, group)
                grad_scales = _spread(scales, weights, len(params))
            elif weights:
                scales = reference_scales(
                    [stats[i] for i in weights],
                    momentum=group["momentum"],
                    eps=group["eps"],
                    foreach=foreach,
                    shapes=[params[i].shape for i in weights] if foreach else None,
                )
                update_scales = _spread(scales, weights, len(params))
            hyper = {
                "lr": group["lr"],
                "weight_decay": group["weight_decay"],
                "momentum": group["momentum"],
                "dampening": group["dampening"],
                "nesterov": group["nesterov"],
            }
            if (
                foreach
                and group["momentum"]
                and all("momentum_buffer" in self.state[p] for p in params)
            ):
                self._flat_update(index, params, grad_scales, update_scales, hyper)
                continue
            buffers = [self.state[p].get("momentum_buffer") for p in params]
            insgd(
                params,
                [p.grad for p in params],
                buffers,
                grad_scales=grad_scales,
                update_scales=update_scales,
                foreach=foreach,
                **hyper,
            )
            if group["momentum"]:
                for p, buf in zip(params, buffers, strict=True):
                    self.state[p]["momentum_buffer"] = buf
        return loss

    def _measured(
        self, group: dict, *, flat: bool = False
    ) -> tuple[list[Tensor], list[Tensor | None]]:
        """The group's parameters that have a gradient, and each one's measurement
        since the last step (None for a parameter that is not normalized; 1-D with
        ``flat``). Every probe is emptied, so a measurement never leaks into a
        later step."""
        params, stats = [], []
        probes = self._group_probes(group)
        for p, probe in zip(group["params"], probes, strict=True):
            stat = None if probe is None else probe.take(flat=flat)
            grad = p.grad
            if grad is None:
                continue
            if grad.is_sparse:
                raise RuntimeError("INSGD does not support sparse gradients")
            if probe is not None and stat is None:
                raise RuntimeError(self._unmeasured_message(p))
            params.append(p)
            stats.append(stat)
        return params, stats

    def _group_probes(self, group: dict) -> list[InputProbe | None]:
        """Each of the group's parameters' probe (None if not normalized), cached."""
        cache = self.__dict__.setdefault("_probe_lists", {})
        key = id(group)
        cached = cache.get(key)
        if (
            cached is None
            or cached[0] is not group["params"]
            or len(cached[1]) != len(group["params"])
        ):
            cached = cache[key] = (
                group["params"],
                [self._probes.get(p) for p in group["params"]],
            )
        return cached[1]

    def _paper_scales(
        self, index: int, weights: list[Tensor], stats: list[Tensor | None], group: dict
    ) -> list[Tensor]:
        """Advance each normalized weight's ``P``; return its gradient scale."""
        batch_powers = [stat for stat in stats if stat is not None]
        for p, batch_power in zip(weights, batch_powers, strict=True):
            state = self.state[p]
            if "input_power" not in state:  # P_1 = p_1: start at the first batch power
                state["input_power"] = batch_power.detach().clone()
        beta, eps = group["beta"], group["eps"]
        if not group["foreach"]:
            powers = [self.state[p]["input_power"] for p in weights]
            return paper_scales(powers, batch_powers, beta=beta, eps=eps, foreach=False)
        scales: list[Tensor] = [None] * len(weights)  # type: ignore[list-item]
        for slot in self._flat().get(("power", index), self.state, weights, _POWER_LAYOUT):
            power = slot.flats["input_power"]
            batch = torch.stack([batch_powers[i] for i in slot.indices])
            new_power, scale = _paper_scale(power, batch, beta=beta, eps=eps)
            power.copy_(new_power)
            for i, s in zip(slot.indices, scale.unbind(), strict=True):
                scales[i] = s
        return scales

    def _flat_update(
        self,
        index: int,
        params: list[Tensor],
        grad_scales: list[Tensor | None] | None,
        update_scales: list[Tensor | None] | None,
        hyper: dict,
    ) -> None:
        """The multi-tensor update with the momentum buffers in one flat buffer."""
        for slot in self._flat().get(("momentum", index), self.state, params, _MOMENTUM_LAYOUT):
            ps, idx = slot.params, slot.indices
            _foreach_insgd(
                ps,
                [p.grad for p in ps],
                slot.views["momentum_buffer"],
                None if grad_scales is None else [grad_scales[i] for i in idx],
                None if update_scales is None else [update_scales[i] for i in idx],
                buffer_flat=slot.flats["momentum_buffer"],
                **hyper,
            )

    def _spread_update(
        self, index: int, params: list[Tensor], stats: list[Tensor | None], group: dict
    ) -> None:
        """The multi-tensor update with the momentum buffers in one flat buffer and the
        per-layer factors spread over buffers shaped like the parameters (``Spread``):
        every foreach op then has matching shapes, so on CUDA each is a few
        multi-tensor kernels whatever the number of tensors. ``stats`` are 1-D."""
        hyper = {
            "lr": group["lr"],
            "weight_decay": group["weight_decay"],
            "momentum": group["momentum"],
            "dampening": group["dampening"],
            "nesterov": group["nesterov"],
        }
        slots = self._flat().get(("momentum", index), self.state, params, _MOMENTUM_LAYOUT)
        for k, slot in enumerate(slots):
            ps = slot.params
            measured = [stats[i] for i in slot.indices]
            weights = [j for j, stat in enumerate(measured) if stat is not None]
            scales = None
            if weights:
                batch = torch.cat([measured[j] for j in weights])
                if self.mode == "paper":
                    values = self._paper_scale_values(
                        index, k, [ps[j] for j in weights], batch, group
                    )
                else:
                    (values,) = _reference_scale(
                        batch, momentum=group["momentum"], eps=group["eps"]
                    )
                shapes = [None] * len(ps)
                for j in weights:
                    shapes[j] = (
                        self._probes[ps[j]].shape if self.mode == "reference" else torch.Size()
                    )
                spread = self._spreads().get((index, k), ps, shapes)
                (scales,) = spread(values.to(ps[0].dtype)[None])
            paper = self.mode == "paper"
            _foreach_insgd(
                ps,
                [p.grad for p in ps],
                slot.views["momentum_buffer"],
                scales if paper else None,
                None if paper else scales,
                buffer_flat=slot.flats["momentum_buffer"],
                **hyper,
            )

    def _paper_scale_values(
        self, index: int, k: int, weights: list[Tensor], batch: Tensor, group: dict
    ) -> Tensor:
        """Advance the ``P`` of ``weights`` (same device and dtype) with the batch
        powers ``batch`` (one each, in order); return their gradient scales."""
        for p, batch_power in zip(weights, batch.unbind(), strict=True):
            state = self.state[p]
            if "input_power" not in state:  # P_1 = p_1: start at the first batch power
                state["input_power"] = batch_power.detach().clone()
        (slot,) = self._flat().get(("power", index, k), self.state, weights, _POWER_LAYOUT)
        power = slot.flats["input_power"]
        new_power, scale = _paper_scale(power, batch, beta=group["beta"], eps=group["eps"])
        power.copy_(new_power)
        return scale

    def _spreads(self) -> Spreads:
        if "_spread_cache" not in self.__dict__:  # not pickled with the optimizer
            self._spread_cache = Spreads()
        return self._spread_cache

    def _flat(self) -> FlatState:
        if "_flat_state" not in self.__dict__:  # not pickled with the optimizer
            self._flat_state = FlatState()
        return self._flat_state

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
    statistics: Sequence[Tensor],
    *,
    momentum: float,
    eps: float,
    foreach: bool = True,
    shapes: Sequence[torch.Size] | None = None,
) -> list[Tensor]:
    """Reference mode: the factor applied to each normalized weight's momentum step.

    Each factor has its statistic's shape (0-dim for a Linear, one value per input
    channel shaped ``(A, B, 1, 1)`` for a Conv2d). With ``shapes`` (the weights'
    shapes; multi-tensor path only) a conv factor comes out repeated over the
    kernel positions, ``(A, B, k_h, k_w)``: the same values, but multiplying a
    weight by it runs over contiguous memory, about 6x faster than broadcasting the
    ``(A, B, 1, 1)`` factor over a 3x3 kernel.
    """
    if not foreach:
        return [_reference_scale(s, momentum=momentum, eps=eps)[0] for s in statistics]
    if shapes is None:
        (scales,) = map_concatenated(
            lambda s: _reference_scale(s, momentum=momentum, eps=eps), statistics
        )
        return scales
    flat = torch.cat([s.reshape(-1) for s in statistics])
    (scale,) = _reference_scale(flat, momentum=momentum, eps=eps)
    stat_shapes = tuple(s.shape for s in statistics)
    kernels = tuple(tuple(shape[2:]) for shape in shapes)
    repeats, sizes, targets = _kernel_repeats(stat_shapes, kernels, flat.device)
    expanded = scale.repeat_interleave(repeats, output_size=sum(sizes))
    return [part.view(t) for part, t in zip(expanded.split(sizes), targets, strict=True)]


@functools.lru_cache(maxsize=64)
def _kernel_repeats(
    stat_shapes: tuple[torch.Size, ...], kernels: tuple[tuple[int, ...], ...], device: torch.device
) -> tuple[Tensor, list[int], list[tuple[int, ...]]]:
    """How often each statistic value repeats to fill its weight's kernel positions
    (``repeat_interleave`` counts, on ``device``), each weight's share of the result,
    and the shape it is viewed as."""
    counts, sizes, targets = [], [], []
    for stat_shape, kernel in zip(stat_shapes, kernels, strict=True):
        conv = len(stat_shape) >= 3  # a convolution's per-input-channel factor
        per_value = math.prod(kernel) if conv else 1
        target = (*stat_shape[:2], *kernel) if conv else tuple(stat_shape)
        counts += [per_value] * stat_shape.numel()
        sizes.append(stat_shape.numel() * per_value)
        targets.append(target)
    # built on the host, copied without waiting (cached, so once per geometry)
    return torch.tensor(counts).to(device, non_blocking=True), sizes, targets


def _spread(scales: Sequence[Tensor], positions: list[int], n: int) -> list[Tensor | None]:
    """A list of ``n`` entries with ``scales`` at ``positions`` and None elsewhere."""
    spread: list[Tensor | None] = [None] * n
    for i, scale in zip(positions, scales, strict=True):
        spread[i] = scale
    return spread


def insgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    grad_scales: Sequence[Tensor | None] | None = None,
    update_scales: Sequence[Tensor | None] | None = None,
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
    each broadcastable to its tensor; None (the list, or an entry) means 1 (plain
    SGD with momentum, identical to ``torch.optim.SGD``). ``grads`` are read only.
    """
    if not params:
        return
    if not foreach:
        _single_tensor_insgd(
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
        return
    none = [None] * len(params)
    for idx, ps, gs, bufs, g_scales, u_scales in group_by_device_and_dtype(
        params,
        grads,
        momentum_buffers,
        none if grad_scales is None else grad_scales,
        none if update_scales is None else update_scales,
    ):
        _foreach_insgd(
            ps,
            gs,
            bufs,
            None if grad_scales is None else g_scales,
            None if update_scales is None else u_scales,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
        )
        for j, i in enumerate(idx):
            momentum_buffers[i] = bufs[j]


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
        g_scale = None if grad_scales is None else grad_scales[i]
        u_scale = None if update_scales is None else update_scales[i]
        d = grads[i] if g_scale is None else grads[i] * g_scale
        if weight_decay:
            d = d.add(p, alpha=weight_decay)
        if momentum:
            buf = buffers[i]
            if buf is None:
                buf = buffers[i] = torch.clone(d).detach()
            else:
                buf.mul_(momentum).add_(d, alpha=1 - dampening)
            d = d.add(buf, alpha=momentum) if nesterov else buf
        if u_scale is not None:
            d = d * u_scale
        p.add_(d, alpha=-lr)


def _foreach_insgd(
    ps: list[Tensor],
    gs: list[Tensor],
    bufs: list[Tensor | None],
    g_scales: list[Tensor | None] | None,
    u_scales: list[Tensor | None] | None,
    *,
    buffer_flat: Tensor | None = None,
    lr: float,
    weight_decay: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
) -> None:
    """The update on same-device, same-dtype tensors with ``torch._foreach_*`` ops.

    A None scale entry is 1 (a shared 0-dim one: multiplying by it is exact, so
    such tensors follow ``torch.optim.SGD``). New buffers are written into
    ``bufs``. ``buffer_flat``, when every buffer is a view of it, scales them all
    with one kernel.
    """
    if g_scales is not None:
        g_scales = _ones_for_none(g_scales, ps[0])
    if u_scales is not None:
        u_scales = _ones_for_none(u_scales, ps[0])
    started = momentum and all(buf is not None for buf in bufs)
    if started:
        if buffer_flat is None:
            torch._foreach_mul_(bufs, device_scalar(momentum, bufs[0]))
        else:
            buffer_flat.mul_(momentum)
    if started and not nesterov:
        # buf = μ·buf + (1−τ)·(s·g + wd·w) in place, without materializing d
        if g_scales is None:
            torch._foreach_add_(bufs, gs, alpha=1 - dampening)
        else:
            torch._foreach_addcmul_(bufs, gs, g_scales, value=1 - dampening)
        if weight_decay:
            torch._foreach_add_(bufs, ps, alpha=(1 - dampening) * weight_decay)
        d = bufs
    else:
        d = gs if g_scales is None else torch._foreach_mul(gs, g_scales)
        if weight_decay:
            d = torch._foreach_add(d, ps, alpha=weight_decay)
        if started:  # Nesterov
            torch._foreach_add_(bufs, d, alpha=1 - dampening)
        elif momentum:  # some tensor's first step creates its buffer
            for j, buf in enumerate(bufs):
                if buf is None:
                    bufs[j] = torch.clone(d[j]).detach()
                else:
                    buf.mul_(momentum).add_(d[j], alpha=1 - dampening)
        if momentum:
            d = torch._foreach_add(d, bufs, alpha=momentum) if nesterov else bufs
    if u_scales is None:
        torch._foreach_add_(ps, d, alpha=-lr)
    else:
        torch._foreach_addcmul_(ps, d, u_scales, value=-lr)


def _ones_for_none(scales: list[Tensor | None], like: Tensor) -> list[Tensor]:
    """``scales`` with each None replaced by a shared 0-dim one like ``like``."""
    if all(s is not None for s in scales):
        return scales
    one = _one(like.dtype, like.device)
    return [one if s is None else s for s in scales]


@functools.lru_cache(maxsize=16)
def _one(dtype: torch.dtype, device: torch.device) -> Tensor:
    """A 0-dim one, made once per dtype and device (never written to)."""
    return torch.ones((), dtype=dtype, device=device)
