"""The graph-edit library every rewrite uses: where new modules go, and the edits themselves.

Naming: a shared module (torchvision's ``Bottleneck.relu``, called three times) is never modified;
a call that changes gets a NEW submodule next to it, at ``<site>_<suffix>``
(``layer1.0.relu_2_prelu``); a module called once is replaced at its own path, so its state-dict
keys keep their names. Every new path is the wanted one or, when taken, the wanted one with
``_1``, ``_2``, ... appended (torchvision's convention for repeated calls).

Edits (each keeps the nodes' scope metadata, so later block discovery, reports and drawings see
them): :func:`remove_node`, :func:`replace_call`, :func:`insert_module`, :func:`insert_call`,
:func:`redirect`, :func:`move_after`, :func:`relocate` and :func:`rehome`.

Example:
    >>> import torch.fx as fx, torch.nn as nn
    >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    >>> relu = list(gm.graph.nodes)[2]
    >>> new = replace_call(gm, relu, "1", nn.GELU())
    >>> _ = gm.recompile()
    >>> type(gm.get_submodule("1")).__name__, free_path(gm, "1", set())
    ('GELU', '1_1')
"""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .._compat import rename_node
from ..errors import SelectionError
from ..graph.tracing import adopt_scope

__all__ = ["Scope", "qualified", "node_input", "activation_input", "call_counts", "free_path", "site_path",
           "layer_path", "parent_scope", "node_channels", "remove_node", "replace_call", "insert_module",
           "insert_call", "redirect", "move_after", "relocate", "rehome", "out_of_place"]

Scope = tuple[tuple, tuple]  # (module scope, their class names): node.meta["rs_scope"], ["rs_scope_types"]


def qualified(node: fx.Node) -> str:
    """The name users know for ``node`` (its ``rs_name``, else the FX name).

    Example:
        >>> gm = fx.symbolic_trace(nn.ReLU())
        >>> qualified(list(gm.graph.nodes)[1])
        'relu'
    """
    return node.meta.get("rs_name", node.name)


def node_input(node: fx.Node) -> fx.Node | None:
    """The tensor a one-input op reads: its first argument, its ``input=`` keyword, else its first input.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.ReLU()))
        >>> node_input(list(gm.graph.nodes)[1]).name
        'input_1'
    """
    if node.args and isinstance(node.args[0], fx.Node):
        return node.args[0]
    if isinstance(node.kwargs.get("input"), fx.Node):
        return node.kwargs["input"]
    inputs = node.all_input_nodes
    return inputs[0] if inputs else None


def activation_input(node: fx.Node) -> fx.Node:
    """:func:`node_input` of an activation call; :class:`SelectionError` when it reads no tensor.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.ReLU()))
        >>> activation_input(list(gm.graph.nodes)[1]).op
        'placeholder'
    """
    source = node_input(node)
    if source is None:
        raise SelectionError(f"activation {qualified(node)} does not read a tensor node")
    return source


def call_counts(gm: fx.GraphModule) -> dict[str, int]:
    """Calls per module path (take it before editing, so every call of a shared module is named alike).

    Example:
        >>> relu = nn.ReLU()
        >>> call_counts(fx.symbolic_trace(nn.Sequential(relu, relu)))
        {'0': 2}
    """
    counts: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "call_module":
            counts[str(n.target)] = counts.get(str(n.target), 0) + 1
    return counts


def _taken(gm: nn.Module, path: str) -> bool:
    parent_path, _, leaf = path.rpartition(".")
    try:
        parent = gm.get_submodule(parent_path) if parent_path else gm
    except AttributeError:
        return False  # add_submodule creates the missing parents
    return hasattr(parent, leaf)


def free_path(gm: nn.Module, wanted: str, taken: set) -> str:
    """``wanted``, or ``wanted_1``, ``wanted_2``, ...: the first path no attribute and no entry of
    ``taken`` (the paths a plan reserved already) uses; it is added to ``taken``.

    Example:
        >>> seq, taken = nn.Sequential(nn.ReLU()), set()
        >>> free_path(seq, "0", taken), free_path(seq, "act", taken), free_path(seq, "act", taken)
        ('0_1', 'act', 'act_1')
    """
    candidate, k = wanted, 0
    while candidate in taken or _taken(gm, candidate):
        k += 1
        candidate = f"{wanted}_{k}"
    taken.add(candidate)
    return candidate


