"""Which graph nodes belong to which block: the one block-region helper of the rewrites.

A node belongs to a block when the block's module was running when the node was created (its
``rs_scope``, recorded by the tracer); the nodes of a block, in graph order, are its region.

Example:
    >>> import torchvision
    >>> from relu_surgery.graph.analysis import analyze
    >>> a = analyze(torchvision.models.resnet18())
    >>> regions = BlockRegions(a.graph_module, a.blocks)
    >>> [n.meta["rs_name"] for n in regions.nodes("layer1.0")][:3]
    ['layer1.0.conv1', 'layer1.0.bn1', 'layer1.0.relu']
    >>> regions.block_of(regions.nodes("layer2.0")[0]).index, regions.outside(next(iter(a.graph_module.graph.nodes)))
    (3, True)
"""

from __future__ import annotations

import torch.fx as fx

from ..graph.records import Block

__all__ = ["BlockRegions"]


class BlockRegions:
    """The regions of ``blocks`` in ``gm``, found in one pass over the graph when first asked for.

    Example:
        >>> import torch.nn as nn
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.ReLU()))
        >>> BlockRegions(gm, []).outside(list(gm.graph.nodes)[1])
        True
    """

    def __init__(self, gm: fx.GraphModule, blocks):
        self.gm = gm
        self.blocks = list(blocks)
        self._names = {b.name for b in self.blocks}
        self._regions: dict[str, list[fx.Node]] | None = None

    def nodes(self, name: str) -> list[fx.Node]:
        """The nodes of the block called ``name``, in graph order."""
        if self._regions is None:
            self._regions = {b.name: [] for b in self.blocks}
            for node in self.gm.graph.nodes:
                for scope in node.meta.get("rs_scope", ()):
                    region = self._regions.get(scope)
                    if region is not None:
                        region.append(node)
        return self._regions[name]

    def block_of(self, node: fx.Node) -> Block | None:
        """The first of the blocks (in order) whose module scope holds ``node``, or None."""
        scope = node.meta.get("rs_scope", ())
        return next((b for b in self.blocks if b.name in scope), None)

    def outside(self, node: fx.Node) -> bool:
        """True when ``node`` belongs to none of the blocks."""
        return not self._names.intersection(node.meta.get("rs_scope", ()))
