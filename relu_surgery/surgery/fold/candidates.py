"""Where a traced model can fold: norms after weight layers, chains of weight layers, summed branches.

Each finder reads a graph whose nodes carry shapes (``node.meta["tensor_meta"]``) and returns the
candidates it sees, each either as an action (:mod:`.plan`) that would be exact, or as a
:class:`~.plan.Refusal` with the reason. Whether a merge pays (MACs or latency) is the planner's
choice, not decided here.

Only nothing-non-linear paths count: between two weight layers of a chain there may be dropout or
identity calls (eval mode: identities) and nothing else; a branch of a sum is a weight layer
reading the sum's shared input, or that input itself.

Example:
    >>> import torch, torch.fx as fx, torch.nn as nn
    >>> from torch.fx.passes.shape_prop import ShapeProp
    >>> gm = fx.symbolic_trace(nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3)).eval())
    >>> _ = ShapeProp(gm).propagate(torch.zeros(1, 3, 8, 8))
    >>> [c.describe() for c in norm_candidates(gm)], chains(gm)  # the norm sits between: no chain yet
    (['1 (BatchNorm2d) folded into 0 (conv 1x1 3->8)'], ([], []))
    >>> gm = fx.symbolic_trace(nn.Sequential(nn.Conv2d(3, 8, 1), nn.Dropout(), nn.Conv2d(8, 4, 3)).eval())
    >>> _ = ShapeProp(gm).propagate(torch.zeros(1, 3, 8, 8))
    >>> [(c.names, c.between) for c in chains(gm)[0]]
    [(('0', '2'), (('_1',),))]
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..._compat import BatchNormBase, DropoutBase
from ...graph.activations import submodule
from ...graph.ops import is_tensor_add
from .geometry import LayerSpec, combine_branches, describe, host_index
from .modules import spec_of
from .plan import BranchMerge, NormFold, Refusal

__all__ = ["Chain", "label", "layer_spec", "branch_spec", "norm_candidates", "chains", "branch_candidates",
           "count_layers"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_PASS_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout}
_PASS_MODULES = (nn.Identity, DropoutBase)


def _shape(node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    shape = getattr(meta, "shape", None)
    return tuple(shape) if shape is not None else None


def layer_spec(gm: fx.GraphModule, node) -> LayerSpec | None:
    """The spec of the conv or linear layer ``node`` calls (on one tensor), or None (also without shapes).

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 3)))
        >>> layer_spec(gm, list(gm.graph.nodes)[1]) is None  # no shapes recorded yet
        True
    """
    if not isinstance(node, fx.Node) or node.op != "call_module" or len(node.args) != 1 or node.kwargs:
        return None
    in_shape, out_shape = _shape(node.args[0]), _shape(node)
    if in_shape is None or out_shape is None:
        return None
    return spec_of(submodule(gm, str(node.target)), in_shape, out_shape)


def count_layers(gm: fx.GraphModule) -> int:
    """Calls of weight layers fold reads, plus BatchNorm calls (the layer count a fold reports).

    Example:
        >>> import torch
        >>> from torch.fx.passes.shape_prop import ShapeProp
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.ReLU()).eval())
        >>> _ = ShapeProp(gm).propagate(torch.zeros(2, 2))
        >>> count_layers(gm)
        2
    """
    return sum(1 for n in gm.graph.nodes if layer_spec(gm, n) is not None
               or (n.op == "call_module" and isinstance(submodule(gm, str(n.target)), _NORMS)))


def _passthrough(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Dropout or identity (eval mode): a node a chain may cross."""
    if node.op == "call_module":
        return isinstance(submodule(gm, str(node.target)), _PASS_MODULES)
    if node.op == "call_function":
        return node.target in _PASS_FUNCTIONS
    return node.op == "call_method" and node.target in ("contiguous", "clone")


def label(node: fx.Node) -> str:
    """The name a report gives a node: its qualified name, else its module path, else its FX name.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2)))
        >>> [label(n) for n in gm.graph.nodes]
        ['input_1', '0', 'output']
    """
    if "rs_name" in node.meta:
        return node.meta["rs_name"]
    return str(node.target) if node.op == "call_module" else node.name


