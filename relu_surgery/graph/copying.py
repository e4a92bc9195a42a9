"""Private copies of models whose tensors cost nothing until one side writes (copy-on-write).

Every rewrite works on a copy so the caller's model is never changed. A plain ``copy.deepcopy``
clones every weight up front, which for ResNet-152 costs more than tracing it. Here each dense
parameter and buffer is copied with torch's copy-on-write clone (private: see
:mod:`relu_surgery._compat`): the copy
shares memory with the original until either is written to (an optimizer step, ``load_state_dict``,
an in-place edit), and the write then gives the written tensor its own memory. Reads never copy.
Where torch lacks copy-on-write, or a tensor is not a plain dense one, it is cloned as usual.

Example:
    >>> import torch, torch.nn as nn
    >>> original = nn.Linear(2, 2)
    >>> copy = private_copy(original)
    >>> with torch.no_grad():
    ...     _ = copy.weight.zero_()
    >>> bool(original.weight.abs().sum() > 0), copy.weight is not original.weight
    (True, True)
"""

from __future__ import annotations

import copy
import copyreg
import gc
from collections import Counter, OrderedDict
from contextlib import contextmanager
from functools import cache

import torch
import torch.nn as nn

from .._compat import MODULE_CHILDREN, MODULE_TENSORS, is_view, lazy_clone, storage_key

__all__ = ["private_copy", "copy_on_write_available", "paused_gc"]


def copy_on_write_available() -> bool:
    """True when this torch can copy tensors lazily (copy-on-write).

    Example:
        >>> isinstance(copy_on_write_available(), bool)
        True
    """
    return lazy_clone is not None


def _lazy_copyable(tensor: torch.Tensor) -> bool:
    return (
        tensor.layout == torch.strided and not tensor.is_quantized and tensor.device.type != "meta"
        and not tensor.is_nested and tensor.is_leaf and not is_view(tensor)
    )


def _lazy_copy(tensor: torch.Tensor) -> torch.Tensor | None:
    """A copy-on-write copy of a plain tensor or parameter, or None when one is not possible.

    Memory torch cannot share copy-on-write (``share_memory()``, numpy or mmap-backed tensors)
    gives None: such tensors are cloned by ``deepcopy`` as usual.
    """
    if lazy_clone is None or not _lazy_copyable(tensor):
        return None
    try:
        if type(tensor) is nn.Parameter:
            return nn.Parameter(lazy_clone(tensor.detach()), tensor.requires_grad)
        if type(tensor) is torch.Tensor and not tensor.requires_grad:
            lazy = lazy_clone(tensor)
            if tensor.__dict__:  # attributes set on a buffer (deepcopy keeps them)
                lazy.__dict__.update(copy.deepcopy(tensor.__dict__))
            return lazy
    except RuntimeError:  # "Expected storage != nullptr": memory not allocated by torch's allocator
        return None
    return None


def _lazy_copies(model: nn.Module) -> dict[int, torch.Tensor]:
    """id(original) -> copy-on-write copy, for each parameter and buffer that owns its storage alone.

    Tensors sharing a storage with another (a buffer that views another) are left to ``deepcopy``,
    which keeps the sharing.
    """
    tensors = [(t, storage_key(t)) for t in (*model.parameters(), *model.buffers())
               if t.device.type != "meta"]
    users = Counter(storage for _, storage in tensors)
    copies = {}
    for t, storage in tensors:
        lazy = _lazy_copy(t) if users[storage] == 1 else None
        if lazy is not None:
            copies[id(t)] = lazy
    return copies


@contextmanager
def paused_gc():
    """Pause Python's cyclic garbage collector for the block (re-entrant).

    Copying and tracing a large model allocate tens of thousands of small objects, and each
    automatic collection then walks every live object: pausing it halves the time of a copy of a
    1001-layer ResNet. Collection resumes (as it was) when the block ends.

    Example:
        >>> with paused_gc():
        ...     gc.isenabled()
        False
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def private_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` that shares no writable state with it.

    Structure, attributes, hooks and tied weights are copied as ``copy.deepcopy`` copies them;
    parameters and buffers are copy-on-write, so the copy is almost free until it is trained.

    Example:
        >>> import torch.nn as nn
        >>> tied = nn.Linear(3, 3)
        >>> net = nn.Sequential(tied, nn.ReLU(), tied)
        >>> twin = private_copy(net)
        >>> twin[0] is twin[2], twin[0] is net[0]
        (True, False)
    """
    with paused_gc():
        memo: dict[int, object] = dict(_lazy_copies(model))
        return _copy_module(model, memo)


_ATOMIC = frozenset({int, float, bool, str, bytes, type(None)})


@cache
def _plain_class(cls: type) -> bool:
    """True when ``copy.deepcopy`` would copy a ``cls`` instance through ``__getstate__``/``__setstate__``."""
    return (
        getattr(cls, "__deepcopy__", None) is None and cls not in copyreg.dispatch_table
        and cls.__reduce_ex__ is object.__reduce_ex__ and cls.__reduce__ is object.__reduce__
        and getattr(cls, "__getnewargs_ex__", None) is None and getattr(cls, "__getnewargs__", None) is None
        and not issubclass(cls, (list, dict, set, tuple)) and "__slots__" not in cls.__dict__
    )


def _copy_module(module: nn.Module, memo: dict) -> nn.Module:
    """``copy.deepcopy(module, memo)`` with fast paths for what every module holds.

    The copy is made the way ``deepcopy`` makes it (``__new__``, ``__getstate__``, ``__setstate__``);
    child modules, parameter and buffer tables, empty hook tables and plain values skip
    ``deepcopy``'s generic machinery. Classes with their own copying protocol use ``deepcopy``.
    """
    found = memo.get(id(module))
    if found is not None:
        return found
    cls = type(module)
    if not _plain_class(cls):
        return copy.deepcopy(module, memo)
    state = module.__getstate__()
    if not isinstance(state, dict):
        return copy.deepcopy(module, memo)
    new = cls.__new__(cls)
    memo[id(module)] = new
    copied = {}
    for key, value in state.items():
        if key == MODULE_CHILDREN:
            copied[key] = type(value)((k, None if m is None else _copy_module(m, memo)) for k, m in value.items())
        elif key in MODULE_TENSORS:
            copied[key] = type(value)((k, _copy_tensor(t, memo)) for k, t in value.items())
        elif type(value) in _ATOMIC or (type(value) is tuple and all(type(v) in _ATOMIC for v in value)):
            copied[key] = value  # immutable: deepcopy returns these objects themselves
        elif type(value) in (dict, OrderedDict, set) and not value:
            if id(value) not in memo:  # a container shared by two modules stays shared
                memo[id(value)] = type(value)()
            copied[key] = memo[id(value)]
        else:
            copied[key] = copy.deepcopy(value, memo)
    new.__setstate__(copied)
    return new


def _copy_tensor(tensor, memo: dict):
    if tensor is None:
        return None
    found = memo.get(id(tensor))
    return found if found is not None else copy.deepcopy(tensor, memo)
