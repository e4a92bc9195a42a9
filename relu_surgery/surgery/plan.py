"""A rewrite decided but not yet applied: what it will do (actions) and what the report shows (changes).

Example:
    >>> from relu_surgery.surgery.actions import RemoveNode
    >>> plan = Plan("erase", blocks=(), selected=(), selection_reason="none", changes=(),
    ...             actions=(RemoveNode("relu"),), nodes_removed=("relu",))
    >>> plan.selected_blocks, plan.actions
    ((), (RemoveNode(node='relu'),))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.fx as fx

from ..graph.records import Block
from ..report.records import SiteChange

__all__ = ["Plan"]


@dataclass(frozen=True)
class Plan:
    """A planned rewrite step.

    ``actions`` are the graph edits, in the order they run (:mod:`relu_surgery.surgery.actions`);
    ``changes`` say per site what happens, for the report (display only, never read to apply).
    ``nodes_removed`` are the qualified names of the nodes the actions remove; ``norms_*`` the
    norm layers a structural rewrite adds (untrained), moves (from path, to path, where) or removes.
    ``added_in_graph_order``: the report lists inserted nodes in graph order (the conversions,
    which edit the last block first), else in the order of the actions.

    Example:
        >>> import relu_surgery as rs
        >>> from relu_surgery.graph.analysis import analyze
        >>> from relu_surgery.surgery.erase import erase_step
        >>> plan = erase_step(proportion=0.5).plan(analyze(rs.create_model("cifar_resnet20")))
        >>> plan.selected, plan.actions[0], plan.changes[0].after
        ((1, 3, 5, 7, 9), RemoveNode(node='layer1_0_relu2'), 'Identity (erased)')
    """

    rewrite: str
    blocks: tuple[Block, ...]
    selected: tuple[int, ...]
    selection_reason: str
    changes: tuple[SiteChange, ...]
    warnings: tuple[str, ...] = ()
    actions: tuple = ()
    nodes_removed: tuple[str, ...] = ()
    norms_added: tuple[str, ...] = ()
    norms_moved: tuple[tuple[str, str, str], ...] = ()
    norms_removed: tuple[str, ...] = ()
    added_in_graph_order: bool = False

    @property
    def selected_blocks(self) -> tuple[Block, ...]:
        """The blocks the plan selected, in order."""
        chosen = set(self.selected)
        return tuple(b for b in self.blocks if b.index in chosen)

    def nodes_added(self, gm: fx.GraphModule, made: list[tuple[fx.Node, str]]) -> tuple[str, ...]:
        """The report's labels of the nodes the actions inserted (``made``: from ``execute``)."""
        if not self.added_in_graph_order:
            return tuple(label for _, label in made)
        labels = {node: label for node, label in made}
        return tuple(labels[n] for n in gm.graph.nodes if n in labels)
