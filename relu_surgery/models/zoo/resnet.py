"""CIFAR ResNets of He et al. (2016) in the original after-activation form, with seed 002's options.

Unit: x_{l+1} = ReLU(S(x_l) + BN(conv(...ReLU(BN(conv(x_l)))...))). Every ReLU call site is its own
``nn.ReLU`` module (``relu1``, ``relu2``[, ``relu3``]); the last one follows the residual addition,
which is what EraseReLU (seed 000) removes.

- ``cifar_resnet{20,32,44,56,110,1202}``: basic units (two 3x3 convs), 6n+2 layers, stage widths
  16-32-64, option-A (zero-padding, parameter-free) shortcuts as in He et al. (2016) — this is what
  gives the papers' 0.27M ... 19.4M parameters. ``shortcut="B"`` uses 1x1 conv+BN projections.
- ``cifar_resnet{164,1001}``: bottleneck units (1x1, 3x3, 1x1; 4x expansion), 9n+2 layers,
  bottleneck widths 16-32-64 (outputs 64-128-256), projection shortcuts (He et al. 2016b appendix).
- Options for all: ``widths`` (seed 002 uses (16, 32, 64), doubled (32, 64, 128) and the
  CReLU-matched (12, 24, 48) / (24, 48, 96)); ``norm="bn"`` (default) or ``"none"`` for seed 002's
  "plain" ResNets (Table 2), with ``bias`` (default: on without BN; seed 002 also reports
  ``bias=False``); plain models are Xavier-initialised as in seed 002, BN models He-initialised.

Example:
    >>> import torch
    >>> from relu_surgery.models.zoo import create_zoo_model
    >>> model = create_zoo_model("cifar_resnet20", num_classes=100)
    >>> model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 100])
    >>> plain = create_zoo_model("cifar_resnet110", norm="none", bias=False)   # seed 002 Table 2
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ._layers import (ClassifierHead, ConvBnAct, check_choice, conv2d, init_weights, make_shortcut, make_stage, maybe, norm2d, resolve_bias, SHORTCUTS)
from ._registry import register_zoo_model

__all__ = ["BasicBlock", "Bottleneck", "CifarResNet"] + [
    f"cifar_resnet{d}" for d in (20, 32, 44, 56, 110, 1202, 164, 1001)]

_HE2016 = "He et al. 2016, Deep Residual Learning (CIFAR); seed 002 (BN/plain variants)"
_HE2016B = "He et al. 2016b, Identity Mappings (seed 003), original bottleneck baseline"


class BasicBlock(nn.Module):
    """After-activation basic unit: conv3x3-BN-ReLU-conv3x3-BN, + shortcut, ReLU.

    Example:
        >>> BasicBlock(16, 32, stride=2, shortcut="A")(torch.randn(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, mid_chs: int | None = None,
                 groups: int = 1, norm: str = "bn", bias: bool | None = None, shortcut: str = "A"):
        super().__init__()
        mid_chs = mid_chs or out_chs
        bias = resolve_bias(norm, bias)
        self.conv1 = conv2d(in_chs, mid_chs, 3, stride, groups=groups, bias=bias)
        self.bn1 = norm2d(norm, mid_chs)
        self.relu1 = nn.ReLU()
        self.conv2 = conv2d(mid_chs, out_chs, 3, bias=bias)
        self.bn2 = norm2d(norm, out_chs)
        self.shortcut = make_shortcut(in_chs, out_chs, stride, shortcut, norm, bias)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(maybe(self.bn1, self.conv1(x)))
        out = maybe(self.bn2, self.conv2(out))
        return self.relu2(out + maybe(self.shortcut, x))


class Bottleneck(nn.Module):
    """After-activation bottleneck: 1x1-BN-ReLU, 3x3(stride, groups)-BN-ReLU, 1x1-BN, + shortcut, ReLU.

    Also the ResNeXt unit (``groups`` = cardinality, ``mid_chs`` = cardinality x width).

    Example:
        >>> Bottleneck(16, 64, mid_chs=16, shortcut="B")(torch.randn(1, 16, 8, 8)).shape
        torch.Size([1, 64, 8, 8])
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, mid_chs: int | None = None,
                 groups: int = 1, norm: str = "bn", bias: bool | None = None, shortcut: str = "B"):
        super().__init__()
        mid_chs = mid_chs or out_chs // 4
        bias = resolve_bias(norm, bias)
        self.conv1 = conv2d(in_chs, mid_chs, 1, bias=bias)
        self.bn1 = norm2d(norm, mid_chs)
        self.relu1 = nn.ReLU()
        self.conv2 = conv2d(mid_chs, mid_chs, 3, stride, groups=groups, bias=bias)
        self.bn2 = norm2d(norm, mid_chs)
        self.relu2 = nn.ReLU()
        self.conv3 = conv2d(mid_chs, out_chs, 1, bias=bias)
        self.bn3 = norm2d(norm, out_chs)
        self.shortcut = make_shortcut(in_chs, out_chs, stride, shortcut, norm, bias)
        self.relu3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(maybe(self.bn1, self.conv1(x)))
        out = self.relu2(maybe(self.bn2, self.conv2(out)))
        out = maybe(self.bn3, self.conv3(out))
        return self.relu3(out + maybe(self.shortcut, x))


class CifarResNet(nn.Module):
    """After-activation CIFAR ResNet: stem conv3x3-BN-ReLU, three stages (stride 1, 2, 2), head.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        depths: units per stage.
        out_chs: output channels of each stage.
        mid_chs: inner (bottleneck) channels of each stage's units; ``None``: the block's default.
        stem_chs: stem conv width; default ``mid_chs[0]`` (or ``out_chs[0]``).
        groups: grouped 3x3 convs (ResNeXt cardinality).
        norm, bias, shortcut: see the module docstring.

    Example:
        >>> net = CifarResNet(BasicBlock, (1, 1, 1), (16, 32, 64), num_classes=10)
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, block: type[nn.Module], depths: Sequence[int], out_chs: Sequence[int],
                 mid_chs: Sequence[int] | None = None, stem_chs: int | None = None, groups: int = 1,
                 num_classes: int = 10, in_chans: int = 3, norm: str = "bn", bias: bool | None = None,
                 shortcut: str = "A"):
        super().__init__()
        check_choice("shortcut", shortcut, SHORTCUTS)
        mids = list(mid_chs) if mid_chs is not None else [None] * len(out_chs)
        stem_chs = stem_chs or mids[0] or out_chs[0]
        self.stem = ConvBnAct(in_chans, stem_chs, 3, norm=norm, bias=bias)
        kw = dict(groups=groups, norm=norm, bias=bias, shortcut=shortcut)
        in_chs = stem_chs
        for i, (n, out, mid) in enumerate(zip(depths, out_chs, mids)):
            stage = make_stage(block, n, in_chs, out, stride=1 if i == 0 else 2, mid_chs=mid, **kw)
            self.add_module(f"layer{i + 1}", stage)
            in_chs = out
        self.num_stages = len(out_chs)
        self.head = ClassifierHead(in_chs, num_classes)
        init_weights(self, "kaiming" if norm == "bn" else "xavier")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.head(x)


