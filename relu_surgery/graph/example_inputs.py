"""Pick an example input for a model: its config's input size, or the first size that runs.

Example:
    >>> import torch.nn as nn
    >>> tuple(example_input_for(nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))).shape)
    (1, 784)
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .intake import model_dtype_device
from .provenance import provenance_of
from .running import eval_mode
from ..errors import SurgeryError

__all__ = ["declared_input_size", "example_input_for"]

_SPATIAL_TRIES = (32, 28, 64, 224, 96, 128, 299)


def declared_input_size(model: nn.Module) -> tuple[int, ...] | None:
    """Input size (no batch) a model declares: its provenance (zoo models), timm's pretrained_cfg, torchvision.

    Example:
        >>> import timm
        >>> declared_input_size(timm.create_model("resnet18"))
        (3, 224, 224)
    """
    size = provenance_of(model).input_size
    if size:
        return tuple(size)
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(model, attr, None)
        if isinstance(cfg, dict) and cfg.get("input_size"):
            return tuple(cfg["input_size"])
    if type(model).__module__.startswith("torchvision.models"):
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        side = 299 if "inception" in type(model).__module__ else 224
        return (first.in_channels if first else 3, side, side)
    return None


def _candidates(model: nn.Module):
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))), None)
    if first is None:
        return
    if isinstance(first, nn.Linear):
        yield (first.in_features,)
        for side in (28, 32):
            yield (1, side, side)
            yield (3, side, side)
        return
    dims = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}.get(type(first), 2)
    for side in _SPATIAL_TRIES:
        yield (first.in_channels,) + (side,) * dims


def example_input_for(model: nn.Module, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A seeded random input the model accepts (batch 1: reports give MACs per sample), in the
    model's floating dtype and on its device.

    Raises :class:`SurgeryError` when no size works: pass ``example_input`` / ``--input-size``.

    Example:
        >>> tuple(example_input_for(nn.Conv2d(3, 4, 3), batch=2).shape)
        (2, 3, 32, 32)
    """
    gen = torch.Generator().manual_seed(seed)
    dtype, device = model_dtype_device(model)
    size = declared_input_size(model)
    if size is not None:
        return torch.randn((batch, *size), generator=gen).to(device=device, dtype=dtype)
    tried = []
    for size in _candidates(model):
        x = torch.randn((batch, *size), generator=gen).to(device=device, dtype=dtype)
        try:
            with eval_mode(model), torch.no_grad():
                model(x)
            return x
        except Exception:  # a size the model does not accept; try the next one
            tried.append(str(size))
    raise SurgeryError(
        f"could not find an input size for {type(model).__name__} (tried {', '.join(tried) or 'none'}); "
        "pass example_input= or --input-size"
    )