def site_path(gm: fx.GraphModule, node: fx.Node, suffix: str, counts: dict[str, int], taken: set) -> str:
    """Where the new module of an activation call goes.

    A module called once (``counts``: from :func:`call_counts` before any edit) is replaced at its
    own path; a call of a shared module or a function call gets a free path ``<site>_<suffix>``.

    Example:
        >>> from relu_surgery.graph.tracing import trace
        >>> relu = nn.ReLU()
        >>> gm = trace(nn.Sequential(relu, relu)).graph_module  # qualified names: 0, 0_1
        >>> second = list(gm.graph.nodes)[2]
        >>> site_path(gm, second, "prelu", call_counts(gm), set())
        '0_1_prelu'
    """
    if node.op == "call_module" and counts.get(str(node.target), 0) == 1:
        return str(node.target)
    return free_path(gm, f"{qualified(node)}_{suffix}", taken)


def _in_layer(node: fx.Node) -> bool:
    """True when ``node`` runs inside a conv / linear layer's own forward (timm's ``StdConv2d``)."""
    scope = node.meta.get("rs_scope", ())
    types = node.meta.get("rs_scope_types", ())
    if node.op == "call_module":
        return bool(scope) and scope[-1] == str(node.target)
    return bool(scope) and len(types) == len(scope) and any(k in types[-1].rsplit(".", 1)[-1] for k in ("Conv", "Linear"))


def layer_path(node: fx.Node) -> str:
    """The module path of the layer that computes ``node`` (``stem.conv`` for timm's StdConv2d).

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Conv2d(1, 1, 1)))
        >>> layer_path(list(gm.graph.nodes)[1])
        '0'
    """
    if node.op == "call_module":
        return str(node.target)
    if _in_layer(node):
        return node.meta["rs_scope"][-1]
    return node.meta.get("rs_name", node.name)


def parent_scope(node: fx.Node) -> Scope:
    """(scope, scope types) of ``node`` without the layer that computed it (its leaf module).

    Example:
        >>> gm = fx.symbolic_trace(nn.ReLU())
        >>> parent_scope(list(gm.graph.nodes)[1])
        ((), ())
    """
    scope = tuple(node.meta.get("rs_scope", ()))
    types = tuple(node.meta.get("rs_scope_types", ("",) * len(scope)))
    if _in_layer(node):
        return scope[:-1], types[:-1]
    return scope, types


def node_channels(node: fx.Node) -> int | None:
    """Channel count (dim 1) of ``node``'s output from shape propagation, if recorded.

    Example:
        >>> gm = fx.symbolic_trace(nn.ReLU())
        >>> node_channels(list(gm.graph.nodes)[1]) is None
        True
    """
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return int(shape[1]) if shape is not None and len(shape) > 1 else None


def _set_scope(node: fx.Node, scope: Scope | None, like: fx.Node, name: str) -> fx.Node:
    adopt_scope(node, like, name)
    if scope is not None:
        node.meta["rs_scope"], node.meta["rs_scope_types"] = tuple(scope[0]), tuple(scope[1])
    return node


def remove_node(gm: fx.GraphModule, node: fx.Node) -> None:
    """Take ``node`` out of the graph: its users read its input (:func:`node_input`) instead.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
        >>> remove_node(gm, list(gm.graph.nodes)[2])
        >>> [n.op for n in gm.graph.nodes]
        ['placeholder', 'call_module', 'output']
    """
    node.replace_all_uses_with(node_input(node))
    gm.graph.erase_node(node)


def replace_call(gm: fx.GraphModule, node: fx.Node, path: str, module: nn.Module) -> fx.Node:
    """Install ``module`` at ``path`` and make ``node``'s call a call of it (same input, same users).

    Returns the new node (it keeps the old one's qualified name); the old one is erased. See the
    module example.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.ReLU()))
        >>> new = replace_call(gm, list(gm.graph.nodes)[1], "0_gelu", nn.GELU())
        >>> new.target, new.meta["rs_name"] if "rs_name" in new.meta else qualified(new)
        ('0_gelu', '_0')
    """
    source = activation_input(node)
    gm.add_submodule(path, module)
    with gm.graph.inserting_before(node):
        new = gm.graph.call_module(path, (source,))
    adopt_scope(new, node, qualified(node))
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)
    return new


def redirect(node: fx.Node, to: fx.Node, keep=()) -> None:
    """Every user of ``node`` except those in ``keep`` reads ``to`` instead.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
        >>> x, lin, relu, out = gm.graph.nodes
        >>> redirect(relu, lin)
        >>> out.args
        (_0,)
    """
    keep = set(keep)
    node.replace_all_uses_with(to, delete_user_cb=lambda user: user not in keep)


def _read_by(anchor: fx.Node, new: fx.Node, users) -> None:
    """``users`` of ``anchor`` (all but ``new`` when None) read ``new`` instead."""
    if users is None:
        redirect(anchor, new, keep=(new,))
    else:
        for user in users:
            user.replace_input_with(anchor, new)


