"""A plan's actions: every graph edit a rewrite will make, as data, and the one function that runs them.

Planning decides everything: which node (by FX node name in the graph that was planned on; a node
an earlier action inserts is ``New(name)``), which edit, and which new module (built already).
:func:`execute` only looks nodes up and performs the edits in order; it neither analyses the graph
again nor reads any display text. A plan that does not fit its graph is an
:class:`~relu_surgery.errors.InternalError`.

Example:
    >>> import torch.fx as fx, torch.nn as nn
    >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    >>> [n.name for n in gm.graph.nodes]
    ['input_1', '_0', '_1', 'output']
    >>> made = execute(gm, [RemoveNode("_1"), InsertModule("_0", "act", nn.GELU(), "act")])
    >>> [n.target for n in gm.graph.nodes][1:3], made
    (['0', 'act'], [(act, 'act')])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch.fx as fx
import torch.nn as nn

from ..errors import InternalError
from .edits import (Scope, insert_call, insert_module, move_after, qualified, redirect, rehome, relocate,
                    remove_node, replace_call)

__all__ = ["New", "Ref", "Action", "RemoveNode", "SetModule", "ReplaceCall", "InsertModule", "InsertCall",
           "Redirect", "ReplaceInput", "MoveAfter", "Relocate", "Rehome", "execute"]


@dataclass(frozen=True)
class New:
    """A node an earlier action of the same plan inserts, by the qualified name it gets.

    Example:
        >>> New("layer1.0.add_act")
        New(name='layer1.0.add_act')
    """

    name: str


Ref = Union[str, New]  # an FX node name of the planned graph, or a node the plan inserts


class _Nodes:
    """Node lookup during :func:`execute`: the graph's nodes by FX name, the inserted ones by ``New``."""

    def __init__(self, gm: fx.GraphModule):
        self.old = {n.name: n for n in gm.graph.nodes}
        self.new: dict[str, fx.Node] = {}

    def __call__(self, ref: Ref) -> fx.Node:
        table, key = (self.new, ref.name) if isinstance(ref, New) else (self.old, ref)
        try:
            return table[key]
        except KeyError:
            raise InternalError(f"the plan names node {ref!r}, which the graph it is applied to does not have") \
                from None

    def all(self, refs) -> list[fx.Node] | None:
        return None if refs is None else [self(r) for r in refs]


@dataclass(frozen=True)
class RemoveNode:
    """Take ``node`` out: its users read its input (an erased activation, a removed norm).

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))  # nodes: input_1, _0, _1, output
        >>> _ = execute(gm, [RemoveNode("_1")])
        >>> [n.name for n in gm.graph.nodes]
        ['input_1', '_0', 'output']
    """

    node: Ref

    def run(self, gm, nodes):
        remove_node(gm, nodes(self.node))


@dataclass(frozen=True)
class SetModule:
    """Install ``module`` at ``path``, replacing the module there (a widened consumer, a NormProp conv,
    a norm+act layer with a new activation). The graph does not change.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))  # nodes: input_1, _0, _1, output
        >>> _ = execute(gm, [SetModule("1", nn.GELU())])
        >>> type(gm.get_submodule("1")).__name__
        'GELU'
    """

    path: str
    module: nn.Module

    def run(self, gm, nodes):
        gm.add_submodule(self.path, self.module)


@dataclass(frozen=True)
class ReplaceCall:
    """Make the activation call ``node`` a call of ``module``, installed at ``path``; ``label`` is
    what the report lists as added.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))  # nodes: input_1, _0, _1, output
        >>> execute(gm, [ReplaceCall("_1", "1_gelu", nn.GELU(), "1 (1_gelu)")])
        [(_1_gelu, '1 (1_gelu)')]
    """

    node: Ref
    path: str
    module: nn.Module
    label: str = ""

    def run(self, gm, nodes):
        return replace_call(gm, nodes(self.node), self.path, self.module)


@dataclass(frozen=True)
class InsertModule:
    """Call ``module`` (installed at ``path``) on ``anchor``'s output; the new node is named ``name``.

    ``users`` of ``anchor`` (all when None) read the new node; ``scope`` None: ``anchor``'s.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))  # nodes: input_1, _0, _1, output
        >>> made = execute(gm, [InsertModule("_1", "drop", nn.Dropout(), "drop")])
        >>> [n.target for n in gm.graph.nodes][1:4]
        ['0', '1', 'drop']
    """

    anchor: Ref
    path: str
    module: nn.Module
    name: str
    scope: Scope | None = None
    users: tuple[Ref, ...] | None = None
    label: str = ""

    def run(self, gm, nodes):
        return insert_module(gm, nodes(self.anchor), self.path, self.module, self.name, self.scope,
                             nodes.all(self.users))


