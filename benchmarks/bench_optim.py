"""Optimizer step cost of INSGD and NovoGrad against ``torch.optim.SGD``, in one run.

Two tables:

1. Step time alone, on the parameter sets of an MLP, a small CNN and a
   ResNet-20-shaped network, as a ratio to ``torch.optim.SGD(momentum=0.9,
   foreach=True)``. Also listed: SGD's default (per-tensor loop on CPU) and fused
   paths, a per-parameter Python loop doing SGD with momentum, and each of our
   optimizers' simple (``foreach=False``) path. INSGD's input measurements are
   made by a real forward pass once and re-supplied before every timed step, so
   only ``step()`` is timed.
2. The whole train step (forward + backward + step) of small CNNs with INSGD
   (hooks on) against the same with ``torch.optim.SGD``, and the hooks' share of
   the SGD train step, twice: as (forward+backward with hooks − without), which
   is noisy on a loaded machine, and as the hooks' own work (the statistics of
   one forward pass, computed on captured layer inputs).

The MLP and ResNet-20 (option-A shortcuts) come from ``robustness.models``; the
small CNN is local (the ``cnn`` model without its second pooling). Timings are
medians of ``torch.utils.benchmark`` blocked runs on a fixed thread count, in
process CPU time (see ``_interleaved_medians``). Ratios are given against
``SGD(foreach=True)`` and ``SGD(fused=True)``.

``BENCH_OPTIM_DEVICE=cuda`` runs the same tables on the GPU, in wall time
(``benchmarks/gpu_check.sh`` does).
"""

from __future__ import annotations

import copy
import os
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import benchmark

from robustness.models import build_model
from robustness.optim import INSGD, NovoGrad
from robustness.optim._input_stats import InputProbe, input_power

THREADS = 1
BASELINE = "SGD foreach"
FUSED = "SGD fused"
LR = 0.01
# BENCH_OPTIM_DEVICE=cuda times the same steps on the GPU (benchmarks/gpu_check.sh)
DEVICE = torch.device(os.environ.get("BENCH_OPTIM_DEVICE", "cpu"))


def small_cnn(channels: int = 3) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


MODELS = {
    "MLP (40-256-256-10)": (lambda: build_model("mlp", (40,), 10, widths=[256, 256]), (40,)),
    "small CNN (3x32x32)": (small_cnn, (3, 32, 32)),
    "ResNet-20 (3x32x32)": (lambda: build_model("resnet20", (3, 32, 32), 10), (3, 32, 32)),
}


def _interleaved_medians(candidates: dict, rounds: int = 5, run_time: float = 0.15) -> dict:
    """Median time of each callable, measured round-robin; the best round counts.

    On the CPU, time is this process's CPU time (one thread), so other processes
    on shared cores distort it less than wall time; on CUDA it is wall time (the
    timer synchronizes the device). Interleaving makes what load remains hit
    every candidate alike, and the best of several rounds is the least disturbed one.
    """
    clock = time.process_time if DEVICE.type == "cpu" else time.perf_counter
    timers = {
        name: benchmark.Timer(stmt="f()", globals={"f": f}, num_threads=THREADS, timer=clock)
        for name, f in candidates.items()
    }
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(rounds):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.blocked_autorange(min_run_time=run_time).median)
    return best


def _sgd_loop(params: list[torch.Tensor], lr: float, momentum: float):
    """A per-parameter Python loop: SGD with momentum written the naive way."""
    bufs = [torch.zeros_like(p) for p in params]

    def step() -> None:
        with torch.no_grad():
            for p, buf in zip(params, bufs, strict=True):
                buf.mul_(momentum).add_(p.grad)
                p.add_(buf, alpha=-lr)

    return step


def _stepper(opt: torch.optim.Optimizer):
    """``opt.step`` preceded, for INSGD, by re-supplying one recorded measurement."""
    if not isinstance(opt, INSGD):
        return opt.step
    recorded = {p: probe.take() for p, probe in opt._probes.items()}

    def step() -> None:
        for p, probe in opt._probes.items():
            probe.add(recorded[p])
        opt.step()

    return step


