"""Wide ResNets (Zagoruyko & Komodakis 2016): pre-activation basic units, WRN-d-k.

WRN-d-k has n = (d - 4) / 6 units per stage, stage widths 16k, 32k, 64k after a 16-channel stem
conv, 1x1 conv projection shortcuts (on the pre-activated input) where the shape changes, and
optional dropout between the two 3x3 convs of each unit (``dropout``, default 0; the "-D" rows of
seed 000 Table 2 are the WRN paper's dropout runs: 0.3 on CIFAR, 0.4 on SVHN).

Built from :class:`~relu_surgery.models.zoo.preact_resnet.PreActResNet`, so the module names are the
pre-activation ones (``bn1``, ``relu``, ``conv1``, ``bn2``, ``dropout``, ``conv2``, ``shortcut``;
``bn_final``/``relu_final`` before pooling) and the first unit / final BN+ReLU follow seed 003.

Example:
    >>> import torch
    >>> from relu_surgery.models.zoo import create_zoo_model
    >>> model = create_zoo_model("wrn_52_1", num_classes=10, dropout=0.3)
    >>> model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from .preact_resnet import PreActBasicBlock, PreActResNet
from ._registry import register_zoo_model

__all__ = ["wide_resnet", "wrn_28_10", "wrn_40_4", "wrn_52_1", "wrn_52_10"]

_PAPER = "Zagoruyko & Komodakis 2016, Wide Residual Networks (seed 000 Table 2)"


def wide_resnet(depth: int, widen_factor: int, num_classes: int = 10, in_chans: int = 3,
                dropout: float = 0.0) -> PreActResNet:
    """Any WRN-``depth``-``widen_factor`` (``depth`` = 6n + 4).

    Example:
        >>> import torch
        >>> with torch.device("meta"):  # structure only
        ...     model = wide_resnet(16, 2, num_classes=10)   # WRN-16-2, not registered
        >>> sum(p.numel() for p in model.parameters())
        691674
    """
    if (depth - 4) % 6:
        raise ValueError(f"Wide ResNet depth must be 6n+4, got {depth}")
    n = (depth - 4) // 6
    widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
    return PreActResNet(PreActBasicBlock, (n, n, n), widths, stem_chs=16, num_classes=num_classes,
                        in_chans=in_chans, shortcut="B", drop_rate=dropout)


@register_zoo_model("wide_resnet", paper=_PAPER)
def wrn_28_10(num_classes=10, in_chans=3, **options):
    """WRN-28-10, 36.5M parameters.

    Example:
        >>> import torch
        >>> with torch.device("meta"):
        ...     model = wrn_28_10(num_classes=100, dropout=0.3)
    """
    return wide_resnet(28, 10, num_classes, in_chans, **options)


@register_zoo_model("wide_resnet", paper=_PAPER)
def wrn_40_4(num_classes=10, in_chans=3, **options):
    """WRN-40-4, 8.9M parameters.

    Example:
        >>> import torch
        >>> with torch.device("meta"):  # structure only
        ...     model = wrn_40_4(num_classes=100)
        >>> sum(p.numel() for p in model.parameters())
        8972340
    """
    return wide_resnet(40, 4, num_classes, in_chans, **options)


@register_zoo_model("wide_resnet", paper=_PAPER)
def wrn_52_1(num_classes=10, in_chans=3, **options):
    """WRN-52-1, 0.76M parameters (seed 000 uses it on SVHN, with and without dropout).

    Example:
        >>> import torch
        >>> with torch.device("meta"):  # structure only
        ...     model = wrn_52_1(num_classes=10, dropout=0.4)
        >>> sum(p.numel() for p in model.parameters())
        758362
    """
    return wide_resnet(52, 1, num_classes, in_chans, **options)


@register_zoo_model("wide_resnet", paper=_PAPER)
def wrn_52_10(num_classes=10, in_chans=3, **options):
    """WRN-52-10, 75.2M parameters.

    Example:
        >>> import torch
        >>> with torch.device("meta"):
        ...     model = wrn_52_10(num_classes=100)
    """
    return wide_resnet(52, 10, num_classes, in_chans, **options)
