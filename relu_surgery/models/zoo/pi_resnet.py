"""The CIFAR ResNet-18 of the private-inference papers (DeepReDuce, SNL): 557,056 ReLUs at 32x32.

The "CIFAR" variant of He et al.'s ResNet-18: a 3x3 stem convolution (stride 1, 64 channels) with
BN and ReLU and no max-pool, then four stages of two after-activation basic units (widths
64-128-256-512, strides 1-2-2-2, 1x1 conv+BN projection shortcuts), global average pooling and
one linear layer. At a 32x32 input its ReLUs per sample are 64x32x32 (stem) + 4 x 64x32x32 +
4 x 128x16x16 + 4 x 256x8x8 + 4 x 512x4x4 = 557,056, the count DeepReDuce (Jha et al., 2021) and
SNL (Cho et al., 2022) start from; 11.17M parameters with 10 classes.

Example:
    >>> import torch
    >>> from relu_surgery.models.zoo import create_zoo_model
    >>> model = create_zoo_model("cifar_resnet18", num_classes=100)
    >>> model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 100])
"""

from __future__ import annotations

from typing import Sequence

from ._registry import register_zoo_model
from .resnet import BasicBlock, CifarResNet

__all__ = ["cifar_resnet18"]

_PI = "Jha et al. 2021 (DeepReDuce), Cho et al. 2022 (SNL): the CIFAR ResNet-18 of private inference"


@register_zoo_model("cifar_resnet", paper=_PI)
def cifar_resnet18(num_classes=10, in_chans=3, widths: Sequence[int] = (64, 128, 256, 512), **options):
    """ResNet-18 for 32x32 inputs (3x3 stem, no max-pool, 64-512), 11.17M parameters, 557,056 ReLUs.

    Example:
        >>> model = cifar_resnet18(num_classes=10, in_chans=1)   # e.g. Fashion-MNIST
    """
    options.setdefault("shortcut", "B")
    return CifarResNet(BasicBlock, (2,) * len(widths), tuple(widths), num_classes=num_classes, in_chans=in_chans,
                       **options)