def _what(gm: fx.GraphModule, node) -> str:
    if not isinstance(node, fx.Node):
        return "a constant"
    if node.op == "placeholder":
        return "the model input"
    if node.op == "call_module":
        return f"{label(node)} ({type(submodule(gm, str(node.target))).__name__})"
    return f"{label(node)} ({getattr(node.target, '__name__', node.target)})"


def _readers(gm: fx.GraphModule, node: fx.Node, but) -> str:
    """The readers of ``node`` other than ``but`` (a node or a collection of nodes)."""
    skip = set(but) if isinstance(but, (list, tuple, set)) else {but}
    return ", ".join(_what(gm, u) for u in node.users if u not in skip)


def _norm_refusal(gm: fx.GraphModule, node: fx.Node, norm: nn.Module, needs_layer: bool = True) -> str | None:
    act, drop = getattr(norm, "act", None), getattr(norm, "drop", None)
    if any(m is not None and not isinstance(m, nn.Identity) for m in (act, drop)):
        return "its activation (or dropout) sits inside the same layer (norm+act composite), after the norm"
    if not (type(norm) in _NORMS or (act is not None and isinstance(norm, nn.BatchNorm2d))):
        return f"{type(norm).__name__} is a BatchNorm subclass whose forward may differ"
    if not norm.track_running_stats or norm.running_mean is None:
        return "it has no running statistics (track_running_stats=False): it normalises with batch statistics"
    if not needs_layer:
        return None
    source = node.args[0] if node.args else None
    spec = layer_spec(gm, source)
    if spec is None:
        return f"its input comes from {_what(gm, source)}, not a conv or linear layer"
    if len(source.users) > 1:
        return f"{label(source)}'s output is also read by {_readers(gm, source, node)}"
    if spec.out_channels != norm.num_features or (spec.kind == "linear" and len(spec.out_shape) != 2):
        return f"the norm's {norm.num_features} features are not the {describe(spec)}'s output channels"
    return None


def norm_candidates(gm: fx.GraphModule) -> list[NormFold | Refusal]:
    """Every BatchNorm call: a :class:`NormFold` into the layer before it, or why not.

    Example:
        >>> import torch
        >>> from torch.fx.passes.shape_prop import ShapeProp
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).eval())
        >>> _ = ShapeProp(gm).propagate(torch.zeros(1, 3, 4, 4))
        >>> [c.describe() for c in norm_candidates(gm)]
        ['norm 0: its input comes from the model input, not a conv or linear layer', \
'2 (BatchNorm2d) folded into 1 (conv 1x1 3->4)']
    """
    found = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(submodule(gm, str(node.target)), BatchNormBase):
            continue
        norm = submodule(gm, str(node.target))
        reason = _norm_refusal(gm, node, norm)
        if reason:
            found.append(Refusal("norm", (label(node),), reason))
            continue
        layer = node.args[0]
        found.append(NormFold(layer.name, node.name, (label(layer), label(node)), layer_spec(gm, layer),
                              type(norm).__name__))
    return found


@dataclass(frozen=True)
class Chain:
    """Weight layers in a row with nothing non-linear between: node names, module paths, specs, and the
    pass-through nodes between each layer and the next.

    Example:
        >>> import torch
        >>> from torch.fx.passes.shape_prop import ShapeProp
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 3)))
        >>> _ = ShapeProp(gm).propagate(torch.zeros(1, 3, 6, 6))
        >>> chain = chains(gm)[0][0]
        >>> chain.layers, chain.names, [describe(s) for s in chain.specs], chain.between
        (('_0', '_1'), ('0', '1'), ['conv 1x1 3->8', 'conv 3x3 8->4'], ((),))
    """

    layers: tuple[str, ...]
    names: tuple[str, ...]
    specs: tuple[LayerSpec, ...]
    between: tuple[tuple[str, ...], ...]


