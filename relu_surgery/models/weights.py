"""Load a local checkpoint safely: safetensors, or torch files with ``weights_only=True``.

Never unpickles arbitrary objects. A checkpoint that does not fit raises :class:`WeightsError`
with one line saying what is missing, unexpected or misshapen.

Example:
    >>> import tempfile, torch, torch.nn as nn
    >>> m = nn.Linear(2, 2)
    >>> path = tempfile.mktemp(suffix=".pt"); torch.save(m.state_dict(), path)
    >>> load_weights(nn.Linear(2, 2), path)
    2
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..errors import WeightsError

__all__ = ["read_checkpoint", "load_weights"]


def read_checkpoint(path) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (``.safetensors`` or a weights-only torch file).

    Nested ``{"state_dict": ...}`` / ``{"model": ...}`` checkpoints are unwrapped.

    Example:
        >>> import tempfile
        >>> path = tempfile.mktemp(suffix=".pt"); torch.save({"model": nn.Linear(2, 3).state_dict()}, path)
        >>> sorted(read_checkpoint(path))  # a nested {"model": ...} checkpoint is unwrapped
        ['bias', 'weight']
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # noqa: PLC0415

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, unsafe pickle, wrong format: one line for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot read weights file {path}: {first}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return state


def load_weights(model: nn.Module, path) -> int:
    """Load ``path`` into ``model`` strictly; returns the number of tensors loaded.

    Example:
        >>> import tempfile
        >>> path = tempfile.mktemp(suffix=".pt"); torch.save({"weight": torch.zeros(3, 3)}, path)
        >>> load_weights(nn.Linear(2, 2), path)
        Traceback (most recent call last):
        ...
        relu_surgery.errors.WeightsError: ... does not fit the model: 1 missing (e.g. bias); 1 shape mismatch (e.g. weight (3, 3) vs (2, 2))
    """
    state = read_checkpoint(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshapen = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                 for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or misshapen:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", misshapen)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise WeightsError(f"{Path(path).name} does not fit the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return len(state)
