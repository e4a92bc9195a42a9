"""The shape of a weight layer as data, and when two of them compose into one exactly.

A :class:`LayerSpec` says what a conv or linear layer computes on which shapes (channels, kernel,
stride, padding, dilation, groups, bias, input and output shapes) and what it costs (MACs at the
example input's batch). :func:`compose` says what layer ``b(a(x))`` is when nothing non-linear
sits between them, or why no single layer computes it exactly. Pure arithmetic: no tensors.

Per spatial axis, ``b`` after ``a`` reads ``x`` at offsets ``j*d_b*s_a + i*d_a`` (``i < k_a``,
``j < k_b``): the merged conv has stride ``s_a*s_b``, padding ``p_a + p_b*s_a``, dilation
``gcd(d_a, d_b*s_a)`` and, for undilated layers, kernel size ``k_a + (k_b - 1)*s_a`` (the issue's
``k1 + (k2 - 1)*s1``). Groups compose to ``gcd(g_a, g_b)``. So every conv pair has an exact merged
geometry except where zero padding stands in the way (below); whether it is worth it is the cost's
question.

Zero padding: where ``b`` pads, it reads zeros outside ``a``'s output, while a merged conv would
read ``a``'s response to the zeros outside ``x``. The two agree only when ``a`` is a 1x1 conv that
does not pad (its response to zeros is its bias), and the bias is then made exact by a *border*
term: the merged layer adds ``conv(ones, V)`` over an all-ones image of the input's size, which is
zero where ``b`` would have read padding. Any other padded pair is refused with the reason.

Example:
    >>> a = LayerSpec("conv", 8, 16, (1, 1), (1, 1), (0, 0), (1, 1), 1, True, False, (1, 8, 6, 6), (1, 16, 6, 6))
    >>> b = LayerSpec("conv", 16, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, True, False, (1, 16, 6, 6), (1, 4, 6, 6))
    >>> m = compose(a, b)
    >>> m.kernel, m.padding, m.border, a.macs() + b.macs(), m.macs()
    ((3, 3), (1, 1), True, 25344, 11664)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = ["LayerSpec", "compose", "combine_branches", "host_index", "merged_groups", "describe"]


@dataclass(frozen=True)
class LayerSpec:
    """What a conv (``kind="conv"``, N-d) or linear layer computes, and on which shapes.

    ``border`` marks a merged layer that carries a border term (see the module docstring).
    ``in_shape`` / ``out_shape`` include the batch dimension of the example input.

    Example:
        >>> s = LayerSpec("conv", 3, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, True, False, (1, 3, 8, 8), (1, 4, 8, 8))
        >>> s.pads, s.pointwise, s.macs()
        (True, False, 6912)
    """

    kind: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    bias: bool
    border: bool
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    padding_mode: str = "zeros"

    @property
    def pads(self) -> bool:
        """True when the layer reads zero padding outside its input."""
        return any(p > 0 for p in self.padding)

    @property
    def pointwise(self) -> bool:
        """A 1x1 conv without padding, or a linear layer."""
        return all(k == 1 for k in self.kernel) and not self.pads

    def macs(self) -> int:
        """Multiply-accumulates of one call on ``in_shape`` (the border term counts as one more input channel).

        Example:
            >>> LayerSpec("linear", 4, 3, (), (), (), (), 1, True, False, (2, 4), (2, 3)).macs()
            24
        """
        taps = math.prod(self.kernel)
        if self.kind == "linear":
            return math.prod(self.out_shape[:-1]) * self.in_channels * self.out_channels
        main = math.prod(self.out_shape) * (self.in_channels // self.groups) * taps
        border = math.prod(self.out_shape[2:]) * self.out_channels * taps if self.border else 0
        return main + border


def describe(spec: LayerSpec) -> str:
    """A short human description: ``conv 3x3/2 24->32 g1 +bias``.

    Example:
        >>> s = LayerSpec("conv", 8, 8, (3, 3), (2, 2), (1, 1), (1, 1), 8, False, False, (1, 8, 4, 4), (1, 8, 2, 2))
        >>> describe(s)
        'conv 3x3/2 8->8 groups 8'
    """
    if spec.kind == "linear":
        head = f"linear {spec.in_channels}->{spec.out_channels}"
    else:
        kernel = "x".join(map(str, spec.kernel))
        stride = "" if set(spec.stride) == {1} else "/" + "x".join(map(str, sorted(set(spec.stride))))
        dil = "" if set(spec.dilation) == {1} else " dil " + "x".join(map(str, spec.dilation))
        head = f"conv {kernel}{stride}{dil} {spec.in_channels}->{spec.out_channels}"
        head += f" groups {spec.groups}" if spec.groups != 1 else ""
    return head + (" +border" if spec.border else "")


def merged_groups(first: int, second: int) -> int:
    """Groups of one layer doing the work of layers with ``first`` and ``second`` groups over the same channels.

    Composed (or summed) block-diagonal connections stay block-diagonal along the group boundaries
    the two layers share: ``gcd(first, second)`` blocks.

    Example:
        >>> merged_groups(96, 1), merged_groups(8, 8), merged_groups(4, 6)
        (1, 8, 2)
    """
    return math.gcd(first, second)


def _axis(a: LayerSpec, b: LayerSpec, i: int) -> tuple[int, int]:
    """Merged (kernel, dilation) along spatial axis ``i``: the taps ``j*d_b*s_a + i*d_a`` on their
    coarsest common grid (dilation ``gcd(d_a, d_b*s_a)``)."""
    ka, kb, da, db, sa = a.kernel[i], b.kernel[i], a.dilation[i], b.dilation[i], a.stride[i]
    if ka == 1:
        return kb, db * sa
    if kb == 1:
        return ka, da
    step = math.gcd(da, db * sa)
    return ((ka - 1) * da + (kb - 1) * db * sa) // step + 1, step


def _refusal(a: LayerSpec, b: LayerSpec) -> str | None:
    """Why ``b(a(x))`` is not one exact layer, before any arithmetic (None: it may be)."""
    if a.kind != b.kind or len(a.kernel) != len(b.kernel):
        return f"a {describe(a)} feeds a {describe(b)}: different kinds of layer"
    if a.out_channels != b.in_channels:
        return f"{a.out_channels} channels feed a layer expecting {b.in_channels}"
    if any(s.pads and s.padding_mode != "zeros" for s in (a, b)):
        return "padding mode is not zeros"
    if b.pads and not a.pointwise:
        return (f"zero padding: the {describe(b)} pads its input with zeros, and the {describe(a)} before it is "
                "not a 1x1 unpadded conv, so a merged conv would see the first layer's response beyond the "
                "border where the second sees zeros")
    if b.pads and a.border:
        return "zero padding: the first layer already carries a border term"
    return None


def compose(a: LayerSpec, b: LayerSpec) -> LayerSpec | str:
    """The single layer computing ``b(a(x))``, or a one-line reason why there is none.

    Example:
        >>> a = LayerSpec("conv", 4, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, True, False, (1, 4, 8, 8), (1, 4, 8, 8))
        >>> compose(a, a).split(":")[0]
        'zero padding'
    """
    reason = _refusal(a, b)
    if reason:
        return reason
    if a.kind == "linear":
        return replace(b, in_channels=a.in_channels, groups=1, bias=a.bias or b.bias, border=False,
                       in_shape=a.in_shape)
    axes = [_axis(a, b, i) for i in range(len(a.kernel))]
    merged = LayerSpec(
        "conv", a.in_channels, b.out_channels, tuple(k for k, _ in axes),
        tuple(sa * sb for sa, sb in zip(a.stride, b.stride)),
        tuple(pa + pb * sa for pa, pb, sa in zip(a.padding, b.padding, a.stride)),
        tuple(d for _, d in axes), merged_groups(a.groups, b.groups),
        bias=b.bias or (a.bias and not b.pads), border=b.border or a.border or (a.bias and b.pads),
        in_shape=a.in_shape, out_shape=b.out_shape,
    )
    return _check_output_size(merged, b)


def _check_output_size(merged: LayerSpec, b: LayerSpec) -> LayerSpec | str:
    """``merged``, or a reason when it would not give ``b``'s output size (never expected)."""
    for i, size in enumerate(merged.in_shape[2:]):
        extent = merged.dilation[i] * (merged.kernel[i] - 1)
        out = (size + 2 * merged.padding[i] - extent - 1) // merged.stride[i] + 1
        if out != b.out_shape[2 + i]:
            return f"the merged conv would give {out} rows along axis {i}, not {b.out_shape[2 + i]}"
    return merged