def _units_per_stage(depth: int, bottleneck: bool) -> int:
    per_unit = 9 if bottleneck else 6
    if (depth - 2) % per_unit:
        raise ValueError(f"depth {depth} is not {per_unit}n+2")
    return (depth - 2) // per_unit


def _cifar_resnet(depth: int, bottleneck: bool, num_classes: int = 10, in_chans: int = 3,
                  widths: Sequence[int] = (16, 32, 64), norm: str = "bn", bias: bool | None = None,
                  shortcut: str | None = None) -> CifarResNet:
    n = _units_per_stage(depth, bottleneck)
    widths = tuple(widths)
    if bottleneck:
        return CifarResNet(Bottleneck, (n,) * len(widths), [4 * w for w in widths], widths,
                           num_classes=num_classes, in_chans=in_chans, norm=norm, bias=bias,
                           shortcut=shortcut or "B")
    return CifarResNet(BasicBlock, (n,) * len(widths), widths, num_classes=num_classes,
                       in_chans=in_chans, norm=norm, bias=bias, shortcut=shortcut or "A")


@register_zoo_model("cifar_resnet", paper=_HE2016)
def cifar_resnet20(num_classes=10, in_chans=3, **options):
    """ResNet-20 (3x3 basic units, 16-32-64), 0.27M parameters.

    Example:
        >>> with torch.device("meta"):  # structure only
        ...     model = cifar_resnet20(num_classes=10, in_chans=1)   # e.g. MNIST-sized inputs
        >>> sum(p.numel() for p in model.parameters())
        269434
    """
    return _cifar_resnet(20, False, num_classes, in_chans, **options)


