"""Pick an example input for a model: its config's input size, or the first size that runs.

A model whose ``forward`` takes something other than one tensor gets what it takes: a list of
images (no batch dimension) when its first argument is ``images`` (torchvision's detection
models), a tuple of tensors when it needs several (RAFT's ``image1, image2``).

Example:
    >>> import torch.nn as nn
    >>> tuple(example_input_for(nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))).shape)
    (1, 784)
    >>> import torchvision
    >>> describe_input(example_input_for(torchvision.models.optical_flow.raft_small()))
    'tuple of 2 tensors (1, 3, 224, 224), (1, 3, 224, 224)'
"""

from __future__ import annotations

import inspect

import torch
import torch.nn as nn

from .intake import model_dtype_device
from .provenance import provenance_of
from .running import eval_mode
from ..errors import SurgeryError

__all__ = ["declared_input_size", "example_input_for", "input_convention", "conform_input", "describe_input"]

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


def input_convention(model: nn.Module) -> tuple[str, int]:
    """What ``model.forward`` takes: ``("tensor", 1)``, ``("images", 1)`` (a list of images without a
    batch dimension) or ``("tuple", n)`` (n tensors), from its signature.

    Example:
        >>> input_convention(nn.Linear(2, 2))
        ('tensor', 1)
    """
    try:
        params = list(inspect.signature(type(model).forward).parameters.values())[1:]
    except (TypeError, ValueError):  # a forward without a readable signature: one tensor
        return "tensor", 1
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in params if p.kind in positional and p.default is inspect.Parameter.empty]
    if required and required[0].name in ("images", "imgs"):
        return "images", 1
    return ("tuple", len(required)) if len(required) > 1 else ("tensor", 1)


def _build(convention: tuple[str, int], size: tuple[int, ...], batch: int, gen, dtype, device):
    def draw(shape):
        return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)

    kind, n = convention
    if kind == "images":  # one image per sample, sizes alternating (the model batches them itself)
        c, *spatial = size
        return [draw((c, *spatial) if i % 2 == 0 else (c, *(s * 3 // 4 for s in spatial))) for i in range(batch)]
    if kind == "tuple":
        return tuple(draw((batch, *size)) for _ in range(n))
    return draw((batch, *size))


def conform_input(model: nn.Module, x, seed: int = 1):
    """A tensor given for a model that takes a list of images (or several tensors) made into that:
    a batch becomes a list of its images; the other tensors of a tuple are seeded random ones of the
    same shape. Anything else is returned unchanged.

    Example:
        >>> class Detector(nn.Module):
        ...     def forward(self, images, targets=None):
        ...         return [img.mean() for img in images]
        >>> describe_input(conform_input(Detector(), torch.zeros(2, 3, 64, 64)))
        'list of 2 images (3, 64, 64), (3, 64, 64)'
    """
    if not isinstance(x, torch.Tensor):
        return x
    kind, n = input_convention(model)
    if kind == "images":
        return list(x.unbind(0)) if x.dim() == 4 else [x]
    if kind == "tuple":
        gen = torch.Generator().manual_seed(seed)
        return (x, *(torch.randn(x.shape, generator=gen).to(device=x.device, dtype=x.dtype) for _ in range(n - 1)))
    return x


def describe_input(x) -> str:
    """How a report names an example input: ``tensor (1, 3, 32, 32)``, ``list of 2 images ...``.

    Example:
        >>> describe_input(torch.zeros(1, 3, 8, 8)), describe_input([torch.zeros(3, 8, 8), torch.zeros(3, 6, 6)])
        ('tensor (1, 3, 8, 8)', 'list of 2 images (3, 8, 8), (3, 6, 6)')
    """
    if isinstance(x, torch.Tensor):
        return f"tensor {tuple(x.shape)}"
    if isinstance(x, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in x):
        what = "image" if isinstance(x, list) else "tensor"
        shapes = ", ".join(str(tuple(t.shape)) for t in x)
        return f"{type(x).__name__} of {len(x)} {what}{'s' if len(x) != 1 else ''} {shapes}"
    return type(x).__name__


def example_input_for(model: nn.Module, batch: int = 1, seed: int = 0):
    """A seeded random input the model accepts (batch 1: reports give MACs per sample), in the
    model's floating dtype and on its device: a tensor, or what :func:`input_convention` says.

    Raises :class:`SurgeryError` when no size works: pass ``example_input`` / ``--input-size``.

    Example:
        >>> tuple(example_input_for(nn.Conv2d(3, 4, 3), batch=2).shape)
        (2, 3, 32, 32)
    """
    gen = torch.Generator().manual_seed(seed)
    dtype, device = model_dtype_device(model)
    convention = input_convention(model)
    size = declared_input_size(model)
    if size is not None:
        return _build(convention, size, batch, gen, dtype, device)
    tried = []
    for size in _candidates(model):
        x = _build(convention, size, batch, gen, dtype, device)
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
