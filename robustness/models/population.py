"""Population forms of the models: K copies of one architecture trained as one model.

``population_model(models)`` turns K built and initialized models of one
architecture (the members) into one module whose parameters are the members'
parameters stacked along a new first dimension, so that one batched kernel
serves every member (the fused layers of HFTA, Wang et al., MLSys 2021):

- ``nn.Linear`` becomes :class:`PopulationLinear`, one batched matmul
  (``torch.baddbmm``) over inputs laid out ``(K, N, features)``;
- ``nn.Conv2d`` becomes :class:`PopulationConv2d`, one grouped convolution over
  inputs laid out ``(N, K*C, H, W)``, and ``nn.BatchNorm2d`` becomes
  :class:`PopulationBatchNorm2d`, one BatchNorm over K*C channels (each member
  keeps its own statistics);
- ``nn.Flatten`` flattens each member's samples; activations and pooling are
  used as they are; the residual blocks of ``resnet20`` and ``wrn16_4`` keep
  their own forward with population children (a per-member zero-pad shortcut);
- adapters (:class:`ToChannels`, :class:`FromChannels`) switch the layout where
  a convolutional body meets the input or a dense head.

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

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustness.models import build_model
from robustness.models._resnet import _BasicBlock, _PreActBlock, _ResNet, _ZeroPadShortcut

__all__ = [
    "NoPopulationForm",
    "PopulationFlatten",
    "PopulationLinear",
    "has_population_form",
    "population_model",
    "select_members",
]

# layers that act per element or per channel: as they are, in either layout
_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.GELU, nn.SiLU, nn.Identity)
_CHANNELWISE = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)

# Activation layouts between layers: MEMBERS is (K, N, *features), member k's
# samples at index k (dense layers: one batched matmul); CHANNELS is
# (N, K*C, H, W), member k's channels at k*C:(k+1)*C (convolutions: one grouped
# convolution, BatchNorm over K*C channels, as in HFTA).
MEMBERS, CHANNELS = "members", "channels"
Layout = tuple  # (MEMBERS,) or (CHANNELS, C)


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


class PopulationConv2d(nn.Module):
    """K ``nn.Conv2d`` layers as one grouped convolution over the CHANNELS layout.

    ``weight`` is ``(K, C_out, C_in/groups, k_h, k_w)``, ``bias`` ``(K, C_out)``
    (or None); the convolution has ``K * groups`` groups, so member k's output
    channels see only member k's input channels.
    """

    def __init__(self, layers: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        first = layers[0]
        if first.padding_mode != "zeros" or isinstance(first.padding, str):
            raise NoPopulationForm("Conv2d with a padding mode or string padding")
        self.in_channels, self.out_channels = first.in_channels, first.out_channels
        self.kernel_size, self.stride = first.kernel_size, first.stride
        self.padding, self.dilation, self.groups = first.padding, first.dilation, first.groups
        self.weight = nn.Parameter(_stack(layer.weight for layer in layers))
        self.bias = None
        if first.bias is not None:
            self.bias = nn.Parameter(_stack(layer.bias for layer in layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members = self.weight.shape[0]
        weight = self.weight.reshape(-1, *self.weight.shape[2:])
        bias = None if self.bias is None else self.bias.reshape(-1)
        return F.conv2d(
            x, weight, bias, self.stride, self.padding, self.dilation, members * self.groups
        )


class PopulationBatchNorm2d(nn.Module):
    """K ``nn.BatchNorm2d`` layers as one BatchNorm over K*C channels (CHANNELS layout).

    Each member keeps its own statistics: ``weight``, ``bias``, ``running_mean``
    and ``running_var`` are ``(K, C)``; each channel is normalized over its own
    N*H*W values, exactly as in the member's own layer.
    """

    def __init__(self, layers: Sequence[nn.BatchNorm2d]) -> None:
        super().__init__()
        first = layers[0]
        if not (first.affine and first.track_running_stats) or first.momentum is None:
            raise NoPopulationForm("BatchNorm2d without affine, running stats or momentum")
        self.eps, self.momentum = first.eps, first.momentum
        self.weight = nn.Parameter(_stack(layer.weight for layer in layers))
        self.bias = nn.Parameter(_stack(layer.bias for layer in layers))
        self.register_buffer("running_mean", _stack(layer.running_mean for layer in layers))
        self.register_buffer("running_var", _stack(layer.running_var for layer in layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x,
            self.running_mean.view(-1),  # views: the update lands in the buffers
            self.running_var.view(-1),
            self.weight.reshape(-1),
            self.bias.reshape(-1),
            self.training,
            self.momentum,
            self.eps,
        )


class PopulationFlatten(nn.Module):
    """``nn.Flatten`` per member: ``(K, N, *shape) -> (K, N, prod(shape))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)


