"""On-device data order and augmentation for tensor datasets: random crop (zero padding) + flip.

Randomness is a pure function of ``(seed, epoch, step)``: the epoch's sample order comes from a CPU
generator seeded with ``(seed, epoch)`` and each global batch's crop offsets and flips from a
device generator re-seeded with ``(seed, epoch, step)``. A resumed run, or N DDP ranks each taking
their slice of the global batch, therefore see exactly the same samples, augmented the same way.

Example:
    >>> import torch
    >>> from relu_surgery.train.augment import DeviceAugment
    >>> aug = DeviceAugment(mean=(0.5,), std=(0.25,), pad=4, flip=True, device=torch.device("cpu"))
    >>> x = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    >>> params = aug.sample(batch=8, seed=0, epoch=0, step=0)
    >>> aug.apply(x, params).shape
    torch.Size([8, 1, 28, 28])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["mix_seed", "epoch_permutation", "AugmentParams", "DeviceAugment"]

_MASK = (1 << 64) - 1


def mix_seed(*parts: int) -> int:
    """Hash integers into one 63-bit seed (splitmix64 rounds); equal inputs give equal seeds.

    Example:
        >>> mix_seed(0, 1) == mix_seed(0, 1) != mix_seed(1, 0)
        True
    """
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = (h ^ (int(part) & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        h ^= h >> 31
        h = h * 0x94D049BB133111EB & _MASK
        h ^= h >> 29
    return h & ((1 << 63) - 1)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the ``n`` training samples in ``epoch`` (CPU int64), the same on every rank.

    Example:
        >>> torch.equal(epoch_permutation(10, 0, 3), epoch_permutation(10, 0, 3))
        True
    """
    gen = torch.Generator().manual_seed(mix_seed(seed, epoch, 0x0DA7A))
    return torch.randperm(n, generator=gen)


@dataclass(frozen=True)
class AugmentParams:
    """Per-sample crop offsets (top, left) and flip flags of one batch, on the data device.

    Example:
        >>> params = DeviceAugment((0.5,), (0.5,), pad=4, flip=True, device=torch.device("cpu")).sample(8, 0, 0, 0)
        >>> tuple(params.slice(0, 2).top.shape)
        (2,)
    """

    top: torch.Tensor
    left: torch.Tensor
    flip: torch.Tensor

    def slice(self, start: int, stop: int) -> "AugmentParams":
        """The parameters of samples ``start:stop`` (a rank's share of the global batch)."""
        return AugmentParams(self.top[start:stop], self.left[start:stop], self.flip[start:stop])


class DeviceAugment:
    """Normalise uint8 batches on their device, optionally with crop (pad ``pad``) and flip.

    ``pad=0`` and ``flip=False`` give plain normalisation ``(x / 255 - mean) / std``.

    Example:
        >>> aug = DeviceAugment((0.5,), (0.5,), pad=0, flip=False, device=torch.device("cpu"))
        >>> y = aug.apply(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8))  # (1 - 0.5) / 0.5
        >>> aug.active, y.dtype, [round(v, 4) for v in y.flatten().tolist()]
        (False, torch.float32, [1.0, 1.0, 1.0, 1.0])
    """

    def __init__(self, mean, std, pad: int, flip: bool, device: torch.device) -> None:
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -mean_t / std_t
        self.pad, self.flip, self.device = pad, flip, device
        self.generator = torch.Generator(device=device)

    @property
    def active(self) -> bool:
        """True when batches are cropped or flipped."""
        return self.pad > 0 or self.flip

    def sample(self, batch: int, seed: int, epoch: int, step: int) -> AugmentParams:
        """Draw the parameters of one global batch from the generator seeded with (seed, epoch, step)."""
        gen = self.generator.manual_seed(mix_seed(seed, epoch, step, 0xA06))
        offsets = torch.randint(0, 2 * self.pad + 1, (2, batch), generator=gen, device=self.device)
        coin = torch.rand(batch, generator=gen, device=self.device)
        flip = coin < 0.5 if self.flip else torch.zeros(batch, dtype=torch.bool, device=self.device)
        return AugmentParams(offsets[0], offsets[1], flip)

    def apply(self, x: torch.Tensor, params: AugmentParams | None = None) -> torch.Tensor:
        """Crop/flip ``x`` (uint8 ``[N, C, H, W]``) with ``params`` if given, then normalise to float32."""
        if params is not None and self.active:
            x = self._crop_flip(x, params)
        return torch.addcmul(self.shift, x.float(), self.scale)

    def _crop_flip(self, x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
        n, c, h, w = x.shape
        xp = torch.nn.functional.pad(x, (self.pad,) * 4) if self.pad else x
        rows = p.top[:, None] + torch.arange(h, device=x.device)
        cols_fwd = torch.arange(w, device=x.device)
        cols = p.left[:, None] + torch.where(p.flip[:, None], (w - 1) - cols_fwd, cols_fwd)
        ni = torch.arange(n, device=x.device)[:, None, None, None]
        ci = torch.arange(c, device=x.device)[None, :, None, None]
        return xp[ni, ci, rows[:, None, :, None], cols[:, None, None, :]]
