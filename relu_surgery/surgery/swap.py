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
    >>> new, report = swap(torchvision.models.resnet18(), to="prelu", location="last")
    >>> [c.after for c in report.changes][:1], report.params_after - report.params_before
    (['nn.PReLU(64, init=0.25)'], 1920)
"""

from __future__ import annotations

import torch.fx as fx
import torch.nn as nn

from ..graph.activations import activation_of, make_activation, normalize_kinds
from ..graph.analysis import Analysis
from ..graph.blocks import BlockSpec
from ..errors import SelectionError
from .plan import Plan
from ..report.records import SiteChange
from ..report.report import Report, StepReport
from .selection import select_blocks
from ..graph.tracing import annotate_shapes
from .edits import call_counts, composite_with_act, node_channels, qualified, replace_with_module, site_path
from .pipeline import Step, run_rewrite
from .erase import parse_location, sites_at

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
    """How a report spells the new activation (``nn.PReLU(64, init=0.25)``, ``nn.GELU``)."""
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


def _change(block: int, name: str, spelling: str, node: fx.Node, kind: str, to: str, composite) -> SiteChange:
    after = describe_activation(to, node_channels(node))
    if composite:
        after = f"{composite}.act -> {after}"
    return SiteChange(block, name, spelling, after, node.name, kind, new_kind=to)


def _plan(analysis: Analysis, to, proportion, location, blocks, stage, random, seed, kinds,
          outside_blocks, settings) -> Plan:
    annotate_shapes(analysis.traced, analysis.example_input)
    nodes = {n.name: n for n in analysis.graph_module.graph.nodes}
    selection = select_blocks(analysis.blocks, proportion, blocks, stage, random, seed)
    chosen = set(selection.indices)
    changes, warnings = [], []
    for block in analysis.blocks:
        if block.index not in chosen:
            continue
        sites = [s for s in sites_at(block, location, kinds) if s.kind != to]
        if not sites:
            warnings.append(f"block {block.index} ({block.name}, {block.type}) has no site at location "
                            f"{location} of kind {'/'.join(sorted(kinds))} to swap to {to}")
        changes += [_change(block.index, s.name, s.spelling, nodes[s.node], s.kind, to, s.composite) for s in sites]
    outside = [n for n in _outside_sites(analysis, kinds) if activation_of(n, analysis.graph_module).kind != to]
    if outside_blocks:
        for node in outside:
            ref = activation_of(node, analysis.graph_module)
            name = qualified(node) + (".act" if ref.composite else "")
            changes.append(_change(0, name, ref.spelling, node, ref.kind, to, ref.composite))
    elif outside and location == "all":
        warnings.append(f"{len(outside)} {'/'.join(sorted(kinds))} site(s) outside every block left unchanged "
                        f"({', '.join(qualified(n) for n in outside[:4])}{', ...' if len(outside) > 4 else ''}); "
                        "seed 000's PReLU-all swaps them too: pass outside_blocks=True / --outside-blocks")
    return Plan("swap", settings, tuple(analysis.blocks), selection.indices, selection.reason,
                tuple(changes), tuple(warnings))


def _apply(gm: fx.GraphModule, plan: Plan, to: str) -> StepReport:
    nodes = {n.name: n for n in gm.graph.nodes}
    counts = call_counts(gm)
    added, removed = [], []
    for change in plan.changes:
        node = nodes[change.node]
        module = make_activation(to, node_channels(node))
        ref = activation_of(node, gm)
        if ref is not None and ref.composite:
            composite_with_act(gm, ref.composite, module)
            continue
        path = site_path(gm, node, to, counts)
        removed.append(qualified(node))
        new = replace_with_module(gm, node, path, module)
        added.append(f"{qualified(new)} ({path})")
    return StepReport("swap", plan.settings, plan.selected, plan.selection_reason, plan.changes,
                      nodes_removed=tuple(removed), nodes_added=tuple(added), warnings=plan.warnings)


def swap_step(to: str = "prelu", proportion: float = 1.0, location="all", blocks=None, activations=("relu",),
              stage=None, random: bool = False, seed: int = 0, outside_blocks: bool = False) -> Step:
    """The swap step with its settings (for :func:`run_rewrite` and recipes)."""
    to = check_target(to)
    location = parse_location(location)
    kinds = normalize_kinds(activations)
    settings = {"to": to, "proportion": float(proportion), "location": location, "blocks": blocks,
                "stage": stage, "random": random, "seed": seed, "activations": sorted(kinds),
                "outside_blocks": bool(outside_blocks)}
    return Step(
        "swap", settings,
        lambda a: _plan(a, to, proportion, location, blocks, stage, random, seed, kinds, outside_blocks, settings),
        lambda gm, plan: _apply(gm, plan, to), tuple(sorted(kinds | {to})),
    )


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
        >>> new, report = swap(torchvision.models.resnet18(), to="gelu", location="all", outside_blocks=True)
        >>> report.sites_after
        {'gelu': 17}
    """
    step = swap_step(to, proportion, location, blocks, activations, stage, random, seed, outside_blocks)
    spec = BlockSpec(tuple(block_types), tuple(block_names), predicate)
    if spec:
        step.settings["discovery"] = spec.to_recipe()
    return run_rewrite(model, [step], example_input, spec, dry_run, check=check)
