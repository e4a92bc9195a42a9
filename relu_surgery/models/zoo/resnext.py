"""ResNeXt-29 for CIFAR (Xie et al. 2017): after-activation grouped bottlenecks.

Stem conv3x3(64)-BN-ReLU, three stages of three units with outputs 256, 512, 1024 (widen factor
4 x 64, 128, 256); a unit of stage s has ``cardinality`` groups of ``base_width * 2**s`` channels
in its 1x1 -> grouped 3x3 -> 1x1 bottleneck, and a 1x1 conv+BN projection where the shape changes.
The unit is :class:`~relu_surgery.models.zoo.resnet.Bottleneck` (``groups`` = cardinality), so the ReLU
after the addition is ``relu3`` as in the CIFAR ResNets.

Example:
    >>> import torch
    >>> from relu_surgery.models.zoo import create_zoo_model
    >>> tiny = create_zoo_model("resnext29_8x64d", base_width=4)   # same topology, 1/16 width
    >>> tiny(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from .resnet import Bottleneck, CifarResNet
from ._registry import register_zoo_model

__all__ = ["cifar_resnext", "resnext29_8x64d", "resnext29_16x64d"]

_PAPER = "Xie et al. 2017, Aggregated Residual Transformations (CIFAR ResNeXt-29; seed 000 Table 2)"


def cifar_resnext(depth: int = 29, cardinality: int = 8, base_width: int = 64, widen_factor: int = 4,
                  num_classes: int = 10, in_chans: int = 3) -> CifarResNet:
    """Any CIFAR ResNeXt-``depth`` (9n + 2) ``cardinality`` x ``base_width``d.

    Example:
        >>> import torch
        >>> with torch.device("meta"):  # structure only
        ...     model = cifar_resnext(29, cardinality=4, base_width=32)   # not registered
        >>> sum(p.numel() for p in model.parameters())
        6807882
    """
    if (depth - 2) % 9:
        raise ValueError(f"ResNeXt depth must be 9n+2, got {depth}")
    n = (depth - 2) // 9
    out_chs = [64 * widen_factor * 2**i for i in range(3)]
    mid_chs = [cardinality * base_width * 2**i for i in range(3)]
    return CifarResNet(Bottleneck, (n, n, n), out_chs, mid_chs, stem_chs=64, groups=cardinality,
                       num_classes=num_classes, in_chans=in_chans, shortcut="B")


@register_zoo_model("resnext", paper=_PAPER)
def resnext29_8x64d(num_classes=10, in_chans=3, **options):
    """ResNeXt-29 8x64d, 34.4M parameters.

    Options: ``base_width``, ``widen_factor`` (for small test variants).

    Example:
        >>> import torch
        >>> with torch.device("meta"):
        ...     model = resnext29_8x64d(num_classes=100)
    """
    return cifar_resnext(29, 8, num_classes=num_classes, in_chans=in_chans, **options)


@register_zoo_model("resnext", paper=_PAPER)
def resnext29_16x64d(num_classes=10, in_chans=3, **options):
    """ResNeXt-29 16x64d, 68.1M parameters.

    Example:
        >>> import torch
        >>> with torch.device("meta"):
        ...     model = resnext29_16x64d(num_classes=100)
    """
    return cifar_resnext(29, 16, num_classes=num_classes, in_chans=in_chans, **options)