def step_table() -> str:
    rows = []
    for label, (factory, shape) in MODELS.items():
        model = factory().to(DEVICE)
        x = torch.randn(32, *shape, device=DEVICE)
        builders = {
            BASELINE: lambda m: torch.optim.SGD(m.parameters(), LR, momentum=0.9, foreach=True),
            "SGD default": lambda m: torch.optim.SGD(m.parameters(), LR, momentum=0.9),
            FUSED: lambda m: torch.optim.SGD(m.parameters(), LR, momentum=0.9, fused=True),
            "NovoGrad": lambda m: NovoGrad(m.parameters(), LR),
            "NovoGrad simple": lambda m: NovoGrad(m.parameters(), LR, foreach=False),
            "INSGD paper": lambda m: INSGD(m, LR),
            "INSGD paper simple": lambda m: INSGD(m, LR, foreach=False),
            "INSGD reference": lambda m: INSGD(m, LR, mode="reference"),
            "INSGD reference simple": lambda m: INSGD(m, LR, mode="reference", foreach=False),
        }
        steps, optimizers = {}, []
        for name, build in builders.items():
            opt = build(model)
            optimizers.append(opt)
            model.train()
            model.zero_grad()
            model(x).square().mean().backward()
            steps[name] = _stepper(opt)
            steps[name]()  # the first step allocates the state
        params = [p for p in model.parameters() if p.requires_grad]
        steps["per-parameter Python loop"] = _sgd_loop(params, LR, 0.9)
        times = _interleaved_medians(steps)
        for opt in optimizers:
            getattr(opt, "close", lambda: None)()
        for name, t in times.items():
            rows.append((label, name, t * 1e6, t / times[BASELINE], t / times[FUSED]))
    lines = [
        f"| parameter set | optimizer step | median µs | ratio to {BASELINE} | ratio to {FUSED} |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {m} | {n} | {us:.0f} | {r:.2f} | {f:.2f} |" for m, n, us, r, f in rows]
    return "\n".join(lines)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x, y):
    def run() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return run


def _forward_backward(model: nn.Module, x, y):
    def run() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    return run


def _statistics_alone(model: nn.Module, x: torch.Tensor):
    """What INSGD's hooks compute in one forward pass, on inputs captured beforehand."""
    captured = []
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    handles = [m.register_forward_pre_hook(lambda m, a: captured.append((m, a[0]))) for m in layers]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    probe = InputProbe(input_power, "l2")

    def run() -> None:
        for layer, inputs in captured:
            probe._record(layer, (inputs,))
        probe.take()

    return run


def train_step_table() -> str:
    """INSGD's train step against SGD's, and its hooks' share of a train step.

    The hooks' share is (forward+backward of a hooked model − of an identical
    unhooked one) / SGD train step; the two models are timed interleaved.
    """
    rows = []
    for label, channels, side, batch in (
        ("small CNN, 3x32x32, batch 128", 3, 32, 128),
        ("small CNN, 1x8x8, batch 128", 1, 8, 128),
    ):
        torch.manual_seed(0)
        plain = small_cnn(channels).to(DEVICE)
        hooked, stepped = copy.deepcopy(plain), copy.deepcopy(plain)  # identical compute
        x = torch.randn(batch, channels, side, side, device=DEVICE)
        y = torch.randint(0, 10, (batch,), device=DEVICE)
        sgd = torch.optim.SGD(plain.parameters(), LR, momentum=0.9, foreach=True)
        insgd = INSGD(stepped, LR)
        hooks_only = INSGD(hooked, LR)  # never steps: its hooks measure every pass
        times = _interleaved_medians(
            {
                "sgd": _train_step(plain, sgd, x, y),
                "insgd": _train_step(stepped, insgd, x, y),
                "plain": _forward_backward(plain, x, y),
                "hooked": _forward_backward(hooked, x, y),
                "statistics": _statistics_alone(plain, x),
            },
            rounds=7,
            run_time=0.5,
        )
        insgd.close()
        hooks_only.close()
        share = (times["hooked"] - times["plain"]) / times["sgd"]
        alone = times["statistics"] / times["sgd"]
        rows.append((label, times["sgd"], times["insgd"], share, alone))
    lines = [
        "| model | SGD train step ms | INSGD train step ms | ratio "
        "| hooks' share (hooked − plain) | hooks' statistics alone |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {m} | {a * 1e3:.2f} | {b * 1e3:.2f} | {b / a:.2f} | {h * 100:.1f}% | {s * 100:.1f}% |"
        for m, a, b, h, s in rows
    ]
    return "\n".join(lines)


def main() -> None:
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    where = "CPU" if DEVICE.type == "cpu" else torch.cuda.get_device_name(DEVICE)
    print(f"torch {torch.__version__}, {THREADS} thread(s), {where}, float32\n")
    print(step_table())
    print()
    print(train_step_table())


if __name__ == "__main__":
    main()
