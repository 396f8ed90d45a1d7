"""Plumbing shared by the multi-tensor (``torch._foreach_*``) execution paths.

Foreach kernels need tensors on one device with one dtype, and per-layer scalars
are cheapest as one vector op instead of one tiny op per layer. These two helpers
provide exactly that; the optimizer math stays in the optimizer modules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def group_by_device_and_dtype(
    params: Sequence[Tensor], *lists: Sequence[Tensor | None]
) -> list[tuple[Sequence[int], list, ...]]:
    """Split ``params`` and the parallel ``lists`` by the params' (device, dtype).

    Returns one tuple ``(indices, params_part, *list_parts)`` per group, in
    first-seen order, with new lists (the inputs are not modified).
    """
    keys = [(p.device, p.dtype) for p in params]
    first = keys[0]
    if all(key == first for key in keys):  # the common case, without index lookups
        return [(range(len(params)), list(params), *(list(entries) for entries in lists))]
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return [(idx, *([seq[i] for i in idx] for seq in (params, *lists))) for idx in groups.values()]


def device_scalar(value: float, like: Tensor) -> Tensor:
    """``value`` as a 0-dim tensor on ``like``'s device and dtype, made without a copy.

    ``torch._foreach_mul_(tensors, device_scalar(c, tensors[0]))`` is the fast form
    of ``torch._foreach_mul_(tensors, c)``: on CPU the Python-scalar overload wraps
    the scalar once per tensor, about 4x slower for small tensors.
    """
    return torch.full((), value, dtype=like.dtype, device=like.device)


def map_concatenated(
    fn: Callable[..., tuple[Tensor | None, ...]], *lists: Sequence[Tensor]
) -> tuple[list[Tensor] | None, ...]:
    """Apply an elementwise ``fn`` to many small same-device tensors in one go.

    Each list is concatenated into one flat tensor, ``fn`` is called once on the
    flat tensors and must return a tuple of tensors of that flat shape (or None,
    passed through); each output is split back into views shaped like the tensors of ``lists[0]``.
    The result equals calling ``fn`` on each position separately, with a handful
    of kernel launches instead of one per tensor, and no host sync.
    """
    shapes = [t.shape for t in lists[0]]
    if all(len(shape) == 0 for shape in shapes):
        outputs = fn(*(torch.stack(list(ts)) for ts in lists))
        return tuple(None if out is None else list(out.unbind()) for out in outputs)
    sizes = [shape.numel() for shape in shapes]
    outputs = fn(*(torch.cat([t.reshape(-1) for t in ts]) for ts in lists))
    return tuple(
        None
        if out is None
        else [part.view(shape) for part, shape in zip(out.split(sizes), shapes, strict=True)]
        for out in outputs
    )
