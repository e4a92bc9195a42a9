"""The order in which a model calls its modules, seen by forward hooks, and what each part receives.

:func:`record_calls` runs the model once in eval mode with a forward pre-hook on every module and
records the first call of each (its rank) and, for the modules asked for, the arguments of that first
call. It runs on the meta device first (a copy with no values: nothing is computed, so it costs
almost nothing); code that needs values (``if x.sum() > 0``, ``nonzero``) stops it there. When the
meta pass stops before every wanted module was called, the pass is repeated on the real model and
the example input. Whatever was never called keeps no rank; callers order it by module definition.

A module its parent calls as ``m.forward(x)`` runs no hook of its own: :meth:`Calls.rank_of` is the
first call of the module *or anything inside it*.

Example:
    >>> import torch, torch.nn as nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.b, self.a = nn.Linear(3, 3), nn.Linear(3, 3)   # defined b, a; called a, b
    ...     def forward(self, x):
    ...         return self.b(self.a(x))
    >>> calls = record_calls(Net(), torch.zeros(1, 3), capture=("b",))
    >>> calls.rank_of("a") < calls.rank_of("b"), calls.device, calls.inputs["b"][0][0].shape
    (True, 'meta', torch.Size([1, 3]))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .copying import private_copy
from .intake import model_dtype_device, on_meta
from .running import eval_mode

__all__ = ["Calls", "record_calls", "materialize"]


@dataclass
class Calls:
    """First-call ranks of module paths, the first arguments of captured ones, and how the pass went.

    ``stopped`` is "" when the forward ran to the end, else one line saying where it stopped.

    Example:
        >>> calls = Calls(ranks={"": 0, "body.0": 1, "body.1": 2})
        >>> calls.rank_of("body"), calls.rank_of("body.1"), calls.rank_of("head")
        (1, 2, None)
    """

    ranks: dict[str, int] = field(default_factory=dict)
    inputs: dict[str, tuple] = field(default_factory=dict)
    device: str = "meta"
    stopped: str = ""

    def rank_of(self, path: str) -> int | None:
        """The first call of ``path`` or of any module inside it; None when none was called."""
        prefix = f"{path}." if path else ""
        hits = [r for p, r in self.ranks.items() if p == path or p.startswith(prefix)]
        return min(hits) if hits else None


def _map_tensors(obj, fn):
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        items = [_map_tensors(o, fn) for o in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    return obj


def materialize(obj, like: nn.Module, seed: int = 0):
    """``obj`` with every meta tensor replaced by a seeded random (floating) or zero tensor of its shape,
    on ``like``'s device (other values unchanged).

    Example:
        >>> materialize([torch.empty(2, 3, device="meta")], nn.Linear(1, 1))[0].device
        device(type='cpu')
    """
    gen = torch.Generator().manual_seed(seed)
    _, device = model_dtype_device(like)

    def real(t: torch.Tensor) -> torch.Tensor:
        if not t.is_meta:
            return t
        if t.is_floating_point():
            return torch.randn(t.shape, generator=gen, dtype=t.dtype).to(device)
        return torch.zeros(t.shape, dtype=t.dtype, device=device)

    return _map_tensors(obj, real)


def _one_pass(model: nn.Module, example_input, capture: set[str], device: str) -> Calls:
    calls = Calls(device=device)
    handles = []
    for path, module in model.named_modules():
        def hook(_m, args, kwargs, path=path):
            if path not in calls.ranks:
                calls.ranks[path] = len(calls.ranks)
                if path in capture:
                    calls.inputs[path] = (args, kwargs)
        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    try:
        with eval_mode(model), torch.no_grad():
            model(*args)
    except Exception as exc:  # values needed (meta), or the model's own failure: the ranks so far stand
        text = str(exc).strip().splitlines()
        calls.stopped = f"{type(exc).__name__}: {text[0] if text else ''}"[:200]
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _meta_copy(model: nn.Module) -> nn.Module | None:
    try:
        return private_copy(model).to("meta")
    except Exception:  # a module that cannot move to meta: no meta pass
        return None


def record_calls(model: nn.Module, example_input, capture=(), need=None) -> Calls:
    """Module call order (and the first inputs of ``capture`` paths) on ``example_input``; eval mode.

    Meta first; the real model (not changed, gradients off) only when the meta pass stopped before
    calling every path in ``need`` (default: all of ``capture``).

    Example:
        >>> calls = record_calls(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), torch.zeros(1, 2))
        >>> calls.ranks, calls.device, calls.stopped
        ({'': 0, '0': 1, '1': 2}, 'meta', '')
        >>> class Gate(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)
        ...     def forward(self, x):
        ...         x = self.a(x)
        ...         return self.b(x) if x.sum() > 0 else -self.b(x)   # needs values: meta stops here
        >>> calls = record_calls(Gate(), torch.ones(1, 2), capture=("b",))
        >>> calls.device, sorted(calls.ranks), calls.inputs["b"][0][0].shape   # so the real model ran
        ('cpu', ['', 'a', 'b'], torch.Size([1, 2]))
    """
    wanted = set(capture)
    needed = wanted if need is None else set(need)
    meta = model if on_meta(model) else _meta_copy(model)
    if meta is not None:
        calls = _one_pass(meta, _map_tensors(example_input, lambda t: t.to("meta")), wanted, "meta")
        if not calls.stopped or not (needed - set(calls.inputs)) or meta is model:
            return calls
    return _one_pass(model, example_input, wanted, str(model_dtype_device(model)[1]))
