"""Atomic checkpoints and RNG capture, loadable with ``torch.load(weights_only=True)``.

A checkpoint holds the model, optimiser and schedule states, the position in the run (epoch, step
within it, global step), the partial sums of an unfinished epoch, the metrics history and every
rank's RNG states (torch CPU/CUDA, Python, NumPy, the augmentation generator). Files are written
by :func:`relu_surgery.atomic.atomic_write` (a temporary name in the same directory, fsynced and
renamed): a kill leaves either the old or the new checkpoint, never half of one.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "checkpoint.pt"
    >>> atomic_save({"weights": torch.ones(2)}, path)
    >>> load_checkpoint(path)["weights"]
    tensor([1., 1.])
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write
from ..models.weights import describe_load_error
from .errors import CheckpointError

__all__ = ["CHECKPOINT_NAME", "FORMAT", "atomic_save", "load_checkpoint", "capture_rng", "restore_rng"]

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = "relu_surgery.train/1"


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically.

    Example:
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/state.pt"
        >>> atomic_save({"step": torch.tensor(3)}, path)
        >>> load_checkpoint(path)["step"].item()
        3
    """
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by the runner (weights only, never arbitrary objects).

    Example:
        >>> load_checkpoint("/nowhere/checkpoint.pt")
        Traceback (most recent call last):
        ...
        relu_surgery.train.errors.CheckpointError: no checkpoint at /nowhere/checkpoint.pt
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip/pickle/EOF errors come in many types
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({describe_load_error(exc)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a relu_surgery training checkpoint")
    return state


def capture_rng(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """This process's RNG states as plain tensors/lists (``weights_only``-loadable).

    Example:
        >>> state = capture_rng({"epoch": 2})
        >>> sorted(state)[:3], state["epoch"]
        (['epoch', 'numpy', 'python'], 2)
    """
    import numpy as np

    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(mt), gauss],
        "numpy": {"keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    state.update(extra or {})
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng` captured (CUDA states only where CUDA is in use).

    Example:
        >>> state = capture_rng()
        >>> first = torch.rand(1)
        >>> restore_rng(state)
        >>> torch.equal(torch.rand(1), first)
        True
    """
    import numpy as np

    torch.set_rng_state(state["torch"])
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype("uint32"), npy["pos"],
                         npy["has_gauss"], npy["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