def host_index(branches: list[LayerSpec]) -> int:
    """Which branch hosts the others in :func:`combine_branches`: the widest reach, then the most padding.

    Example:
        >>> k3 = LayerSpec("conv", 4, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, True, False, (1, 4, 8, 8), (1, 4, 8, 8))
        >>> host_index([replace(k3, kernel=(1, 1), padding=(0, 0)), k3])
        1
    """
    return max(range(len(branches)), key=lambda i: (
        tuple(d * (k - 1) for d, k in zip(branches[i].dilation, branches[i].kernel)), branches[i].padding, -i))


def combine_branches(branches: list[LayerSpec], identity: bool) -> LayerSpec | str:
    """One layer computing the sum of conv (or linear) ``branches`` of one input (``+ x`` with ``identity``).

    The layer with the widest reach hosts the others: each branch's kernel is placed inside the
    host's where its taps fall (RepVGG). Refused, with the reason, when a branch's taps do not land
    on the host's grid.

    Example:
        >>> k3 = LayerSpec("conv", 4, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, True, False, (1, 4, 8, 8), (1, 4, 8, 8))
        >>> k1 = replace(k3, kernel=(1, 1), padding=(0, 0))
        >>> combine_branches([k3, k1], identity=True) == k3
        True
    """
    host = branches[host_index(branches)]
    kinds = {(s.kind, len(s.kernel), s.stride, s.in_channels, s.out_channels) for s in branches}
    if len(kinds) > 1:
        return "the branches differ in kind, stride or channels"
    if any(s.pads and s.padding_mode != "zeros" for s in branches):
        return "padding mode is not zeros"
    if identity and (host.in_channels != host.out_channels or any(s != 1 for s in host.stride)):
        return "the identity branch does not match the layers' shape (stride or channels)"
    ident = [replace(host, kernel=(1,) * len(host.kernel), padding=(0,) * len(host.kernel),
                     dilation=(1,) * len(host.kernel), groups=host.in_channels)] if identity else []
    for s in [*branches, *ident]:
        for i in range(len(host.kernel)):
            off = host.padding[i] - s.padding[i]
            reach = off + s.dilation[i] * (s.kernel[i] - 1)
            step_off = s.kernel[i] > 1 and s.dilation[i] % host.dilation[i]
            if off < 0 or off % host.dilation[i] or step_off or reach > host.dilation[i] * (host.kernel[i] - 1):
                return f"a {describe(s)} branch's taps do not fall on the {describe(host)}'s kernel grid"
    groups = host.groups
    for s in [*branches, *ident]:
        groups = merged_groups(groups, s.groups)
    return replace(host, groups=groups, bias=any(s.bias for s in branches),
                   border=any(s.border for s in branches))
