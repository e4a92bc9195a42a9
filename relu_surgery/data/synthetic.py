"""Tiny synthetic datasets in the standard on-disk formats, for examples, doctests and tests.

:func:`write_idx` writes a uint8 tensor as an IDX file (what MNIST and Fashion-MNIST ship as);
:func:`fake_idx_dataset` writes a whole MNIST-layout folder of seeded random images and labels,
which every reader and the training runner accept as ``mnist`` or ``fashion-mnist``.

Example:
    >>> import tempfile
    >>> from relu_surgery.data.datasets import load_arrays
    >>> root = fake_idx_dataset(tempfile.mkdtemp(), train=32, test=8)
    >>> data = load_arrays("fashion-mnist", root)
    >>> tuple(data.train_x.shape), tuple(data.test_y.shape)
    ((32, 1, 28, 28), (8,))
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch

__all__ = ["write_idx", "fake_idx_dataset"]


def write_idx(path: str | Path, values: torch.Tensor) -> Path:
    """Write the uint8 tensor ``values`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``).

    Example:
        >>> import tempfile
        >>> from relu_surgery.data.readers import read_idx
        >>> path = write_idx(tempfile.mkdtemp() + "/labels-idx1-ubyte.gz", torch.tensor([7, 2], dtype=torch.uint8))
        >>> read_idx(path).tolist()
        [7, 2]
    """
    path = Path(path)
    data = values.to(torch.uint8).contiguous()
    head = struct.pack(">I" + "I" * data.dim(), 0x800 + data.dim(), *data.shape)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(head + bytes(data.flatten().tolist()))
    return path


def fake_idx_dataset(root: str | Path, train: int = 64, test: int = 16, classes: int = 10, size: int = 28,
                     seed: int = 0) -> Path:
    """Write an MNIST-layout dataset (the four ``*-idx?-ubyte.gz`` files) of seeded random images to ``root``.

    Each class gets its own mean brightness, so a model can learn something from it. Returns ``root``.

    Example:
        >>> import tempfile
        >>> sorted(p.name for p in fake_idx_dataset(tempfile.mkdtemp(), train=4, test=2).iterdir())[:2]
        ['t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    for split, count in (("train", train), ("t10k", test)):
        labels = torch.randint(0, classes, (count,), generator=gen)
        noise = torch.randint(0, 64, (count, size, size), generator=gen)
        images = noise + (labels * (191 // max(1, classes - 1))).reshape(-1, 1, 1)
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root
