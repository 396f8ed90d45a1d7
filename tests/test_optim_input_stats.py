"""INSGD's input statistics against explicit (unfold / standardize) computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustness.optim import _input_stats
from robustness.optim._input_stats import input_power, standardized_input_statistic

CONVS = [
    pytest.param({"in_channels": 4, "out_channels": 6, "kernel_size": 1}, id="1x1"),
    pytest.param(
        {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "padding": 1}, id="3x3-pad1"
    ),
    pytest.param(
        {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 2}, id="3x3-stride2"
    ),
    pytest.param(
        {
            "in_channels": 4,
            "out_channels": 8,
            "kernel_size": (3, 5),
            "padding": (2, 1),
            "dilation": (2, 1),
        },
        id="3x5-dilated",
    ),
    pytest.param(
        {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "padding": 1, "groups": 2},
        id="grouped",
    ),
    pytest.param(
        {
            "in_channels": 6,
            "out_channels": 6,
            "kernel_size": 3,
            "stride": 2,
            "padding": 1,
            "groups": 6,
        },
        id="depthwise",
    ),
    pytest.param(
        {"in_channels": 4, "out_channels": 4, "kernel_size": 5, "padding": "same", "groups": 4},
        id="depthwise-same",
    ),
    pytest.param(
        {
            "in_channels": 4,
            "out_channels": 6,
            "kernel_size": 3,
            "padding": 2,
            "padding_mode": "reflect",
        },
        id="reflect",
    ),
    pytest.param(
        {
            "in_channels": 4,
            "out_channels": 6,
            "kernel_size": 4,
            "stride": 3,
            "padding": 1,
            "padding_mode": "circular",
        },
        id="circular-stride3",
    ),
]


def _patches(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """(N, groups, patch, L): each output neuron's input window, by unfold."""
    padding = layer.padding
    if layer.padding_mode != "zeros":
        x = F.pad(x, layer._reversed_padding_repeated_twice, mode=layer.padding_mode)
        padding = 0
    elif padding == "same":
        x = F.pad(x, layer._reversed_padding_repeated_twice)
        padding = 0
    cols = F.unfold(x, layer.kernel_size, layer.dilation, padding, layer.stride)
    n, _, positions = cols.shape
    return cols.view(n, layer.groups, -1, positions)


@pytest.mark.parametrize("by_reduction", [False, True], ids=["cpu-path", "gpu-path"])
@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_conv_input_power_equals_the_unfold_computation(conv, norm, by_reduction, monkeypatch):
    """Both ways of summing the covered power (x² and a matrix-vector product on the
    CPU; a norm reduction, without a temporary the size of x, on GPUs)."""
    real = _input_stats._covered_power
    monkeypatch.setattr(
        _input_stats, "_covered_power", lambda *args: real(*args[:-1], by_reduction)
    )
    torch.manual_seed(0)
    layer = nn.Conv2d(**conv).double()
    x = torch.randn(3, layer.in_channels, 11, 9, dtype=torch.float64)
    patches = _patches(layer, x)
    per_window = patches.square().sum(2) if norm == "l2" else patches.abs().sum(2)
    expected = per_window.mean()  # over batch, groups and output positions
    assert input_power(layer, x, norm).item() == pytest.approx(expected.item(), rel=1e-12)


def test_conv_input_power_of_an_unbatched_input_is_that_of_a_batch_of_one():
    layer = nn.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(3, 7, 7)
    assert input_power(layer, x, "l2").item() == pytest.approx(
        input_power(layer, x.unsqueeze(0), "l2").item(), rel=1e-6
    )


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_linear_input_power_is_the_mean_row_norm_over_all_leading_dims(norm):
    layer = nn.Linear(5, 2)
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    rows = x.reshape(-1, 5)
    expected = rows.square().sum(1).mean() if norm == "l2" else rows.abs().sum(1).mean()
    assert input_power(layer, x, norm).item() == pytest.approx(expected.item(), rel=1e-12)


def _standardized(x: torch.Tensor, dims) -> torch.Tensor:
    """The authors' standardization, written out: z = (x − mean)/max(std, 0.01)."""
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True).clamp_min(0.01)
    return (x - mean) / std


@pytest.mark.parametrize("norm", ["l2", "l1"])
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_reference_conv_statistic_is_the_per_channel_standardized_sum(norm, groups):
    layer = nn.Conv2d(4, 8, 3, groups=groups)
    x = (
        torch.randn(5, 4, 6, 7, dtype=torch.float64)
        * torch.tensor([1.0, 1e-3, 5.0, 0.2]).view(1, 4, 1, 1).double()
    )  # channel 1 hits the std floor
    z = _standardized(x, (2, 3))
    per_channel = (z.square() if norm == "l2" else z.abs()).sum((2, 3)).mean(0)  # (C_in,)
    stat = standardized_input_statistic(layer, x, norm)
    c_per_group = 4 // groups
    assert stat.shape == ((1, 4, 1, 1) if groups == 1 else (8, c_per_group, 1, 1))
    full = stat.expand(8, c_per_group, 1, 1)
    for out_channel in range(8):
        group = out_channel // (8 // groups)
        expected = per_channel[group * c_per_group : (group + 1) * c_per_group]
        torch.testing.assert_close(full[out_channel, :, 0, 0], expected, rtol=1e-10, atol=0)
    if norm == "l2":  # Σ z² = HW − 1 for input channel 0, whose std is above the floor
        assert full[0, 0, 0, 0].item() == pytest.approx(41.0)


def test_reference_linear_statistic_is_the_mean_standardized_sum_plus_a_tenth():
    layer = nn.Linear(6, 3)
    x = torch.randn(7, 6, dtype=torch.float64) * 3
    z = _standardized(x, (-1,))
    expected = z.square().sum(-1).mean() + 0.1
    stat = standardized_input_statistic(layer, x, "l2")
    assert stat.shape == ()
    assert stat.item() == pytest.approx(expected.item(), rel=1e-12)
    assert stat.item() == pytest.approx(5.1, rel=1e-12)  # n − 1 + 0.1, whatever the data


def test_reference_statistic_of_a_single_position_reads_as_zero_not_nan():
    layer = nn.Conv2d(3, 2, 1)
    stat = standardized_input_statistic(layer, torch.randn(4, 3, 1, 1), "l2")
    assert torch.equal(stat, torch.zeros(1, 3, 1, 1))
