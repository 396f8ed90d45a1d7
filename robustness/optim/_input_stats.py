"""What INSGD measures about a layer's input, and the hooks that measure it.

Two statistics, one per INSGD mode (``insgd`` states the math):

- :func:`input_power` (paper mode): the mean squared norm (``l2``) or mean norm
  (``l1``) of the input vector one output neuron sees, over the batch and output
  positions: a 0-dim tensor per layer.
- :func:`standardized_input_statistic` (reference mode, the authors' code): the
  batch mean of ``Σ z²`` (or ``Σ|z|``) of the per-sample standardized input, shaped
  to broadcast over the layer's weight.

Both run on the input's device with no host sync, in at least float32.
:class:`InputProbe` records one of them from forward pre-hooks, and
:func:`normalized_weights` says which weights of a model are input-normalized
and which inputs each one's statistic is taken over.

Which layers are normalized, and why (every other parameter is stepped as plain
SGD with momentum, and :attr:`INSGD.normalized_fraction` reports the share):

- ``nn.Linear``, ``nn.Conv2d`` (grouped and depthwise too) and ``nn.Conv1d``: the
  weight, from the input vector one output neuron sees (a ``Conv1d`` is a
  ``Conv2d`` of height 1).
- ``nn.MultiheadAttention``: the input projection. Its fused ``in_proj_weight``
  is three stacked linear maps, of the query, key and value inputs; like the
  groups of a grouped convolution, its statistic is the mean over the three blocks
  of rows of each one's input statistic. In self-attention the three inputs are
  one tensor, so this is exactly a Linear's statistic, measured once. Separate
  ``q/k/v_proj_weight`` (``kdim``/``vdim`` set) are each a Linear on their input.
  The output projection ``out_proj`` is not normalized: the attention module
  applies it inside its own functional forward, so its input (the heads'
  concatenated output) is never seen by a hook.
- Not normalized: normalization layers (LayerNorm, BatchNorm, GroupNorm: elementwise
  gains on an input already standardized to power about 1), ``nn.Embedding`` (its
  input is one-hot, of power exactly 1 per token whatever the data: the rule would
  give ``ln P = 0``, hence the ε floor, a fixed ``1/ε`` = 100x step that says nothing
  about the data), biases, transposed and 3-D convolutions, recurrent layers, and
  parameters used outside a module call (positional embeddings, class tokens).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("l2", "l1")
NORMALIZED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.MultiheadAttention)
_VECTOR_LAYERS = (nn.Linear, nn.MultiheadAttention)  # the input's last dim is the vector

# the authors' code: std floor, and what a NaN std (one spatial position) reads as
_STD_FLOOR = 0.01
_NAN_STD = 0.001
# the authors' code adds this to the Linear statistic
_LINEAR_OFFSET = 0.1

Statistic = Callable[[nn.Module, Tensor, str], Tensor]
Inputs = Callable[[tuple, dict], tuple[Tensor, ...]]  # (args, kwargs) -> the measured inputs


def first_input(args: tuple, kwargs: dict) -> tuple[Tensor, ...]:
    """A layer's input: its first argument (``input=`` when passed by keyword)."""
    x = args[0] if args else kwargs.get("input")
    return (x,) if isinstance(x, Tensor) else ()


def _attention_inputs(*which: str) -> Inputs:
    """``nn.MultiheadAttention``'s ``query``, ``key`` and/or ``value`` arguments."""
    positions = {"query": 0, "key": 1, "value": 2}

    def select(args: tuple, kwargs: dict) -> tuple[Tensor, ...]:
        found = [args[positions[w]] if len(args) > positions[w] else kwargs.get(w) for w in which]
        return tuple(x for x in found if isinstance(x, Tensor))

    return select