def insert_module(gm: fx.GraphModule, anchor: fx.Node, path: str, module: nn.Module, name: str,
                  scope: Scope | None = None, users=None) -> fx.Node:
    """Install ``module`` at ``path`` and call it on ``anchor``'s output, right after it.

    ``users`` of ``anchor`` (all of them when None) read the new node, which gets the qualified name
    ``name`` and ``scope`` (None: ``anchor``'s).

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2)))
        >>> new = insert_module(gm, list(gm.graph.nodes)[1], "act", nn.ReLU(), "act")
        >>> [n.op for n in gm.graph.nodes], new.meta["rs_name"]
        (['placeholder', 'call_module', 'call_module', 'output'], 'act')
    """
    gm.add_submodule(path, module)
    with gm.graph.inserting_after(anchor):
        new = gm.graph.call_module(path, (anchor,))
    _read_by(anchor, new, users)
    return _set_scope(new, scope, anchor, name)


def insert_call(gm: fx.GraphModule, anchor: fx.Node, op: str, target, args: tuple, kwargs: dict, name: str,
                scope: Scope | None = None, users=None) -> fx.Node:
    """Call ``target`` (``op`` ``call_function``, or ``call_method`` with a method name) on ``anchor``.

    ``args`` / ``kwargs`` follow the tensor; the node is named after ``name`` in the generated code.
    Otherwise as :func:`insert_module`.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2)))
        >>> new = insert_call(gm, list(gm.graph.nodes)[1], "call_function", F.relu, (), {}, "act")
        >>> new.target is F.relu, new.name
        (True, 'act')
    """
    with gm.graph.inserting_after(anchor):
        new = gm.graph.create_node(op, target, (anchor, *args), dict(kwargs))
    _read_by(anchor, new, users)
    rename_node(new, name.replace(".", "_"))
    return _set_scope(new, scope, anchor, name)


def move_after(anchor: fx.Node, *nodes: fx.Node) -> None:
    """Move ``nodes`` (in order) to right after ``anchor`` in the graph's node list.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
        >>> x, lin, relu, out = gm.graph.nodes
        >>> move_after(x, relu)
        >>> [n.op for n in gm.graph.nodes][:2]
        ['placeholder', 'call_module']
    """
    for node in nodes:
        anchor.append(node)
        anchor = node


def relocate(node: fx.Node, after: fx.Node) -> None:
    """Move one-input ``node`` to right after ``after``: its users read its input, it reads ``after``,
    and ``after``'s other users read it.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.ReLU()))
        >>> x, lin, bn, relu, out = gm.graph.nodes
        >>> relocate(bn, relu)
        >>> [n.target for n in gm.graph.nodes][1:4]
        ['0', '2', '1']
    """
    source = node_input(node)
    node.replace_all_uses_with(source)
    node.replace_input_with(source, after)
    redirect(after, node, keep=(node,))
    move_after(after, node)


def rehome(gm: fx.GraphModule, node: fx.Node, path: str, scope: Scope, module: nn.Module | None = None) -> None:
    """``node`` calls the module at ``path`` and takes ``path`` as its name and ``scope`` as its scope.

    ``module`` None: the same module object moves (its state-dict keys change; the old path goes
    when nothing calls it any more); else ``module`` (a copy) is installed there. A function node
    (``F.relu``) keeps its call and only takes the new name and scope.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2)))
        >>> rehome(gm, list(gm.graph.nodes)[1], "fc", ((), ()))
        >>> [n for n, _ in gm.named_children()]
        ['fc']
    """
    if node.op == "call_module":
        old = str(node.target)
        gm.add_submodule(path, module if module is not None else gm.get_submodule(old))
        node.target = path
        if module is None and not gm.graph.find_nodes(op="call_module", target=old):
            gm.delete_submodule(old)  # one object, one path (its state-dict keys move with it)
    _set_scope(node, scope, node, path)
    rename_node(node, path.replace(".", "_"))


_FUNCTION_FORMS = {F.relu_: F.relu, torch.relu_: torch.relu, F.leaky_relu_: F.leaky_relu}


def out_of_place(op: str, target):
    """The out-of-place form of a function or method activation (``F.relu_`` -> ``F.relu``, ``relu_`` -> ``relu``).

    Example:
        >>> out_of_place("call_method", "relu_"), out_of_place("call_function", torch.relu_) is torch.relu
        ('relu', True)
    """
    if op == "call_method":
        return str(target).rstrip("_")
    return _FUNCTION_FORMS.get(target, target)
