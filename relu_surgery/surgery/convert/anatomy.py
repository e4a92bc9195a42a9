"""Read a residual block's anatomy off the traced graph: pre-activation or after-activation.

Pure analysis for the pre-/after-activation conversions (seeds 000 and 003). Each finder returns a
small frozen record of node names, or None when the block does not have that shape:

* :class:`PreActUnit` — ``x -> norm -> act (= P) -> conv ... conv -> [+ shortcut] -> add`` and the
  block output is the bare addition (timm ``PreActBottleneck`` / ``PreActBasic``, the zoo's
  pre-activation and Wide ResNets, a user's own BN + ``F.relu`` block). A composite norm+act leaf
  (timm ``BatchNormAct2d``) is the norm and the act at once. The residual branch may end in a
  squeeze-excitation gate, ``conv(...) * se(conv(...))`` (:func:`gated_input`).
* :class:`PostActUnit` — ``x -> conv -> norm -> act ... conv -> norm -> add(shortcut) -> act``
  (torchvision / timm ``BasicBlock`` / ``Bottleneck``, the zoo's ``cifar_resnet*``).
(:mod:`.chains` finds the norm+act runs outside every block: the stem's and the final one.)

Example:
    >>> import relu_surgery as rs
    >>> from relu_surgery.graph.analysis import analyze
    >>> a = analyze(rs.create_model("preact_resnet110"))
    >>> unit = preact_unit(a.graph_module, a.blocks[18])
    >>> unit.norm, unit.act, unit.last_weight, unit.proj_weight
    ('layer2_0_bn1', 'layer2_0_relu', 'layer2_0_conv2', 'layer2_0_shortcut_0')
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx as fx

from ...graph.activations import activation_of
from ...graph.ops import is_tensor_add, op_role
from ...graph.records import Block
from ..edits import node_channels
from ..regions import BlockRegions

__all__ = ["PreActUnit", "PostActUnit", "preact_unit", "postact_unit", "any_preactivation", "walk_back",
           "out_channels", "in_channels", "identity_readers", "is_composite_node", "node_role", "gated_input"]


@dataclass(frozen=True)
class PreActUnit:
    """A pre-activation block: ``norm``/``act`` lead the residual branch (``norm`` None: composite).

    Example:
        >>> import relu_surgery as rs
        >>> from relu_surgery.graph.analysis import analyze
        >>> a = analyze(rs.create_model("preact_resnet110"))
        >>> preact_unit(a.graph_module, a.blocks[0]).add
        'add'
    """

    block: int
    name: str
    input: str
    norm: str | None
    act: str
    add: str
    last_weight: str
    proj_weight: str | None  # a projection conv with no norm after it yet


@dataclass(frozen=True)
class PostActUnit:
    """An after-activation block: ``act`` follows ``add``; ``last_norm`` follows ``last_weight``.

    Example:
        >>> import torchvision
        >>> from relu_surgery.graph.analysis import analyze
        >>> a = analyze(torchvision.models.resnet18())
        >>> unit = postact_unit(a.graph_module, a.blocks[0])
        >>> unit.act, unit.last_norm, unit.proj_weight
        ('layer1_0_relu_1', 'layer1_0_bn2', None)
    """

    block: int
    name: str
    input: str
    add: str
    act: str
    last_weight: str
    last_norm: str | None
    proj_weight: str | None
    proj_norm: str | None


def node_role(node: fx.Node, gm: fx.GraphModule) -> str:
    """:func:`~relu_surgery.graph.ops.op_role` with the node first.

    Example:
        >>> gm = fx.symbolic_trace(__import__("torch").nn.ReLU())
        >>> node_role(list(gm.graph.nodes)[1], gm)
        'activation'
    """
    return op_role(node, gm)


def is_composite_node(node: fx.Node, gm: fx.GraphModule) -> bool:
    """True when ``node`` is the activation of a composite norm+act leaf (timm ``BatchNormAct2d``).

    Example:
        >>> from timm.layers import BatchNormAct2d
        >>> from relu_surgery.graph.tracing import trace
        >>> gm = trace(__import__("torch").nn.Sequential(BatchNormAct2d(4))).graph_module
        >>> [is_composite_node(n, gm) for n in gm.graph.nodes]
        [False, True, False]
    """
    ref = activation_of(node, gm)
    return ref is not None and ref.composite is not None


def walk_back(node: fx.Node, gm: fx.GraphModule, stop=()) -> fx.Node:
    """Follow single-input transparent ops (pool, dropout, identity, pad, ...) backwards.

    The walk ends at a node of ``stop`` (a block input that is itself a pool, say).

    Example:
        >>> import torchvision
        >>> from relu_surgery.graph.analysis import analyze
        >>> a = analyze(torchvision.models.resnet18())
        >>> pool = next(n for n in a.graph_module.graph.nodes if n.name == "maxpool")
        >>> walk_back(pool, a.graph_module).name  # through the pool to the stem's ReLU
        'relu'
    """
    while node not in stop and node_role(node, gm) == "transparent":
        ins = [a for a in node.all_input_nodes if a.op != "get_attr"]
        if len(ins) != 1:
            break
        node = ins[0]
    return node


def any_preactivation(gm: fx.GraphModule, blocks) -> bool:
    """True when one of ``blocks`` is a pre-activation unit (:func:`preact_unit`).

    Example:
        >>> import torchvision
        >>> from relu_surgery.graph.analysis import analyze
        >>> a = analyze(torchvision.models.resnet18())
        >>> any_preactivation(a.graph_module, a.blocks)
        False
    """
    regions = BlockRegions(gm, blocks)
    return any(preact_unit(gm, b, regions.nodes(b.name)) is not None for b in blocks)


def _boundary(nodes: list[fx.Node]) -> tuple[fx.Node, fx.Node] | None:
    inside = set(nodes)
    ins = {a for n in nodes for a in n.all_input_nodes if a not in inside and a.op != "get_attr"}
    outs = [n for n in nodes if any(u not in inside for u in n.users)]
    if len(ins) != 1 or len(outs) != 1:
        return None
    return next(iter(ins)), outs[0]


def _module_attr(gm: fx.GraphModule, node: fx.Node, *attrs):
    if node.op != "call_module":
        return None
    module = gm.get_submodule(str(node.target))
    for attr in attrs:
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    return None


def out_channels(gm: fx.GraphModule, node: fx.Node) -> int | None:
    """Output channels of a weight or norm node (module attributes, else recorded shapes).

    Example:
        >>> import torchvision
        >>> from relu_surgery.graph.analysis import analyze
        >>> a = analyze(torchvision.models.resnet18())
        >>> out_channels(a.graph_module, next(n for n in a.graph_module.graph.nodes if n.name == "layer2_0_conv1"))
        128
    """
    found = _module_attr(gm, node, "out_channels", "out_features", "num_features", "num_channels")
    return found if found is not None else node_channels(node)


def in_channels(gm: fx.GraphModule, x: fx.Node, inside: set) -> int | None:
    """Channels of block input ``x``: the ``in_channels`` of a weight layer it feeds, else its shape.

    Example:
        >>> import torchvision
        >>> from relu_surgery.graph.analysis import analyze
        >>> a = analyze(torchvision.models.resnet18())
        >>> unit = postact_unit(a.graph_module, a.blocks[2])
        >>> region = [n for n in a.graph_module.graph.nodes if "layer2.0" in n.meta.get("rs_scope", ())]
        >>> in_channels(a.graph_module, next(n for n in a.graph_module.graph.nodes if n.name == unit.input), set(region))
        64
    """
    stack, seen = list(x.users), set()
    while stack:
        node = stack.pop(0)
        if node in seen or node not in inside:
            continue
        seen.add(node)
        role = node_role(node, gm)
        if role == "weight":
            found = _module_attr(gm, node, "in_channels", "in_features")
            if found is not None:
                return found
        elif role in ("transparent", "norm", "activation"):
            stack.extend(node.users)
    return node_channels(x)


def _lead(x: fx.Node, inside: set, gm: fx.GraphModule) -> tuple[fx.Node | None, fx.Node] | None:
    """The norm -> act (or composite) that consumes the block input, if exactly one does."""
    found = []
    for user in x.users:
        if user not in inside:
            continue
        role = node_role(user, gm)
        if role == "activation" and is_composite_node(user, gm):
            found.append((None, user))
        elif role == "norm" and len(user.users) == 1:
            act = next(iter(user.users))
            if act in inside and node_role(act, gm) == "activation" and not is_composite_node(act, gm):
                found.append((user, act))
    return found[0] if len(found) == 1 else None


def _is_product(node: fx.Node) -> bool:
    """True for ``a * b`` / ``torch.mul`` / ``a.mul(b)`` with two tensor operands."""
    if node.op == "call_function" and node.target in (operator.mul, torch.mul):
        return sum(isinstance(a, fx.Node) for a in node.args[:2]) == 2
    return node.op == "call_method" and node.target == "mul" and sum(isinstance(a, fx.Node) for a in node.args[:2]) == 2


def _computed_from(gate: fx.Node, source: fx.Node, gm: fx.GraphModule, stop: tuple) -> bool:
    """True when ``gate`` is computed from ``source`` through a weight layer (an excitation branch)."""
    stack, seen, reached, weighted = [gate], {gate}, False, False
    while stack:
        node = stack.pop()
        weighted = weighted or node_role(node, gm) == "weight"
        for arg in node.all_input_nodes:
            if arg is source:
                reached = True
            elif arg not in seen and arg not in stop and arg.op != "get_attr":
                seen.add(arg)
                stack.append(arg)
    return reached and weighted


def gated_input(node: fx.Node, gm: fx.GraphModule, stop: tuple = ()) -> fx.Node | None:
    """The tensor ``a`` a gating product ``a * gate(a)`` scales (squeeze-excitation), else None.

    The gate must be computed from ``a`` through a weight layer (pool -> conv -> act -> conv ->
    sigmoid); the search backwards from the gate ends at the nodes of ``stop``.

    Example:
        >>> import torch.nn as nn
        >>> class Gated(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv, self.fc = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)
        ...     def forward(self, x):
        ...         out = self.conv(x)
        ...         return out * torch.sigmoid(self.fc(out.mean((2, 3), keepdim=True)))
        >>> gm = fx.symbolic_trace(Gated())
        >>> gated_input(list(gm.graph.nodes)[-2], gm).name
        'conv'
    """
    if not _is_product(node):
        return None
    a, b = node.args[:2]
    for scaled, gate in ((a, b), (b, a)):
        if _computed_from(gate, scaled, gm, stop):
            return scaled
    return None


def _classify(operand: fx.Node, sources: tuple, gm: fx.GraphModule, gates: bool = False):
    """('identity'|'projection'|'residual', weight, norm) for one operand of the addition.

    ``sources`` are the nodes a shortcut may start from (the block input, and for pre-activation
    blocks also the pre-activated tensor). ``(None, None, None)``: neither shape. With ``gates``
    a residual branch may end in a gating product (squeeze-excitation): ``conv(...) * se(conv(...))``.
    """
    origin = walk_back(operand, gm, sources)
    scaled = gated_input(origin, gm, sources) if gates else None
    if scaled is not None:
        kind, weight, norm = _classify(scaled, sources, gm)
        return (kind, weight, norm) if kind == "residual" else (None, None, None)
    if origin in sources:
        return "identity", None, None
    norm = None
    if node_role(origin, gm) == "norm" and origin.all_input_nodes:
        norm, origin = origin, walk_back(origin.all_input_nodes[0], gm, sources)
    if node_role(origin, gm) != "weight" or not origin.all_input_nodes:
        return None, None, None
    source = walk_back(origin.all_input_nodes[0], gm, sources)
    return ("projection" if source in sources else "residual"), origin, norm


def _parts(add: fx.Node, sources: tuple, gm: fx.GraphModule, gates: bool = False) -> dict | None:
    """{'residual': (weight, norm), 'identity'|'projection': (weight, norm)} or None."""
    parts = {}
    for operand in [a for a in add.args[:2] if isinstance(a, fx.Node)]:
        kind, weight, norm = _classify(operand, sources, gm, gates)
        if kind is None or kind in parts:
            return None
        parts[kind] = (weight, norm)
    return parts if "residual" in parts and len(parts) == 2 else None


def _name(node: fx.Node | None) -> str | None:
    return node.name if node is not None else None


def _region_bounds(gm: fx.GraphModule, block: Block, region: list[fx.Node] | None):
    """(input, output, set of nodes) of ``block``'s region (``region`` when given), or None."""
    nodes = BlockRegions(gm, [block]).nodes(block.name) if region is None else region
    bounds = _boundary(nodes)
    return None if bounds is None else (*bounds, set(nodes))


