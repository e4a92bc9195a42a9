"""The CIFAR Inception-V2 of seed 000 (EraseReLU), Sec. 4.2 / Fig. 2(e).

Paper: "the 5x5 convolutional layer is replaced by two 3x3 convolutional layers. The proportions of
output channels from the 1x1, 3x3, 5x5 convolution branches and the pooling branch are 1:8:2:1 in
one Inception module. Our Inception-V2 on CIFAR has a convolutional layer with 64 output channels at
first, followed by three Inception stages. Each stage contains ten Inception modules, where the
base output channels are 16, 32 and 64, respectively."

Built here (details the text leaves open are marked *):

- stem: conv3x3(64)-BN-ReLU;
- :class:`InceptionModule` with base width b, four branches of conv-BN-ReLU units
  (:class:`~relu_surgery.models.zoo._layers.ConvBnAct`), merged by ``torch.cat``:
  1x1(b) | 1x1(b*) -> 3x3(8b) | 1x1(b*) -> 3x3(2b) -> 3x3(2b) | avgpool3x3* -> 1x1(b),
  so a module outputs 12b channels (192, 384, 768) and every branch ends with its own ReLU;
- three stages of ten modules (b = 16, 32, 64), with a 3x3 stride-2 max pooling* between stages
  (32 -> 16 -> 8 pixels), then global average pooling and ``Linear(12 * 64, num_classes)``.

Example:
    >>> import torch
    >>> from relu_surgery.models.zoo import create_zoo_model
    >>> net = create_zoo_model("inception_v2_cifar", depth=1)   # 1 module per stage
    >>> net(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ._layers import ClassifierHead, ConvBnAct, init_weights
from ._registry import register_zoo_model

__all__ = ["InceptionModule", "InceptionV2Cifar", "inception_v2_cifar"]

_PAPER = "Dong et al. 2017, EraseReLU (seed 000), Sec. 4.2 (Inception-V2 of Ioffe & Szegedy 2015)"


class InceptionModule(nn.Module):
    """Inception-V2 module: 1x1 | 1x1->3x3 | 1x1->3x3->3x3 | avgpool->1x1, concatenated.

    Branch widths are ``base * ratios`` (default 1:8:2:1); the 1x1 reductions have ``base`` channels.

    Example:
        >>> m = InceptionModule(64, base=16)
        >>> m.out_chs, m(torch.randn(1, 64, 8, 8)).shape
        (192, torch.Size([1, 192, 8, 8]))
    """

    def __init__(self, in_chs: int, base: int, ratios: Sequence[int] = (1, 8, 2, 1)):
        super().__init__()
        c1, c3, c5, cp = (base * r for r in ratios)
        self.branch1x1 = ConvBnAct(in_chs, c1, 1)
        self.branch3x3 = nn.Sequential(ConvBnAct(in_chs, base, 1), ConvBnAct(base, c3, 3))
        self.branch3x3dbl = nn.Sequential(ConvBnAct(in_chs, base, 1), ConvBnAct(base, c5, 3),
                                          ConvBnAct(c5, c5, 3))
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), ConvBnAct(in_chs, cp, 1))
        self.out_chs = c1 + c3 + c5 + cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1x1(x), self.branch3x3(x), self.branch3x3dbl(x), self.branch_pool(x)]
        return torch.cat(branches, 1)


class InceptionV2Cifar(nn.Module):
    """Stem conv-BN-ReLU, stages of :class:`InceptionModule` separated by max pooling, head.

    Example:
        >>> InceptionV2Cifar(depth=1, widths=(4, 8, 16))(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, depth: int = 10, widths: Sequence[int] = (16, 32, 64), stem_chs: int = 64,
                 ratios: Sequence[int] = (1, 8, 2, 1), num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth (Inception modules per stage) must be >= 1, got {depth}")
        self.stem = ConvBnAct(in_chans, stem_chs, 3)
        in_chs = stem_chs
        for i, base in enumerate(widths):
            if i > 0:
                self.add_module(f"pool{i + 1}", nn.MaxPool2d(3, stride=2, padding=1))
            mods = []
            for _ in range(depth):
                mods.append(InceptionModule(in_chs, base, ratios))
                in_chs = mods[-1].out_chs
            self.add_module(f"layer{i + 1}", nn.Sequential(*mods))
        self.num_stages = len(widths)
        self.head = ClassifierHead(in_chs, num_classes)
        init_weights(self, "kaiming")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(self.num_stages):
            if i > 0:
                x = getattr(self, f"pool{i + 1}")(x)
            x = getattr(self, f"layer{i + 1}")(x)
        return self.head(x)


@register_zoo_model("inception", paper=_PAPER)
def inception_v2_cifar(num_classes=10, in_chans=3, depth=10, widths=(16, 32, 64), ratios=(1, 8, 2, 1)):
    """CIFAR Inception-V2 (64-channel stem, 3 stages x 10 Inception modules, base 16/32/64).

    Example:
        >>> with torch.device("meta"):  # structure only
        ...     model = inception_v2_cifar(num_classes=100)
        >>> sum(p.numel() for p in model.parameters())
        9337764
    """
    return InceptionV2Cifar(depth, widths, 64, ratios, num_classes, in_chans)
