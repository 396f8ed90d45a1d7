"""INSGD for a population: K members' ``INSGD`` in one update, both modes and norms.

The population model's ``PopulationLinear`` and ``PopulationConv2d`` weights are
normalized; every other parameter takes plain SGD with momentum, as in
:mod:`robustness.optim.insgd`. Forward pre-hooks measure each member's input
statistic from its own part of the layer input (``_population_input_stats``),
so member k's scale is its own run's. Per member (length-K tensors): ``lr``,
momentum ``μ``, input-power ``β``, ``ε``, weight decay, dampening.

Paper mode, per member and normalized weight: ``P_1 = p_1``, ``P_t = β·P_{t−1} +
(1−β)·p_t``, gradient scale ``1 / max(ln P_t, ε)``. Reference mode: the step of a
normalized weight is scaled by ``√(1+1e−6) / (max(ln S, ε)·(√(1−μ)+1e−6))``.
The update is :class:`~robustness.optim.population_sgd.PopulationSGD`'s
(:func:`~robustness.optim.population_sgd.sgd`) with those scales.
:class:`PopulationINSGD` does the bookkeeping; :func:`paper_scales` and
:func:`reference_scales` are the math of the scales.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from robustness.optim._input_stats import InputProbe
from robustness.optim._population_base import agreed, only_group
from robustness.optim._population_input_stats import (
    POPULATION_LAYERS,
    population_input_power,
    population_standardized_input_statistic,
)
from robustness.optim.insgd import _REF_NUMERATOR, _REF_OFFSET, INSGD, MODES
from robustness.optim.population_sgd import SGD_MEMBER_KEYS, PopulationSGD

__all__ = ["PopulationINSGD", "paper_scales", "reference_scales"]


class PopulationINSGD(PopulationSGD):
    """``INSGD`` for K members at once (see the module docstring).

    Args:
        model: the population model; its population layers are hooked.
        lr, momentum, beta, eps, weight_decay, dampening: one value per member.
        nesterov, mode, norm: one for the whole population.

    ``param_groups[i]["lr_scale"]`` multiplies every member's ``lr``. State per
    parameter: ``momentum_buffer``; per normalized weight in paper mode also
    ``input_power`` (``(K,)``). Call :meth:`close` to remove the hooks. The
    update is :class:`PopulationSGD`'s with the scales of INSGD.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: Sequence[float],
        momentum: Sequence[float],
        beta: Sequence[float],
        eps: Sequence[float],
        weight_decay: Sequence[float],
        dampening: Sequence[float],
        nesterov: bool,
        mode: str,
        norm: str,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        params = [p for p in model.parameters() if p.requires_grad]
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
        self.check_member_values(beta=beta, eps=eps)
        self.members.update(
            beta_keep=self.member_vector(1.0 - b for b in beta),
            eps=self.member_vector(eps),
            reference_offset=self.member_vector(math.sqrt(1.0 - m) + _REF_OFFSET for m in momentum),
        )
        self.mode, self.norm = mode, norm
        statistic = (
            population_input_power if mode == "paper" else population_standardized_input_statistic
        )
        self._probes: dict[Tensor, InputProbe] = {}
        for layer in model.modules():
            if isinstance(layer, POPULATION_LAYERS) and layer.weight.requires_grad:
                probe = self._probes.setdefault(layer.weight, InputProbe(statistic, norm))
                probe.attach(layer)
        self._finalizer = weakref.finalize(self, _remove, list(self._probes.values()))

    @classmethod
    def from_members(
        cls, model: nn.Module, optimizers: Sequence[torch.optim.Optimizer]
    ) -> PopulationINSGD:
        """The population of the members' own ``INSGD`` optimizers."""
        groups = [only_group(opt, INSGD) for opt in optimizers]
        return cls(
            model,
            **{key: [g[key] for g in groups] for key in (*SGD_MEMBER_KEYS, "beta", "eps")},
            nesterov=agreed((g["nesterov"] for g in groups), "nesterov"),
            mode=agreed((opt.mode for opt in optimizers), "INSGD's mode"),
            norm=agreed((opt.norm for opt in optimizers), "INSGD's norm"),
        )

    def close(self) -> None:
        """Remove the forward hooks (idempotent)."""
        self._finalizer()

    def _step_group(self, group: dict) -> None:
        params, stats = [], []
        for p in group["params"]:
            probe = self._probes.get(p)
            stat = None if probe is None else probe.take()
            if p.grad is None:
                continue
            if probe is not None and stat is None:
                raise RuntimeError(
                    "PopulationINSGD.step(): a normalized layer has a gradient but no "
                    "input was measured since the last step (a forward pass in training "
                    "mode with grad enabled must come before each step)"
                )
            params.append(p)
            stats.append(stat)
        if not params:
            return
        m = self.members
        grad_scales: list[Tensor | None] | None = None
        update_scales: list[Tensor | None] | None = None
        if self.mode == "paper":
            grad_scales = [None] * len(params)
            for i, (p, stat) in enumerate(zip(params, stats, strict=True)):
                if stat is None:
                    continue
                state = self.state[p]
                if "input_power" not in state:  # P_1 = p_1
                    state["input_power"] = stat.clone()
                scale = paper_scales(
                    state["input_power"], stat, beta_keep=m["beta_keep"], eps=m["eps"]
                )
                grad_scales[i] = scale.view((-1,) + (1,) * (p.dim() - 1))
        else:
            update_scales = [
                None
                if stat is None
                else reference_scales(stat, offset=m["reference_offset"], eps=m["eps"])
                for stat in stats
            ]
        self._sgd_update(group, params, grad_scales, update_scales)

    def select_members(self, keep: Tensor, replaced: dict[Tensor, Tensor]) -> None:
        """Keep only members ``keep``; ``replaced`` maps old to new parameters."""
        super().select_members(keep, replaced)
        self._probes = {replaced.get(p, p): probe for p, probe in self._probes.items()}


def paper_scales(input_power: Tensor, batch_power: Tensor, *, beta_keep: Tensor, eps: Tensor):
    """Advance each member's ``P`` in place (``P ← lerp(P, p, 1−β)``) and return its
    gradient scale ``1 / max(ln P, ε)``; all ``(K,)``."""
    input_power.copy_(input_power.lerp(batch_power.to(input_power.dtype), beta_keep))
    return torch.maximum(input_power.log(), eps).reciprocal()


def reference_scales(statistic: Tensor, *, offset: Tensor, eps: Tensor) -> Tensor:
    """Each member's reference-mode step factor ``√(1+1e−6) / (max(ln S, ε)·offset)``,
    ``offset = √(1−μ) + 1e−6``, shaped like ``statistic`` (member dimension first)."""
    shape = (-1,) + (1,) * (statistic.dim() - 1)
    denominator = torch.maximum(statistic.log(), eps.view(shape)) * offset.view(shape)
    return _REF_NUMERATOR / denominator


def _remove(probes: list[InputProbe]) -> None:
    for probe in probes:
        probe.remove()
