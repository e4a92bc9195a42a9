"""The 31-layer VGG-style and residual-style nets of seed 000 (EraseReLU), Sec. 3.2 / Fig. 2-3.

"Both of them use a 3-by-3 convolutional layer with 16 filters at the first layer. There are three
stages following the first convolutional layer, where each stage has ten modules with the different
number of output channels, i.e., 16, 32 and 64 ... each of these two models has thirty-one weighted
layers", and "the module in the networks used in Figure 3 only has one ReLU layer". So:

- :class:`VGGModule`: conv3x3 -> BN -> ReLU;
- :class:`ResidualModule`: ReLU(S(x) + BN(conv3x3(x))): one conv+BN in the residual branch,
  the ReLU after the addition; S is the identity, or a 1x1 conv+BN projection where the first
  module of stages 2 and 3 halves the resolution (stride 2) and doubles the channels.

31 weighted layers = the stem conv + 30 modules' convs, counted as the paper does; the global
average pooling + ``Linear(64, num_classes)`` classifier (which would make it 32) and the two
1x1 projection convs of the residual net are not counted. ``depth`` sets the modules per stage
(default 10; Fig. 3(d) varies the total depth 3 * depth + 1).

Example:
    >>> import torch
    >>> from relu_surgery.models.zoo import create_zoo_model
    >>> vgg = create_zoo_model("vgg_style31", num_classes=100)
    >>> vgg(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 100])
    >>> deeper = create_zoo_model("residual_style31", depth=20)   # 61 weighted layers
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ._layers import ClassifierHead, ConvBnAct, conv2d, init_weights, make_shortcut, maybe
from ._registry import register_zoo_model

__all__ = ["VGGModule", "ResidualModule", "StackedNet", "vgg_style31", "residual_style31"]

_PAPER = "Dong et al. 2017, EraseReLU (seed 000), Sec. 3.2"


class VGGModule(ConvBnAct):
    """VGG-style module of seed 000 Fig. 2(a): conv3x3 -> BN -> ReLU (``conv``, ``bn``, ``relu``).

    Example:
        >>> VGGModule(16, 32, stride=2)(torch.randn(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__(in_chs, out_chs, 3, stride)


class ResidualModule(nn.Module):
    """Residual-style module with one weighted layer: ReLU(S(x) + BN(conv3x3(x))).

    Example:
        >>> ResidualModule(16, 32, stride=2)(torch.randn(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__()
        self.conv = conv2d(in_chs, out_chs, 3, stride)
        self.bn = nn.BatchNorm2d(out_chs)
        self.shortcut = make_shortcut(in_chs, out_chs, stride, kind="B")
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)) + maybe(self.shortcut, x))


class StackedNet(nn.Module):
    """Stem conv3x3-BN-ReLU, then stages of identical modules (stride 2 opening stages 2+), head.

    Example:
        >>> net = StackedNet(VGGModule, depth=2)
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, module: type[nn.Module], depth: int = 10, widths: Sequence[int] = (16, 32, 64),
                 stem_chs: int = 16, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth (modules per stage) must be >= 1, got {depth}")
        self.stem = ConvBnAct(in_chans, stem_chs, 3)
        in_chs = stem_chs
        for i, width in enumerate(widths):
            mods = [module(in_chs if j == 0 else width, width, stride=2 if i > 0 and j == 0 else 1)
                    for j in range(depth)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*mods))
            in_chs = width
        self.num_stages = len(widths)
        self.head = ClassifierHead(in_chs, num_classes)
        init_weights(self, "kaiming")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.head(x)


@register_zoo_model("stacked31", paper=_PAPER)
def vgg_style31(num_classes=10, in_chans=3, depth=10, widths=(16, 32, 64)):
    """31-layer VGG-style net (3 stages x 10 conv-BN-ReLU modules, 16/32/64 channels).

    Example:
        >>> with torch.device("meta"):  # structure only
        ...     model = vgg_style31(num_classes=100, depth=5)   # 16 weighted layers
        >>> sum(p.numel() for p in model.parameters())
        226964
    """
    return StackedNet(VGGModule, depth, widths, num_classes=num_classes, in_chans=in_chans)


@register_zoo_model("stacked31", paper=_PAPER)
def residual_style31(num_classes=10, in_chans=3, depth=10, widths=(16, 32, 64)):
    """31-layer residual-style net (3 stages x 10 one-conv residual modules, 16/32/64 channels).

    Example:
        >>> with torch.device("meta"):  # structure only
        ...     model = residual_style31(num_classes=100)
        >>> sum(p.numel() for p in model.parameters())
        472756
    """
    return StackedNet(ResidualModule, depth, widths, num_classes=num_classes, in_chans=in_chans)