def preact_unit(gm: fx.GraphModule, block: Block, region: list[fx.Node] | None = None) -> PreActUnit | None:
    """The pre-activation anatomy of ``block``, or None when it is not a pre-activation block.

    A pre-activation block's first op on the residual branch is norm -> act and its output is the
    bare addition; its shortcut is the identity (of the input or of the pre-activated input) or a
    projection conv.

    Example:
        >>> import relu_surgery as rs
        >>> from relu_surgery.graph.analysis import analyze
        >>> a = analyze(rs.create_model("wrn_52_1"))
        >>> preact_unit(a.graph_module, a.blocks[0]).proj_weight is None
        True
    """
    bounds = _region_bounds(gm, block, region)
    if bounds is None:
        return None
    x, out, inside = bounds
    add, lead = walk_back(out, gm, (x,)), _lead(x, inside, gm)
    if lead is None or add not in inside or not is_tensor_add(add):
        return None
    norm, act = lead
    parts = _parts(add, (x, act), gm, gates=True)
    if parts is None or parts["residual"][1] is not None:
        return None  # a residual branch that ends in a norm is not a pre-activation unit
    proj, proj_norm = parts.get("projection", (None, None))
    return PreActUnit(block.index, block.name, x.name, _name(norm), act.name, add.name,
                      parts["residual"][0].name, None if proj_norm is not None else _name(proj))


