"""The layers fold reads and writes: which modules it understands, and the merged conv with a border term.

:func:`spec_of` and :func:`params_of` read a conv or linear module (``nn.Conv1d/2d/3d``,
``nn.Linear``, NormProp's weight-normalised conv, a layer fold made before) as a
:class:`~.geometry.LayerSpec` and its :class:`~.kernels.Params`; :func:`build_layer` makes the
module for a spec: a plain ``nn.ConvNd`` / ``nn.Linear`` where it can, a :class:`BorderConv`
where the merged layer needs its border term.

Example:
    >>> import torch, torch.nn as nn
    >>> conv = nn.Conv2d(3, 4, 3, padding=1)
    >>> spec = spec_of(conv, (1, 3, 8, 8), (1, 4, 8, 8))
    >>> new = build_layer(spec, params_of(conv), conv.weight)
    >>> x = torch.randn(1, 3, 8, 8)
    >>> type(new).__name__, torch.equal(new(x), conv(x))
    ('Conv2d', True)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import NormPropConv2d
from .geometry import LayerSpec
from .kernels import Params

__all__ = ["BorderConv", "spec_of", "params_of", "build_layer", "CONVS"]

CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_FUNCTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class BorderConv(nn.Module):
    """A conv plus a border term: ``conv(x, W) + conv(ones, V) + b`` with one geometry.

    ``ones`` is an all-ones image of the input's size (batch and channel 1), so ``conv(ones, V)``
    is constant inside and changes near the borders exactly as a bias seen through a padded conv
    does. Made by fold when it merges a 1x1 conv with a bias into a padded conv after it.

    Example:
        >>> conv = BorderConv(2, 2, (3, 3), (1, 1), (1, 1), (1, 1), 1, bias=True)
        >>> conv(torch.zeros(1, 2, 4, 4)).shape, sorted(n for n, _ in conv.named_parameters())
        (torch.Size([1, 2, 4, 4]), ['bias', 'border', 'weight'])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride, padding, dilation, groups: int = 1,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        kernel_size = tuple(kernel_size)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = kernel_size, tuple(stride)
        self.padding, self.dilation = tuple(padding), tuple(dilation)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels // groups, *kernel_size, **factory))
        self.border = nn.Parameter(torch.zeros(out_channels, 1, *kernel_size, **factory))
        self.bias = nn.Parameter(torch.zeros(out_channels, **factory)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = _FUNCTIONS[len(self.kernel_size)]
        ones = torch.ones_like(x[:1, :1])
        edge = conv(ones, self.border, self.bias, self.stride, self.padding, self.dilation)
        return conv(x, self.weight, None, self.stride, self.padding, self.dilation, self.groups) + edge

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}")


def _numeric_padding(module: nn.Module) -> tuple[int, ...] | None:
    """A conv's padding as numbers (``"same"`` only where it is symmetric), None where it is not."""
    padding, kernel, dilation = module.padding, module.kernel_size, module.dilation
    if padding == "valid":
        return (0,) * len(kernel)
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return None if any(t % 2 for t in total) else tuple(t // 2 for t in total)
    return tuple(padding)


def spec_of(module: nn.Module, in_shape, out_shape) -> LayerSpec | None:
    """The :class:`LayerSpec` of a conv or linear module fold can rewrite, or None.

    Subclasses other than NormProp's are not read: their ``forward`` may differ (timm's
    ``Conv2dSame`` pads asymmetrically at run time).

    Example:
        >>> spec_of(nn.Linear(4, 2), (3, 4), (3, 2)).macs()
        24
    """
    in_shape, out_shape = tuple(in_shape), tuple(out_shape)
    if type(module) is nn.Linear:
        return LayerSpec("linear", module.in_features, module.out_features, (), (), (), (), 1,
                         module.bias is not None, False, in_shape, out_shape)
    if type(module) in CONVS.values() or type(module) in (NormPropConv2d, BorderConv):
        padding = _numeric_padding(module) if not isinstance(module, BorderConv) else module.padding
        if padding is None or len(in_shape) != len(module.kernel_size) + 2:
            return None
        bias = (module.beta if isinstance(module, NormPropConv2d) else module.bias) is not None
        return LayerSpec("conv", module.in_channels, module.out_channels, tuple(module.kernel_size),
                         tuple(module.stride), padding, tuple(module.dilation), module.groups, bias,
                         isinstance(module, BorderConv), in_shape, out_shape,
                         getattr(module, "padding_mode", "zeros"))
    return None


def params_of(module: nn.Module) -> Params:
    """The tensors a module computes with (NormProp's conv: its normalised weight and beta).

    Example:
        >>> p = params_of(NormPropConv2d(2, 3, 1))
        >>> [round(float(n), 4) for n in p.weight.flatten(1).norm(dim=1)], p.border is None
        ([1.0, 1.0, 1.0], True)
    """
    with torch.no_grad():
        if isinstance(module, NormPropConv2d):
            return Params(module.normalized_weight().detach(), None if module.beta is None else module.beta.detach(),
                          None)
        border = module.border.detach() if isinstance(module, BorderConv) else None
        return Params(module.weight.detach(), None if module.bias is None else module.bias.detach(), border)


def build_layer(spec: LayerSpec, params: Params, like: torch.Tensor) -> nn.Module:
    """A module computing ``spec`` with ``params``, on ``like``'s device and dtype.

    Example:
        >>> from dataclasses import replace
        >>> spec = spec_of(nn.Conv2d(2, 2, 3), (1, 2, 4, 4), (1, 2, 2, 2))
        >>> p = Params(torch.ones(2, 2, 3, 3), torch.zeros(2), torch.ones(2, 1, 3, 3))
        >>> build_layer(spec, p, p.weight.double()).weight.dtype
        torch.float64
        >>> type(build_layer(replace(spec, border=True), p, p.weight)).__name__
        'BorderConv'
    """
    factory = {"device": like.device, "dtype": like.dtype}
    bias = params.bias is not None
    if spec.kind == "linear":
        layer = nn.Linear(spec.in_channels, spec.out_channels, bias=bias, **factory)
    elif spec.border:
        layer = BorderConv(spec.in_channels, spec.out_channels, spec.kernel, spec.stride, spec.padding, spec.dilation,
                           spec.groups, bias=bias, **factory)
    else:
        layer = CONVS[len(spec.kernel)](spec.in_channels, spec.out_channels, spec.kernel, spec.stride, spec.padding,
                                        spec.dilation, spec.groups, bias=bias, padding_mode=spec.padding_mode,
                                        **factory)
    with torch.no_grad():
        layer.weight.copy_(params.weight)
        if bias:
            layer.bias.copy_(params.bias)
        if spec.border:
            layer.border.copy_(params.border)
    return layer
