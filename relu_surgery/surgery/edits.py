"""Graph edits the activation swaps share: new module paths, node replacement, composite layers.

A shared module (torchvision's ``Bottleneck.relu``, called three times) is never modified: a call
that changes gets a NEW submodule under a free path next to it (``layer1.0.relu_2_prelu``); a
module called once is replaced at its own path, so its state-dict keys keep their names.

Example:
    >>> import torch.fx as fx, torch.nn as nn
    >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    >>> relu = [n for n in gm.graph.nodes if n.op == "call_module"][1]
    >>> new = replace_with_module(gm, relu, "1", nn.GELU())
    >>> _ = gm.recompile()
    >>> type(gm.get_submodule("1")).__name__
    'GELU'
"""

from __future__ import annotations

import copy

import torch.fx as fx
import torch.nn as nn

from ..errors import SelectionError
from ..graph.tracing import adopt_scope

__all__ = ["activation_input", "call_count", "call_counts", "free_path", "site_path", "replace_with_module",
           "insert_after", "composite_with_act", "node_channels", "qualified"]


def qualified(node: fx.Node) -> str:
    """The name users know for ``node`` (its ``rs_name``, else the FX name)."""
    return node.meta.get("rs_name", node.name)


def activation_input(node: fx.Node) -> fx.Node:
    """The tensor an activation call reads (first argument or ``input=`` keyword)."""
    source = node.args[0] if node.args else node.kwargs.get("input", next(iter(node.kwargs.values()), None))
    if not isinstance(source, fx.Node):
        raise SelectionError(f"activation {qualified(node)} does not read a tensor node")
    return source


def call_count(gm: fx.GraphModule, target: str) -> int:
    """How many ``call_module`` nodes call the module at ``target``."""
    return sum(1 for n in gm.graph.nodes if n.op == "call_module" and n.target == target)


def free_path(gm: nn.Module, base: str) -> str:
    """``base``, or ``base_2``, ``base_3``, ... : the first module path no attribute uses yet.

    Example:
        >>> free_path(nn.Sequential(nn.ReLU()), "0"), free_path(nn.Sequential(nn.ReLU()), "act")
        ('0_2', 'act')
    """
    parent_path, _, leaf = base.rpartition(".")
    try:
        parent = gm.get_submodule(parent_path) if parent_path else gm
    except AttributeError:
        return base
    name, k = leaf, 1
    while hasattr(parent, name):
        k += 1
        name = f"{leaf}_{k}"
    return f"{parent_path}.{name}" if parent_path else name


def call_counts(gm: fx.GraphModule) -> dict[str, int]:
    """Calls per module path (take it before editing, so every call of a shared module is named alike)."""
    counts: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "call_module":
            counts[str(n.target)] = counts.get(str(n.target), 0) + 1
    return counts


def site_path(gm: fx.GraphModule, node: fx.Node, suffix: str, counts: dict[str, int]) -> str:
    """Where the new module of an activation call goes.

    A module called once (``counts``: from :func:`call_counts` before any edit) is replaced at its
    own path; a call of a shared module or a function call gets a free path ``<site>_<suffix>``
    (the site's qualified name plus ``suffix``).
    """
    if node.op == "call_module" and counts.get(str(node.target), 0) == 1:
        return str(node.target)
    return free_path(gm, f"{qualified(node)}_{suffix}")


def replace_with_module(gm: fx.GraphModule, node: fx.Node, path: str, module: nn.Module) -> fx.Node:
    """Install ``module`` at ``path`` and make ``node``'s call a call of it (same input, same users).

    Returns the new node; the old one is erased. The new node keeps the old one's qualified name.
    """
    source = activation_input(node)
    gm.add_submodule(path, module)
    with gm.graph.inserting_before(node):
        new = gm.graph.call_module(path, (source,))
    adopt_scope(new, node, qualified(node))
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)
    return new


def insert_after(gm: fx.GraphModule, node: fx.Node, path: str, module: nn.Module, name: str) -> fx.Node:
    """Install ``module`` at ``path`` and call it on ``node``'s output; ``node``'s users read the result."""
    gm.add_submodule(path, module)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(path, (node,))
    node.replace_all_uses_with(new, delete_user_cb=lambda user: user is not new)
    return adopt_scope(new, node, name)


def composite_with_act(gm: fx.GraphModule, target: str, act: nn.Module) -> None:
    """Give the norm+act layer at ``target`` a copy of itself whose ``act`` is ``act`` (same tensors).

    Raises :class:`SelectionError` when the layer is called more than once (one call cannot change
    alone).
    """
    calls = call_count(gm, target)
    if calls > 1:
        raise SelectionError(f"{target} is a norm+activation layer called {calls} times; "
                             "its activation cannot be changed at one call only")
    changed = copy.copy(gm.get_submodule(target))
    changed._modules = dict(changed._modules)
    changed.act = act
    gm.add_submodule(target, changed)


def node_channels(node: fx.Node) -> int | None:
    """Channel count (dim 1) of ``node``'s output from shape propagation, if recorded."""
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return int(shape[1]) if shape is not None and len(shape) > 1 else None
