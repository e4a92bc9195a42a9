"""EraseReLU (seed 000): replace chosen activation sites by the identity.

``location`` picks sites inside each selected block: ``last`` (the paper's EraseReLU: the sites
from which the block output is reached through no weight, norm or activation), ``first`` (the
paper's ER*: the first site in execution order), ``all``, or an integer N (the N-th site in
execution order, 1-based; negative counts from the end). For a composite norm+act layer only its
activation goes; the state dict keeps every key and value.

Example:
    >>> import torchvision
    >>> new, report = erase(torchvision.models.resnet18(), proportion=0.5, location="last", check=False)
    >>> report.target_sites(), report.target_sites(after=True)
    (17, 13)
"""

from __future__ import annotations

import torch.nn as nn

from ..errors import SelectionError
from ..graph.activations import normalize_kinds
from ..graph.analysis import Analysis
from ..graph.blocks import BlockSpec
from ..graph.records import Block, Site
from ..report.records import SiteChange
from ..report.report import Report
from .actions import RemoveNode, SetModule
from .builders import composite_act
from .convert.api import preactivation_prelude
from .convert.obstacles import cannot_convert, preact_obstacle
from .edits import activation_input, call_counts, qualified
from .pipeline import Step, run_rewrite
from .plan import Plan
from .regions import BlockRegions
from .selection import select_blocks, selection_settings

__all__ = ["erase", "erase_step", "sites_at", "parse_location"]


def parse_location(location) -> str | int:
    """``"last"``, ``"first"``, ``"all"`` or a non-zero integer (also given as a string).

    Example:
        >>> parse_location("2"), parse_location("last")
        (2, 'last')
    """
    if isinstance(location, int) or (isinstance(location, str) and location.lstrip("-").isdigit()):
        value = int(location)
        if value == 0:
            raise SelectionError("location index is 1-based: use 1 for the first site, -1 for the last")
        return value
    if location in ("last", "first", "all"):
        return location
    raise SelectionError(f"location must be last, first, all or a site number, got {location!r}")


def sites_at(block: Block, location, kinds: frozenset[str]) -> list[Site]:
    """The sites of ``block`` at ``location`` whose kind is in ``kinds`` ("all" matches any).

    Example:
        >>> b = Block(1, "b", "T", None, (Site("b.r", "relu", "nn.ReLU", "first", 1, "r"),
        ...                                 Site("b.r_1", "relu", "nn.ReLU", "last", 2, "r_1")))
        >>> [s.name for s in sites_at(b, "first", frozenset({"relu"}))]
        ['b.r']
    """
    sites = list(block.sites)
    if location == "last":
        chosen = [s for s in sites if s.location == "last"]
    elif location == "first":
        chosen = sites[:1]
    elif location == "all":
        chosen = sites
    else:
        k = location - 1 if location > 0 else len(sites) + location
        chosen = [sites[k]] if 0 <= k < len(sites) else []
    return [s for s in chosen if "all" in kinds or s.kind in kinds]


def _plan(analysis: Analysis, settings: dict, location, kinds) -> Plan:
    selection = select_blocks(analysis.blocks, settings["proportion"], settings["blocks"], settings["stage"],
                              settings["random"], settings["seed"])
    gm = analysis.graph_module
    nodes, counts = {n.name: n for n in gm.graph.nodes}, call_counts(gm)
    chosen, regions = set(selection.indices), BlockRegions(gm, analysis.blocks)
    changes, warnings, actions, removed = [], [], [], []
    for block in analysis.blocks:
        if block.index not in chosen:
            continue
        sites = sites_at(block, location, kinds)
        if not sites:
            obstacle = preact_obstacle(gm, block, regions.nodes(block.name)) if location == "last" else None
            warnings.append(_nothing_to_erase(block, location, kinds, obstacle))
        for site in sites:
            node = nodes[site.node]
            if site.composite:
                actions.append(SetModule(site.composite, composite_act(gm, site.composite, nn.Identity(), counts,
                                                                      "erased")))
                after = f"{site.composite} without activation"
            else:
                activation_input(node)  # refuses a call that reads no tensor
                actions.append(RemoveNode(node.name))
                removed.append(qualified(node))
                after = "Identity (erased)"
            changes.append(SiteChange(block.index, site.name, site.spelling, after, site.node, site.kind))
    return Plan("erase", tuple(analysis.blocks), selection.indices, selection.reason, tuple(changes),
                tuple(warnings), tuple(actions), tuple(removed))