def _link(gm: fx.GraphModule, node: fx.Node):
    """(layer before ``node``, pass-through nodes between) when ``node``'s input comes straight from one."""
    path, source = [], node.args[0]
    while isinstance(source, fx.Node) and _passthrough(gm, source) and len(source.users) == 1 and source.args:
        path.append(source)
        source = source.args[0]
    return (source, path[::-1]) if layer_spec(gm, source) is not None else (None, [])


def chains(gm: fx.GraphModule) -> tuple[list[Chain], list[Refusal]]:
    """Maximal chains of weight layers (length >= 2), and the pairs refused because the first layer's
    output is also read elsewhere.

    Example:
        >>> import torch
        >>> from torch.fx.passes.shape_prop import ShapeProp
        >>> class Skip(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)
        ...     def forward(self, x):
        ...         y = self.a(x)
        ...         return self.b(y) + y
        >>> gm = fx.symbolic_trace(Skip())
        >>> _ = ShapeProp(gm).propagate(torch.zeros(1, 2))
        >>> found, refused = chains(gm)
        >>> found, [r.describe() for r in refused]
        ([], ["chain a + b: a's output is also read by add (add)"])
    """
    after, refusals = {}, []
    for node in gm.graph.nodes:
        if layer_spec(gm, node) is None:
            continue
        source, path = _link(gm, node)
        if source is None:
            continue
        if len(source.users) > 1:
            reader = path[0] if path else node
            refusals.append(Refusal("chain", (label(source), label(node)),
                                    f"{label(source)}'s output is also read by {_readers(gm, source, reader)}"))
            continue
        after[source] = (node, tuple(p.name for p in path))
    ends = {b for b, _ in after.values()}
    found = []
    for start in (n for n in after if n not in ends):
        nodes, between = [start], []
        while nodes[-1] in after:
            nxt, path = after[nodes[-1]]
            nodes.append(nxt)
            between.append(path)
        found.append(Chain(tuple(n.name for n in nodes), tuple(label(n) for n in nodes),
                           tuple(layer_spec(gm, n) for n in nodes), tuple(between)))
    return found, refusals


def _plain_add(node) -> bool:
    return isinstance(node, fx.Node) and is_tensor_add(node) and len(node.args) == 2 and not node.kwargs


def _inplace(node: fx.Node) -> bool:
    return node.target in (operator.iadd, "add_")


def _add_tree(gm: fx.GraphModule, root: fx.Node) -> tuple[list[fx.Node], list, list[fx.Node]]:
    """The add nodes of the sum ending at ``root`` (root first), its leaves (operands that are not
    single-use adds, seen through single-use dropout/identity calls) and those pass-through calls."""
    adds, leaves, crossed, todo = [], [], [], [root]
    while todo:
        node = todo.pop(0)
        adds.append(node)
        for arg in node.args:
            while isinstance(arg, fx.Node) and _passthrough(gm, arg) and len(arg.users) == 1 and arg.args:
                crossed.append(arg)
                arg = arg.args[0]
            if _plain_add(arg) and len(arg.users) == 1:
                todo.append(arg)
            else:
                leaves.append(arg)
    return adds, leaves, crossed


def _branch_refusal(gm, root, adds, leaves, weights, path) -> str | None:
    """Why the sum at ``root`` cannot be one layer, before comparing the branch kernels."""
    if len(set(weights)) < len(weights):
        return "the same layer's output is summed more than once"
    inputs = {w.args[0] for w in weights}
    others = [leaf for leaf in leaves if leaf not in weights]
    if len(inputs) > 1:
        return "the branches read different inputs: " + ", ".join(
            f"{label(w)} reads {_what(gm, w.args[0])}" for w in weights)
    shared = next(iter(inputs))
    strangers = [leaf for leaf in others if leaf is not shared]
    if strangers or len(others) > 1:
        return (f"the branches read different inputs: {', '.join(label(w) for w in weights)} "
                f"{'reads' if len(weights) == 1 else 'read'} "
                f"{_what(gm, shared)}, the other operand is " + ", ".join(_what(gm, o) for o in strangers or others))
    for w in weights:
        if len(w.users) > 1:
            return f"{label(w)}'s output is also read by {_readers(gm, w, path)}"
    if any(_inplace(a) and isinstance(a.args[0], fx.Node) and len(a.args[0].users) > 1 for a in adds):
        return "an in-place add writes into a tensor that is read elsewhere"
    if any(_shape(leaf) != _shape(root) for leaf in leaves):
        return "the branches' shapes differ (broadcasting add)"
    return None


