"""Plumbing shared by the multi-tensor (``torch._foreach_*``) execution paths.

Foreach kernels need tensors on one device with one dtype; per-layer scalars are
cheapest as one vector op instead of one tiny op per layer; and on CPU, where a
foreach op is a loop of per-tensor kernels, state kept in one flat buffer
(:class:`FlatState`) turns a per-tensor op on the state into one kernel. The
optimizer math stays in the optimizer modules.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from robustness._transfer import to_device


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


def foreach_axpy_(ys: list[Tensor], xs: list[Tensor], scalars: Tensor) -> None:
    """``ys[i] += scalars[i]·xs[i]`` in place, with one scalar per tensor from a vector.

    On CPU the scalars are read straight from the vector (the ``Tensor`` overload
    of ``_foreach_addcmul_``, with a shared 0-dim one as the second factor), which
    is faster than splitting the vector into 0-dim tensors; elsewhere they are
    split into 0-dim device tensors, so nothing waits for the device.
    """
    if scalars.device.type == "cpu":
        torch._foreach_addcmul_(ys, xs, [scalars.new_ones(())] * len(ys), scalars)
    else:
        torch._foreach_addcmul_(ys, xs, scalars.unbind())


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


_LAYOUTS = ("tensor", "scalar", "scalar32")


class FlatState:
    """Per-parameter state tensors kept as views of one flat buffer per name.

    ``torch._foreach_*`` ops still dispatch one kernel per tensor; on CPU, with
    dozens of small tensors, that dispatch is most of an optimizer step. When a
    state tensor of every parameter is a view of one contiguous buffer, an
    elementwise op on the state alone (``m ← β·m``, the per-tensor scalars ``v``)
    is one kernel on the buffer instead of one per tensor.

    The views *are* the entries of ``optimizer.state[p][name]``, so ``state_dict()``
    and in-place edits see them. :meth:`get` re-checks, on every call, that the
    parameters, their state dicts and the entries are still the ones it built the
    buffers from (identity checks, no tensor is read), and rebuilds otherwise,
    copying the entries' current values: after ``load_state_dict``, an entry or a
    state dict replaced by hand, or a parameter gaining or losing its gradient, the
    step goes on from the state as it is. Missing entries start as zeros.
    """

    def __init__(self) -> None:
        self._slots: dict[object, tuple[list[Tensor], list[_FlatSlot]]] = {}

    def get(
        self, key: object, state: dict, params: list[Tensor], names: dict[str, str]
    ) -> list[_FlatSlot]:
        """One :class:`_FlatSlot` per (device, dtype) of ``params``, for state ``names``.

        ``names`` maps each state name to its layout: ``"tensor"`` (shaped like
        the parameter, in its dtype), ``"scalar"`` (0-dim, the parameter's dtype)
        or ``"scalar32"`` (0-dim, at least float32). ``key`` identifies the
        caller's use (one cache entry per key, e.g. per param group).
        """
        cached = self._slots.get(key)
        if cached is not None:
            cached_params, slots = cached
            if (
                len(params) == len(cached_params)
                and all(map(operator.is_, params, cached_params))
                and all(slot.matches(state) for slot in slots)
            ):
                return slots
        slots = [
            _FlatSlot.build(state, part, list(indices), names)
            for indices, part in group_by_device_and_dtype(params)
        ]
        self._slots[key] = (list(params), slots)
        return slots


class _FlatSlot:
    """The flat buffers (``flats[name]``) of same-device, same-dtype ``params`` and
    their per-parameter views (``views[name]``), which are the state entries.
    ``indices``: where ``params`` sit in the list :meth:`FlatState.get` was given."""

    __slots__ = ("entries", "flats", "indices", "params", "views")

    def __init__(self, params, indices, entries, flats, views) -> None:
        self.params = params
        self.indices = indices
        self.entries = entries  # each parameter's state dict, as built
        self.flats = flats
        self.views = views

    @classmethod
    def build(
        cls, state: dict, params: list[Tensor], indices: list[int], names: dict[str, str]
    ) -> _FlatSlot:
        entries = [state[p] for p in params]
        device, dtype = params[0].device, params[0].dtype
        flats, views = {}, {}
        for name, layout in names.items():
            if layout not in _LAYOUTS:
                raise ValueError(f"unknown state layout {layout!r}; allowed: {_LAYOUTS}")
            shaped = layout == "tensor"
            flat_dtype = (
                torch.promote_types(dtype, torch.float32) if layout == "scalar32" else dtype
            )
            shapes = [p.shape if shaped else torch.Size() for p in params]
            flat = torch.cat(
                [
                    torch.zeros(shape.numel(), dtype=flat_dtype, device=device)
                    if entry.get(name) is None
                    else entry[name].detach().reshape(-1).to(flat_dtype)
                    for shape, entry in zip(shapes, entries, strict=True)
                ]
            )
            parts = flat.split([shape.numel() for shape in shapes])
            flats[name] = flat
            views[name] = [part.view(shape) for part, shape in zip(parts, shapes, strict=True)]
            for entry, view in zip(entries, views[name], strict=True):
                entry[name] = view
        return cls(list(params), indices, entries, flats, views)

    def matches(self, state: dict) -> bool:
        """Same state dicts, and the same view in every entry (identity only)."""
        return all(map(operator.is_, map(state.get, self.params), self.entries)) and all(
            all(map(operator.is_, [entry.get(name) for entry in self.entries], views))
            for name, views in self.views.items()
        )


SPREAD_ON_CPU = False
"""Whether :func:`spreads_scales` says yes on the CPU too (tests set it, to run the
CUDA path's arithmetic on a CPU-only machine)."""


def spreads_scales(device: torch.device) -> bool:
    """Whether per-tensor scalars should reach foreach ops as :class:`Spread` views.

    On CUDA a ``torch._foreach_*`` op runs as a few multi-tensor kernels only when
    all its tensor lists have matching shapes; a list of 0-dim scales next to the
    parameters makes it fall back to one kernel per tensor. On the CPU a foreach
    op is a per-tensor loop anyway and a 0-dim scale costs no memory pass, so the
    scalars stay 0-dim there.
    """
    return device.type != "cpu" or SPREAD_ON_CPU


class Spread:
    """Per-tensor (or per-channel) values written over buffers shaped like the tensors.

    ``values`` (``rows`` rows of ``L`` values) are gathered, with one
    ``index_select`` over a cached index, into a flat buffer of ``rows × Σ numel``;
    :meth:`__call__` returns, per row, views of it shaped like the tensors, so a
    foreach op that multiplies by them has matching shapes (CUDA's multi-tensor
    fast path). Tensor ``i`` with value shape ``S_i`` (broadcastable to its shape:
    ``()`` for one value, ``(1, C, 1, 1)`` for one per input channel) reads the
    next ``S_i.numel()`` values, broadcast; a tensor with value shape None reads
    1 (the value after the last one, appended by the caller).

    Memory: the buffer (``rows`` × the tensors' size, their dtype) and an int32
    index of the tensors' size, built once per geometry on the host and copied
    without blocking; each call allocates nothing.
    """

    def __init__(
        self, tensors: Sequence[Tensor], value_shapes: Sequence[torch.Size | None], rows: int = 1
    ) -> None:
        like = tensors[0]
        self.geometry = _spread_geometry(tensors, value_shapes, rows)
        parts, offset = [], 0
        for t, shape in zip(tensors, value_shapes, strict=True):
            if shape is None:
                parts.append(torch.full((t.numel(),), -1, dtype=torch.int64))
                continue
            count = shape.numel()
            ids = torch.arange(offset, offset + count).view(shape).expand(t.shape)
            parts.append(ids.reshape(-1))
            offset += count
        index = torch.cat(parts)
        self._one = None
        if (index < 0).any():
            index[index < 0] = offset  # reads the 1 appended to the values
            self._one = torch.ones((rows, 1), dtype=like.dtype, device=like.device)
        total = index.numel()
        dtype = torch.int32 if total < 2**31 else torch.int64
        self.index = to_device(index.to(dtype), like.device)
        self.flat = torch.empty((rows, total), dtype=like.dtype, device=like.device)
        sizes = [t.numel() for t in tensors]
        self.views = [
            [part.view(t.shape) for part, t in zip(row.split(sizes), tensors, strict=True)]
            for row in self.flat
        ]

    def __call__(self, values: Tensor) -> list[list[Tensor]]:
        """``values``: (rows, L), L the total of the value shapes' sizes; returns one
        list of views per row (valid until the next call)."""
        if self._one is not None:
            values = torch.cat([values, self._one], dim=1)
        torch.index_select(values, 1, self.index, out=self.flat)
        return self.views


def _spread_geometry(tensors, value_shapes, rows) -> tuple:
    like = tensors[0]
    return (
        like.device,
        like.dtype,
        rows,
        tuple(t.shape for t in tensors),
        tuple(value_shapes),
    )


class Spreads:
    """:class:`Spread` objects by key, rebuilt when the geometry changes."""

    def __init__(self) -> None:
        self._spreads: dict[object, Spread] = {}

    def get(
        self,
        key: object,
        tensors: Sequence[Tensor],
        value_shapes: Sequence[torch.Size | None],
        rows: int = 1,
    ) -> Spread:
        spread = self._spreads.get(key)
        if spread is None or spread.geometry != _spread_geometry(tensors, value_shapes, rows):
            spread = self._spreads[key] = Spread(tensors, value_shapes, rows)
        return spread