_FORM_REASONS = {
    "pre-activation": "is pre-activation (norm/activation before its first weight layer), so its output "
                      "is not an activation; convert it to after-activation to erase there",
    "linear-output": "ends linear (its output comes from a weight or norm layer, not an activation)",
    "no-activation": "has no activation",
    "opaque": "is a leaf the tracer does not enter (untraceable or on timm's notrace list), so its activations "
              "are not visible",
}


def _nothing_to_erase(block: Block, location, kinds, obstacle: str | None = None) -> str:
    """Why nothing is erased in ``block``; ``obstacle``: why it could not be converted to after-activation."""
    head = f"block {block.index} ({block.name}, {block.type})"
    if location == "last" and obstacle is not None:  # the words convert uses for the same block
        return f"{head} has no last activation: it {cannot_convert(obstacle)}; nothing erased there"
    if location == "last" and block.form in _FORM_REASONS:
        return f"{head} has no last activation: it {_FORM_REASONS[block.form]}; nothing erased there"
    what = "last activation" if location == "last" else f"site at location {location}"
    return f"{head} has no {what} of kind {'/'.join(sorted(kinds))}: nothing erased there"


def erase_step(proportion: float = 1.0, location="last", blocks=None, activations=("relu",), stage=None,
               random: bool = False, seed: int = 0, discovery: dict | None = None) -> Step:
    """The EraseReLU step with its settings (for :func:`run_rewrite` and recipes).

    ``discovery`` is the block override's recipe form (:meth:`BlockSpec.to_recipe`), recorded
    with the settings.

    Example:
        >>> erase_step(0.5, location="first").settings["location"]
        'first'
    """
    location = parse_location(location)
    kinds = normalize_kinds(activations)
    settings = selection_settings(proportion, location, blocks, stage, random, seed, kinds, discovery)
    return Step("erase", settings, lambda a: _plan(a, settings, location, kinds), tuple(sorted(kinds)))


def erase(model: nn.Module, proportion: float = 1.0, location="last", blocks=None, activations=("relu",), *,
          stage=None, random: bool = False, seed: int = 0, example_input=None, block_types=(),
          block_names=(), predicate=None, dry_run: bool = False, check: bool = True) -> tuple[nn.Module | None, Report]:
    """EraseReLU: remove the activation at ``location`` in a ``proportion`` of the blocks.

    Returns ``(new_model, report)``; ``model`` is not modified. ``blocks`` restricts the choice
    (1-based indices, ranges "2-5" or name globs); ``stage`` (index or name glob) too; ``random``
    samples round(p * n) blocks with ``seed`` instead of the paper's uniform rule. ``activations``
    are the kinds that may be erased. ``block_types`` / ``block_names`` / ``predicate`` replace block
    discovery. With ``dry_run`` nothing is applied and ``new_model`` is None. ``check=False``
    skips the forward passes that count MACs and check the output (faster on large inputs).

    A pre-activation network (timm ``resnetv2_*``, pre-activation ResNets, Wide ResNets) has no
    activation after its additions: it is first converted to after-activation (seed 000 Sec. 3.1,
    :func:`relu_surgery.surgery.convert.api.to_after_activation`) and the report's ``steps`` lists
    ``convert`` then ``erase``.

    Example:
        >>> import torch, torchvision
        >>> new, report = erase(torchvision.models.resnet18(), proportion=1.0, check=False)
        >>> len(report.changes), report.state_dict["unchanged"]
        (8, True)
    """
    spec = BlockSpec(tuple(block_types), tuple(block_names), predicate)
    step = erase_step(proportion, location, blocks, activations, stage, random, seed, spec.to_recipe() if spec else None)
    return run_rewrite(model, [step], example_input, spec, dry_run, prelude=preactivation_prelude(spec), check=check)
