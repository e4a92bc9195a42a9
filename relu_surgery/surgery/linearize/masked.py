"""The masked activation of Selective Network Linearization (SNL; Cho et al., ICML 2022).

``y = m * relu(x) + (1 - m) * x``, computed as ``x + m * relu(-x)`` (the same function: where
``x >= 0`` both give ``x``, where ``x < 0`` both give ``(1 - m) x``). ``m`` has one entry per
channel (shape ``(C, 1, 1)`` for a conv feature map, ``(F,)`` after a linear layer) or one per
element (``(C, H, W)``: per pixel); it broadcasts over the batch.

* ``trainable=True``: ``m = clamp(alpha, 0, 1)`` with ``alpha`` a parameter initialised to 1
  (every ReLU on); SNL's L1 penalty pushes entries to 0 (linear). An entry counts as a ReLU while
  ``alpha > threshold``.
* ``trainable=False``: ``m`` is a 0/1 buffer named ``mask`` (saved in the weights file, never
  trained); each 1 is one ReLU kept, each 0 one ReLU turned into the identity.

The layer declares its activation kind (``masked_relu``) and how many ReLUs it evaluates at a
given per-sample output shape (``rs_relu_count``), which is what ReLU counting reads.

Example:
    >>> import torch
    >>> layer = MaskedReLU((2, 1, 1))
    >>> layer.mask[1] = 0.0                      # channel 1 becomes linear
    >>> layer(torch.tensor([[[[-1.0]], [[-2.0]]]])).flatten().tolist()
    [0.0, -2.0]
    >>> layer.rs_relu_count((2, 3, 3))           # channel 0's 9 elements are ReLUs
    9
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = ["MaskedReLU", "ALIVE_THRESHOLD"]

ALIVE_THRESHOLD = 1e-2  # a trainable mask entry above this still counts as a ReLU (as SNL counts)


class MaskedReLU(nn.Module):
    """``m * relu(x) + (1 - m) * x`` with a per-channel or per-element mask ``m`` (see the module doc).

    ``site_shape`` is the per-sample output shape of the site it replaces (known at rewrite time);
    it tells how many ReLUs each mask entry governs (for SNL's penalty).

    Example:
        >>> MaskedReLU((4, 1, 1), trainable=True).alpha.shape
        torch.Size([4, 1, 1])
    """

    rs_activation_kind = "masked_relu"

    def __init__(self, shape, trainable: bool = False, site_shape=None, threshold: float = ALIVE_THRESHOLD):
        super().__init__()
        shape = tuple(int(d) for d in shape)
        self.trainable, self.threshold = bool(trainable), float(threshold)
        self.site_shape = tuple(int(d) for d in site_shape) if site_shape is not None else None
        if self.trainable:
            self.alpha = nn.Parameter(torch.ones(shape))
        else:
            self.register_buffer("mask", torch.ones(shape))

    def weights(self) -> torch.Tensor:
        """The mask ``m`` the forward uses (clamped ``alpha``, or the 0/1 buffer)."""
        return self.alpha.clamp(0.0, 1.0) if self.trainable else self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(x, self.weights().to(x.dtype), torch.relu(-x))

    def kept(self) -> torch.Tensor:
        """Boolean, the mask's shape: which entries are (still) ReLUs."""
        return self.alpha.detach() > self.threshold if self.trainable else self.mask != 0

    def governed(self) -> int:
        """ReLUs per mask entry at ``site_shape`` (1 for a per-element mask)."""
        if self.site_shape is None:
            raise ValueError("this MaskedReLU was built without site_shape")
        return math.prod(self.site_shape) // self.kept().numel()

    def rs_relu_count(self, shape) -> int:
        """ReLUs evaluated at a per-sample output of ``shape`` (the kept entries, broadcast)."""
        kept = self.kept()
        return int(torch.broadcast_to(kept, tuple(shape)).sum()) if kept.device.type != "meta" else math.prod(shape)

    def extra_repr(self) -> str:
        what = "trainable" if self.trainable else "frozen"
        return f"{tuple(self.kept().shape)}, {what}"
