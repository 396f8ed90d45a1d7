"""Population training on a CUDA device (skipped without one)."""

from __future__ import annotations

import warnings

import pytest
import torch

from robustness.runner import TrialConfig, run_population, run_trial


def config(**overrides) -> TrialConfig:
    fields = {
        "optimizer": "sgd",
        "lr": 0.1,
        "beta": 0.9,
        "model": "cnn",
        "model_args": {"batchnorm": True},
        "batch_size": 64,
        "steps": 100,
        "eval_every": 50,
        "seeds": (0, 1),
        "device": "cuda",
    }
    fields.update(overrides)
    return TrialConfig(**fields)


@pytest.mark.gpu
@pytest.mark.parametrize("optimizer", ["sgd", "insgd", "novograd"])
def test_cuda_population_agrees_with_run_trial(optimizer):
    lrs = (0.01, 0.1, 50.0) if optimizer != "novograd" else (0.001, 0.01, 5.0)
    configs = [config(optimizer=optimizer, lr=lr) for lr in lrs]
    population = run_population(configs)
    sequential = [run_trial(c) for c in configs]
    for pop, seq in zip(population, sequential, strict=True):
        for p, s in zip(pop.records, seq.records, strict=True):
            assert p["outcome"] == s["outcome"]
            assert p["diverged_step"] == s["diverged_step"]
            if s["outcome"] == "converged":
                assert p["final_train_loss"] == pytest.approx(s["final_train_loss"], rel=1e-3)


@pytest.mark.gpu
def test_cuda_population_does_not_sync_with_the_host_every_step():
    configs = [config(lr=lr, steps=200, eval_every=200) for lr in (0.01, 0.05, 0.1)]
    run_population(configs[:2])  # warm-up
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run_population(configs)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    # one per divergence check (every 10 steps) and a few per evaluation, not one a step
    assert len(syncs) < 200 // 4
