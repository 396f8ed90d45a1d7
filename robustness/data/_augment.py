"""On-device training augmentation for CIFAR: random crop with padding, random flip."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Each image zero-padded by ``padding``, cropped back at a random offset, and
    mirrored left-right with probability 1/2 (the standard CIFAR augmentation).

    ``x`` is a batch (N, C, H, W) on any device; offsets and flips are drawn from
    ``generator`` (on its own device), so a given generator state gives the same
    batch on any device. The padding is zero in normalized units, i.e. the channel
    mean. The crop is one gather, with no Python loop over images.
    """
    n, c, h, w = x.shape
    device = x.device
    offsets = torch.randint(
        0, 2 * padding + 1, (2, n), generator=generator, device=generator.device
    )
    flips = torch.rand(n, generator=generator, device=generator.device) < 0.5
    offsets, flips = offsets.to(device), flips.to(device)
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