@register_zoo_model("cifar_resnet", paper=_HE2016)
def cifar_resnet32(num_classes=10, in_chans=3, **options):
    """ResNet-32 (3x3 basic units, 16-32-64), 0.46M parameters.

    Example:
        >>> with torch.device("meta"):  # structure only
        ...     model = cifar_resnet32(num_classes=100)
        >>> sum(p.numel() for p in model.parameters())
        470004
    """
    return _cifar_resnet(32, False, num_classes, in_chans, **options)


@register_zoo_model("cifar_resnet", paper=_HE2016)
def cifar_resnet44(num_classes=10, in_chans=3, **options):
    """ResNet-44 (3x3 basic units, 16-32-64), 0.66M parameters.

    Example:
        >>> with torch.device("meta"):  # structure only
        ...     model = cifar_resnet44(num_classes=100)
        >>> sum(p.numel() for p in model.parameters())
        664436
    """
    return _cifar_resnet(44, False, num_classes, in_chans, **options)


@register_zoo_model("cifar_resnet", paper=_HE2016)
def cifar_resnet56(num_classes=10, in_chans=3, **options):
    """ResNet-56 (3x3 basic units, 16-32-64), 0.85M parameters.

    Example:
        >>> with torch.device("meta"):  # structure only
        ...     model = cifar_resnet56(num_classes=100, shortcut="B")   # 1x1 conv+BN projections
        >>> sum(p.numel() for p in model.parameters())
        861620
    """
    return _cifar_resnet(56, False, num_classes, in_chans, **options)


@register_zoo_model("cifar_resnet", paper=_HE2016)
def cifar_resnet110(num_classes=10, in_chans=3, **options):
    """ResNet-110 (3x3 basic units, 16-32-64), 1.7M parameters; seed 002's BN/plain baseline.

    Example:
        >>> with torch.device("meta"):  # structure only
        ...     bn = cifar_resnet110(num_classes=100)
        >>> sum(p.numel() for p in bn.parameters())
        1733812
        >>> with torch.device("meta"):  # structure only
        ...     plain = cifar_resnet110(num_classes=100, norm="none")               # with bias
        >>> sum(p.numel() for p in plain.parameters())
        1729764
        >>> with torch.device("meta"):  # structure only
        ...     plain_nb = cifar_resnet110(num_classes=100, norm="none", bias=False)
        >>> sum(p.numel() for p in plain_nb.parameters())
        1725716
        >>> with torch.device("meta"):  # structure only
        ...     double = cifar_resnet110(num_classes=100, widths=(32, 64, 128))
        >>> sum(p.numel() for p in double.parameters())
        6905092
    """
    return _cifar_resnet(110, False, num_classes, in_chans, **options)


@register_zoo_model("cifar_resnet", paper=_HE2016)
def cifar_resnet1202(num_classes=10, in_chans=3, **options):
    """ResNet-1202 (3x3 basic units, 16-32-64), 19.4M parameters.

    Example:
        >>> import torch
        >>> with torch.device("meta"):
        ...     model = cifar_resnet1202()
    """
    return _cifar_resnet(1202, False, num_classes, in_chans, **options)


@register_zoo_model("cifar_resnet", paper=_HE2016B)
def cifar_resnet164(num_classes=10, in_chans=3, **options):
    """ResNet-164 (after-activation bottleneck units, 16-32-64 x4), 1.7M parameters.

    Example:
        >>> with torch.device("meta"):  # structure only
        ...     model = cifar_resnet164(num_classes=100)
        >>> sum(p.numel() for p in model.parameters())
        1727284
    """
    return _cifar_resnet(164, True, num_classes, in_chans, **options)


@register_zoo_model("cifar_resnet", paper=_HE2016B)
def cifar_resnet1001(num_classes=10, in_chans=3, **options):
    """ResNet-1001 (after-activation bottleneck units, 16-32-64 x4), 10.2M parameters.

    Example:
        >>> import torch
        >>> with torch.device("meta"):
        ...     model = cifar_resnet1001(num_classes=100)
    """
    return _cifar_resnet(1001, True, num_classes, in_chans, **options)
