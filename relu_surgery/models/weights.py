"""Load a local checkpoint safely: safetensors, or torch files with ``weights_only=True``.

Never unpickles arbitrary objects. The layouts training scripts write are understood: a state dict
nested under ``state_dict`` / ``model`` / ``model_state_dict``, and keys prefixed by ``module.``
(DataParallel / DistributedDataParallel) or ``_orig_mod.`` (``torch.compile``). A checkpoint that
does not fit raises :class:`WeightsError` with one line naming the first keys that are missing,
unexpected or misshapen.

Example:
    >>> import tempfile, torch, torch.nn as nn
    >>> m = nn.Linear(2, 2)
    >>> path = tempfile.mktemp(suffix=".pt")
    >>> torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in m.state_dict().items()}}, path)
    >>> load_weights(nn.Linear(2, 2), path)
    2
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import WeightsError

__all__ = ["read_checkpoint", "load_weights", "fit_problems", "describe_load_error", "strip_wrapper_prefixes"]

_NESTED_KEYS = ("state_dict", "model", "model_state_dict")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def describe_load_error(exc: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, in a few words, without torch's advice to
    disable ``weights_only`` (which would run whatever code the file holds).

    Example:
        >>> describe_load_error(RuntimeError("PytorchStreamReader failed reading zip archive: not a ZIP "
        ...                                  "archive. This is an internal miniz error."))
        'PytorchStreamReader failed reading zip archive: not a ZIP archive'
    """
    text = str(exc).strip()
    if "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if found:
            return (f"it holds a Python object ({found.group(1)}) that is not a tensor; such files are never "
                    "unpickled, since unpickling them can run code")
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n|$)", text)
        return f"not a torch checkpoint of tensors ({detail.group(1).strip() if detail else 'unreadable pickle'})"
    first = text.splitlines()[0] if text else type(exc).__name__
    return first.split(". ")[0].rstrip(".")


def _unnest(state):
    """The state dict inside ``{"state_dict": ...}``-style checkpoints (any depth)."""
    for _ in range(4):
        inner = next((state[k] for k in _NESTED_KEYS if isinstance(state, dict) and isinstance(state.get(k), dict)),
                     None)
        if inner is None:
            return state
        state = inner
    return state


def read_checkpoint(path) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (``.safetensors`` or a weights-only torch file).

    Nested ``{"state_dict": ...}`` / ``{"model": ...}`` checkpoints are unwrapped.

    Example:
        >>> import tempfile
        >>> path = tempfile.mktemp(suffix=".pt"); torch.save({"model": {"w": torch.ones(1)}}, path)
        >>> read_checkpoint(path)
        {'w': tensor([1.])}
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
        raise WeightsError(f"cannot read weights file {path}: {describe_load_error(exc)}") from None
    state = _unnest(state)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return state


def strip_wrapper_prefixes(state: dict, own_keys) -> dict:
    """``state`` without the ``module.`` / ``_orig_mod.`` prefixes the model's own keys do not have.

    Example:
        >>> strip_wrapper_prefixes({"module.w": 1, "module.b": 2}, ["w", "b"])
        {'w': 1, 'b': 2}
    """
    own = list(own_keys)
    changed = True
    while changed and state:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state) and not all(k.startswith(prefix) for k in own):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def _first(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def fit_problems(own: dict[str, tuple], theirs: dict[str, tuple]) -> str | None:
    """What keeps a checkpoint (key -> shape) from loading strictly into a model (key -> shape), or None.

    Example:
        >>> fit_problems({"a": (2,), "b": (1,)}, {"a": (3,), "c": (1,)})
        '1 missing (b); 1 unexpected (c); 1 shape mismatch (a (3,) vs (2,))'
    """
    missing = [k for k in own if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    misshapen = [f"{k} {tuple(theirs[k])} vs {tuple(own[k])}" for k in own
                 if k in theirs and tuple(theirs[k]) != tuple(own[k])]
    parts = [f"{len(keys)} {label} ({_first(keys)})" for label, keys in
             (("missing", missing), ("unexpected", unexpected), ("shape mismatch", misshapen)) if keys]
    return "; ".join(parts) or None


def load_weights(model: nn.Module, path) -> int:
    """Load ``path`` into ``model`` strictly; returns the number of tensors loaded.

    Example:
        >>> import tempfile
        >>> path = tempfile.mktemp(suffix=".pt"); torch.save(nn.Linear(2, 1).state_dict(), path)
        >>> load_weights(nn.Linear(2, 1), path)
        2
    """
    own = model.state_dict()
    state = strip_wrapper_prefixes(read_checkpoint(path), own)
    problems = fit_problems({k: tuple(v.shape) for k, v in own.items()}, {k: tuple(v.shape) for k, v in state.items()})
    if problems:
        raise WeightsError(f"{Path(path).name} does not fit the model: {problems}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise WeightsError(f"{Path(path).name} holds non-finite values ({_first(bad)}): the model is broken before "
                           "the rewrite; check its weights (a rewrite is not the cause)")
    model.load_state_dict(state, strict=True)
    return len(state)
