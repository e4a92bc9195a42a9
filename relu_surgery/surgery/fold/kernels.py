"""The arithmetic of folding: norms into weights, two weight layers into one, branches into one kernel.

Every function takes and returns :class:`Params` (a layer's weight in its grouped layout, its bias
and its border kernel) next to the :class:`~.geometry.LayerSpec` that says what they mean. The
sums run in float64 and are cast back to the weights' dtype at the end, so a merged layer differs
from the pair it replaces only by float32 rounding of its own output.

The border kernel ``V`` (``out x 1 x k...``) of a merged layer is applied to an all-ones image of
the input's size with the layer's own geometry; it is how a bias that a padded conv would see as
zeros at the borders stays exact (see :mod:`.geometry`).

Example:
    >>> import torch, torch.nn.functional as F
    >>> from .geometry import LayerSpec, compose
    >>> a = LayerSpec("conv", 2, 3, (1, 1), (1, 1), (0, 0), (1, 1), 1, True, False, (1, 2, 5, 5), (1, 3, 5, 5))
    >>> b = LayerSpec("conv", 3, 2, (3, 3), (1, 1), (0, 0), (1, 1), 1, True, False, (1, 3, 5, 5), (1, 2, 3, 3))
    >>> pa = Params(torch.randn(3, 2, 1, 1), torch.randn(3), None)
    >>> pb = Params(torch.randn(2, 3, 3, 3), torch.randn(2), None)
    >>> m = compose_params(pa, pb, a, b, compose(a, b))
    >>> x = torch.randn(1, 2, 5, 5)
    >>> two = F.conv2d(F.conv2d(x, pa.weight, pa.bias), pb.weight, pb.bias)
    >>> torch.allclose(F.conv2d(x, m.weight, m.bias), two, atol=1e-5)
    True
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from .geometry import LayerSpec

__all__ = ["Params", "dense", "grouped", "fold_norm", "compose_params", "combine_params"]


@dataclass(frozen=True)
class Params:
    """A layer's tensors: ``weight`` (grouped layout: out x in/groups x k...), ``bias``, ``border``.

    Example:
        >>> p = Params(torch.ones(4, 1, 3, 3), None, None)  # a depthwise 3x3 conv over 4 channels
        >>> dense(p.weight, groups=4).shape
        torch.Size([4, 4, 3, 3])
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    border: torch.Tensor | None


