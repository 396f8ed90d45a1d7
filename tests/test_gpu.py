"""What only a CUDA machine can check (every test here is marked ``gpu``, and is
skipped without CUDA): the same seed on CPU and CUDA, determinism on CUDA, no host
sync per training step, a fractional-GPU study through Ray. ``benchmarks/gpu_check.sh``
runs them with the other ``gpu`` tests."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
import torch

from robustness.runner import TrialConfig, run_trial
from tests.test_engine import SMALL, write_spec

pytestmark = pytest.mark.gpu


def config(**overrides) -> TrialConfig:
    fields = {
        "optimizer": "novograd",
        "lr": 0.01,
        "model": "cnn",
        "dataset": "digits",
        "steps": 60,
        "eval_every": 20,
        "seeds": (0,),
        "device": "cuda",
    }
    return TrialConfig(**{**fields, **overrides})


def metrics(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("wall_seconds", "node_id")}


def test_a_cuda_run_is_bit_identical_when_repeated():
    first, again = run_trial(config()), run_trial(config())
    assert metrics(first.records[0]) == metrics(again.records[0])
    assert first.curves == again.curves


def test_the_same_seed_on_cpu_and_cuda_gives_the_same_outcome_and_close_losses():
    cuda = run_trial(config(seeds=(0, 1))).records
    cpu = run_trial(config(seeds=(0, 1), device="cpu", threads=1)).records
    for on_cuda, on_cpu in zip(cuda, cpu, strict=True):
        assert on_cuda["outcome"] == on_cpu["outcome"] == "converged"
        assert on_cuda["final_train_loss"] == pytest.approx(on_cpu["final_train_loss"], rel=1e-3)


def test_the_cuda_settings_are_restored_after_a_run():
    cudnn = torch.backends.cudnn
    before = (cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32)
    run_trial(config(steps=5))
    assert (cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32) == before


def _syncs(steps: int) -> int:
    """Host syncs of a run without evaluations in between (eval_every = steps)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run_trial(config(steps=steps, eval_every=steps, batch_size=64))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def test_training_steps_do_not_sync_with_the_host():
    """100 more steps add only their 10 divergence checks (one sync each), not a sync
    a step: the batch order and the augmentation draws go over without blocking."""
    extra = _syncs(200) - _syncs(100)
    assert 0 < extra <= 12, extra


def test_a_fractional_gpu_study_runs_four_trials_on_one_gpu(tmp_path):
    import ray

    from robustness.engine import run_study

    if ray.is_initialized():  # another module's Ray, perhaps declared without GPUs
        ray.shutdown()
    resources = {"cpu": 1, "gpu": 0.25, "max_concurrent": 4, "configs_per_trial": 1}
    optimizers = {"novograd": {}, "insgd": {}}
    spec = write_spec(
        tmp_path / "gpu.yaml", resources=resources, optimizers=optimizers, space={"lr": [0.01, 0.1]}
    )
    out = run_study(str(spec), tmp_path / "out", progress=False, report=False)
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == 4 and trials["run_id"].is_unique
    assert (trials["outcome"] != "error").all(), trials["error"].tolist()
    assert set(SMALL["seeds"]) == set(trials["seed"])
