"""The quickstart's one run whose outcome differs between ``population: auto`` and ``off``.

``python -m benchmarks.quickstart_edge_run`` retrains it (INSGD, lr 10^0.5, beta 0.5,
xavier_uniform, seed 1; its cell diverges from lr 10 on) on CPU with one torch
thread: run by run (``run_trial``), as a population of itself alone (K = 1) and as
a population of its cell's 11 lrs (K = 11, the batched matmul summing in another
order), in float32 and then float64. Each line prints the outcome, the best train
loss (the stall rule needs it below 0.99 x the initial loss), the final validation
loss and the train losses at the evaluations. ``BENCHMARKS.md`` has the numbers.
"""

from __future__ import annotations

import dataclasses

import torch

from robustness.runner import TrialConfig, TrialResult, run_population, run_trial
from robustness.runner import trial as trial_module

LRS = [10 ** (-3 + 0.5 * i) for i in range(11)]  # the quickstart's lr grid
EDGE = 7  # lr 10^0.5


def config(lr: float) -> TrialConfig:
    """The quickstart's configuration at ``lr`` in the differing run's cell."""
    return TrialConfig(
        optimizer="insgd",
        lr=lr,
        beta=0.5,
        init="xavier_uniform",
        model="mlp",
        model_args={"widths": [64]},
        dataset="digits",
        batch_size=64,
        steps=150,
        eval_every=50,
        seeds=(1,),
        divergence={"loss_factor": 10.0, "stall_margin": 0.01},
        device="cpu",
    )


def show(name: str, result: TrialResult) -> None:
    record = result.records[0]
    losses = " / ".join(f"{r['train_loss']:.4f}" for r in result.curves)
    print(
        f"{name:26s} {record['outcome']:9s} best train {record['best_train_loss']:.5f} "
        f"(0.99 x initial {0.99 * record['initial_loss']:.5f})  "
        f"final val {record['final_val_loss']:.6f}  train losses {losses}",
        flush=True,
    )


def _float64_data(*args, _load=trial_module.load_dataset, **kwargs):
    data = _load(*args, **kwargs)
    return dataclasses.replace(data, x_train=data.x_train.double(), x_val=data.x_val.double())


def main() -> None:
    torch.set_num_threads(1)
    for dtype in (torch.float32, torch.float64):
        if dtype == torch.float64:
            trial_module.load_dataset = _float64_data
        torch.set_default_dtype(dtype)
        tag = str(dtype).removeprefix("torch.")
        show(f"run_trial {tag}", run_trial(config(LRS[EDGE])))
        show(f"population K=1 {tag}", run_population([config(LRS[EDGE])])[0])
        show(f"population K=11 {tag}", run_population([config(lr) for lr in LRS])[EDGE])


if __name__ == "__main__":
    main()
