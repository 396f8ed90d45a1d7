"""Population forms of the models: K copies of one architecture trained as one model.

``population_model(models)`` turns K built and initialized models of one
architecture (the members) into one module whose parameters are the members'
parameters stacked along a new first dimension, so that one batched kernel
serves every member (the fused layers of HFTA, Wang et al., MLSys 2021):

- ``nn.Linear`` becomes :class:`PopulationLinear`, one batched matmul
  (``torch.baddbmm``) over inputs laid out ``(K, N, features)``.
- ``nn.Flatten`` flattens each member's samples; elementwise activations are
  used as they are.

Contract: the population model maps ``(K, N, *input_shape)`` (member ``k``'s
batch at index ``k``) to ``(K, N, num_outputs)``, and member ``k``'s outputs
and gradients are exactly those of its own model on its own batch (the members
share no computation that mixes them). Every parameter and buffer has the
member dimension first, so :func:`select_members` can drop members (diverged
runs) by indexing that dimension, and an optimizer sees per-member slices.

A model containing any other layer type has no population form:
``population_model`` raises :class:`NoPopulationForm` and the caller trains its
members one by one. :func:`has_population_form` answers that from the
architecture alone (built on the meta device, no weights drawn).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from robustness.models import build_model

__all__ = [
    "NoPopulationForm",
    "PopulationFlatten",
    "PopulationLinear",
    "has_population_form",
    "population_model",
    "select_members",
]

# elementwise layers: a member-stacked input needs nothing special
_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.GELU, nn.SiLU, nn.Identity)


class NoPopulationForm(TypeError):
    """The model contains a layer type without a population form."""


class PopulationLinear(nn.Module):
    """K ``nn.Linear`` layers as one: ``(K, N, in) -> (K, N, out)`` by one batched matmul.

    ``weight`` is ``(K, out, in)`` and ``bias`` ``(K, out)`` (or None): the
    members' own tensors, stacked.
    """

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(_stack(layer.weight for layer in layers))
        self.bias = None
        if layers[0].bias is not None:
            self.bias = nn.Parameter(_stack(layer.bias for layer in layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight_t = self.weight.transpose(1, 2)
        if self.bias is None:
            return torch.bmm(x, weight_t)
        return torch.baddbmm(self.bias.unsqueeze(1), x, weight_t)


class PopulationFlatten(nn.Module):
    """``nn.Flatten`` per member: ``(K, N, *shape) -> (K, N, prod(shape))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)


def _linear(layers: Sequence[nn.Module]) -> nn.Module:
    return PopulationLinear(layers)


def _flatten(layers: Sequence[nn.Module]) -> nn.Module:
    first = layers[0]
    if (first.start_dim, first.end_dim) != (1, -1):
        raise NoPopulationForm(f"nn.Flatten({first.start_dim}, {first.end_dim})")
    return PopulationFlatten()


def _sequential(layers: Sequence[nn.Module]) -> nn.Module:
    return nn.Sequential(*(_convert([m[i] for m in layers]) for i in range(len(layers[0]))))


def _elementwise(layers: Sequence[nn.Module]) -> nn.Module:
    return layers[0]


# layer type -> converter of the K members' layers (exact types: a subclass may
# change forward)
_CONVERTERS: dict[type, Callable[[Sequence[nn.Module]], nn.Module]] = {
    nn.Linear: _linear,
    nn.Flatten: _flatten,
    nn.Sequential: _sequential,
    **dict.fromkeys(_ELEMENTWISE, _elementwise),
}


def population_model(models: Sequence[nn.Module]) -> nn.Module:
    """One population model of ``models`` (K >= 1 members of one architecture).

    The members' parameters and buffers are copied (stacked); the members are
    not modified. Raises :class:`NoPopulationForm` for a layer type without a
    population form, ``ValueError`` for members of different architectures.
    """
    if not models:
        raise ValueError("a population needs at least one member")
    return _convert(list(models))


def has_population_form(
    name: str, input_shape: tuple[int, ...], num_outputs: int, **model_args: Any
) -> bool:
    """Whether model ``name`` with ``model_args`` has a population form (built on
    the meta device: no weights are drawn). Bad arguments raise as ``build_model``."""
    with torch.device("meta"):
        model = build_model(name, input_shape, num_outputs, **model_args)
    try:
        _check_convertible(model)
    except NoPopulationForm:
        return False
    return True


def select_members(model: nn.Module, keep: torch.Tensor) -> dict[nn.Parameter, nn.Parameter]:
    """Keep only members ``keep`` (indices, in order) of a population model, in place.

    Each parameter is replaced by a new ``nn.Parameter`` holding the selected
    slices (autograd keeps a parameter's shape, so it cannot shrink in place);
    buffers are sliced. Returns ``{old parameter: new parameter}`` for the
    optimizer (``select_members`` of the population optimizers).
    """
    replaced: dict[nn.Parameter, nn.Parameter] = {}
    with torch.no_grad():
        for module in model.modules():
            for name, param in list(module._parameters.items()):
                if param is None:
                    continue
                if param not in replaced:
                    sliced = param.detach().index_select(0, keep.to(param.device))
                    replaced[param] = nn.Parameter(sliced, requires_grad=param.requires_grad)
                module._parameters[name] = replaced[param]
            for name, buffer in list(module._buffers.items()):
                if buffer is not None and buffer.dim() > 0:
                    module._buffers[name] = buffer.index_select(0, keep.to(buffer.device))
    return replaced


def _convert(layers: list[nn.Module]) -> nn.Module:
    kind = type(layers[0])
    if any(type(layer) is not kind for layer in layers):
        raise ValueError("population members must share one architecture")
    converter = _CONVERTERS.get(kind)
    if converter is None:
        raise NoPopulationForm(f"no population form for layer {kind.__name__}")
    return converter(layers)


def _check_convertible(model: nn.Module) -> None:
    kind = type(model)
    if kind not in _CONVERTERS:
        raise NoPopulationForm(f"no population form for layer {kind.__name__}")
    if kind is nn.Flatten:
        _flatten([model])
    for child in model.children():
        _check_convertible(child)


def _stack(tensors) -> torch.Tensor:
    return torch.stack([t.detach() for t in tensors])