def normalized_weights(model: nn.Module) -> list[tuple[str, nn.Module, Tensor, Inputs]]:
    """The weights INSGD input-normalizes in ``model`` (module docstring): for each,
    the layer's name, the layer whose forward call is hooked, the weight, and which
    of the call's inputs its statistic is taken over. A weight shared by several
    layers appears once per layer."""
    attention = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    applied_inside = {id(m.out_proj) for m in attention}  # never called as a module
    found = []
    for name, layer in model.named_modules():
        if isinstance(layer, nn.MultiheadAttention):
            if layer.in_proj_weight is not None:
                found.append(
                    (name, layer, layer.in_proj_weight, _attention_inputs("query", "key", "value"))
                )
            for which in ("q", "k", "v") if layer.in_proj_weight is None else ():
                weight = getattr(layer, f"{which}_proj_weight")
                argument = {"q": "query", "k": "key", "v": "value"}[which]
                found.append((name, layer, weight, _attention_inputs(argument)))
        elif isinstance(layer, NORMALIZED_LAYERS) and id(layer) not in applied_inside:
            found.append((name, layer, layer.weight, first_input))
    return found


def input_power(layer: nn.Module, x: Tensor, norm: str) -> Tensor:
    """Paper-mode input power of one batch ``x`` entering ``layer`` (0-dim tensor).

    ``nn.Linear`` (and an attention input projection): mean over the batch (and any
    leading dims) of ``‖x_n‖²``. ``nn.Conv2d`` (``nn.Conv1d`` as height 1): mean over the batch, output positions and groups of ``‖patch‖²``,
    a patch being the ``C_in/groups × k_h × k_w`` window one output neuron sees
    (zero or ``padding_mode`` padding included). Computed exactly in one pass over
    ``x``, weighting each position's power by how many windows see it (the
    coverage map, from a ones-kernel convolution with the layer's stride,
    padding and dilation, cached): no unfold, and on GPUs no temporary the size
    of ``x`` (``_covered_power``).
    With ``norm="l1"`` the norm is ``‖·‖₁`` instead of ``‖·‖²``.
    """
    dtype = _stat_dtype(x)
    if isinstance(layer, _VECTOR_LAYERS):
        rows = x.numel() // max(x.shape[-1], 1)
        if norm == "l2":
            return torch.linalg.vector_norm(x, dtype=dtype).square() / rows
        return x.to(dtype).abs().sum() / rows
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        batched = _batched_2d(layer, x)
        n, _, height, width = batched.shape
        coverage, positions = _coverage(*_geometry_2d(layer), (height, width), x.device, dtype)
        total = _covered_power(batched, coverage, norm, dtype, x.device.type != "cpu")
        return total / (n * positions * layer.groups)
    raise TypeError(f"INSGD does not measure the input of a {type(layer).__name__}")


def _batched_2d(layer: nn.Module, x: Tensor) -> Tensor:
    """``x`` as ``(N, C, H, W)``: a batch dimension added to an unbatched input, and a
    ``Conv1d``'s ``(N, C, L)`` seen as ``(N, C, 1, L)``."""
    image_dims = 1 if isinstance(layer, nn.Conv1d) else 2
    batched = x if x.dim() == image_dims + 2 else x.unsqueeze(0)
    return batched.unsqueeze(2) if image_dims == 1 else batched


def _geometry_2d(layer: nn.Module) -> tuple:
    """A ``Conv1d``'s or ``Conv2d``'s kernel, stride, padding, dilation and padding
    mode, as a ``Conv2d``'s (a ``Conv1d`` is a ``Conv2d`` of height 1)."""
    if isinstance(layer, nn.Conv2d):
        return layer.kernel_size, layer.stride, layer.padding, layer.dilation, layer.padding_mode
    padding = layer.padding if isinstance(layer.padding, str) else (0, *layer.padding)
    return (
        (1, *layer.kernel_size),
        (1, *layer.stride),
        padding,
        (1, *layer.dilation),
        layer.padding_mode,
    )


