"""Swap activation sites to another named activation: PReLU-all / PReLU-sum (seed 000) and any other.

``rs.swap(model, to="prelu", location="all")`` is seed 000's PReLU-all (every ReLU of the blocks
becomes a channel-wise PReLU, init 0.25); ``location="last"`` is PReLU-sum (only the ReLUs right
after the shortcut addition). Any name :func:`relu_surgery.graph.activations.make_activation` knows works
(``gelu``, ``silu``, ``leaky_relu``, ``relu6``, ``identity``, ...), with the same block selection as
EraseReLU (proportion, blocks, stage, random). ``outside_blocks=True`` also swaps the matching
sites outside every block (the stem's ReLU: seed 000's PReLU-all replaces "all ReLU layers").

A module called once is replaced at its own path (``layer1.0.act1`` -> ``PReLU``, state-dict key
``layer1.0.act1.weight``); a shared module keeps serving its other calls and the swapped call gets
a new module at ``<site>_<to>`` (torchvision: ``layer1.0.relu_2_prelu``). For a composite norm+act
layer only its ``act`` changes.

Example:
    >>> import torchvision
    >>> new, report = swap(torchvision.models.resnet18(), to="prelu", location="last", check=False)
    >>> [c.after for c in report.changes][:1], report.params_after - report.params_before
    (['nn.PReLU(64, init=0.25)'], 1920)
"""

from __future__ import annotations

import torch.fx as fx
import torch.nn as nn

from ..errors import SelectionError
from ..graph.activations import activation_of, make_activation, normalize_kinds
from ..graph.analysis import Analysis
from ..graph.blocks import BlockSpec
from ..graph.tracing import annotate_shapes
from ..report.records import SiteChange
from ..report.report import Report
from .actions import ReplaceCall, SetModule
from .builders import composite_act
from .edits import activation_input, call_counts, node_channels, qualified, site_path
from .erase import parse_location, sites_at
from .pipeline import Step, run_rewrite
from .plan import Plan
from .selection import select_blocks, selection_settings

__all__ = ["swap", "swap_step", "check_target", "describe_activation"]


def check_target(to: str) -> str:
    """The canonical name of the activation to swap to; :class:`SelectionError` when unknown.

    Example:
        >>> check_target("Swish"), check_target("identity")
        ('silu', 'identity')
    """
    name = str(to).strip().lower()
    if name == "crelu":
        raise SelectionError("CReLU changes channel counts: use rs.crelu / `relu-surgery crelu` instead of swap")
    if name != "identity":
        kinds = normalize_kinds([name])
        name = next(iter(kinds)) if kinds else name
    try:
        make_activation(name, 1)
    except ValueError:
        raise SelectionError(f"cannot swap to {to!r}: no module builds it "
                             "(try prelu, gelu, silu, leaky_relu, relu6, elu, identity, ...)") from None
    return name


def describe_activation(to: str, channels: int | None) -> str:
    """How a report spells the new activation (``nn.PReLU(64, init=0.25)``, ``nn.GELU``).

    Example:
        >>> describe_activation("prelu", 64), describe_activation("gelu", None)
        ('nn.PReLU(64, init=0.25)', 'nn.GELU')
    """
    if to == "prelu":
        return f"nn.PReLU({channels or 1}, init=0.25)"
    return f"nn.{type(make_activation(to, channels)).__name__}"


def _outside_sites(analysis: Analysis, kinds) -> list[fx.Node]:
    """Activation nodes of the wanted kinds that belong to no block (stem, head)."""
    gm = analysis.graph_module
    inside = {s.node for b in analysis.blocks for s in b.sites}
    out = []
    for node in gm.graph.nodes:
        ref = activation_of(node, gm)
        if ref is not None and node.name not in inside and ("all" in kinds or ref.kind in kinds):
            out.append(node)
    return out


class _Book:
    """The plan's changes and actions, one site at a time."""

    def __init__(self, gm: fx.GraphModule, to: str):
        self.gm, self.to, self.counts, self.taken = gm, to, call_counts(gm), set()
        self.changes, self.actions, self.removed = [], [], []

    def add(self, block: int, name: str, spelling: str, node: fx.Node, kind: str, composite) -> None:
        module = make_activation(self.to, node_channels(node))
        after = describe_activation(self.to, node_channels(node))
        if composite:
            after = f"{composite}.act -> {after}"
            self.actions.append(SetModule(composite, composite_act(self.gm, composite, module, self.counts, "changed")))
        else:
            activation_input(node)  # refuses a call that reads no tensor
            path = site_path(self.gm, node, self.to, self.counts, self.taken)
            self.actions.append(ReplaceCall(node.name, path, module, f"{qualified(node)} ({path})"))
            self.removed.append(qualified(node))
        self.changes.append(SiteChange(block, name, spelling, after, node.name, kind, new_kind=self.to))


