"""The norm -> act runs outside every block that the conversions move: the stem's and the final one.

Example:
    >>> import relu_surgery as rs
    >>> from relu_surgery.graph.analysis import analyze
    >>> a = analyze(rs.create_model("cifar_resnet20"))
    >>> x = next(n for n in a.graph_module.graph.nodes if n.name == "layer1_0_conv1").args[0]
    >>> stem_chain(a.graph_module, x, a.blocks)
    Chain(anchor='stem_conv', norm='stem_bn', act='stem_relu')
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.fx as fx

from ..regions import BlockRegions
from .anatomy import is_composite_node, node_role, walk_back

__all__ = ["Chain", "stem_chain", "final_chain", "stem_anchor"]


@dataclass(frozen=True)
class Chain:
    """A norm -> act run (``norm`` None when ``act`` is a composite leaf) next to ``anchor``.

    Example:
        >>> import torchvision
        >>> from relu_surgery.graph.analysis import analyze
        >>> a = analyze(torchvision.models.resnet18())
        >>> stem_chain(a.graph_module, a.graph_module.graph.find_nodes(op="call_module", target="maxpool")[0], a.blocks)
        Chain(anchor='conv1', norm='bn1', act='relu')
    """

    anchor: str
    norm: str | None
    act: str


def _walk_forward(node: fx.Node, gm: fx.GraphModule) -> fx.Node | None:
    """The first non-transparent node of the single-user chain after ``node``."""
    while len(node.users) == 1:
        node = next(iter(node.users))
        if node_role(node, gm) != "transparent":
            return node
    return None


def stem_chain(gm: fx.GraphModule, x: fx.Node, blocks, need_norm: bool = True) -> Chain | None:
    """The stem's norm -> act feeding block input ``x`` (through pools), outside every block.

    ``anchor`` is the weight node the norm follows (the stem conv). With ``need_norm`` False only
    the activation is required.

    Example:
        >>> import torchvision
        >>> from relu_surgery.graph.analysis import analyze
        >>> a = analyze(torchvision.models.resnet18())
        >>> x = next(n for n in a.graph_module.graph.nodes if n.name == "maxpool")
        >>> stem_chain(a.graph_module, x, a.blocks).act
        'relu'
    """
    act, regions = walk_back(x, gm), BlockRegions(gm, blocks)
    if node_role(act, gm) != "activation" or not regions.outside(act) or not act.all_input_nodes:
        return None
    if is_composite_node(act, gm):
        anchor = walk_back(act.all_input_nodes[0], gm)
        return Chain(anchor.name, None, act.name) if node_role(anchor, gm) == "weight" else None
    norm = act.all_input_nodes[0]
    if node_role(norm, gm) == "norm" and regions.outside(norm) and len(norm.users) == 1:
        return Chain(norm.all_input_nodes[0].name, norm.name, act.name)
    return None if need_norm else Chain(norm.name, None, act.name)


def final_chain(gm: fx.GraphModule, add: fx.Node, blocks) -> Chain | None:
    """The norm -> act between the last block's addition and the head (seed 003's extra activation).

    Example:
        >>> import relu_surgery as rs
        >>> from relu_surgery.graph.analysis import analyze
        >>> a = analyze(rs.create_model("preact_resnet110"))
        >>> from relu_surgery.surgery.convert.anatomy import preact_unit
        >>> unit = preact_unit(a.graph_module, a.blocks[-1])
        >>> final_chain(a.graph_module, next(n for n in a.graph_module.graph.nodes if n.name == unit.add), a.blocks)
        Chain(anchor='add_53', norm='bn_final', act='relu_final')
    """
    first, regions = _walk_forward(add, gm), BlockRegions(gm, blocks)
    if first is None or not regions.outside(first):
        return None
    if node_role(first, gm) == "activation" and is_composite_node(first, gm):
        return Chain(add.name, None, first.name)
    if node_role(first, gm) == "norm" and len(first.users) == 1:
        act = next(iter(first.users))
        if node_role(act, gm) == "activation" and not is_composite_node(act, gm) and regions.outside(act):
            return Chain(add.name, first.name, act.name)
    return None


def stem_anchor(gm: fx.GraphModule, x: fx.Node, blocks) -> fx.Node:
    """The stem weight layer before block input ``x`` (through pools), else ``x`` itself.

    Example:
        >>> import torchvision
        >>> from relu_surgery.graph.analysis import analyze
        >>> a = analyze(torchvision.models.resnet18())
        >>> stem_anchor(a.graph_module, next(n for n in a.graph_module.graph.nodes if n.name == "maxpool"), a.blocks).name
        'maxpool'
    """
    found = walk_back(x, gm)
    if node_role(found, gm) == "weight" and BlockRegions(gm, blocks).outside(found):
        return found
    return x
