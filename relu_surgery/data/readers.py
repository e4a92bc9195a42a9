"""Readers for the standard on-disk dataset formats, each returning uint8 NCHW tensors + int64 labels.

Every failure (missing file, wrong magic, truncated data, unreadable archive) is one
:class:`~relu_surgery.train.errors.DatasetError` naming the file.

Example:
    >>> import tempfile
    >>> from relu_surgery.data.synthetic import write_idx
    >>> path = write_idx(tempfile.mkdtemp() + "/t10k-images-idx3-ubyte.gz", torch.zeros(16, 28, 28))
    >>> read_idx(path, limit=8).shape
    torch.Size([8, 28, 28])
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
import zlib
from pathlib import Path

import torch

from ..errors import DatasetError

__all__ = ["read_idx", "read_cifar_batch", "read_svhn_mat"]

_READ_ERRORS = (OSError, EOFError, zlib.error, gzip.BadGzipFile)


def _read_prefix(path: Path, nbytes: int | None) -> bytes:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            return handle.read() if nbytes is None else handle.read(nbytes)
    except _READ_ERRORS as exc:
        raise DatasetError(f"{path}: cannot be read, the file is corrupt ({exc})") from None


def read_idx(path: str | Path, limit: int | None = None) -> torch.Tensor:
    """Read an IDX file of unsigned bytes (.gz or raw); ``limit`` keeps the first N items.

    Without ``limit`` the whole file is read and its length checked against the header; with it,
    only the bytes needed are decompressed.

    Example:
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/t10k-labels-idx1-ubyte"
        >>> _ = open(path, "wb").write(struct.pack(">II", 0x801, 3) + bytes([7, 2, 1]))
        >>> labels = read_idx(path)
        >>> labels.tolist(), labels.dtype
        ([7, 2, 1], torch.uint8)
    """
    path = Path(path)
    head = _read_prefix(path, 4)
    if len(head) < 4 or head[:3] != b"\x00\x00\x08" or not 1 <= head[3] <= 4:
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes (bad magic number {head.hex()})")
    ndim = head[3]
    header_len = 4 + 4 * ndim
    head = _read_prefix(path, header_len)
    if len(head) < header_len:
        raise DatasetError(f"{path}: truncated IDX header")
    dims = list(struct.unpack(">" + "I" * ndim, head[4:header_len]))
    item = math.prod(dims[1:])
    count = dims[0] if limit is None else min(dims[0], limit)
    want = header_len + count * item
    data = _read_prefix(path, None if limit is None else want)
    if len(data) < want or (limit is None and len(data) != want):
        raise DatasetError(
            f"{path}: truncated or corrupt (header promises {dims[0] * item} data bytes, "
            f"found {len(data) - header_len})"
        )
    flat = torch.frombuffer(bytearray(data[header_len:want]), dtype=torch.uint8)
    return flat.reshape([count, *dims[1:]])


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batches: plain containers and numpy arrays only, never arbitrary objects.

    No class or function outside this list is ever looked up, so a dataset file cannot run code.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102 - pickle protocol
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def read_cifar_batch(path: str | Path, label_key: str, limit: int | None = None):
    """Read one CIFAR python batch; returns ``(images uint8 [N,3,32,32], labels int64 [N])``.

    ``label_key`` is ``labels`` for CIFAR-10 and ``fine_labels`` for CIFAR-100.

    Example:
        >>> import numpy as np, tempfile
        >>> path = tempfile.mkdtemp() + "/test_batch"
        >>> with open(path, "wb") as f:
        ...     pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [3, 8]}, f)
        >>> x, y = read_cifar_batch(path, "labels")
        >>> tuple(x.shape), y.tolist()
        ((2, 3, 32, 32), [3, 8])
    """
    import numpy as np

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            batch = _ArrayUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, *_READ_ERRORS, ValueError, TypeError, AttributeError, KeyError,
            IndexError, RecursionError) as exc:
        raise DatasetError(f"{path}: not a readable CIFAR python batch ({str(exc).splitlines()[0]})") from None
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        raise DatasetError(f"{path}: not a CIFAR python batch (missing 'data' or {label_key!r})")
    raw = batch["data"]
    if not isinstance(raw, np.ndarray) or raw.dtype.kind not in "iu":
        raise DatasetError(f"{path}: not a CIFAR python batch ('data' is not an array of integers)")
    try:
        data = raw.astype(np.uint8, copy=False)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DatasetError(f"{path}: corrupt CIFAR batch labels ({exc})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DatasetError(f"{path}: corrupt CIFAR batch (data {data.shape}, {len(labels)} labels)")
    if limit is not None:
        data, labels = data[:limit], labels[:limit]
    images = torch.from_numpy(data.copy()).reshape(-1, 3, 32, 32)
    return images, torch.from_numpy(labels.copy())


def read_svhn_mat(path: str | Path):
    """Read an SVHN ``*_32x32.mat`` file (needs scipy); label 10 becomes digit 0.

    Example:
        >>> read_svhn_mat("/nowhere/test_32x32.mat")  # needs scipy; the file must exist and be SVHN's
        Traceback (most recent call last):
        ...
        relu_surgery.errors.DatasetError: ...
    """
    try:
        import scipy.io
    except ImportError:
        raise DatasetError("reading SVHN .mat files needs scipy: pip install scipy") from None
    path = Path(path)
    try:
        mat = scipy.io.loadmat(str(path))
        images = torch.from_numpy(mat["X"]).permute(3, 2, 0, 1).contiguous()
        labels = torch.from_numpy(mat["y"].astype("int64")).reshape(-1)
    except Exception as exc:  # scipy raises its own MatReadError, ValueError, KeyError, OSError
        raise DatasetError(f"{path}: not a readable SVHN .mat file ({exc})") from None
    if images.shape[1:] != (3, 32, 32) or len(labels) != len(images):
        raise DatasetError(f"{path}: corrupt SVHN file (images {tuple(images.shape)})")
    labels[labels == 10] = 0
    return images.to(torch.uint8), labels
