"""Small building blocks shared by the zoo families (timm ``layers/`` style).

Every helper here is torch.fx traceable: optional layers are stored as ``None`` and skipped by
:func:`maybe`, whose ``if`` looks only at the module tree, never at tensor values.

Example:
    >>> import torch
    >>> from relu_surgery.models.zoo._layers import ConvBnAct, make_shortcut
    >>> unit = ConvBnAct(3, 16)
    >>> unit(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 16, 32, 32])
    >>> make_shortcut(16, 32, stride=2, kind="A")(torch.randn(2, 16, 32, 32)).shape
    torch.Size([2, 32, 16, 16])
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "NORMS", "SHORTCUTS", "maybe", "check_choice", "resolve_bias", "norm2d", "conv2d",
    "ConvBnAct", "ZeroPadShortcut", "make_shortcut", "make_stage", "ClassifierHead", "init_weights",
]

NORMS = ("bn", "none")
SHORTCUTS = ("A", "B")


def maybe(layer: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)``, or ``x`` unchanged when the optional ``layer`` is absent (``None``).

    Example:
        >>> maybe(None, torch.ones(1)), maybe(nn.Identity(), torch.ones(1))
        (tensor([1.]), tensor([1.]))
    """
    return x if layer is None else layer(x)


def check_choice(name: str, value, choices) -> None:
    """Raise a ``ValueError`` naming the allowed values when ``value`` is not one of ``choices``.

    Example:
        >>> check_choice("norm", "ln", NORMS)
        Traceback (most recent call last):
        ...
        ValueError: norm='ln' is not supported; choose one of 'bn', 'none'
    """
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(map(repr, choices))}")


def resolve_bias(norm: str, bias: bool | None) -> bool:
    """Conv bias default: off when a norm follows the conv, on for the plain (``norm="none"``) nets.

    Example:
        >>> resolve_bias("bn", None), resolve_bias("none", None), resolve_bias("bn", True)
        (False, True, True)
    """
    check_choice("norm", norm, NORMS)
    return norm == "none" if bias is None else bool(bias)


def norm2d(norm: str, channels: int) -> nn.Module | None:
    """``BatchNorm2d(channels)`` for ``norm="bn"``; ``None`` (no layer at all) for ``norm="none"``.

    Example:
        >>> type(norm2d("bn", 8)).__name__, norm2d("none", 8)
        ('BatchNorm2d', None)
    """
    check_choice("norm", norm, NORMS)
    return nn.BatchNorm2d(channels) if norm == "bn" else None


def conv2d(in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
           bias: bool = False) -> nn.Conv2d:
    """Conv with "same" padding for odd kernels (3x3 -> padding 1, 1x1 -> padding 0).

    Example:
        >>> conv2d(3, 8).padding, conv2d(3, 8, kernel_size=1).padding
        ((1, 1), (0, 0))
    """
    return nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2,
                     groups=groups, bias=bias)


class ConvBnAct(nn.Module):
    """conv -> [BN] -> ReLU: a VGG-style unit, also the Inception branches' layers and the stems.

    Example:
        >>> ConvBnAct(16, 32, stride=2)(torch.randn(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1,
                 norm: str = "bn", bias: bool | None = None):
        super().__init__()
        self.conv = conv2d(in_chs, out_chs, kernel_size, stride, bias=resolve_bias(norm, bias))
        self.bn = norm2d(norm, out_chs)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(maybe(self.bn, self.conv(x)))


class ZeroPadShortcut(nn.Module):
    """He et al. (2016) option-A shortcut: subsample by ``stride``, append zero channels.

    Parameter-free, so the CIFAR ResNet-20 ... 1202 parameter counts match the paper
    (fb.resnet.torch's CIFAR shortcut, which seed 002 follows, is the same).

    Example:
        >>> ZeroPadShortcut(16, 32, stride=2)(torch.randn(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__()
        if out_chs < in_chs:
            raise ValueError(f"option-A shortcut cannot reduce channels ({in_chs} -> {out_chs}); "
                             "use shortcut='B'")
        self.in_chs, self.out_chs, self.stride = in_chs, out_chs, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_chs - self.in_chs))

    def extra_repr(self) -> str:
        return f"{self.in_chs}, {self.out_chs}, stride={self.stride}"


def make_shortcut(in_chs: int, out_chs: int, stride: int = 1, kind: str = "B", norm: str = "bn",
                  bias: bool = False) -> nn.Module | None:
    """Shortcut of a residual unit: ``None`` (identity) when shapes match, else a projection.

    ``kind="A"``: :class:`ZeroPadShortcut`; ``kind="B"``: 1x1 conv (stride ``stride``) followed by
    BN when ``norm="bn"`` (pass ``norm="none"`` for the pre-activation nets, whose projection is a
    bare conv on the already normalised input).

    Example:
        >>> make_shortcut(16, 16) is None, [type(m).__name__ for m in make_shortcut(16, 32, stride=2)]
        (True, ['Conv2d', 'BatchNorm2d'])
    """
    check_choice("shortcut", kind, SHORTCUTS)
    if in_chs == out_chs and stride == 1:
        return None
    if kind == "A":
        return ZeroPadShortcut(in_chs, out_chs, stride)
    bn = norm2d(norm, out_chs)
    conv = conv2d(in_chs, out_chs, 1, stride, bias=bias)
    return nn.Sequential(conv) if bn is None else nn.Sequential(conv, bn)


def make_stage(block: type[nn.Module], num_blocks: int, in_chs: int, out_chs: int, stride: int = 1,
               first_kwargs: dict | None = None, **kwargs) -> nn.Sequential:
    """``num_blocks`` residual units; the first maps ``in_chs -> out_chs`` with ``stride``.

    ``kwargs`` go to every unit, ``first_kwargs`` additionally to the first one only.

    Example:
        >>> stage = make_stage(ConvBnAct, 3, 16, 32, stride=2)
        >>> len(stage), stage(torch.randn(1, 16, 8, 8)).shape
        (3, torch.Size([1, 32, 4, 4]))
    """
    first = block(in_chs, out_chs, stride=stride, **kwargs, **(first_kwargs or {}))
    rest = [block(out_chs, out_chs, stride=1, **kwargs) for _ in range(num_blocks - 1)]
    return nn.Sequential(first, *rest)


class ClassifierHead(nn.Module):
    """Global average pooling -> flatten -> ``Linear(in_features, num_classes)``.

    Example:
        >>> ClassifierHead(64, 10)(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(x)))


def init_weights(model: nn.Module, scheme: str = "kaiming") -> nn.Module:
    """Initialise in place as the papers do and return ``model``.

    ``"kaiming"`` (He et al. 2015, "MSR" init; used with BN): conv weights ~ N(0, 2 / fan_out).
    ``"xavier"`` (seed 002 initialises its models without BN with Xavier): Glorot-uniform convs.
    Norm weights 1, every bias 0; Linear layers keep PyTorch's default weight init. Models built
    on the meta device are returned untouched.

    Example:
        >>> bn = init_weights(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))[1]
        >>> bn.weight.tolist(), bn.bias.tolist()
        ([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0])
    """
    check_choice("scheme", scheme, ("kaiming", "xavier"))
    if any(p.is_meta for p in model.parameters()):
        return model  # nothing to initialise (and slow to "sample") on the meta device
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
    return model
