"""INSGD on every layer type it meets: which weights are input-normalized (Linear,
Conv1d/Conv2d, attention's input projection), what each one's input statistic is,
and that everything else steps as plain SGD with momentum, with the normalized
share reported."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustness.optim import INSGD
from robustness.optim._input_stats import input_power, standardized_input_statistic

PATHS = pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "loop"])


class TinyLM(nn.Module):
    """Embedding -> one TransformerEncoderLayer (self-attention, LayerNorm) -> Linear head."""

    def __init__(self, vocab=11, width=8, hidden=16, classes=3):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.block = nn.TransformerEncoderLayer(width, 2, hidden, dropout=0.0, batch_first=True)
        self.head = nn.Linear(width, classes)

    def forward(self, tokens):
        return self.head(self.block(self.embed(tokens)).mean(1))


def _tokens(seed=0, n=4, length=5):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 11, (n, length), generator=gen), torch.randint(
        0, 3, (n,), generator=gen
    )


def test_normalized_fraction_counts_linear_and_attention_input_weights_only():
    """Width 8, feed-forward 16, 11 tokens, 3 classes. Normalized: in_proj_weight
    3·8·8 = 192, linear1 16·8 = 128, linear2 8·16 = 128, head 3·8 = 24: 472. All:
    embedding 88 + in_proj bias 24 + out_proj 64 + 8 + linear biases 16 + 8 + two
    LayerNorms 32 + head bias 3 + the 472: 715."""
    torch.manual_seed(0)
    model = TinyLM()
    assert sum(p.numel() for p in model.parameters()) == 715
    with INSGD(model, lr=0.1) as opt:
        assert opt.normalized_fraction == pytest.approx(472 / 715)
        block = model.block
        normalized = set(opt._probes)
        assert block.self_attn.in_proj_weight in normalized
        assert block.linear1.weight in normalized and model.head.weight in normalized
        for plain in (block.self_attn.out_proj.weight, model.embed.weight, block.norm1.weight):
            assert plain not in normalized
    with INSGD(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), lr=0.1) as opt:
        assert opt.normalized_fraction == pytest.approx((12 + 6) / (12 + 3 + 6 + 2))


@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_a_transformer_with_embedding_and_layernorm_trains_and_both_paths_agree(mode):
    models = []
    for foreach in (True, False):
        torch.manual_seed(0)
        model = TinyLM().double()  # float64: the two paths round alike
        with INSGD(model, lr=0.05, mode=mode, foreach=foreach) as opt:
            for step in range(4):
                tokens, labels = _tokens(step)
                opt.zero_grad()
                F.cross_entropy(model(tokens), labels).backward()
                opt.step()
        models.append(model)
    torch.manual_seed(0)
    start = TinyLM().double()
    for (name, p), q, p0 in zip(
        models[0].named_parameters(), models[1].parameters(), start.parameters(), strict=True
    ):
        assert (p - p0).abs().max() > 0, name  # every parameter was stepped
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-10, msg=name)


class _Attend(nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True, **kwargs)

    def forward(self, query, key, value):
        return self.attn(query, key, value, need_weights=False)[0]


def _row_power(x):
    return x.double().square().sum(-1).mean().item()


def test_self_attention_input_power_is_its_inputs_and_cross_attention_averages_q_k_v():
    torch.manual_seed(0)
    module = _Attend()
    x = torch.randn(3, 5, 4) * 2
    memory = torch.randn(3, 7, 4) * 0.5
    with INSGD(module, lr=0.1, momentum=0.0, beta=0.5) as opt:
        module(x, x, x).sum().backward()
        opt.step()
        power = opt.state[module.attn.in_proj_weight]["input_power"].item()
        assert power == pytest.approx(_row_power(x), rel=1e-6)  # P_1 = p_1
        opt.zero_grad()
        module(x, memory, memory).sum().backward()  # the query differs from key/value
        opt.step()
        p2 = (_row_power(x) + 2 * _row_power(memory)) / 3
        after = opt.state[module.attn.in_proj_weight]["input_power"].item()
        assert after == pytest.approx(0.5 * _row_power(x) + 0.5 * p2, rel=1e-6)


def test_attention_with_separate_projections_normalizes_each_by_its_own_input():
    torch.manual_seed(0)
    module = _Attend(kdim=3, vdim=6)
    q, k, v = torch.randn(2, 5, 4), torch.randn(2, 6, 3) * 3, torch.randn(2, 6, 6) * 0.1
    with INSGD(module, lr=0.1) as opt:
        module(q, k, v).sum().backward()
        opt.step()
        attn = module.attn
        for weight, x in (
            (attn.q_proj_weight, q),
            (attn.k_proj_weight, k),
            (attn.v_proj_weight, v),
        ):
            assert opt.state[weight]["input_power"].item() == pytest.approx(_row_power(x), rel=1e-6)


def test_attention_passed_by_keyword_is_measured_too():
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(4, 1)
    x = torch.randn(5, 2, 4)
    with INSGD(attn, lr=0.1) as opt:
        attn(query=x, key=x, value=x)[0].sum().backward()
        opt.step()
        assert opt.state[attn.in_proj_weight]["input_power"].item() == pytest.approx(
            _row_power(x), rel=1e-6
        )


@PATHS
def test_embedding_layernorm_and_attention_output_projection_step_as_plain_sgd(foreach):
    """A first step of plain SGD with momentum is w − lr·g (the buffer starts at g)."""
    torch.manual_seed(0)
    model = TinyLM()
    tokens, labels = _tokens()
    plain = {
        "embed": model.embed.weight,
        "norm1": model.block.norm1.weight,
        "out_proj": model.block.self_attn.out_proj.weight,
        "in_proj_bias": model.block.self_attn.in_proj_bias,
    }
    before = {name: p.detach().clone() for name, p in plain.items()}
    with INSGD(model, lr=0.1, foreach=foreach) as opt:
        F.cross_entropy(model(tokens), labels).backward()
        grads = {name: p.grad.clone() for name, p in plain.items()}
        opt.step()
    for name, p in plain.items():
        torch.testing.assert_close(p.detach(), before[name] - 0.1 * grads[name], msg=name)


def _conv1d_windows(layer: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """(N, groups, C_in/groups·k, L_out): each output neuron's input window, by unfold."""
    if layer.padding_mode != "zeros":
        x = F.pad(x, layer._reversed_padding_repeated_twice, mode=layer.padding_mode)
    else:
        x = F.pad(x, (layer.padding[0], layer.padding[0]))
    (k,), (s,), (d,) = layer.kernel_size, layer.stride, layer.dilation
    windows = x.unfold(-1, d * (k - 1) + 1, s)[..., ::d]  # (N, C, L_out, k)
    n, c, positions, _ = windows.shape
    per_group = windows.reshape(n, layer.groups, c // layer.groups, positions, k)
    return per_group.permute(0, 1, 2, 4, 3).reshape(n, layer.groups, -1, positions)


@pytest.mark.parametrize(
    "conv",
    [
        {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "padding": 1},
        {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 2, "dilation": 2},
        {"in_channels": 6, "out_channels": 6, "kernel_size": 5, "padding": 2, "groups": 6},
        {
            "in_channels": 4,
            "out_channels": 4,
            "kernel_size": 4,
            "padding": 1,
            "padding_mode": "circular",
        },
    ],
    ids=["pad1", "stride2-dilated", "depthwise", "circular"],
)
@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_conv1d_input_power_equals_the_unfold_computation(conv, norm):
    torch.manual_seed(0)
    layer = nn.Conv1d(**conv).double()
    x = torch.randn(3, layer.in_channels, 13, dtype=torch.float64)
    windows = _conv1d_windows(layer, x)
    per_window = windows.square().sum(2) if norm == "l2" else windows.abs().sum(2)
    assert input_power(layer, x, norm).item() == pytest.approx(per_window.mean().item(), rel=1e-12)
    unbatched = input_power(layer, x[0], norm).item()
    assert unbatched == pytest.approx(input_power(layer, x[:1], norm).item(), rel=1e-12)


@pytest.mark.parametrize("groups", [1, 2])
def test_conv1d_reference_statistic_is_positions_minus_one_per_input_channel(groups):
    """Σ z² over the L positions of a standardized map is L − 1, whatever the data."""
    layer = nn.Conv1d(4, 6, 3, groups=groups)
    stat = standardized_input_statistic(layer, torch.randn(5, 4, 9) * 7, "l2")
    assert stat.shape == ((1, 4, 1) if groups == 1 else (6, 2, 1))
    torch.testing.assert_close(stat, torch.full_like(stat, 8.0))


@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_a_conv1d_net_trains_with_both_paths_agreeing(mode):
    def net():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv1d(4, 4, 3, groups=4),
            nn.Flatten(), nn.Linear(4 * 6, 2),
        ).double()  # fmt: skip

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 2, 8, generator=gen, dtype=torch.float64)
    batches = [(x, torch.randint(0, 2, (5,), generator=gen))]
    trained = []
    for foreach in (True, False):
        model = net()
        with INSGD(model, lr=0.05, mode=mode, foreach=foreach) as opt:
            assert opt.normalized_fraction == pytest.approx(
                (24 + 12 + 48) / (24 + 4 + 12 + 4 + 48 + 2)
            )
            for _ in range(3):
                for x, y in batches:
                    opt.zero_grad()
                    F.cross_entropy(model(x), y).backward()
                    opt.step()
        trained.append(model)
    start = net()
    for p, q, p0 in zip(
        trained[0].parameters(), trained[1].parameters(), start.parameters(), strict=True
    ):
        assert (p - p0).abs().max() > 0
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-10)
    assert math.isfinite(sum(p.sum().item() for p in trained[0].parameters()))


def test_the_trial_record_carries_the_normalized_fraction_nan_for_other_optimizers():
    """MLP 64 -> 16 -> 10 on digits: weights 64·16 + 16·10 = 1184 normalized of 1210."""
    from robustness.runner import TrialConfig, run_trial

    common = {"lr": 0.05, "model_args": {"widths": [16]}, "steps": 2, "eval_every": 2}
    common |= {"device": "cpu", "threads": 1}
    (insgd,) = run_trial(TrialConfig(optimizer="insgd", **common)).records
    assert insgd["insgd_normalized_fraction"] == pytest.approx(1184 / 1210)
    (sgd,) = run_trial(TrialConfig(optimizer="sgd", **common)).records
    assert math.isnan(sgd["insgd_normalized_fraction"])
