"""Layers the activation swaps insert: CReLU, NormProp convolutions and NormProp's ReLU correction.

* :class:`CReLU` (seed 002, Definition 1): ``cat(relu(x), relu(-x))`` along channels. With
  ``groups`` > 1 the copies are interleaved per group (``[pos_0, neg_0, pos_1, neg_1, ...]``, each
  block ``C / groups`` channels) so that every group of a grouped or depthwise consumer sees the
  positive and negative copies of its own channels.
* :class:`NormPropConv2d` (seed 002 after Arpit et al. 2016): a weight-normalised convolution,
  ``z = gamma * (W x) / ||W_row||_2 + beta`` per output filter; ``gamma`` is a parameter, or a
  buffer when it is fixed (NormProp3: ``gamma = 1/1.21``, not trained).
* :class:`NormPropCorrection`: ``c * (x - 1/sqrt(2*pi))`` with ``c = (1/2 - 1/(2*pi))^(-1/2)``, the
  constants that make ``ReLU(z)`` zero-mean and unit-variance for ``z ~ N(0, 1)`` (seed 002
  prints E[ReLU(z)] as 1/(2*pi) in its Proposition 2; the mean is 1/sqrt(2*pi), which its NormProp
  formula subtracts).

Example:
    >>> import torch
    >>> CReLU()(torch.tensor([[1.0, -2.0]]))
    tensor([[1., 0., 0., 2.]])
    >>> CReLU(groups=2)(torch.tensor([[1.0, -2.0]]))
    tensor([[1., 0., 0., 2.]])
    >>> CReLU(groups=2)(torch.tensor([[1.0, -2.0, 3.0, -4.0]]))
    tensor([[1., 0., 0., 2., 3., 0., 0., 4.]])
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "CReLU", "NormPropConv2d", "NormPropCorrection", "RELU_MEAN", "NORMPROP_SCALE",
    "NORMPROP3_GAMMA",
]

RELU_MEAN = 1.0 / math.sqrt(2.0 * math.pi)  # E[ReLU(z)], z ~ N(0, 1)
NORMPROP_SCALE = (0.5 - 1.0 / (2.0 * math.pi)) ** -0.5  # c = (1/2 - 1/(2 pi))^(-1/2)
NORMPROP3_GAMMA = 1.0 / 1.21  # NormProp3's fixed gamma (NormProp's suggested initial value)


class CReLU(nn.Module):
    """Concatenated ReLU: ``(relu(x), relu(-x))`` along ``dim``, interleaved per group.

    Output has twice the channels. ``groups`` must divide the channel count.

    Example:
        >>> CReLU()(torch.randn(2, 3, 4, 4)).shape
        torch.Size([2, 6, 4, 4])
    """

    def __init__(self, groups: int = 1, dim: int = 1):
        super().__init__()
        self.groups = int(groups)
        self.dim = int(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return torch.cat((F.relu(x), F.relu(-x)), dim=self.dim)
        dim = self.dim % x.dim()
        per_group = x.unflatten(dim, (self.groups, -1))
        both = torch.cat((F.relu(per_group), F.relu(-per_group)), dim=dim + 1)
        return both.flatten(dim, dim + 1)

    def extra_repr(self) -> str:
        return f"groups={self.groups}" if self.groups != 1 else ""


class NormPropConv2d(nn.Conv2d):
    """Weight-normalised conv: ``gamma * conv(x, W / ||W_row||) + beta`` (per output filter).

    ``learn_gamma=False`` stores ``gamma`` as a buffer (saved, never trained: NormProp3).
    ``bias=False`` drops ``beta``. The weight keeps the name ``weight`` so checkpoints line up.

    Example:
        >>> conv = NormPropConv2d(3, 4, 3, padding=1, learn_gamma=False, gamma=1 / 1.21)
        >>> [n for n, _ in conv.named_parameters()], [n for n, _ in conv.named_buffers()]
        (['weight', 'beta'], ['gamma'])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", learn_gamma: bool = True,
                 gamma: float = 1.0, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, False,
                         padding_mode, device, dtype)
        init = torch.full((out_channels,), float(gamma), device=device, dtype=dtype)
        if learn_gamma:
            self.gamma = nn.Parameter(init)
        else:
            self.register_buffer("gamma", init)
        self.beta = nn.Parameter(torch.zeros(out_channels, device=device, dtype=dtype)) if bias else None

    @classmethod
    def like(cls, conv: nn.Conv2d, bias: bool = True, learn_gamma: bool = True,
             gamma: float = 1.0) -> "NormPropConv2d":
        """A NormProp conv with ``conv``'s geometry and a copy of its weight.

        Example:
            >>> NormPropConv2d.like(nn.Conv2d(3, 8, 3, stride=2)).stride
            (2, 2)
        """
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                  conv.dilation, conv.groups, bias, conv.padding_mode, learn_gamma, gamma,
                  device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(conv.weight)
        return new

    def filter_norms(self) -> torch.Tensor:
        """``||W_row||_2`` for each output filter."""
        return self.weight.flatten(1).norm(dim=1)

    def normalized_weight(self) -> torch.Tensor:
        """``gamma * W / ||W_row||`` (the weight the convolution uses)."""
        scale = self.gamma / self.filter_norms()
        return self.weight * scale.reshape(-1, *([1] * (self.weight.dim() - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.normalized_weight(), self.beta)

    def extra_repr(self) -> str:
        fixed = "" if isinstance(self.gamma, nn.Parameter) else ", gamma fixed"
        return super().extra_repr().replace(", bias=False", "") + f", beta={self.beta is not None}{fixed}"


class NormPropCorrection(nn.Module):
    """``c * (x - 1/sqrt(2 pi))``, c = ``(1/2 - 1/(2 pi))^(-1/2)``: NormProp's standardised ReLU output.

    Example:
        >>> z = torch.randn(1_000_000, generator=torch.Generator().manual_seed(0))
        >>> y = NormPropCorrection()(torch.relu(z))
        >>> abs(y.mean().item()) < 0.01, abs(y.var().item() - 1) < 0.01
        (True, True)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - RELU_MEAN) * NORMPROP_SCALE

    def extra_repr(self) -> str:
        return f"mean={RELU_MEAN:.6f}, scale={NORMPROP_SCALE:.6f}"
