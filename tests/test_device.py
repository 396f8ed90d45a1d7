"""The device follows the resources; the GPU check before a study; CUDA reproducibility
settings scoped to a run. All of it runs on a CPU-only machine: Ray's GPU count and
the GPU worker's report are injected, and the cuDNN/TF32 switches are plain flags."""

from __future__ import annotations

import pytest
import torch

from robustness.engine import _cluster
from robustness.engine._cluster import CudaProbe, check_resources
from robustness.errors import UserInputError
from robustness.runner.device import reproducible_cuda, trial_device


@pytest.mark.parametrize(
    ("device", "gpu", "expected"),
    [
        ("auto", 0.0, "cpu"),
        ("auto", 0.25, "cuda"),
        ("auto", 2.0, "cuda"),
        ("cpu", 0.0, "cpu"),
        ("cuda", 0.5, "cuda"),
    ],
)
def test_auto_is_cuda_exactly_when_the_trial_is_given_a_gpu(device, gpu, expected):
    assert trial_device(device, gpu) == expected


@pytest.mark.parametrize(
    ("device", "gpu", "needle"),
    [
        ("cuda", 0.0, "'cuda' needs a GPU per trial, but resources.gpu is 0"),
        ("cpu", 0.5, "'cpu' with resources.gpu = 0.5"),
        ("tpu", 0.0, "unknown device 'tpu'; allowed: auto, cpu, cuda"),
    ],
)
def test_a_device_that_does_not_fit_the_resources_is_refused(device, gpu, needle):
    with pytest.raises(UserInputError, match=needle):
        trial_device(device, gpu)


def _flags() -> tuple:
    cudnn = torch.backends.cudnn
    return (
        cudnn.deterministic,
        cudnn.benchmark,
        cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
    )


@pytest.fixture
def sloppy_flags():
    """The fastest, least reproducible settings, restored after the test."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = _flags()
    cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = (
        False,
        True,
        True,
        True,
    )
    yield
    cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved


@pytest.mark.parametrize("tf32", [False, True])
def test_a_cuda_run_is_deterministic_and_its_settings_are_restored_after(sloppy_flags, tf32):
    with (
        pytest.raises(RuntimeError, match="inside"),
        reproducible_cuda(torch.device("cuda"), tf32=tf32),
    ):
        assert _flags() == (True, False, tf32, tf32)
        raise RuntimeError("inside")  # restored after an error too
    assert _flags() == (False, True, True, True)


def test_a_cpu_run_leaves_the_cuda_settings_alone(sloppy_flags):
    with reproducible_cuda(torch.device("cpu")):
        assert _flags() == (False, True, True, True)


# --- the GPU check before a study --------------------------------------------------


@pytest.fixture
def gpu_node(monkeypatch):
    """A cluster whose largest node has 8 CPUs and 1 GPU, as Ray would report it."""
    monkeypatch.setattr(_cluster, "_largest_node", lambda: {"CPU": 8.0, "GPU": 1.0})


CPU_TORCH = CudaProbe(False, "2.13.0+cpu", None, 0)


def test_a_gpu_node_with_a_cpu_only_torch_fails_fast_naming_the_fix(gpu_node):
    asked = []
    with pytest.raises(UserInputError) as caught:
        check_resources(1, 0.25, probe=lambda gpu: asked.append(gpu) or CPU_TORCH)
    assert asked == [0.25]  # one worker, holding what a trial holds
    message = str(caught.value)
    assert "torch 2.13.0+cpu is a CPU-only build" in message
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" in message


def test_a_cuda_torch_that_sees_no_gpu_names_the_driver(gpu_node):
    probe = CudaProbe(False, "2.13.0+cu128", "12.8", 0)
    with pytest.raises(UserInputError, match=r"built for CUDA 12\.8 but sees no usable GPU"):
        check_resources(1, 1, probe=lambda gpu: probe)


def test_a_gpu_node_whose_torch_uses_the_gpu_passes(gpu_node):
    check_resources(1, 1, probe=lambda gpu: CudaProbe(True, "2.13.0+cu128", "12.8", 1))
    check_resources(1, 0.5, probe=lambda gpu: None)  # no worker in time: not held back


def test_cpu_trials_probe_no_gpu_worker(gpu_node):
    check_resources(2, 0, probe=lambda gpu: pytest.fail("probed a GPU worker for CPU trials"))


def test_no_gpu_worker_is_probed_when_the_cluster_has_no_gpus(monkeypatch):
    monkeypatch.setattr(_cluster, "_largest_node", lambda: {"CPU": 8.0, "GPU": 0.0})
    with pytest.raises(UserInputError, match="the Ray cluster has no GPUs"):
        check_resources(1, 0.5, probe=lambda gpu: pytest.fail("probed without GPUs"))


@pytest.mark.slow  # starts a local Ray and one worker: ~15 s on 2 busy cores
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch that cannot use CUDA")
def test_the_real_probe_finds_this_cpu_only_torch_in_a_ray_gpu_worker():
    """Ray is told this machine has a GPU; the worker that gets it imports the same
    torch as here, which cannot use CUDA, and the check says so."""
    import ray

    if ray.is_initialized():
        pytest.skip("another test's Ray is running")
    _cluster.connect(None, num_cpus=1, num_gpus=1)
    try:
        found = _cluster.probe_gpu_worker(0.5, timeout=60)
        assert found == CudaProbe(False, torch.__version__, None, 0)
        with pytest.raises(UserInputError, match="is a CPU-only build"):
            check_resources(1, 0.5)
    finally:
        ray.shutdown()
