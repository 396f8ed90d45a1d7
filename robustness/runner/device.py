"""Which device a trial trains on, and the CUDA settings that keep a run reproducible.

One rule ties the device to what Ray reserves (``resources.gpu``), checked once
when the spec is validated and applied when the engine makes each trial's config:

- ``device: cuda`` needs ``resources.gpu > 0``. A Ray worker that asked for no GPU
  may still see every GPU (Ray 2.60 does not hide them), so such trials would all
  land on GPU 0 uncounted, up to one per CPU; older Ray hides them instead and
  every trial fails.
- ``device: cpu`` with ``resources.gpu > 0`` would hold GPUs no trial uses.
- ``device: auto`` is CUDA exactly when the trial was given a GPU.

Outside the engine (``run_trial``, the ``trial`` verb) nothing reserves a GPU, so
``auto`` there means CUDA when this process can use one (``resolve_device``).

On CUDA a run is made reproducible by :func:`reproducible_cuda`: deterministic
cuDNN algorithms, no cuDNN autotuning (which may pick a different algorithm on
each run), and TF32 off unless the spec allows it (``problem.tf32``). These are
process-wide switches, so they are set for the run and restored after it.
``torch.use_deterministic_algorithms`` is not set: the ops of the training loop
(convolutions, BatchNorm, linear layers, cross-entropy, global average pooling)
are deterministic on CUDA once cuDNN is, and the switch would also need
``CUBLAS_WORKSPACE_CONFIG`` set before CUDA starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from robustness.errors import UserInputError, unknown_choice

if TYPE_CHECKING:  # torch is imported where it is used: the spec imports this module
    import torch

DEVICES = ("auto", "cpu", "cuda")


def device_conflict(device: str, gpu: float) -> str | None:
    """Why ``device`` does not fit ``gpu`` GPUs per trial, or None when it fits."""
    if device == "cuda" and gpu <= 0:
        return (
            "problem.device 'cuda' needs a GPU per trial, but resources.gpu is 0: Ray would "
            "not count the trials' GPU use (they would pile up on one GPU); set resources.gpu "
            "(e.g. 1, or 0.25 for four trials per GPU), or use device 'auto' or 'cpu'"
        )
    if device == "cpu" and gpu > 0:
        return (
            f"problem.device 'cpu' with resources.gpu = {gpu:g}: every trial would hold GPU "
            "capacity it never uses; set resources.gpu to 0 to train on CPUs, or device "
            "'auto' or 'cuda' to train on the GPUs"
        )
    return None


def trial_device(device: str, gpu: float) -> str:
    """The device a trial given ``gpu`` GPUs trains on: ``auto`` is CUDA exactly when
    ``gpu > 0``; ``cpu`` and ``cuda`` stay (a combination refused by
    ``device_conflict`` raises ``UserInputError``)."""
    if device not in DEVICES:
        raise unknown_choice("device", device, DEVICES)
    conflict = device_conflict(device, gpu)
    if conflict is not None:
        raise UserInputError(conflict)
    if device == "auto":
        return "cuda" if gpu > 0 else "cpu"
    return device


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when this process can use it, else CPU; ``cuda`` without a
    usable GPU is refused (naming a CPU-only torch build when that is the cause)."""
    import torch

    if name not in DEVICES:
        raise unknown_choice("device", name, DEVICES)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserInputError(
            f"device 'cuda' asked for, but no CUDA device is available ({cuda_problem()}); "
            "allowed here: auto, cpu"
        )
    return torch.device(name)


def cuda_problem(
    torch_version: str | None = None, cuda_version: str | None = None, devices: int | None = None
) -> str:
    """Why torch cannot use a GPU here, in words with the fix (defaults: this process)."""
    import torch

    if torch_version is None:
        torch_version, cuda_version = torch.__version__, torch.version.cuda
        devices = torch.cuda.device_count() if cuda_version else 0
    if not cuda_version:
        release = torch_version.split("+")[0]
        return (
            f"torch {torch_version} is a CPU-only build; install a CUDA build, e.g. "
            f"`pip install torch=={release} --index-url https://download.pytorch.org/whl/cu128` "
            f'(or `make install TORCH="torch=={release} --index-url '
            'https://download.pytorch.org/whl/cu128"` in a fresh checkout)'
        )
    if not devices:
        return (
            f"torch {torch_version} is built for CUDA {cuda_version} but sees no usable GPU "
            "(check the driver with `nvidia-smi` and CUDA_VISIBLE_DEVICES)"
        )
    return f"torch {torch_version} (CUDA {cuda_version}) sees {devices} GPU(s)"


@contextmanager
def reproducible_cuda(device: torch.device, *, tf32: bool = False) -> Iterator[None]:
    """On CUDA: deterministic cuDNN, cuDNN benchmark off, TF32 for matmuls and
    convolutions as ``tf32`` says; the previous settings are restored after.
    On any other device: nothing."""
    if device.type != "cuda":
        yield
        return
    import torch

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.deterministic, cudnn.benchmark = True, False
    cudnn.allow_tf32 = matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved
