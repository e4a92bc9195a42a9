"""Every private corner of torch that relu_surgery relies on, in one place.

Each name here wraps one private attribute or class of ``torch`` / ``torch.fx`` (the leading
underscore says the library may change it without notice). ``tests/test_compat.py`` checks each
against the installed version, so an upgrade that moves one fails there, loudly, instead of
somewhere deep in a rewrite.

Example:
    >>> import torch.nn as nn
    >>> relu = nn.ReLU()
    >>> twin = shallow_copy(nn.Sequential(relu))
    >>> twin[0] is relu, children(twin) is not children(nn.Sequential(relu))
    (True, True)
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
import torch.fx as fx
import torch.nn as nn

__all__ = ["BatchNormBase", "InstanceNormBase", "DropoutBase", "MODULE_CHILDREN", "MODULE_TENSORS",
           "lazy_clone", "storage_key", "is_view", "tensor_version", "children", "shallow_copy", "rename_node",
           "meta_tensors"]

#: Base classes torch keeps private: every BatchNorm*d, InstanceNorm*d and Dropout*d derives from one.
BatchNormBase = nn.modules.batchnorm._BatchNorm
InstanceNormBase = nn.modules.instancenorm._InstanceNorm
DropoutBase = nn.modules.dropout._DropoutNd

#: The keys of ``nn.Module.__getstate__()`` that hold its children and its tensors.
MODULE_CHILDREN = "_modules"
MODULE_TENSORS = ("_parameters", "_buffers")

#: torch's copy-on-write clone (None where this torch has none).
lazy_clone = getattr(torch, "_lazy_clone", None)


def storage_key(tensor: torch.Tensor) -> int:
    """An id of the memory ``tensor`` lives in: tensors sharing storage share the key.

    Example:
        >>> t = torch.zeros(4)
        >>> storage_key(t) == storage_key(t[1:]), storage_key(t) == storage_key(torch.zeros(4))
        (True, False)
    """
    return tensor.untyped_storage()._cdata


def is_view(tensor: torch.Tensor) -> bool:
    """True when ``tensor`` is a view of another tensor.

    Example:
        >>> t = torch.zeros(4)
        >>> is_view(t), is_view(t[:2])
        (False, True)
    """
    return tensor._base is not None


def tensor_version(tensor: torch.Tensor) -> int:
    """The counter torch bumps at every in-place write to ``tensor``.

    Example:
        >>> t = torch.zeros(2)
        >>> before = tensor_version(t)
        >>> _ = t.add_(1)
        >>> tensor_version(t) == before + 1
        True
    """
    return tensor._version


def children(module: nn.Module) -> dict:
    """``module``'s own table of child modules (name -> module, entries may be None).

    Reading it skips ``getattr``'s per-level checks, which matters in graph walks.

    Example:
        >>> list(children(nn.Sequential(nn.ReLU())))
        ['0']
    """
    return module._modules


def shallow_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` that shares its children and tensors, with tables of its own.

    Setting a child, parameter or buffer on the copy (``copy.act = nn.Identity()``) leaves the
    original as it was; the tensors stay the same objects, so state-dict values are unchanged.

    Example:
        >>> layer = nn.Sequential(nn.ReLU())
        >>> twin = shallow_copy(layer)
        >>> twin[0] = nn.Identity()
        >>> type(layer[0]).__name__, type(twin[0]).__name__
        ('ReLU', 'Identity')
    """
    new = copy.copy(module)
    new._modules = dict(module._modules)
    new._parameters = dict(module._parameters)
    new._buffers = dict(module._buffers)
    return new


def rename_node(node: fx.Node, name: str) -> None:
    """Give ``node`` the variable name ``name`` in the generated code (torch.fx picks a free one).

    Example:
        >>> gm = fx.symbolic_trace(nn.ReLU())
        >>> node = list(gm.graph.nodes)[1]
        >>> rename_node(node, "act")
        >>> node.name
        'act'
    """
    rename = getattr(node, "_rename", None)
    if rename is not None:  # tests/test_compat.py fails when torch.fx drops it; names are cosmetic
        rename(name)


@contextmanager
def meta_tensors(module: nn.Module):
    """Swap every parameter and buffer of ``module`` (and below) for a meta tensor; restore them after.

    Example:
        >>> m = nn.Linear(2, 2)
        >>> with meta_tensors(m):
        ...     m.weight.is_meta
        True
        >>> m.weight.is_meta
        False
    """
    saved = []
    for m in module.modules():
        saved.append((m, m._parameters, m._buffers))
        m._parameters = {k: None if v is None else nn.Parameter(torch.empty_like(v, device="meta"), v.requires_grad)
                         for k, v in m._parameters.items()}
        m._buffers = {k: None if v is None else torch.empty_like(v, device="meta") for k, v in m._buffers.items()}
    try:
        yield
    finally:
        for m, params, buffers in saved:
            m._parameters, m._buffers = params, buffers
