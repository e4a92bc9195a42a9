"""The plan record of the pre-/after-activation conversions and the book that fills it.

A :class:`ConvertPlan` is a :class:`~relu_surgery.graph.records.Plan` plus what applying needs: the block
anatomies (``units``), the stem / final norm+act chains, and every new module path decided while
planning (``paths``), and the lists the report shows: norms added (untrained), moved and removed.

Example:
    >>> import torch.nn as nn
    >>> from relu_surgery.graph.analysis import analyze
    >>> book = PlanBook(analyze(nn.Sequential(nn.Conv2d(3, 8, 3)), require_blocks=False))
    >>> book.path("1:norm", "0_norm"), book.path("2:norm", "0_norm")
    ('0_norm', '0_norm_1')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.fx as fx
import torch.nn as nn

from ...graph.activations import activation_of
from ...graph.analysis import Analysis
from ...errors import NoBlocksError, SurgeryError
from ..plan import Plan
from ...report.records import SiteChange
from ...report.report import StepReport
from ...graph.tracing import annotate_shapes
from .anatomy import Chain, block_regions
from .edit import describe, free_path, is_norm_act

__all__ = ["ConvertPlan", "PlanBook", "site_name", "module_of", "is_composite", "find_units", "bypass",
           "step_report"]


@dataclass(frozen=True)
class ConvertPlan(Plan):
    """A conversion plan: the units (anatomies), the stem / final chains, every new module path.

    ``paths`` and ``sizes`` map a key (``"<block>:norm"``, ``"final:norm"``, ...) to the module path
    and the channel count of each new layer.
    """

    units: tuple = ()
    stem: Chain | None = None
    final: Chain | None = None
    paths: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    norms_added: tuple[str, ...] = ()
    norms_moved: tuple[tuple[str, str, str], ...] = ()
    norms_removed: tuple[str, ...] = ()


def site_name(node: fx.Node) -> str:
    """The qualified name users know for ``node``."""
    return node.meta.get("rs_name", node.name)


def module_of(gm: fx.GraphModule, node: fx.Node | None) -> nn.Module | None:
    """The module a ``call_module`` node calls (None for other nodes)."""
    return gm.get_submodule(str(node.target)) if node is not None and node.op == "call_module" else None


def is_composite(gm: fx.GraphModule, node: fx.Node) -> bool:
    """True when ``node`` calls a composite norm+act layer (timm ``BatchNormAct2d``)."""
    return is_norm_act(module_of(gm, node))


class PlanBook:
    """Collects a plan's changes, new module paths, channel counts and norm lists while planning."""

    def __init__(self, analysis: Analysis):
        self.analysis, self.gm, self.taken = analysis, analysis.graph_module, set()
        self.nodes = {n.name: n for n in self.gm.graph.nodes}
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
        self.change(block, site_name(node), f"{describe(self.gm, node)} ({why})", "removed", name, kind)
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
        self.change(block, site_name(node), f"{describe(self.gm, node)} ({before})", f"moved to {path}, {where}",
                    node.name, kind, kind)
        if not kind or is_composite(self.gm, node):
            self.moved.append((str(node.target), path, where))

    def plan(self, analysis: Analysis, settings: dict, units, reason: str, warnings, **extra) -> ConvertPlan:
        """The finished :class:`ConvertPlan`."""
        return ConvertPlan("convert", settings, tuple(analysis.blocks), tuple(u.block for u in units), reason,
                           tuple(self.changes), tuple(warnings), units=tuple(units), paths=dict(self.paths),
                           sizes=dict(self.sizes),
                           norms_added=tuple(self.added), norms_moved=tuple(self.moved),
                           norms_removed=tuple(self.removed), **extra)


def find_units(analysis: Analysis, finder, what: str, missing: str) -> tuple[list, list[str]]:
    """Anatomies of the blocks ``finder`` recognises, and a warning for every other block.

    Raises :class:`NoBlocksError` (``missing``) when there is none.
    """
    units, warnings = [], []
    regions = block_regions(analysis.graph_module, analysis.blocks)
    for block in analysis.blocks:
        unit = finder(analysis.graph_module, block, regions[block.name])
        if unit is None:
            warnings.append(f"block {block.index} ({block.name}, {block.type}) is not {what}: left as is")
        else:
            units.append(unit)
    if not units:
        raise NoBlocksError(f"convert: {analysis.label} has no {missing}")
    return units, warnings


def bypass(gm: fx.GraphModule, node: fx.Node) -> None:
    """Remove ``node``: its users read its (first) input instead."""
    node.replace_all_uses_with(node.all_input_nodes[0])
    gm.graph.erase_node(node)


def step_report(gm: fx.GraphModule, plan: ConvertPlan, before: set, removed: list[str]) -> StepReport:
    """The step's report: the plan's changes and norm lists, nodes added and removed.

    ``before`` is the set of nodes the graph had before the step (node objects: moved nodes may
    be renamed).
    """
    added = [site_name(n) for n in gm.graph.nodes if n not in before]
    return StepReport(plan.rewrite, plan.settings, plan.selected, plan.selection_reason, plan.changes,
                      nodes_removed=tuple(removed), nodes_added=tuple(added), warnings=plan.warnings,
                      norms_added=plan.norms_added, norms_moved=plan.norms_moved,
                      norms_removed=plan.norms_removed)