def _covered_power(
    x: Tensor, coverage: Tensor, norm: str, dtype: torch.dtype, by_reduction: bool
) -> Tensor:
    """``Σ_positions coverage · Σ_(batch, channels) x²`` (``l1``: ``|x|``) of a batch
    (N, C, H, W).

    ``by_reduction`` (used on GPUs): each position's power is a norm reduction over
    batch and channels, with no temporary the size of ``x`` (GPU memory is the
    scarce thing there). Otherwise (CPU): ``x²`` then one matrix-vector product,
    about 4x faster on a CPU than the strided reduction.
    """
    if by_reduction:
        order = 2 if norm == "l2" else 1
        per_position = torch.linalg.vector_norm(x, order, dim=(0, 1), dtype=dtype).reshape(-1)
        if norm == "l2":
            per_position = per_position.square()
        return torch.dot(per_position, coverage)
    rows = x.to(dtype).reshape(-1, x.shape[-2] * x.shape[-1])
    elementwise = rows.square() if norm == "l2" else rows.abs()
    return torch.mv(elementwise, coverage).sum()


@functools.lru_cache(maxsize=512)
def _coverage(
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int] | str,
    dilation: tuple[int, int],
    padding_mode: str,
    size: tuple[int, int],
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[Tensor, int]:
    """How many output windows see each input position (flat ``H·W``), and ``H'·W'``.

    ``Σ_windows ‖patch‖² = Σ_positions coverage·‖x_position‖²``, so one
    matrix-vector product gives the batch's total patch power in a single pass over
    ``x``. Obtained as the gradient of ``sum(conv2d(pad(ones), ones))``, which
    counts exactly, whatever the stride, padding, padding mode and dilation.
    Cached per layer geometry and input size; callers must not modify it.
    """
    with torch.enable_grad():
        ones = torch.ones((1, 1, *size), dtype=dtype, device=device, requires_grad=True)
        padded, conv_padding = ones, padding
        if padding_mode != "zeros":
            padded = F.pad(ones, _reversed_padding(kernel_size, padding, dilation), padding_mode)
            conv_padding = 0
        kernel = torch.ones((1, 1, *kernel_size), dtype=dtype, device=device)
        windows = F.conv2d(padded, kernel, None, stride, conv_padding, dilation)
        (coverage,) = torch.autograd.grad(windows.sum(), ones)
    return coverage.reshape(-1), windows.shape[-2] * windows.shape[-1]


