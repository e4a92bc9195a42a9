"""Parameters, MACs (from torch's own FLOP counter) and the forward-pass check of a rewrite.

Example:
    >>> import torch, torch.nn as nn
    >>> m = nn.Sequential(nn.Linear(4, 3))
    >>> count_params(m), measure(m, torch.zeros(2, 4)).macs
    (15, 24)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .._compat import tensor_version
from ..errors import SurgeryError
from ..graph.running import eval_mode, first_tensor, output_leaves

__all__ = ["count_params", "Measurement", "measure", "snapshot_state", "state_dict_diff"]


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared tensors counted once).

    Example:
        >>> count_params(nn.Conv2d(3, 8, 3, bias=False))
        216
    """
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class Measurement:
    """One eval-mode forward pass: MACs, output shape, whether every output value is finite.

    ``output_shape`` and ``finite`` are those of the first output tensor; ``outputs`` lists every
    output tensor as (where, shape, finite).

    Example:
        >>> m = measure(nn.Linear(3, 2), torch.zeros(1, 3))
        >>> m.macs, m.output_shape, m.finite, m.outputs
        (6, (1, 2), True, (('', (1, 2), True),))
    """

    macs: int
    output_shape: tuple[int, ...]
    finite: bool
    outputs: tuple[tuple[str, tuple[int, ...], bool], ...] = ()


def measure(model: nn.Module, example_input) -> Measurement:
    """Run ``model`` once in eval mode under torch's FLOP counter (MACs = FLOPs / 2).

    Example:
        >>> measure(nn.Conv2d(1, 1, 3), torch.zeros(1, 1, 5, 5)).output_shape
        (1, 1, 3, 3)
    """
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    try:
        with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
            full = model(*args)
            out = first_tensor(full)
    except Exception as exc:  # any failure of the user's model is reported as one line
        shapes = ", ".join(str(tuple(a.shape)) for a in args if isinstance(a, torch.Tensor))
        raise SurgeryError(f"forward pass on an input of shape {shapes} failed: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if out is None:
        raise SurgeryError("the model returned no tensor")
    leaves = tuple((p, tuple(t.shape), not t.is_floating_point() or bool(torch.isfinite(t).all()))
                   for p, t in output_leaves(full))
    return Measurement(counter.get_total_flops() // 2, tuple(out.shape), bool(torch.isfinite(out).all()), leaves)


def snapshot_state(model: nn.Module) -> dict:
    """A cheap record of a state dict for :func:`state_dict_diff`: tensors and their versions.

    No copy is made: a rewrite that changes a tensor in place bumps its version, one that
    replaces it puts a new tensor object in the new state dict. Compare it with
    ``model.state_dict(keep_vars=True)`` so unchanged tensors are the same objects.

    Example:
        >>> lin = nn.Linear(2, 2)
        >>> before = snapshot_state(lin)
        >>> with torch.no_grad():
        ...     _ = lin.bias.zero_()
        >>> state_dict_diff(before, lin.state_dict(keep_vars=True))["values_changed"]
        ['bias']
    """
    return {k: (v, tensor_version(v)) for k, v in model.state_dict(keep_vars=True).items()}


def state_dict_diff(before: dict, after: dict) -> dict:
    """Keys added, removed, reshaped and with changed values between two state dicts.

    ``unchanged`` is True when a checkpoint of ``before`` loads strictly into ``after`` and gives
    the same tensors.

    ``before`` is a :func:`snapshot_state` (or a plain state dict).

    Example:
        >>> state_dict_diff({"w": torch.zeros(2)}, {"w": torch.zeros(3), "b": torch.zeros(1)})
        {'added': ['b'], 'removed': [], 'reshaped': ['w: (2,) -> (3,)'], 'values_changed': [], 'unchanged': False}
    """
    before = {k: v if isinstance(v, tuple) else (v, None) for k, v in before.items()}
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    reshaped = [
        f"{k}: {tuple(before[k][0].shape)} -> {tuple(after[k].shape)}"
        for k in sorted(set(before) & set(after)) if tuple(before[k][0].shape) != tuple(after[k].shape)
    ]
    changed = [k for k in sorted(set(before) & set(after)) if _value_changed(before[k], after[k])]
    return {"added": added, "removed": removed, "reshaped": reshaped, "values_changed": changed,
            "unchanged": not (added or removed or reshaped or changed)}


def _value_changed(old: tuple, new: torch.Tensor) -> bool:
    tensor, version = old
    if tuple(tensor.shape) != tuple(new.shape):
        return False  # reported as reshaped
    if new is tensor:
        return version is not None and tensor_version(new) != version
    # a different tensor object: compare values (reads only, so copy-on-write copies stay shared)
    return tensor.device.type != "meta" and not torch.equal(tensor.detach(), new.detach())