def _plan(analysis: Analysis, settings: dict, location, kinds) -> Plan:
    to, outside_blocks = settings["to"], settings["outside_blocks"]
    annotate_shapes(analysis.traced, analysis.example_input)
    gm = analysis.graph_module
    nodes, book = {n.name: n for n in gm.graph.nodes}, _Book(gm, to)
    selection = select_blocks(analysis.blocks, settings["proportion"], settings["blocks"], settings["stage"],
                              settings["random"], settings["seed"])
    chosen = set(selection.indices)
    warnings = []
    for block in analysis.blocks:
        if block.index not in chosen:
            continue
        sites = [s for s in sites_at(block, location, kinds) if s.kind != to]
        if not sites:
            warnings.append(f"block {block.index} ({block.name}, {block.type}) has no site at location "
                            f"{location} of kind {'/'.join(sorted(kinds))} to swap to {to}")
        for s in sites:
            book.add(block.index, s.name, s.spelling, nodes[s.node], s.kind, s.composite)
    outside = [n for n in _outside_sites(analysis, kinds) if activation_of(n, gm).kind != to]
    if outside_blocks:
        for node in outside:
            ref = activation_of(node, gm)
            book.add(0, qualified(node) + (".act" if ref.composite else ""), ref.spelling, node, ref.kind, ref.composite)
    elif outside and location == "all":
        warnings.append(f"{len(outside)} {'/'.join(sorted(kinds))} site(s) outside every block left unchanged "
                        f"({', '.join(qualified(n) for n in outside[:4])}{', ...' if len(outside) > 4 else ''}); "
                        "seed 000's PReLU-all swaps them too: pass outside_blocks=True / --outside-blocks")
    return Plan("swap", tuple(analysis.blocks), selection.indices, selection.reason, tuple(book.changes),
                tuple(warnings), tuple(book.actions), tuple(book.removed))


def swap_step(to: str = "prelu", proportion: float = 1.0, location="all", blocks=None, activations=("relu",),
              stage=None, random: bool = False, seed: int = 0, outside_blocks: bool = False,
              discovery: dict | None = None) -> Step:
    """The swap step with its settings (for :func:`run_rewrite` and recipes).

    Example:
        >>> swap_step("gelu", location="last").settings["to"]
        'gelu'
    """
    to = check_target(to)
    location = parse_location(location)
    kinds = normalize_kinds(activations)
    settings = {"to": to, **selection_settings(proportion, location, blocks, stage, random, seed, kinds, discovery,
                                               outside_blocks=bool(outside_blocks))}
    return Step("swap", settings, lambda a: _plan(a, settings, location, kinds), tuple(sorted(kinds | {to})))


def swap(model: nn.Module, to: str = "prelu", location="all", proportion: float = 1.0, blocks=None,
         activations=("relu",), *, stage=None, random: bool = False, seed: int = 0, outside_blocks: bool = False,
         example_input=None, block_types=(), block_names=(), predicate=None,
         dry_run: bool = False, check: bool = True) -> tuple[nn.Module | None, Report]:
    """Swap the activations at ``location`` of a ``proportion`` of the blocks to ``to``.

    ``to="prelu"`` builds channel-wise PReLUs (init 0.25): ``location="all"`` is seed 000's PReLU-all,
    ``"last"`` its PReLU-sum (the ReLUs after the shortcut addition). ``outside_blocks`` also swaps
    the sites outside every block (the stem). Selection, ``dry_run`` and ``check`` arguments are those of
    :func:`relu_surgery.erase`. Returns ``(new_model, report)``; ``model`` is not modified.

    Example:
        >>> import torchvision
        >>> new, report = swap(torchvision.models.resnet18(), to="gelu", location="all", outside_blocks=True,
        ...                    check=False)
        >>> report.sites_after
        {'gelu': 17}
    """
    spec = BlockSpec(tuple(block_types), tuple(block_names), predicate)
    step = swap_step(to, proportion, location, blocks, activations, stage, random, seed, outside_blocks,
                     spec.to_recipe() if spec else None)
    return run_rewrite(model, [step], example_input, spec, dry_run, check=check)