def _reversed_padding(
    kernel_size: tuple[int, int], padding: tuple[int, int] | str, dilation: tuple[int, int]
) -> tuple[int, ...]:
    """``F.pad`` amounts for a Conv2d's padding, as ``nn.Conv2d`` computes them."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        amounts: list[int] = []
        for k, d in zip(reversed(kernel_size), reversed(dilation), strict=True):
            total = d * (k - 1)
            amounts += [total // 2, total - total // 2]
        return tuple(amounts)
    return tuple(p for p in reversed(padding) for _ in range(2))


def standardized_input_statistic(layer: nn.Module, x: Tensor, norm: str) -> Tensor:
    """Reference-mode statistic of one batch ``x`` entering ``layer``.

    Each sample (``nn.Linear``, an attention input projection: across its features)
    or each (sample, channel) map (``nn.Conv2d``, ``nn.Conv1d``: across its positions)
    is standardized,
    ``z = (x − mean) / max(std_unbiased, 0.01)`` (a NaN std, from a single element,
    reads as 0.001), and ``Σ z²`` (``l1``: ``Σ|z|``) is averaged over the batch.
    ``nn.Linear`` adds 0.1 and returns a 0-dim tensor; a convolution returns one
    value per input channel, shaped ``(C_out or 1, C_in/groups, 1, 1)`` (``Conv1d``:
    ``(…, 1)``) to broadcast over the weight's input-channel axis (grouped
    convolutions included).
    For ``l2`` and std ≥ 0.01, ``Σ z²`` is ``n − 1`` whatever the data.
    """
    dtype = _stat_dtype(x)
    if isinstance(layer, _VECTOR_LAYERS):
        per_sample = _standardized_sum(x.to(dtype), dims=(-1,), norm=norm)
        return per_sample.mean() + _LINEAR_OFFSET
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        batched = _batched_2d(layer, x)
        per_channel = _standardized_sum(batched.to(dtype), dims=(2, 3), norm=norm).mean(0)
        kernel_dims = (1,) * (layer.weight.dim() - 2)
        groups = layer.groups
        if groups == 1:
            return per_channel.view(1, -1, *kernel_dims)
        c_in, c_out = per_channel.shape[0], layer.out_channels
        by_group = per_channel.view(groups, 1, c_in // groups)
        return by_group.expand(groups, c_out // groups, c_in // groups).reshape(
            c_out, c_in // groups, *kernel_dims
        )
    raise TypeError(f"INSGD does not measure the input of a {type(layer).__name__}")


def _standardized_sum(x: Tensor, dims: tuple[int, ...], norm: str) -> Tensor:
    """``Σ_dims z²`` (or ``Σ_dims |z|``) of ``x`` standardized over ``dims``."""
    count = math.prod(x.shape[d] for d in dims)
    if count < 2:  # std is NaN, read as 0.001; x − mean is 0, so z is 0
        return torch.zeros_like(x.sum(dim=dims))
    var, mean = torch.var_mean(x, dim=dims, correction=1, keepdim=True)
    std = var.sqrt().clamp_min(_STD_FLOOR).nan_to_num(nan=_NAN_STD)
    if norm == "l2":  # Σ (x − mean)² = (count − 1)·var
        total = var * (count - 1) / std.square()
    else:
        total = (x - mean).abs().sum(dim=dims, keepdim=True) / std
    return total.squeeze(dims)


def _stat_dtype(x: Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


class InputProbe:
    """Records a statistic of the inputs of the layers that use one weight.

    A forward pre-hook on each attached layer computes ``statistic(layer, x,
    norm)`` and accumulates it. The hook records only forward passes whose
    gradient can reach the weight: the layer is in training mode **and** grad mode
    is enabled. So evaluation passes (``model.eval()`` or ``torch.no_grad()``) leave
    INSGD's state untouched. :meth:`take` returns the mean of the measurements
    since the last call (several forward passes between two steps, as in gradient
    accumulation, are averaged) and resets.
    """

    def __init__(self, statistic: Statistic, norm: str) -> None:
        self._statistic = statistic
        self._norm = norm
        self._sum: Tensor | None = None
        self._flat_sum: Tensor | None = None  # a 1-D view of it: a step may cat all probes
        self._count = 0
        self.shape: torch.Size | None = None  # the statistic's shape, once measured
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def attach(self, layer: nn.Module, inputs: Inputs | None = None) -> None:
        """Measure the inputs of ``layer`` from now on: by default its first argument;
        ``inputs`` picks others from the call's ``(args, kwargs)``, and the
        measurement is then the mean of theirs (a tensor passed twice is measured once)."""
        select = first_input if inputs is None else inputs

        def record(layer: nn.Module, args: tuple, kwargs: dict) -> None:
            self._record(layer, select(args, kwargs))

        self._handles.append(layer.register_forward_pre_hook(record, with_kwargs=True))

    def _record(self, layer: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        if not (layer.training and torch.is_grad_enabled()) or not inputs:
            return
        with torch.no_grad():
            seen: dict[int, Tensor] = {}
            values = []
            for x in inputs:
                if id(x) not in seen:
                    seen[id(x)] = self._statistic(layer, x.detach(), self._norm)
                values.append(seen[id(x)])
            self.add(values[0] if len(values) == 1 else torch.stack(values).mean(0))

    def add(self, value: Tensor) -> None:
        """Record one measurement (the hook's job; public for benchmarks and tests)."""
        self.shape = value.shape
        self._sum = value if self._sum is None else self._sum + value
        self._flat_sum = self._sum.reshape(-1)  # here, per forward pass, not per step
        self._count += 1

    def take(self, *, flat: bool = False) -> Tensor | None:
        """The mean measurement since the last ``take``, or None if there was none;
        with ``flat``, as a 1-D tensor (``shape`` is its shape)."""
        if self._sum is None:
            return None
        total = self._flat_sum if flat else self._sum
        mean = total if self._count == 1 else total / self._count
        self._sum, self._flat_sum, self._count = None, None, 0
        return mean

    def remove(self) -> None:
        """Remove the hooks (idempotent); later forward passes are not measured."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._sum, self._flat_sum, self._count = None, None, 0
