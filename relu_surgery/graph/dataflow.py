"""The traced graph as a dataflow DAG: what flows from the input, dominators, fork-join regions.

A merge (residual ``+``, branch ``cat``) joins paths that forked at its *immediate dominator*:
the last node every path from the input to the merge passes through. The nodes on those paths
form the merge's single-entry single-exit region, which :func:`merge_region` returns.

Example:
    >>> import torch, torch.nn as nn
    >>> class Res(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv = nn.Conv2d(2, 2, 1)
    ...     def forward(self, x):
    ...         x = torch.relu(x)
    ...         return self.conv(x) + x
    >>> gm = fx.symbolic_trace(Res())
    >>> flow = Dataflow(gm.graph)
    >>> add = [n for n in gm.graph.nodes if n.name == "add"][0]
    >>> flow.fork(add).name, [n.name for n in flow.merge_region(add)]
    ('relu', ['conv', 'add'])
"""

from __future__ import annotations

import networkx as nx
import torch.fx as fx

__all__ = ["Dataflow"]

_SOURCE = "<input>"


class Dataflow:
    """Dominators and regions of a traced graph, over the nodes that the model input reaches.

    Nodes fed only by parameters or constants (``get_attr``, ``torch.zeros``) are not on the
    dataflow: they neither fork nor join paths.

    Example:
        >>> import torch
        >>> gm = fx.symbolic_trace(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()))
        >>> flow = Dataflow(gm.graph)
        >>> [n.name for n in gm.graph.nodes if flow.reached(n)]
        ['input_1', '_0', '_1', 'output']
    """

    def __init__(self, graph: fx.Graph):
        self.dag = nx.DiGraph()
        self.dag.add_node(_SOURCE)
        for node in graph.nodes:
            if node.op == "placeholder":
                self.dag.add_edge(_SOURCE, node)
            for a in node.all_input_nodes:
                if a in self.dag:
                    self.dag.add_edge(a, node)
        self._idom = nx.immediate_dominators(self.dag, _SOURCE)

    def reached(self, node: fx.Node) -> bool:
        """Whether the model input flows into ``node``."""
        return node in self.dag

    def fork(self, node: fx.Node) -> fx.Node | None:
        """The immediate dominator of ``node``: where its input paths last meet (None: the input itself)."""
        d = self._idom.get(node)
        return None if d is None or d == _SOURCE else d

    def merge_region(self, node: fx.Node) -> list[fx.Node]:
        """The nodes on the paths from ``fork(node)`` (excluded) to ``node`` (included), in graph order."""
        start = self._idom.get(node)
        if start is None:
            return []
        inside = nx.ancestors(self.dag, node) & nx.descendants(self.dag, start)
        inside.discard(_SOURCE)
        inside.add(node)
        return [n for n in _graph_order(node, inside)]

    def reaches(self, start: fx.Node, goal: set) -> bool:
        """Whether some dataflow path leads from ``start`` into ``goal``."""
        return bool(goal & (nx.descendants(self.dag, start) | {start})) if start in self.dag else False


def _graph_order(anchor: fx.Node, nodes: set) -> list[fx.Node]:
    return [n for n in anchor.graph.nodes if n in nodes]
