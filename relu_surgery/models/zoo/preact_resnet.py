"""Pre-activation CIFAR ResNets of seed 003 (He et al. 2016b, "Identity Mappings", Fig. 4(e)).

Unit: x_{l+1} = x_l + conv(ReLU(BN(conv(ReLU(BN(x_l)))))) — full pre-activation, nothing after the
addition. Module names are fixed so the pre-/after-activation converter can find them:
``bn1 -> relu -> conv1 -> bn2 -> relu -> conv2 [-> bn3 -> relu -> conv3]`` with one ``relu``
module called at every site (like torchvision), and ``shortcut`` for the projection (a bare 1x1
conv: its input is already normalised).

As in the paper's appendix:

- the first unit follows the stem conv directly (no BN/ReLU in the stem) and takes "the first
  activation right after conv1 and before splitting into two paths": its shortcut consumes the
  pre-activated tensor ``relu(bn1(x))`` (``preact_shortcut=True``);
- projection shortcuts are "also with pre-activation" (they too consume ``relu(bn1(x))``); identity
  shortcuts of the other units carry the raw ``x``;
- after the last unit an extra BN + ReLU (``bn_final``, ``relu_final``) precedes global pooling.

Registered: ``preact_resnet110`` (basic units, 16-32-64, 1.7M), ``preact_resnet164`` and
``preact_resnet1001`` (bottleneck units, 16-32-64 x4; 1.7M / 10.2M). Wide ResNets reuse
:class:`PreActResNet` (see ``wide_resnet.py``).

Example:
    >>> import torch
    >>> from relu_surgery.models.zoo import create_zoo_model
    >>> model = create_zoo_model("preact_resnet110", num_classes=100)
    >>> model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 100])
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ._layers import ClassifierHead, conv2d, init_weights, make_shortcut, make_stage, maybe
from ._registry import register_zoo_model

__all__ = ["PreActBasicBlock", "PreActBottleneck", "PreActResNet",
           "preact_resnet110", "preact_resnet164", "preact_resnet1001"]

_PAPER = "He et al. 2016b, Identity Mappings in Deep Residual Networks (seed 003)"


class _PreActUnit(nn.Module):
    """Shared shortcut handling of the pre-activation units (subclasses build the branch)."""

    def _init_shortcut(self, in_chs: int, out_chs: int, stride: int, shortcut: str,
                       preact_shortcut: bool | None) -> None:
        self.shortcut = make_shortcut(in_chs, out_chs, stride, shortcut, norm="none")
        is_projection = isinstance(self.shortcut, nn.Sequential)
        self.preact_shortcut = is_projection if preact_shortcut is None else bool(preact_shortcut)

    def extra_repr(self) -> str:
        return f"preact_shortcut={self.preact_shortcut}"


class PreActBasicBlock(_PreActUnit):
    """Pre-activation basic unit: BN-ReLU-conv3x3-BN-ReLU-[Dropout]-conv3x3, + shortcut.

    ``drop_rate`` > 0 adds the Wide ResNet dropout between the two convs.

    Example:
        >>> PreActBasicBlock(16, 32, stride=2)(torch.randn(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, mid_chs: int | None = None,
                 shortcut: str = "B", preact_shortcut: bool | None = None, drop_rate: float = 0.0):
        super().__init__()
        mid_chs = mid_chs or out_chs
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.relu = nn.ReLU()
        self.conv1 = conv2d(in_chs, mid_chs, 3, stride)
        self.bn2 = nn.BatchNorm2d(mid_chs)
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else None
        self.conv2 = conv2d(mid_chs, out_chs, 3)
        self._init_shortcut(in_chs, out_chs, stride, shortcut, preact_shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        identity = out if self.preact_shortcut else x
        out = self.conv1(out)
        out = self.conv2(maybe(self.dropout, self.relu(self.bn2(out))))
        return out + maybe(self.shortcut, identity)


class PreActBottleneck(_PreActUnit):
    """Pre-activation bottleneck: BN-ReLU-conv1x1, BN-ReLU-conv3x3(stride), BN-ReLU-conv1x1, + shortcut.

    Example:
        >>> PreActBottleneck(16, 64, mid_chs=16)(torch.randn(1, 16, 8, 8)).shape
        torch.Size([1, 64, 8, 8])
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, mid_chs: int | None = None,
                 shortcut: str = "B", preact_shortcut: bool | None = None):
        super().__init__()
        mid_chs = mid_chs or out_chs // 4
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.relu = nn.ReLU()
        self.conv1 = conv2d(in_chs, mid_chs, 1)
        self.bn2 = nn.BatchNorm2d(mid_chs)
        self.conv2 = conv2d(mid_chs, mid_chs, 3, stride)
        self.bn3 = nn.BatchNorm2d(mid_chs)
        self.conv3 = conv2d(mid_chs, out_chs, 1)
        self._init_shortcut(in_chs, out_chs, stride, shortcut, preact_shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        identity = out if self.preact_shortcut else x
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + maybe(self.shortcut, identity)


class PreActResNet(nn.Module):
    """Pre-activation CIFAR ResNet: stem conv3x3, three stages (stride 1, 2, 2), BN-ReLU, head.

    Args:
        block: :class:`PreActBasicBlock` or :class:`PreActBottleneck`.
        depths: units per stage.
        out_chs: output channels of each stage.
        mid_chs: inner (bottleneck) channels; ``None``: the block's default.
        stem_chs: stem conv width (16 in all of the papers' nets).
        shortcut: ``"B"`` (1x1 conv projections, default) or ``"A"`` (zero padding).
        block_kwargs: extra options for every unit (``drop_rate`` for Wide ResNets).

    Example:
        >>> net = PreActResNet(PreActBasicBlock, (1, 1, 1), (16, 32, 64))
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, block: type[nn.Module], depths: Sequence[int], out_chs: Sequence[int],
                 mid_chs: Sequence[int] | None = None, stem_chs: int = 16, num_classes: int = 10,
                 in_chans: int = 3, shortcut: str = "B", **block_kwargs):
        super().__init__()
        mids = list(mid_chs) if mid_chs is not None else [None] * len(out_chs)
        self.conv1 = conv2d(in_chans, stem_chs, 3)
        in_chs = stem_chs
        for i, (n, out, mid) in enumerate(zip(depths, out_chs, mids)):
            first = {"preact_shortcut": True} if i == 0 else None
            stage = make_stage(block, n, in_chs, out, stride=1 if i == 0 else 2, first_kwargs=first,
                               mid_chs=mid, shortcut=shortcut, **block_kwargs)
            self.add_module(f"layer{i + 1}", stage)
            in_chs = out
        self.num_stages = len(out_chs)
        self.bn_final = nn.BatchNorm2d(in_chs)
        self.relu_final = nn.ReLU()
        self.head = ClassifierHead(in_chs, num_classes)
        init_weights(self, "kaiming")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.head(self.relu_final(self.bn_final(x)))


def _preact_resnet(depth: int, bottleneck: bool, num_classes: int = 10, in_chans: int = 3,
                   widths: Sequence[int] = (16, 32, 64), shortcut: str = "B") -> PreActResNet:
    per_unit = 9 if bottleneck else 6
    if (depth - 2) % per_unit:
        raise ValueError(f"depth {depth} is not {per_unit}n+2")
    n, widths = (depth - 2) // per_unit, tuple(widths)
    if bottleneck:
        return PreActResNet(PreActBottleneck, (n,) * len(widths), [4 * w for w in widths], widths,
                            stem_chs=widths[0], num_classes=num_classes, in_chans=in_chans,
                            shortcut=shortcut)
    return PreActResNet(PreActBasicBlock, (n,) * len(widths), widths, stem_chs=widths[0],
                        num_classes=num_classes, in_chans=in_chans, shortcut=shortcut)


@register_zoo_model("preact_resnet", paper=_PAPER)
def preact_resnet110(num_classes=10, in_chans=3, **options):
    """Pre-activation ResNet-110 (basic units, 16-32-64), 1.7M parameters.

    Options: ``widths`` (default (16, 32, 64)), ``shortcut`` ("B" default, or "A").

    Example:
        >>> with torch.device("meta"):  # structure only
        ...     model = preact_resnet110(num_classes=100)
        >>> sum(p.numel() for p in model.parameters())
        1736372
    """
    return _preact_resnet(110, False, num_classes, in_chans, **options)


@register_zoo_model("preact_resnet", paper=_PAPER)
def preact_resnet164(num_classes=10, in_chans=3, **options):
    """Pre-activation ResNet-164 (bottleneck units, 16-32-64 x4), 1.7M parameters.

    Example:
        >>> with torch.device("meta"):  # structure only
        ...     model = preact_resnet164(num_classes=100)
        >>> sum(p.numel() for p in model.parameters())
        1726388
    """
    return _preact_resnet(164, True, num_classes, in_chans, **options)


@register_zoo_model("preact_resnet", paper=_PAPER)
def preact_resnet1001(num_classes=10, in_chans=3, **options):
    """Pre-activation ResNet-1001 (bottleneck units, 16-32-64 x4), 10.2M parameters.

    Example:
        >>> import torch
        >>> with torch.device("meta"):
        ...     model = preact_resnet1001(num_classes=100)
    """
    return _preact_resnet(1001, True, num_classes, in_chans, **options)
