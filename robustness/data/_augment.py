"""Training augmentation for CIFAR: random crop with padding, random flip.

The randomness (offsets and flips) is drawn on the CPU from the run's own CPU
generator (:func:`crop_flip_draws`) and only then copied to the batch's device
(pinned, without blocking the host), so a seed gives the same crops on CPU and
CUDA, and a run's draws never depend on another run sharing the device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustness._transfer import to_device


def crop_flip_draws(
    n: int, generator: torch.Generator, padding: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random part of :func:`random_crop_flip` for a batch of ``n``, on the CPU.

    Returns ``offsets`` (2, N) int64 in ``[0, 2·padding]`` (rows, then columns) and
    ``flips`` (N,) bool. ``generator`` must be a CPU generator: a device generator
    would give different numbers on each device.
    """
    if generator.device.type != "cpu":
        raise ValueError(
            f"augmentation draws from a CPU generator (the same crops on every device), "
            f"got a generator on {generator.device}"
        )
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return offsets, flips


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Each image zero-padded by ``padding``, cropped back at a random offset, and
    mirrored left-right with probability 1/2 (the standard CIFAR augmentation).

    ``x`` is a batch (N, C, H, W) on any device; offsets and flips come from
    :func:`crop_flip_draws` (CPU ``generator``), so a given generator state gives
    the same batch on any device. The padding is zero in normalized units, i.e.
    the channel mean. The crop is one gather, with no Python loop over images.
    """
    n, c, h, w = x.shape
    device = x.device
    offsets, flips = crop_flip_draws(n, generator, padding)
    # one host-to-device copy for both: offsets in rows 0-1, flips in row 2
    draws = to_device(torch.cat([offsets, flips[None].long()]), device)
    offsets, flips = draws[:2], draws[2].bool()
    rows = offsets[0, :, None] + torch.arange(h, device=device)  # (N, H)
    cols = offsets[1, :, None] + torch.arange(w, device=device)  # (N, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)  # a flipped crop reads columns backwards
    padded = F.pad(x, (padding, padding, padding, padding))
    return padded[
        torch.arange(n, device=device)[:, None, None, None],
        torch.arange(c, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