def postact_unit(gm: fx.GraphModule, block: Block, region: list[fx.Node] | None = None) -> PostActUnit | None:
    """The after-activation anatomy of ``block``, or None (the output must be act(add(...))).

    Example:
        >>> import torchvision
        >>> from relu_surgery.graph.analysis import analyze
        >>> a = analyze(torchvision.models.resnet18())
        >>> postact_unit(a.graph_module, a.blocks[2]).proj_norm
        'layer2_0_downsample_1'
    """
    bounds = _region_bounds(gm, block, region)
    if bounds is None:
        return None
    x, out, inside = bounds
    if node_role(out, gm) != "activation" or is_composite_node(out, gm) or not out.all_input_nodes:
        return None
    add = walk_back(out.all_input_nodes[0], gm, (x,))
    if add not in inside or not is_tensor_add(add) or _lead(x, inside, gm) is not None:
        return None
    parts = _parts(add, (x,), gm)
    if parts is None:
        return None
    (last, last_norm), (proj, proj_norm) = parts["residual"], parts.get("projection", (None, None))
    return PostActUnit(block.index, block.name, x.name, add.name, out.name, last.name, _name(last_norm),
                       _name(proj), _name(proj_norm))


def identity_readers(gm: fx.GraphModule, x: fx.Node, add: fx.Node) -> set:
    """The nodes that read ``x`` on an identity (weight-free) shortcut into ``add``.

    Example:
        >>> import torchvision
        >>> from relu_surgery.graph.analysis import analyze
        >>> a = analyze(torchvision.models.resnet18())
        >>> unit = postact_unit(a.graph_module, a.blocks[0])
        >>> nodes = {n.name: n for n in a.graph_module.graph.nodes}
        >>> [n.name for n in identity_readers(a.graph_module, nodes[unit.input], nodes[unit.add])]
        ['add']
    """
    out = set()
    for operand in [a for a in add.args[:2] if isinstance(a, fx.Node)]:
        reader, node = add, operand
        while node is not x and node_role(node, gm) == "transparent" and len(node.all_input_nodes) == 1:
            reader, node = node, node.all_input_nodes[0]
        if node is x:
            out.add(reader)
    return out


