"""EraseReLU (seed 000): replace chosen activation sites by the identity.

``location`` picks sites inside each selected block: ``last`` (the paper's EraseReLU: the sites
from which the block output is reached through no weight, norm or activation), ``first`` (the
paper's ER*: the first site in execution order), ``all``, or an integer N (the N-th site in
execution order, 1-based; negative counts from the end). For a composite norm+act layer only its
activation goes; the state dict keeps every key and value.

Example:
    >>> import torchvision
    >>> new, report = erase(torchvision.models.resnet18(), proportion=0.5, location="last")
    >>> report.target_sites(), report.target_sites(after=True)
    (17, 13)
"""

from __future__ import annotations

import copy

import torch.fx as fx
import torch.nn as nn

from ..graph.activations import normalize_kinds
from ..graph.analysis import Analysis
from ..graph.blocks import BlockSpec
from ..errors import SelectionError
from ..graph.records import Block, Site
from .plan import Plan
from ..report.records import SiteChange
from ..report.report import Report, StepReport
from .selection import select_blocks
from .pipeline import Step, remove_node, run_rewrite
from .convert.api import preactivation_prelude

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


def _plan(analysis: Analysis, proportion, location, blocks, stage, random, seed, kinds) -> Plan:
    selection = select_blocks(analysis.blocks, proportion, blocks, stage, random, seed)
    chosen = set(selection.indices)
    changes, warnings = [], []
    for block in analysis.blocks:
        if block.index not in chosen:
            continue
        sites = sites_at(block, location, kinds)
        if not sites:
            warnings.append(_nothing_to_erase(block, location, kinds))
        for site in sites:
            before = site.spelling
            after = f"{site.composite} without activation" if site.composite else "Identity (erased)"
            changes.append(SiteChange(block.index, site.name, before, after, site.node, site.kind))
    settings = {"proportion": float(proportion), "location": location, "blocks": blocks, "stage": stage,
                "random": random, "seed": seed, "activations": sorted(kinds)}
    return Plan("erase", settings, tuple(analysis.blocks), selection.indices, selection.reason,
                tuple(changes), tuple(warnings))


_FORM_REASONS = {
    "pre-activation": "is pre-activation (norm/activation before its first weight layer), so its output "
                      "is not an activation; convert it to after-activation to erase there",
    "linear-output": "ends linear (its output comes from a weight or norm layer, not an activation)",
    "no-activation": "has no activation",
    "opaque": "is a leaf the tracer does not enter (untraceable or on timm's notrace list), so its activations "
              "are not visible",
}


def _nothing_to_erase(block: Block, location, kinds) -> str:
    head = f"block {block.index} ({block.name}, {block.type})"
    if location == "last" and block.form in _FORM_REASONS:
        return f"{head} has no last activation: it {_FORM_REASONS[block.form]}; nothing erased there"
    what = "last activation" if location == "last" else f"site at location {location}"
    return f"{head} has no {what} of kind {'/'.join(sorted(kinds))}: nothing erased there"


def _apply(gm: fx.GraphModule, plan: Plan) -> StepReport:
    nodes = {n.name: n for n in gm.graph.nodes}
    removed = []
    for change in plan.changes:
        node = nodes[change.node]
        target = str(node.target) if node.op == "call_module" else None
        if target is not None and change.after.endswith("without activation"):
            _strip_composite(gm, node, target)
        else:
            removed.append(node.meta.get("rs_name", node.name))
            remove_node(gm, node)
    return StepReport("erase", plan.settings, plan.selected, plan.selection_reason, plan.changes,
                      nodes_removed=tuple(removed), warnings=plan.warnings)


def _strip_composite(gm: fx.GraphModule, node: fx.Node, target: str) -> None:
    """Give this call its own copy of the norm+act layer with ``act`` = Identity (same tensors)."""
    users = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == target]
    if len(users) > 1:
        raise SelectionError(f"{target} is a norm+activation layer called {len(users)} times; "
                             "its activation cannot be erased at one call only")
    stripped = copy.copy(gm.get_submodule(target))
    stripped._modules = dict(stripped._modules)
    stripped.act = nn.Identity()
    parent, _, leaf = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, leaf, stripped)


def erase_step(proportion: float = 1.0, location="last", blocks=None, activations=("relu",), stage=None,
               random: bool = False, seed: int = 0) -> Step:
    """The EraseReLU step with its settings (for :func:`run_rewrite` and recipes)."""
    location = parse_location(location)
    kinds = normalize_kinds(activations)
    settings = {"proportion": float(proportion), "location": location, "blocks": blocks, "stage": stage,
                "random": random, "seed": seed, "activations": sorted(kinds)}
    return Step(
        "erase", settings,
        lambda a: _plan(a, proportion, location, blocks, stage, random, seed, kinds),
        _apply, tuple(sorted(kinds)),
    )


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
        >>> new, report = erase(torchvision.models.resnet18(), proportion=1.0)
        >>> len(report.changes), report.state_dict["unchanged"]
        (8, True)
    """
    step = erase_step(proportion, location, blocks, activations, stage, random, seed)
    spec = BlockSpec(tuple(block_types), tuple(block_names), predicate)
    if spec:
        step.settings["discovery"] = spec.to_recipe()
    return run_rewrite(model, [step], example_input, spec, dry_run, prelude=preactivation_prelude(spec), check=check)
