"""Trial-runner overhead: ``run_trial`` against a minimal hand-written PyTorch loop.

Baseline: the loop a researcher would write by hand for the same model, data,
init and optimizer: a permutation per epoch, index the tensors, forward, loss,
``zero_grad``/``backward``/``step``, no divergence watch, no records. Both sides
do the same evaluation work (initial training loss, final validation and
training loss), and the runner is told to evaluate only at the end, so the ratio
is the cost of the runner's bookkeeping: divergence watch, batch iterator,
records. Each side loads the dataset once and trains two seeds.

Time is the process's CPU time (``time.process_time``) with one torch thread:
on a shared machine it is far less noisy than wall time, and with one thread it
is the same work. Each case alternates the two sides over a few repetitions
after a warm-up and reports the median ratio; ``python -m benchmarks runner``.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from robustness.data import Dataset, load_dataset
from robustness.init_schemes import apply_init
from robustness.models import build_model
from robustness.optim import build_optimizer
from robustness.runner import TrialConfig, run_trial

_REPEATS = 5
_SEEDS = (0, 1)
_CASES = (
    # label, model, model_args, batch size, steps
    ("mlp 128x128, digits, batch 128", "mlp", {}, 128, 400),
    ("cnn, digits 1x8x8, batch 128", "cnn", {}, 128, 100),
    ("linear, linreg, full batch", "linear", {}, "full", 400),
)


def _hand_trial(dataset: str, model: str, model_args: dict, batch_size, steps: int) -> float:
    """CPU seconds of the minimal loop on every seed, dataset loading included."""
    start = time.process_time()
    data = load_dataset(dataset)
    for seed in _SEEDS:
        _hand_loop(data, model, model_args, batch_size, steps, seed)
    return time.process_time() - start


def _hand_loop(data: Dataset, model_name: str, model_args: dict, batch_size, steps, seed) -> None:
    """The minimal loop: build, initial loss, train, final evaluations."""
    torch.manual_seed(seed)
    model = build_model(model_name, data.input_shape, data.num_outputs, **model_args)
    apply_init(model, "default", generator=torch.Generator().manual_seed(seed))
    optimizer = build_optimizer("sgd", model, lr=0.01, beta=0.9)
    loss_fn = F.cross_entropy if data.task == "classification" else F.mse_loss
    x, y = data.x_train, data.y_train
    with torch.no_grad():
        model.eval()
        float(loss_fn(model(x), y))
    model.train()
    n = x.shape[0]
    bs = n if batch_size == "full" else batch_size
    generator = torch.Generator().manual_seed(seed)
    step = 0
    while step < steps:
        batches = [None] if bs >= n else torch.randperm(n, generator=generator).split(bs)
        for idx in batches:
            xb, yb = (x, y) if idx is None else (x[idx], y[idx])
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                break
    with torch.no_grad():
        model.eval()
        float(loss_fn(model(data.x_val), data.y_val))
        float(loss_fn(model(x), y))


def _runner_trial(dataset: str, model: str, model_args: dict, batch_size, steps: int) -> float:
    """CPU seconds of ``run_trial`` on every seed, dataset loading included."""
    start = time.process_time()
    config = TrialConfig(
        optimizer="sgd",
        lr=0.01,
        beta=0.9,
        model=model,
        model_args=model_args,
        dataset=dataset,
        batch_size=batch_size,
        steps=steps,
        eval_every=steps,
        seeds=_SEEDS,
        threads=1,
        device="cpu",
    )
    run_trial(config)
    return time.process_time() - start


def main() -> None:
    torch.set_num_threads(1)
    print("| case | steps | hand loop CPU ms/step | runner CPU ms/step | runner / hand loop |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, model, model_args, batch_size, steps in _CASES:
        dataset = "linreg" if model == "linear" else "digits"
        _runner_trial(dataset, model, model_args, batch_size, 20)  # warm-up: imports, caches
        hand_times, runner_times = [], []
        for _ in range(_REPEATS):
            hand_times.append(_hand_trial(dataset, model, model_args, batch_size, steps))
            runner_times.append(_runner_trial(dataset, model, model_args, batch_size, steps))
        ratio = statistics.median(r / h for r, h in zip(runner_times, hand_times, strict=True))
        per_step = 1e3 / (steps * len(_SEEDS))
        print(
            f"| {label} | {steps} | {statistics.median(hand_times) * per_step:.3f} | "
            f"{statistics.median(runner_times) * per_step:.3f} | {ratio:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
