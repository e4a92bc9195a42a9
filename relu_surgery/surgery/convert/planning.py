"""The book the pre-/after-activation conversions fill while planning, and what they share.

A :class:`PlanBook` collects a conversion's site changes (for the report), every new module path
and channel count it decides, the norm lists the report shows (added, untrained; moved; removed),
and the actions that apply it (:mod:`relu_surgery.surgery.actions`); :meth:`PlanBook.plan` turns
them into the :class:`~relu_surgery.surgery.plan.Plan`.

Example:
    >>> import torch.nn as nn
    >>> from relu_surgery.graph.analysis import analyze
    >>> book = PlanBook(analyze(nn.Sequential(nn.Conv2d(3, 8, 3)), require_blocks=False))
    >>> book.path("1:norm", "0_norm"), book.path("2:norm", "0_norm")
    ('0_norm', '0_norm_1')
"""

from __future__ import annotations

from typing import Callable

import torch.fx as fx
import torch.nn as nn

from ...errors import NoBlocksError, SurgeryError
from ...graph.activations import activation_of
from ...graph.analysis import Analysis
from ...graph.tracing import annotate_shapes
from ...report.records import SiteChange
from ..builders import act_module, describe
from ..actions import InsertCall, InsertModule
from ..edits import Scope, free_path, out_of_place, qualified
from ..plan import Plan
from ..regions import BlockRegions
from .obstacles import cannot_convert, none_convertible

__all__ = ["PlanBook", "module_of", "is_composite", "find_units"]


def module_of(gm: fx.GraphModule, node: fx.Node | None) -> nn.Module | None:
    """The module a ``call_module`` node calls (None for other nodes).

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.ReLU()))
        >>> module_of(gm, list(gm.graph.nodes)[1])
        ReLU()
    """
    return gm.get_submodule(str(node.target)) if node is not None and node.op == "call_module" else None


def is_composite(gm: fx.GraphModule, node: fx.Node) -> bool:
    """True when ``node`` is the activation of a composite norm+act layer (timm ``BatchNormAct2d``).

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.ReLU()))
        >>> is_composite(gm, list(gm.graph.nodes)[1])
        False
    """
    ref = activation_of(node, gm)
    return ref is not None and ref.composite is not None


