"""Host-to-device copies that do not make the host wait: ``to_device``."""

from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor`` (on the CPU) on ``device``, without blocking the host on CUDA.

    On CUDA the tensor is staged in pinned (page-locked) memory and copied
    asynchronously on the current stream: a copy from ordinary memory would make
    the host wait for it, and work queued after it on the stream sees the data
    in order. PyTorch's caching host allocator keeps the pinned block alive until
    the copy is done, so the caller may drop ``tensor`` at once. Anywhere else it
    is a plain ``.to(device)`` (no copy when already there).
    """
    device = torch.device(device)
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