@dataclass(frozen=True)
class InsertCall:
    """Call function ``target`` (or method, ``op="call_method"``) on ``anchor``'s output, with
    ``args`` / ``kwargs`` after the tensor; otherwise as :class:`InsertModule`.

    Example:
        >>> import torch
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2)))
        >>> made = execute(gm, [InsertCall("_0", "call_function", torch.relu, (), {}, "act")])
        >>> [n.name for n in gm.graph.nodes]
        ['input_1', '_0', 'act', 'output']
    """

    anchor: Ref
    op: str
    target: object
    args: tuple
    kwargs: dict
    name: str
    scope: Scope | None = None
    users: tuple[Ref, ...] | None = None
    label: str = ""

    def run(self, gm, nodes):
        return insert_call(gm, nodes(self.anchor), self.op, self.target, self.args, self.kwargs, self.name,
                           self.scope, nodes.all(self.users))


@dataclass(frozen=True)
class Redirect:
    """Every user of ``node`` except ``keep`` reads ``to`` instead.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))  # nodes: input_1, _0, _1, output
        >>> _ = execute(gm, [Redirect("_1", "_0")])  # the output reads the Linear; the ReLU has no user
        >>> [u.name for u in gm.graph.find_nodes(op="call_module", target="0")[0].users]
        ['_1', 'output']
    """

    node: Ref
    to: Ref
    keep: tuple[Ref, ...] = ()

    def run(self, gm, nodes):
        redirect(nodes(self.node), nodes(self.to), nodes.all(self.keep))


@dataclass(frozen=True)
class ReplaceInput:
    """``user`` reads ``new`` where it read ``old``.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))  # nodes: input_1, _0, _1, output
        >>> _ = execute(gm, [ReplaceInput("output", "_1", "_0")])
        >>> list(gm.graph.nodes)[-1].args
        (_0,)
    """

    user: Ref
    old: Ref
    new: Ref

    def run(self, gm, nodes):
        nodes(self.user).replace_input_with(nodes(self.old), nodes(self.new))


@dataclass(frozen=True)
class MoveAfter:
    """Move ``nodes`` (in order) to right after ``anchor`` in the node list (the order of the code).

    Example:
        >>> gm = fx.symbolic_trace(lambda x: (x.relu(), x.sigmoid()))
        >>> _ = execute(gm, [MoveAfter("x", ("sigmoid",))])
        >>> [n.name for n in gm.graph.nodes]
        ['x', 'sigmoid', 'relu', 'output']
    """

    anchor: Ref
    nodes: tuple[Ref, ...]

    def run(self, gm, nodes):
        move_after(nodes(self.anchor), *nodes.all(self.nodes))


@dataclass(frozen=True)
class Relocate:
    """Move one-input ``node`` to right after ``after`` (a norm after the addition, ...).

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.ReLU()))
        >>> _ = execute(gm, [Relocate("_1", "_2")])  # the norm now follows the ReLU
        >>> [n.target for n in gm.graph.nodes][1:4]
        ['0', '2', '1']
    """

    node: Ref
    after: Ref

    def run(self, gm, nodes):
        relocate(nodes(self.node), nodes(self.after))


@dataclass(frozen=True)
class Rehome:
    """``node`` calls its module at ``path`` (``module``: a copy installed there; None: the same
    object moves) and takes ``path`` as its name and ``scope`` as its scope.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))  # nodes: input_1, _0, _1, output
        >>> _ = execute(gm, [Rehome("_0", "fc", ((), ()))])
        >>> [n for n, _ in gm.named_children()], list(gm.graph.nodes)[1].name
        (['1', 'fc'], 'fc')
    """

    node: Ref
    path: str
    scope: Scope
    module: nn.Module | None = None

    def run(self, gm, nodes):
        rehome(gm, nodes(self.node), self.path, self.scope, self.module)


Action = Union[RemoveNode, SetModule, ReplaceCall, InsertModule, InsertCall, Redirect, ReplaceInput, MoveAfter,
               Relocate, Rehome]


def execute(gm: fx.GraphModule, actions) -> list[tuple[fx.Node, str]]:
    """Run ``actions`` on ``gm`` in order; returns each inserted node with its report label.

    The label is the action's ``label``, else the node's qualified name. See the module example.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))  # nodes: input_1, _0, _1, output
        >>> execute(gm, [RemoveNode("_1")])
        []
    """
    nodes = _Nodes(gm)
    made = []
    for action in actions:
        node = action.run(gm, nodes)
        if node is not None:
            nodes.new[qualified(node)] = node
            made.append((node, action.label or qualified(node)))
    return made