class PlanBook:
    """Collects a plan's changes, new module paths, channel counts, norm lists and actions.

    Example:
        >>> import relu_surgery as rs
        >>> from relu_surgery.graph.analysis import analyze
        >>> book = PlanBook(analyze(rs.create_model("cifar_resnet20")))
        >>> book.drop(1, "layer1_0_relu2", "after the addition")
        >>> book.changes[0].after, book.nodes_removed
        ('removed', ['layer1.0.relu2'])
    """

    def __init__(self, analysis: Analysis):
        self.analysis, self.gm, self.taken = analysis, analysis.graph_module, set()
        self.nodes = {n.name: n for n in self.gm.graph.nodes}
        self.regions = BlockRegions(self.gm, analysis.blocks)
        self.actions: list = []
        self.nodes_removed: list[str] = []
        self.changes: list[SiteChange] = []
        self.paths: dict[str, str] = {}
        self.sizes: dict[str, int] = {}
        self._shaped = False
        self.added: list[str] = []
        self.moved: list[tuple[str, str, str]] = []
        self.removed: list[str] = []

    def path(self, key: str, wanted: str) -> str:
        """Reserve a free module path near ``wanted`` under ``key``."""
        self.paths[key] = free_path(self.gm, wanted, self.taken)
        return self.paths[key]

    def size(self, key: str, channels: Callable[[], int | None], where: str) -> int:
        """Channel count of a new layer: ``channels()`` (module attributes), else from recorded shapes."""
        value = channels()
        if value is None and not self._shaped:  # e.g. a conv written as F.conv2d: run shape propagation once
            annotate_shapes(self.analysis.traced, self.analysis.example_input)
            self._shaped = True
            value = channels()
        if value is None:
            raise SurgeryError(f"convert: cannot tell the channel count {where}")
        self.sizes[key] = value
        return value

    def kind(self, name: str) -> str:
        """Activation kind of node ``name`` ("" for a non-activation)."""
        ref = activation_of(self.nodes[name], self.gm)
        return ref.kind if ref is not None else ""

    def change(self, block: int, site: str, before: str, after: str, node: str = "", kind: str = "",
               new_kind: str = "") -> None:
        self.changes.append(SiteChange(block, site, before, after, node, kind, new_kind))

    def drop(self, block: int, name: str | None, why: str) -> None:
        """Record removing the norm / activation / composite node ``name`` (None: nothing)."""
        if name is None:
            return
        node, kind = self.nodes[name], self.kind(name)
        self.change(block, qualified(node), f"{describe(self.gm, node)} ({why})", "removed", name, kind)
        self.nodes_removed.append(qualified(node))
        if not kind or is_composite(self.gm, node):
            self.removed.append(str(node.target))

    def new_norm(self, block: int, key: str, channels: Callable[[], int | None], template: nn.Module | None,
                 where: str, wanted: str, new_kind: str = "") -> str:
        """Record a new (untrained) norm at a free path near ``wanted``; returns the path.

        ``channels()`` gives its channel count (see :meth:`size`).
        """
        path = self.path(key, wanted)
        channels = self.size(key, channels, f"for {path} ({where})")
        cls = type(template).__name__ if template is not None else "BatchNorm2d"
        self.change(block, path, "(none)", f"{cls}({channels}) {where} (new, untrained)", new_kind=new_kind)
        self.added.append(path)
        return path

    def move(self, block: int, node: fx.Node, before: str, path: str, where: str, kind: str = "") -> None:
        """Record moving ``node`` to module ``path`` (a norm or a composite is listed as moved)."""
        self.change(block, qualified(node), f"{describe(self.gm, node)} ({before})", f"moved to {path}, {where}",
                    node.name, kind, kind)
        if not kind or is_composite(self.gm, node):
            self.moved.append((str(node.target), path, where))

    def insert_act(self, anchor, template: fx.Node, path: str, scope: Scope, users=None) -> None:
        """Plan an activation like ``template`` (same spelling, never in-place) after ``anchor``.

        A module activation (or a composite's) becomes a new module at ``path``; a function or
        method activation (``F.relu``, ``x.relu()``) is inserted as the same call.
        """
        if template.op == "call_module":
            self.actions.append(InsertModule(anchor, path, act_module(self.gm, template), path, scope, users))
            return
        kwargs = {k: (False if k == "inplace" else v) for k, v in template.kwargs.items()}
        self.actions.append(InsertCall(anchor, template.op, out_of_place(template.op, template.target),
                                       tuple(template.args[1:]), kwargs, path, scope, users))

    def plan(self, analysis: Analysis, units, reason: str, warnings) -> Plan:
        """The finished :class:`~relu_surgery.surgery.plan.Plan` (inserted nodes listed in graph order)."""
        return Plan("convert", tuple(analysis.blocks), tuple(u.block for u in units), reason, tuple(self.changes),
                    tuple(warnings), tuple(self.actions), tuple(self.nodes_removed), norms_added=tuple(self.added),
                    norms_moved=tuple(self.moved), norms_removed=tuple(self.removed), added_in_graph_order=True)


def find_units(analysis: Analysis, finder, what: str, missing: str, explain=None) -> tuple[list, list[str]]:
    """Anatomies of the blocks ``finder(gm, block, region)`` recognises, and a warning for every other block.

    ``explain(gm, block, region)`` may give the reason a rejected block cannot be converted
    (:func:`~relu_surgery.surgery.convert.obstacles.preact_obstacle`), which its warning and the
    error then name. Raises :class:`NoBlocksError` (``missing``, or the reasons) when there is no unit.

    Example:
        >>> import relu_surgery as rs
        >>> from relu_surgery.graph.analysis import analyze
        >>> from relu_surgery.surgery.convert.anatomy import postact_unit
        >>> units, _ = find_units(analyze(rs.create_model("cifar_resnet20")), postact_unit, "a block", "blocks")
        >>> len(units), units[0].act
        (9, 'layer1_0_relu2')
    """
    units, warnings, obstacles = [], [], []
    gm, regions = analysis.graph_module, BlockRegions(analysis.graph_module, analysis.blocks)
    for block in analysis.blocks:
        region = regions.nodes(block.name)
        unit = finder(gm, block, region)
        reason = explain(gm, block, region) if unit is None and explain is not None else None
        if unit is not None:
            units.append(unit)
        elif reason is not None:
            obstacles.append((block, reason))
            warnings.append(f"block {block.index} ({block.name}, {block.type}) {cannot_convert(reason)}: left as is")
        else:
            warnings.append(f"block {block.index} ({block.name}, {block.type}) is not {what}: left as is")
    if not units:
        raise NoBlocksError(none_convertible(analysis.label, obstacles) if obstacles else
                            f"convert: {analysis.label} has no {missing}")
    return units, warnings
