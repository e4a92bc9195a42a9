"""The 12-layer MLP of seed 000 (EraseReLU), Sec. 3.2 / Fig. 3(c), for MNIST.

"Each fully-connected layer in this MLP has one thousand output neurons followed by
BN+ReLU+Dropout, except for the last one which maps the one thousand input neurons to ten
neurons": flatten -> 11 x :class:`MLPUnit` (Linear(1000) -> BatchNorm1d -> ReLU -> Dropout) ->
Linear(1000, num_classes). The dropout rate is not in the main text (the supplement is not
available to us); the default is the common 0.5, set it with ``dropout``.

Example:
    >>> import torch
    >>> from relu_surgery.models.zoo import create_zoo_model
    >>> mlp = create_zoo_model("mlp12")
    >>> mlp(torch.randn(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from ._layers import init_weights
from ._registry import register_zoo_model

__all__ = ["MLPUnit", "MLP", "mlp12"]

_PAPER = "Dong et al. 2017, EraseReLU (seed 000), Sec. 3.2"


class MLPUnit(nn.Module):
    """Linear -> BatchNorm1d -> ReLU -> Dropout (``fc``, ``bn``, ``relu``, ``dropout``).

    Example:
        >>> MLPUnit(784, 1000)(torch.randn(2, 784)).shape
        torch.Size([2, 1000])
    """

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.5):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)
        self.bn = nn.BatchNorm1d(out_features)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.fc(x)))
        return x if self.dropout is None else self.dropout(x)


class MLP(nn.Module):
    """Flatten -> ``num_hidden`` :class:`MLPUnit` of width ``hidden`` -> Linear classifier.

    Example:
        >>> MLP(28 * 28, num_hidden=2, hidden=64)(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_features: int, num_hidden: int = 11, hidden: int = 1000,
                 num_classes: int = 10, dropout: float = 0.5):
        super().__init__()
        self.flatten = nn.Flatten(1)
        units = [MLPUnit(in_features if i == 0 else hidden, hidden, dropout) for i in range(num_hidden)]
        self.layers = nn.Sequential(*units)
        self.fc = nn.Linear(hidden if num_hidden else in_features, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.flatten(x)))


@register_zoo_model("mlp", input_size=(1, 28, 28), paper=_PAPER)
def mlp12(num_classes=10, in_chans=1, input_size: Sequence[int] = (28, 28), dropout=0.5, hidden=1000):
    """12-layer MLP (11 x Linear(1000)-BN-ReLU-Dropout + Linear(1000, classes)) for MNIST.

    ``input_size`` is the spatial size; the input is flattened to ``in_chans * prod(input_size)``.

    Example:
        >>> with torch.device("meta"):  # structure only
        ...     model = mlp12(num_classes=10, in_chans=3, input_size=(32, 32))   # CIFAR-sized
        >>> sum(p.numel() for p in model.parameters())
        13115010
    """
    return MLP(in_chans * math.prod(input_size), 11, hidden, num_classes, dropout)
