"""An optimizer step is a fixed number of ops, whatever the number of parameter tensors.

On CUDA a ``torch._foreach_*`` op runs as a few multi-tensor kernels only when its
tensor lists have matching shapes; otherwise it falls back to one kernel per
tensor. On the CPU the ops a step dispatches are recorded (a
``TorchDispatchMode`` sees each aten call with its arguments): their number must
be the same for a ResNet-20 (59 tensors) and a ResNet-32 (95 tensors), and every
foreach call must pass CUDA's shape condition. ``SPREAD_ON_CPU`` runs the CUDA
path's code on the CPU for that. The ``gpu`` test counts real CUDA kernels.
"""

from __future__ import annotations

import collections

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from robustness.models._resnet import _BasicBlock, _ResNet, _stages
from robustness.optim import INSGD, NovoGrad, _multi_tensor

OPTIMIZERS = {
    "novograd": lambda m: NovoGrad(m.parameters(), lr=0.01, weight_decay=1e-4),
    "insgd-paper": lambda m: INSGD(m, lr=0.01, weight_decay=1e-4),
    "insgd-reference": lambda m: INSGD(m, lr=0.01, mode="reference", weight_decay=1e-4),
    "insgd-paper-nesterov": lambda m: INSGD(m, lr=0.01, nesterov=True),
}


def cifar_resnet(blocks: int) -> nn.Module:
    """The CIFAR ResNet of He et al. with ``blocks`` blocks a stage: 3 is ResNet-20
    (59 tensors), 5 ResNet-32 (95), 1 ResNet-8 (23)."""
    stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
    stages = _stages((16, 32, 64), blocks, 16, lambda i, o, s: _BasicBlock(i, o, s, "A"))
    return _ResNet(stem, stages, nn.Identity(), 64, 10)


class _Recorder(TorchDispatchMode):
    """Records every aten op dispatched (the outermost calls only)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not name.startswith("_record_function"):  # the profiler's step marker
            self.calls.append((name, args))
        return func(*args, **(kwargs or {}))


def _steady_step(blocks: int, make_optimizer, device: str = "cpu"):
    """Model, optimizer and a batch, after two steps (state exists): ready to step."""
    torch.manual_seed(0)
    model = cifar_resnet(blocks).to(device)
    optimizer = make_optimizer(model)
    x, y = torch.randn(4, 3, 8, 8, device=device), torch.tensor([0, 1, 2, 3], device=device)

    def forward_backward():
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()

    for _ in range(2):
        forward_backward()
        optimizer.step()
    forward_backward()
    return optimizer, forward_backward


def _step_ops(blocks: int, make_optimizer) -> list[tuple[str, tuple]]:
    optimizer, _ = _steady_step(blocks, make_optimizer)
    with _Recorder() as recorder:
        optimizer.step()
    return recorder.calls


def _unequal_lists(args: tuple) -> bool:
    """Whether the tensor lists of a foreach call differ in shape at some position."""
    lists = [a for a in args if isinstance(a, (list, tuple)) and a and isinstance(a[0], Tensor)]
    return any(len({tuple(t.shape) for t in position}) > 1 for position in zip(*lists, strict=True))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_step_dispatches_the_same_ops_for_20_and_32_layers(monkeypatch, name):
    make = OPTIMIZERS[name]
    # the CPU path: the same foreach calls (each a per-tensor loop on the CPU)
    cpu_path = [_foreach_calls(_step_ops(blocks, make)) for blocks in (3, 5)]
    assert cpu_path[0] == cpu_path[1] and sum(cpu_path[0].values()) <= 5
    # the CUDA path: the same ops altogether, a small fixed number of them
    monkeypatch.setattr(_multi_tensor, "SPREAD_ON_CPU", True)
    resnet20, resnet32 = _step_ops(3, make), _step_ops(5, make)
    names20 = collections.Counter(op for op, _ in resnet20)
    assert names20 == collections.Counter(op for op, _ in resnet32)
    assert len(resnet20) <= 22, names20  # NovoGrad with weight decay: 22, INSGD fewer
    # and every foreach call has matching shapes: CUDA's multi-tensor kernels take it
    foreach = [(op, args) for op, args in resnet20 if op.startswith("_foreach_")]
    assert foreach and not [op for op, args in foreach if _unequal_lists(args)]


def _foreach_calls(calls: list[tuple[str, tuple]]) -> collections.Counter:
    return collections.Counter(op for op, _ in calls if op.startswith("_foreach_"))


def test_sgd_foreach_is_three_foreach_calls_for_reference():
    """The yardstick: torch's own SGD (momentum, foreach) on the same step."""
    make = lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, foreach=True)  # noqa: E731
    ops = collections.Counter(op for op, _ in _step_ops(3, make))
    assert ops == {"_foreach_mul_": 1, "_foreach_add_": 2}


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_cuda_step_is_a_fixed_number_of_kernels(name):
    """ResNet-8 (23 tensors) and ResNet-14 (41) fit every foreach op in one launch of
    CUDA's multi-tensor kernels (at most 48 tensors a launch for three lists), so
    their steps run the same number of kernels; ResNet-20's 59 tensors may take a
    second launch per foreach op, and nothing else."""
    from torch.profiler import ProfilerActivity, profile

    def kernels(blocks):
        optimizer, _ = _steady_step(blocks, OPTIMIZERS[name], device="cuda")
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            optimizer.step()
            torch.cuda.synchronize()
        return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]

    resnet8, resnet14, resnet20 = kernels(1), kernels(2), kernels(3)
    foreach = sum(_foreach_calls(_step_ops(3, OPTIMIZERS[name])).values())
    print(f"{name}: CUDA kernels a step: ResNet-8 {len(resnet8)}, ResNet-20 {len(resnet20)}")
    assert len(resnet8) == len(resnet14)
    assert len(resnet8) <= len(resnet20) <= len(resnet8) + foreach
