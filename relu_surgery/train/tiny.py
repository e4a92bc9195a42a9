"""Tiny reference models for smoke runs, tests and benchmarks (``relu_surgery.train.tiny:tiny_cnn``).

Example:
    >>> import torch
    >>> model = tiny_cnn(num_classes=10, in_chans=1)
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import tempfile

import torch.nn as nn

from ..data.synthetic import fake_idx_dataset
from .config import TrainConfig

__all__ = ["tiny_cnn", "tiny_mlp", "smoke_config"]


def tiny_cnn(num_classes: int = 10, in_chans: int = 3, width: int = 16, norm: bool = True,
             dropout: float = 0.0) -> nn.Sequential:
    """Two conv-[BN]-ReLU-pool stages, global pooling and a linear head (any input size >= 4).

    ``norm=False`` drops BatchNorm (a model whose DDP run matches a single-process run exactly).

    Example:
        >>> sum(p.numel() for p in tiny_cnn(width=4).parameters())
        510
    """

    def unit(cin: int, cout: int) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not norm)]
        layers += [nn.BatchNorm2d(cout)] if norm else []
        return layers + [nn.ReLU(inplace=True), nn.MaxPool2d(2)]

    head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    head += [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential(*unit(in_chans, width), *unit(width, 2 * width), *head, nn.Linear(2 * width, num_classes))


def tiny_mlp(num_classes: int = 10, in_chans: int = 1, image_size: int = 28, hidden: int = 128,
             depth: int = 2, norm: bool = True, dropout: float = 0.0) -> nn.Sequential:
    """``depth`` Linear-[BN]-ReLU-[Dropout] units on the flattened image, then a linear classifier.

    Example:
        >>> import torch
        >>> tiny_mlp(hidden=8, depth=1)(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_chans * image_size * image_size
    for _ in range(depth):
        layers += [nn.Linear(width, hidden)] + ([nn.BatchNorm1d(hidden)] if norm else []) + [nn.ReLU(inplace=True)]
        layers += [nn.Dropout(dropout)] if dropout else []
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


def smoke_config(dataset: str = "fashion-mnist", train: int = 64, test: int = 32, root=None, **options) -> TrainConfig:
    """A :class:`TrainConfig` for a smoke run on a fake MNIST-layout ``dataset`` (seeded random images).

    The files go to ``root`` (a new temporary directory when None). Defaults: 1 epoch, batch 32,
    no progress bars; ``options`` override any field.

    Example:
        >>> cfg = smoke_config(batch_size=16)
        >>> cfg.dataset, cfg.epochs, cfg.batch_size
        ('fashion-mnist', 1, 16)
    """
    root = fake_idx_dataset(root or tempfile.mkdtemp(), train=train, test=test)
    return TrainConfig(**{"dataset": dataset, "data_dir": str(root), "epochs": 1, "batch_size": 32,
                          "progress": False, **options})