class ToChannels(nn.Module):
    """MEMBERS ``(K, N, C, H, W)`` to CHANNELS ``(N, K*C, H, W)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, n, c = x.shape[:3]
        return x.transpose(0, 1).reshape(n, k * c, *x.shape[3:])


class FromChannels(nn.Module):
    """CHANNELS ``(N, K*C, *rest)`` to MEMBERS ``(K, N, C, *rest)`` (``C`` per member)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (-1, self.channels)).transpose(0, 1)


class PopulationZeroPadShortcut(nn.Module):
    """ResNet's option-A shortcut per member: subsample, zero-pad each member's channels."""

    def __init__(self, shortcut: nn.Module, in_channels: int) -> None:
        super().__init__()
        self.stride, self.pad, self.in_channels = shortcut.stride, shortcut.pad, in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        n, _, h, w = x.shape
        x = x.reshape(n, -1, self.in_channels, h, w)
        x = F.pad(x, (0, 0, 0, 0, *self.pad))
        return x.reshape(n, -1, h, w)


class PopulationResNet(nn.Module):
    """``_ResNet`` (resnet20, wrn16_4) with population parts: the convolutional body in
    the CHANNELS layout, global pooling, then the head in the MEMBERS layout."""

    def __init__(self, stem: nn.Module, stages: nn.Module, final: nn.Module, head, features):
        super().__init__()
        self.to_channels = ToChannels()
        self.stem, self.stages, self.final, self.head = stem, stages, final, head
        self.from_channels = FromChannels(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final(self.stages(self.stem(self.to_channels(x))))
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (N, K*C)
        return self.head(self.from_channels(pooled))


# --- conversion ------------------------------------------------------------------
# A converter takes the K members' layers and the incoming layout and returns the
# population module and the outgoing layout.

_Converter = Callable[[Sequence[nn.Module], Layout], tuple[nn.Module, Layout]]


def _linear(layers, layout):
    return _in_layout(PopulationLinear(layers), layout, (MEMBERS,)), (MEMBERS,)


def _conv(layers, layout):
    module = _in_layout(PopulationConv2d(layers), layout, (CHANNELS,))
    return module, (CHANNELS, layers[0].out_channels)


def _batchnorm(layers, layout):
    if layout[0] != CHANNELS:
        raise NoPopulationForm("BatchNorm2d outside a convolutional body")
    return PopulationBatchNorm2d(layers), layout


def _flatten(layers, layout):
    first = layers[0]
    if (first.start_dim, first.end_dim) != (1, -1):
        raise NoPopulationForm(f"nn.Flatten({first.start_dim}, {first.end_dim})")
    if layout[0] == CHANNELS:
        return nn.Sequential(FromChannels(layout[1]), PopulationFlatten()), (MEMBERS,)
    return PopulationFlatten(), layout


def _sequential(layers, layout):
    children = []
    for i in range(len(layers[0])):
        child, layout = _convert([m[i] for m in layers], layout)
        children.append(child)
    return nn.Sequential(*children), layout


def _elementwise(layers, layout):
    return layers[0], layout


def _channelwise(layers, layout):
    if layout[0] != CHANNELS:
        raise NoPopulationForm(f"{type(layers[0]).__name__} outside a convolutional body")
    return layers[0], layout


def _block(layers, layout):
    """A residual block whose forward uses only its children and per-channel ops:
    the same class with population children (CHANNELS in, CHANNELS out)."""
    if layout[0] != CHANNELS:
        raise NoPopulationForm("a residual block outside a convolutional body")
    block = copy.copy(layers[0])  # the attributes; the children are replaced below
    block._parameters, block._buffers, block._modules = {}, {}, {}
    for name, child in layers[0]._modules.items():
        if child is None or isinstance(child, nn.Identity):
            block._modules[name] = child
        elif isinstance(child, _ZeroPadShortcut):
            block._modules[name] = PopulationZeroPadShortcut(child, layout[1])
        else:  # each child branch starts from the block's input
            kids = [layer._modules[name] for layer in layers]
            block._modules[name] = _convert(kids, layout)[0]
    return block, (CHANNELS, _out_channels(layers[0]))


def _resnet(layers, layout):
    first_conv = next(m for m in layers[0].stem.modules() if isinstance(m, nn.Conv2d))
    stem, body = _convert([m.stem for m in layers], (CHANNELS, first_conv.in_channels))
    stages, body = _convert([m.stages for m in layers], body)
    final, body = _convert([m.final for m in layers], body)
    head = PopulationLinear([m.head for m in layers])
    return PopulationResNet(stem, stages, final, head, body[1]), (MEMBERS,)


_CONVERTERS: dict[type, _Converter] = {
    nn.Linear: _linear,
    nn.Conv2d: _conv,
    nn.BatchNorm2d: _batchnorm,
    nn.Flatten: _flatten,
    nn.Sequential: _sequential,
    _BasicBlock: _block,
    _PreActBlock: _block,
    _ResNet: _resnet,
    **dict.fromkeys(_ELEMENTWISE, _elementwise),
    **dict.fromkeys(_CHANNELWISE, _channelwise),
}


def population_model(models: Sequence[nn.Module]) -> nn.Module:
    """One population model of ``models`` (K >= 1 members of one architecture).

    The members' parameters and buffers are copied (stacked); the members are
    not modified. Raises :class:`NoPopulationForm` for a layer type without a
    population form, ``ValueError`` for members of different architectures.
    """
    if not models:
        raise ValueError("a population needs at least one member")
    module, layout = _convert(list(models), (MEMBERS,))
    if layout[0] != MEMBERS:
        raise NoPopulationForm("the model does not end in a dense layer")
    return module


def has_population_form(
    name: str, input_shape: tuple[int, ...], num_outputs: int, **model_args: Any
) -> bool:
    """Whether model ``name`` with ``model_args`` has a population form (built and
    converted on the meta device: no weights are drawn). Bad arguments raise as
    ``build_model``."""
    with torch.device("meta"):
        model = build_model(name, input_shape, num_outputs, **model_args)
        try:
            population_model([model])
        except (NoPopulationForm, ValueError, NotImplementedError, RuntimeError):
            return False  # a layer without a population form, or one meta cannot build
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


def _convert(layers: list[nn.Module], layout: Layout) -> tuple[nn.Module, Layout]:
    kind = type(layers[0])
    if any(type(layer) is not kind for layer in layers):
        raise ValueError("population members must share one architecture")
    converter = _CONVERTERS.get(kind)
    if converter is None:
        raise NoPopulationForm(f"no population form for layer {kind.__name__}")
    return converter(layers, layout)


def _in_layout(module: nn.Module, layout: Layout, wanted: Layout) -> nn.Module:
    """``module`` preceded by the adapter its input needs, if any."""
    if layout[0] == wanted[0]:
        return module
    adapter = ToChannels() if wanted[0] == CHANNELS else FromChannels(layout[1])
    if wanted[0] == MEMBERS:  # (K, N, C, 1, 1...) -> features
        return nn.Sequential(adapter, PopulationFlatten(), module)
    return nn.Sequential(adapter, module)


def _out_channels(block: nn.Module) -> int:
    return block.conv2.out_channels


def _stack(tensors) -> torch.Tensor:
    return torch.stack([t.detach() for t in tensors])
