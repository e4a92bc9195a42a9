"""A user's model as it comes: parallel wrappers, its dtype and device, meta tensors, non-finite weights.

Example:
    >>> import torch, torch.nn as nn
    >>> inner, notes = unwrap_model(nn.DataParallel(nn.Linear(2, 2)))
    >>> type(inner).__name__, notes
    ('Linear', ['unwrapped nn.DataParallel: its .module (Linear) is what was rewritten'])
    >>> model_dtype_device(nn.Linear(2, 2).half())
    (torch.float16, device(type='cpu'))
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["unwrap_model", "model_dtype_device", "match_input", "on_meta", "non_finite_tensors"]


def _wrapper_types() -> tuple[tuple[type, str], ...]:
    types: list[tuple[type, str]] = [(nn.DataParallel, "nn.DataParallel")]
    try:
        from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415

        types.append((DistributedDataParallel, "DistributedDataParallel"))
    except ImportError:  # torch built without distributed support
        pass
    return tuple(types)


def unwrap_model(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """The module inside ``nn.DataParallel`` / ``DistributedDataParallel`` / ``torch.compile`` wrappers,
    and one note per wrapper removed (for the report).

    Example:
        >>> unwrap_model(nn.ReLU())
        (ReLU(), [])
    """
    notes = []
    while True:
        name = next((label for cls, label in _wrapper_types() if isinstance(model, cls)), None)
        if name is None and hasattr(model, "_orig_mod") and type(model).__name__ == "OptimizedModule":
            name, inner = "torch.compile", model._orig_mod
        elif name is not None:
            inner = model.module
        else:
            return model, notes
        notes.append(f"unwrapped {name}: its .module ({type(inner).__name__}) is what was rewritten")
        model = inner


def model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """The floating dtype and the device of ``model``'s first floating parameter or buffer (float32, CPU if none).

    Example:
        >>> model_dtype_device(nn.Linear(2, 2))
        (torch.float32, device(type='cpu'))
    """
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    device = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    return torch.float32, device


def match_input(x, model: nn.Module):
    """``x`` on ``model``'s device, and in its dtype when ``x`` is floating (tuples element-wise).

    Example:
        >>> match_input(torch.zeros(1, 2), nn.Linear(2, 2).half()).dtype
        torch.float16
    """
    if isinstance(x, tuple):
        return tuple(match_input(t, model) for t in x)
    if not isinstance(x, torch.Tensor):
        return x
    dtype, device = model_dtype_device(model)
    return x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device)


def on_meta(model: nn.Module) -> bool:
    """Whether ``model`` holds meta tensors (structure, no values: nothing can be computed).

    Example:
        >>> on_meta(nn.Linear(2, 2, device="meta")), on_meta(nn.Linear(2, 2))
        (True, False)
    """
    return any(t.is_meta for t in (*model.parameters(), *model.buffers()))


def non_finite_tensors(model: nn.Module, limit: int = 3) -> list[str]:
    """Names of the first ``limit`` parameters / buffers holding NaN or infinite values.

    Example:
        >>> m = nn.Linear(2, 2)
        >>> with torch.no_grad():
        ...     m.bias[0] = float("nan")
        >>> non_finite_tensors(m)
        ['bias']
    """
    out = []
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not tensor.is_meta and not bool(torch.isfinite(tensor).all()):
            out.append(name)
            if len(out) == limit:
                break
    return out