def branch_spec(gm: fx.GraphModule, node) -> LayerSpec | None:
    """The spec of a sum's operand as a layer: a conv or linear layer, or a BatchNorm on the identity
    path (RepVGG), which is a depthwise 1x1 conv with a bias.

    Example:
        >>> import torch
        >>> from torch.fx.passes.shape_prop import ShapeProp
        >>> class Rep(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv, self.bn = nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2)
        ...     def forward(self, x):
        ...         return self.conv(x) + self.bn(x)
        >>> gm = fx.symbolic_trace(Rep().eval())
        >>> _ = ShapeProp(gm).propagate(torch.zeros(1, 2, 4, 4))
        >>> [describe(branch_spec(gm, n)) for n in gm.graph.nodes if n.op == "call_module"]
        ['conv 3x3 2->2', 'conv 1x1 2->2 groups 2']
    """
    spec = layer_spec(gm, node)
    if spec is not None or not isinstance(node, fx.Node) or node.op != "call_module" or len(node.args) != 1:
        return spec
    norm, shape = submodule(gm, str(node.target)), _shape(node)
    if not isinstance(norm, BatchNormBase) or shape is None or len(shape) < 3:
        return None
    if _norm_refusal(gm, node, norm, needs_layer=False):
        return None
    ones = (1,) * (len(shape) - 2)
    return LayerSpec("conv", shape[1], shape[1], ones, ones, (0,) * len(ones), ones, shape[1], True, False,
                     shape, shape)


def _weight_branches(gm: fx.GraphModule, leaves: list) -> list[fx.Node]:
    """The operands of a sum that are weight-layer branches; an operand every other one reads is the
    identity branch, even when a layer computed it."""
    weights = [leaf for leaf in leaves if branch_spec(gm, leaf) is not None]
    for leaf in leaves:
        others = [other for other in leaves if other is not leaf]
        if others and all(other in weights and other.args[0] is leaf for other in others):
            return others
    return weights


def branch_candidates(gm: fx.GraphModule) -> list[BranchMerge | Refusal]:
    """Every sum with a weight-layer operand: a :class:`BranchMerge` of branches sharing one input
    (RepVGG), or why not.

    Example:
        >>> import torch
        >>> from torch.fx.passes.shape_prop import ShapeProp
        >>> class Rep(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.k3, self.k1 = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1)
        ...     def forward(self, x):
        ...         return self.k3(x) + self.k1(x) + x
        >>> gm = fx.symbolic_trace(Rep())
        >>> _ = ShapeProp(gm).propagate(torch.zeros(1, 4, 8, 8))
        >>> [(m.host, m.branches, m.identity) for m in branch_candidates(gm)]
        [('k3', ('k3', 'k1'), True)]
    """
    found, order = [], {n: i for i, n in enumerate(gm.graph.nodes)}
    for root in gm.graph.nodes:
        if not _plain_add(root) or (len(root.users) == 1 and _plain_add(next(iter(root.users)))):
            continue  # not a sum's last add: its tree belongs to the add reading it
        adds, leaves, crossed = _add_tree(gm, root)
        weights = sorted(_weight_branches(gm, leaves), key=order.__getitem__)
        if not weights:
            continue
        names = tuple(label(w) for w in weights)
        reason = _branch_refusal(gm, root, adds, leaves, weights, adds + crossed)
        specs = [branch_spec(gm, w) for w in weights]
        identity = len(weights) < len(leaves)
        merged = reason or combine_branches(specs, identity)
        if isinstance(merged, str):
            found.append(Refusal("branch", names + (label(root),), merged))
            continue
        host = weights[host_index(specs)]
        found.append(BranchMerge(tuple(a.name for a in adds) + tuple(c.name for c in crossed), host.name,
                                 tuple(w.name for w in weights), names,
                                 weights[0].args[0].name, identity, tuple(specs), merged))
    return found