def dense(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """The block-diagonal out x in x k... weight of a grouped one.

    Example:
        >>> dense(torch.ones(4, 1, 1), groups=4)[:, :, 0]
        tensor([[1., 0., 0., 0.],
                [0., 1., 0., 0.],
                [0., 0., 1., 0.],
                [0., 0., 0., 1.]])
    """
    if groups == 1:
        return weight
    out, per = weight.shape[0], weight.shape[1]
    full = weight.new_zeros(out, per * groups, *weight.shape[2:])
    og = out // groups
    for g in range(groups):
        full[g * og:(g + 1) * og, g * per:(g + 1) * per] = weight[g * og:(g + 1) * og]
    return full


def grouped(full: torch.Tensor, groups: int) -> torch.Tensor:
    """The grouped layout (out x in/groups x k...) of a block-diagonal weight (inverse of :func:`dense`).

    Example:
        >>> w = torch.randn(4, 2, 3)
        >>> torch.equal(grouped(dense(w, 2), 2), w)
        True
    """
    if groups == 1:
        return full
    out, per = full.shape[0], full.shape[1] // groups
    og = out // groups
    return torch.cat([full[g * og:(g + 1) * og, g * per:(g + 1) * per] for g in range(groups)])


def _per_channel(vector: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return vector.reshape(-1, *([1] * (like.dim() - 1)))


def fold_norm(params: Params, scale: torch.Tensor, shift: torch.Tensor) -> Params:
    """The layer computing ``scale * layer(x) + shift`` (per output channel): a norm folded in.

    Example:
        >>> p = fold_norm(Params(torch.ones(2, 1), None, None), torch.tensor([2.0, 3.0]), torch.tensor([1.0, 0.0]))
        >>> p.weight.flatten().tolist(), p.bias.tolist()
        ([2.0, 3.0], [1.0, 0.0])
    """
    weight = params.weight.double() * _per_channel(scale.double(), params.weight)
    bias = shift.double() if params.bias is None else params.bias.double() * scale.double() + shift.double()
    border = None if params.border is None else params.border.double() * _per_channel(scale.double(), params.border)
    return _cast(Params(weight, bias, border), params.weight)


def _cast(params: Params, like: torch.Tensor) -> Params:
    def cast(t):
        return None if t is None else t.to(like.dtype).contiguous()

    return Params(cast(params.weight), cast(params.bias), cast(params.border))


def _first_layer_columns(pa: Params, a: LayerSpec, b: LayerSpec, merged: LayerSpec) -> torch.Tensor:
    """``a``'s dense weight, with the indicator column the merged border term needs (and its row, when
    ``b`` already carries a border)."""
    wa = dense(pa.weight.double(), a.groups)
    if merged.border:
        if pa.border is not None:
            column = pa.border.double()
        elif a.bias and b.pads:  # a is 1x1 unpadded: its bias is its response to the all-ones indicator
            column = pa.bias.double().reshape(-1, 1, *([1] * len(a.kernel)))
        else:
            column = wa.new_zeros(wa.shape[0], 1, *wa.shape[2:])
        wa = torch.cat([wa, column], dim=1)
    if b.border:  # b reads the indicator too: a passes it through (a is 1x1, so one tap)
        row = wa.new_zeros(1, *wa.shape[1:])
        row[0, -1] = 1.0
        wa = torch.cat([wa, row], dim=0)
    return wa


def _second_layer(pb: Params, b: LayerSpec) -> tuple[torch.Tensor, int]:
    """``b``'s weight as (out x in/groups x k...) with its border column, and the group count to use."""
    if pb.border is None:
        return pb.weight.double(), b.groups
    return torch.cat([dense(pb.weight.double(), b.groups), pb.border.double()], dim=1), 1


def compose_params(pa: Params, pb: Params, a: LayerSpec, b: LayerSpec, merged: LayerSpec) -> Params:
    """The tensors of ``merged`` = ``compose(a, b)``: the layer computing ``b(a(x))``.

    Example:
        >>> from .geometry import compose
        >>> a = LayerSpec("linear", 2, 2, (), (), (), (), 1, True, False, (1, 2), (1, 2))
        >>> b = LayerSpec("linear", 2, 1, (), (), (), (), 1, True, False, (1, 2), (1, 1))
        >>> pa = Params(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([1.0, 1.0]), None)
        >>> pb = Params(torch.tensor([[3.0, 1.0]]), torch.tensor([0.5]), None)
        >>> m = compose_params(pa, pb, a, b, compose(a, b))
        >>> m.weight.tolist(), m.bias.tolist()  # Wb @ Wa and Wb @ ba + bb
        ([[3.0, 2.0]], [4.5])
    """
    wa = _first_layer_columns(pa, a, b, merged)
    wb, gb = _second_layer(pb, b)
    out, cols = wb.shape[0], wa.shape[1]
    full = wa.new_zeros(out, cols, *merged.kernel)
    wa_groups = wa.reshape(gb, wa.shape[0] // gb, cols, *wa.shape[2:])
    for tap in itertools.product(*(range(k) for k in b.kernel)):
        w = wb[(slice(None), slice(None), *tap)].reshape(gb, out // gb, -1)
        part = torch.einsum("goc,gc...->go...", w, wa_groups).reshape(out, cols, *wa.shape[2:])
        index = tuple(_taps(t * b.dilation[i] * a.stride[i] // merged.dilation[i], a.kernel[i],
                            a.dilation[i] // merged.dilation[i]) for i, t in enumerate(tap))
        full[(slice(None), slice(None), *index)] += part
    bias = None if pb.bias is None else pb.bias.double()
    if pa.bias is not None and not b.pads:
        summed = pb.weight.double().reshape(out, pb.weight.shape[1], -1).sum(2)
        through = torch.einsum("goc,gc->go", summed.reshape(b.groups, out // b.groups, -1),
                               pa.bias.double().reshape(b.groups, -1)).reshape(out)
        bias = through if bias is None else bias + through
    inputs = a.in_channels
    border = full[:, inputs:inputs + 1] if merged.border else None
    return _cast(Params(grouped(full[:, :inputs], merged.groups), bias, border), pa.weight)


def _taps(start: int, kernel: int, step: int) -> slice:
    """The indices of ``kernel`` taps ``step`` apart from ``start`` along one axis of a merged kernel."""
    step = step if kernel > 1 else 1
    return slice(start, start + (kernel - 1) * step + 1, step)


def _place(full: torch.Tensor, weight: torch.Tensor, host: LayerSpec, spec: LayerSpec) -> None:
    """Add a branch's dense kernel into the host's, where its taps fall."""
    index = tuple(_taps((host.padding[i] - spec.padding[i]) // host.dilation[i], k,
                        spec.dilation[i] // host.dilation[i]) for i, k in enumerate(spec.kernel))
    full[(slice(None), slice(None), *index)] += weight


def combine_params(branches: list[tuple[Params, LayerSpec]], identity: bool, merged: LayerSpec) -> Params:
    """The tensors of ``merged`` = ``combine_branches(...)``: one layer for the sum of the branches.

    Example:
        >>> from .geometry import combine_branches
        >>> k1 = LayerSpec("conv", 2, 2, (1, 1), (1, 1), (0, 0), (1, 1), 1, False, False, (1, 2, 4, 4), (1, 2, 4, 4))
        >>> p = combine_params([(Params(torch.zeros(2, 2, 1, 1), None, None), k1)], True, combine_branches([k1], True))
        >>> p.weight[:, :, 0, 0]  # conv(x) + x with a zero conv: the identity
        tensor([[1., 0.],
                [0., 1.]])
    """
    first = branches[0][0].weight
    inputs, out = merged.in_channels, merged.out_channels
    full = first.new_zeros(out, inputs + int(merged.border), *merged.kernel, dtype=torch.float64)
    bias = None
    for params, spec in branches:
        weight = dense(params.weight.double(), spec.groups)
        if merged.border:
            border = (params.border.double() if params.border is not None
                      else weight.new_zeros(out, 1, *weight.shape[2:]))
            weight = torch.cat([weight, border], dim=1)
        _place(full, weight, merged, spec)
        if params.bias is not None:
            bias = params.bias.double() if bias is None else bias + params.bias.double()
    if identity:
        eye = torch.eye(out, inputs + int(merged.border), dtype=torch.float64)
        eye = eye.reshape(out, -1, *([1] * len(merged.kernel)))
        ones = (1,) * len(merged.kernel)
        _place(full, eye, merged, LayerSpec(merged.kind, inputs, out, ones, ones, (0,) * len(ones), ones, 1, False,
                                            False, merged.in_shape, merged.out_shape))
    border = full[:, inputs:inputs + 1] if merged.border else None
    return _cast(Params(grouped(full[:, :inputs], merged.groups), bias, border), first)
