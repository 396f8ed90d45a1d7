"""INSGD's input statistics per member of a population layer (``_input_stats`` per member).

A population layer's input holds every member's batch (``PopulationLinear``:
``(K, N, in)``; ``PopulationConv2d``: ``(N, K*C_in, H, W)``); each member's
statistic is computed from its own part only, with the same formulas and dtype
as the sequential statistics, so member k's value is its own run's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustness.models.population import PopulationConv2d, PopulationLinear
from robustness.optim._input_stats import (
    _LINEAR_OFFSET,
    _coverage,
    _standardized_sum,
    _stat_dtype,
)

POPULATION_LAYERS = (PopulationLinear, PopulationConv2d)


def population_input_power(layer: nn.Module, x: Tensor, norm: str) -> Tensor:
    """Paper mode: each member's input power (``input_power`` of its part), ``(K,)``."""
    dtype = _stat_dtype(x)
    if isinstance(layer, PopulationLinear):
        members = x.shape[0]
        rows = x[0].numel() // max(x.shape[-1], 1)
        flat = x.reshape(members, -1)
        if norm == "l2":
            return torch.linalg.vector_norm(flat, dim=1, dtype=dtype).square() / rows
        return flat.to(dtype).abs().sum(1) / rows
    if isinstance(layer, PopulationConv2d):
        members = layer.weight.shape[0]
        n, _, height, width = x.shape
        coverage, positions = _coverage(
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            "zeros",
            (height, width),
            x.device,
            dtype,
        )
        rows = x.to(dtype).reshape(n, members, -1, height * width)
        elementwise = rows.square() if norm == "l2" else rows.abs()
        total = torch.matmul(elementwise, coverage).sum(dim=(0, 2))
        return total / (n * positions * layer.groups)
    raise TypeError(f"no population input power for {type(layer).__name__}")


def population_standardized_input_statistic(layer: nn.Module, x: Tensor, norm: str) -> Tensor:
    """Reference mode: each member's statistic (``standardized_input_statistic`` of
    its part), shaped to broadcast over the population weight: ``(K, 1, 1)`` for a
    Linear, ``(K, C_out or 1, C_in/groups, 1, 1)`` for a Conv2d."""
    dtype = _stat_dtype(x)
    if isinstance(layer, PopulationLinear):
        per_sample = _standardized_sum(x.to(dtype), dims=(-1,), norm=norm)  # (K, N...)
        members = x.shape[0]
        return (per_sample.reshape(members, -1).mean(1) + _LINEAR_OFFSET).view(-1, 1, 1)
    if isinstance(layer, PopulationConv2d):
        members, groups = layer.weight.shape[0], layer.groups
        per_channel = _standardized_sum(x.to(dtype), dims=(2, 3), norm=norm).mean(0)
        per_channel = per_channel.view(members, -1)  # (K, C_in)
        if groups == 1:
            return per_channel.view(members, 1, -1, 1, 1)
        c_in, c_out = per_channel.shape[1], layer.out_channels
        by_group = per_channel.view(members, groups, 1, c_in // groups)
        return by_group.expand(members, groups, c_out // groups, c_in // groups).reshape(
            members, c_out, c_in // groups, 1, 1
        )
    raise TypeError(f"no population input statistic for {type(layer).__name__}")
