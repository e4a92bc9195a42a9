"""CReLU (seed 002): replace chosen ReLU sites by ``cat(relu(x), relu(-x))`` and widen their consumers.

Placement as in seed 002 (Fig. 1): inside residual blocks, never on the identity path; a basic
block's activation after its first conv, a bottleneck's activations after its first two convs.
That is ``location="inner"`` (default): every site of a block before its last activation(s), after
its first weight layer. ``"all"``, ``"first"``, ``"last"`` or a site number choose otherwise (VGG/MLP
units have only "last" sites). A pre-activation block's leading activation (before its first weight
layer) is never a CReLU site: ``"inner"`` skips it, the other locations list it as not eligible.

The producer keeps its channel count; every consumer weight layer (conv or linear) reached from the
site through channel-wise ops only (pool, dropout, identity) gets doubled input channels. A site
whose output reaches an add, a norm, a concat, another activation or the model output before a
weight layer is not eligible, and the plan says why. Grouped and depthwise consumers stay correct:
the CReLU interleaves its copies per group (see :class:`relu_surgery.surgery.layers.CReLU`).

``init="preserve"`` (default) gives each consumer the weight ``[W, 0]`` per group, so the new model
computes the same function as the old; ``init="random"`` re-initialises each consumer (PyTorch's
default init for its new shape, as when training a CReLU network from scratch).

Example:
    >>> import torch, torchvision
    >>> new, report = crelu(torchvision.models.resnet18(), example_input=torch.randn(1, 3, 64, 64), check=False)
    >>> [c.site for c in report.changes][:2], report.state_dict["reshaped"][0]
    (['layer1.0.relu', 'layer1.1.relu'], 'layer1.0.conv2.weight: (64, 64, 3, 3) -> (64, 128, 3, 3)')
"""

from __future__ import annotations

import math

import torch
import torch.fx as fx
import torch.nn as nn

from .._compat import shallow_copy
from ..errors import SelectionError
from ..graph.analysis import Analysis
from ..graph.blocks import BlockSpec
from ..graph.ops import is_channelwise, is_tensor_add, op_role
from ..graph.records import Block, Site
from ..graph.tracing import annotate_shapes
from ..report.records import SiteChange
from ..report.report import Report
from ..graph.activations import normalize_kinds
from .actions import InsertModule, ReplaceCall, SetModule
from .builders import composite_act
from .edits import activation_input, call_counts, free_path, qualified, site_path
from .erase import parse_location, sites_at
from .layers import CReLU, NormPropConv2d
from .pipeline import Step, run_rewrite
from .plan import Plan
from .regions import BlockRegions
from .selection import select_blocks, selection_settings

__all__ = ["crelu", "crelu_step", "find_consumers", "widen_input", "INITS"]

INITS = ("preserve", "random")
_WIDENABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, NormPropConv2d)
_ROLE_REASONS = {
    "norm": "a norm layer", "activation": "another activation",
    "output": "the model output",
}


def _consumer_problem(user: fx.Node, came_from: fx.Node, gm: fx.GraphModule, counts: dict, ndim) -> str | None:
    """Why the weight node ``user`` cannot take doubled input channels (None when it can)."""
    target = str(user.target)
    module = gm.get_submodule(target)
    if type(module) not in _WIDENABLE:
        return f"its consumer {target} is a {type(module).__name__}, which cannot be widened exactly"
    if counts.get(target, 0) != 1:
        return f"its consumer {target} is called {counts.get(target, 0)} times"
    if user.args[:1] != (came_from,) or len(user.all_input_nodes) != 1:
        return f"its consumer {target} takes other inputs"
    if isinstance(module, nn.Linear) and ndim != 2:
        return f"its consumer {target} is a Linear over a {ndim}-d tensor (channels are not its features)"
    return None


def find_consumers(gm: fx.GraphModule, node: fx.Node, counts: dict | None = None) -> tuple[list[fx.Node], str | None]:
    """The weight-layer nodes reached from ``node`` through channel-wise ops, or the reason there are none.

    Returns ``(consumers, None)`` when every path reaches a widenable conv/linear module first, else
    ``([], reason)``.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 1)))
        >>> relu = list(gm.graph.nodes)[1]
        >>> [n.target for n in find_consumers(gm, relu)[0]]
        ['2']
    """
    counts = call_counts(gm) if counts is None else counts
    meta = node.meta.get("tensor_meta")
    ndim = len(meta.shape) if meta is not None and hasattr(meta, "shape") else None
    consumers, stack, seen = [], [node], {node}
    while stack:
        current = stack.pop()
        for user in current.users:
            if user in seen:
                continue
            seen.add(user)
            role = op_role(user, gm)
            if role == "weight" and user.op == "call_module":
                problem = _consumer_problem(user, current, gm, counts, ndim)
                if problem:
                    return [], problem
                consumers.append(user)
            elif is_channelwise(user, gm):
                stack.append(user)
            elif role == "weight":
                return [], f"its consumer {qualified(user)} is a functional weight op, which cannot be widened"
            else:
                what = ("an add" if is_tensor_add(user) else "a concat") if role == "merge" else \
                    _ROLE_REASONS.get(role, "an op that is not channel-wise")
                return [], f"its output reaches {what} ({qualified(user)}) before any weight layer"
    if not consumers:
        return [], "its output reaches no weight layer"
    shortcut = _shortcut_consumer(gm, consumers) if len(consumers) > 1 else None
    if shortcut is not None:
        return [], f"it feeds the projection shortcut {shortcut} (the identity path stays unchanged)"
    return sorted(consumers, key=lambda n: str(n.target)), None


def _shortcut_consumer(gm: fx.GraphModule, consumers: list[fx.Node]) -> str | None:
    """A consumer whose output reaches a residual add through norms / transparent ops only."""
    for consumer in consumers:
        stack, seen = [consumer], {consumer}
        while stack:
            for user in stack.pop().users:
                if is_tensor_add(user):
                    return str(consumer.target)
                if op_role(user, gm) in ("norm", "transparent") and user not in seen:
                    seen.add(user)
                    stack.append(user)
    return None


def widen_input(module: nn.Module, layout_groups: int, init: str = "preserve") -> nn.Module:
    """A copy of conv/linear ``module`` with twice the input channels, for a CReLU of ``layout_groups``.

    ``preserve``: weight ``[W, 0]`` per group (positive copies get W, negative copies 0);
    ``random``: the layer's own default initialisation for the new shape.

    Example:
        >>> conv = nn.Conv2d(4, 6, 1, groups=2, bias=False)
        >>> wide = widen_input(conv, 2)
        >>> wide.weight.shape, torch.equal(wide.weight[:, :2], conv.weight), wide.weight[:, 2:].abs().sum().item()
        (torch.Size([6, 4, 1, 1]), True, 0.0)
    """
    linear = isinstance(module, nn.Linear)
    attr = "in_features" if linear else "in_channels"
    channels, groups = getattr(module, attr), 1 if linear else module.groups
    block = channels // layout_groups  # channels per block of the CReLU layout [pos, neg] per block
    per_group = channels // groups
    local = torch.arange(per_group)
    positions = (local // block) * 2 * block + local % block
    weight = module.weight.detach()
    wide = weight.new_zeros(weight.shape[0], 2 * per_group, *weight.shape[2:])
    wide[:, positions] = weight
    new = shallow_copy(module)  # same settings and bias; the weight is replaced below (no copy of the old one)
    setattr(new, attr, 2 * channels)
    new.weight = nn.Parameter(wide, requires_grad=module.weight.requires_grad)
    if init == "random":
        if new.bias is not None:
            new.bias = nn.Parameter(new.bias.detach().clone())
        new.reset_parameters()
    return new


def _crelu_sites(block: Block, location, kinds) -> list[Site]:
    if location == "inner":
        return [s for s in block.sites if s.location != "last" and ("all" in kinds or s.kind in kinds)]
    return sites_at(block, location, kinds)


def _leads_block(node: fx.Node, region: set, gm: fx.GraphModule) -> bool:
    """True when no weight layer of the block comes before ``node``: a pre-activation block's leading act.

    ``region``: the nodes of the block's module (empty for a unit of a ``Sequential``, which starts
    with its weight layer anyway).
    """
    if node not in region:
        return False
    stack, seen = list(node.all_input_nodes), set()
    while stack:
        current = stack.pop()
        if current in seen or current not in region:
            continue
        seen.add(current)
        if op_role(current, gm) == "weight":
            return False
        stack.extend(current.all_input_nodes)
    return True


_LEADING = ("it leads a pre-activation block (before its first weight layer); seed 002 places CReLU after "
            "the first conv (basic block) or the first two convs (bottleneck)")


def _describe(channels: int | None, consumers: list[fx.Node], gm: fx.GraphModule) -> str:
    c = "?" if channels is None else channels
    wide = "?" if channels is None else 2 * channels
    names = ", ".join(f"{n.target} in {c}->{wide}" for n in consumers)
    return f"CReLU ({c} -> {wide} channels; widened: {names})"


def _plan(analysis: Analysis, settings: dict, location, kinds) -> Plan:
    annotate_shapes(analysis.traced, analysis.example_input)
    gm = analysis.graph_module
    nodes, book = {n.name: n for n in gm.graph.nodes}, _Book(gm, settings["init"])
    selection = select_blocks(analysis.blocks, settings["proportion"], settings["blocks"], settings["stage"],
                              settings["random"], settings["seed"])
    chosen, regions = set(selection.indices), BlockRegions(gm, analysis.blocks)
    warnings = []
    for block in (b for b in analysis.blocks if b.index in chosen):
        region = set(regions.nodes(block.name))
        leading = {s.name for s in block.sites if _leads_block(nodes[s.node], region, gm)}
        sites = [s for s in _crelu_sites(block, location, kinds) if location != "inner" or s.name not in leading]
        if not sites:
            where = "before its last activation" if location == "inner" else f"at location {location}"
            warnings.append(f"block {block.index} ({block.name}, {block.type}) has no {'/'.join(sorted(kinds))} "
                            f"site {where}: no CReLU there")
        for site in sites:
            node = nodes[site.node]
            consumers, reason = find_consumers(gm, node, book.counts)
            if site.kind != "relu":
                reason = f"it is a {site.kind}, not a ReLU (CReLU is cat(relu(x), relu(-x)))"
            elif site.name in leading:
                reason = _LEADING
            if reason:
                warnings.append(f"not eligible for CReLU: {site.name} (block {block.index}): {reason}")
                continue
            book.add(block.index, site, node, consumers)
    return Plan("crelu", tuple(analysis.blocks), selection.indices, selection.reason, tuple(book.changes),
                tuple(warnings), tuple(book.actions), tuple(book.removed))


def _in_channels(gm: fx.GraphModule, consumer: fx.Node) -> int:
    module = gm.get_submodule(str(consumer.target))
    return module.in_features if isinstance(module, nn.Linear) else module.in_channels


class _Book:
    """The plan's changes and actions: a CReLU per site and its consumers widened."""

    def __init__(self, gm: fx.GraphModule, init: str):
        self.gm, self.init, self.counts, self.taken = gm, init, call_counts(gm), set()
        self.changes, self.actions, self.removed = [], [], []

    def add(self, block: int, site: Site, node: fx.Node, consumers: list[fx.Node]) -> None:
        gm = self.gm
        after = _describe(site.channels or _in_channels(gm, consumers[0]), consumers, gm)
        self.changes.append(SiteChange(block, site.name, site.spelling, after, site.node, site.kind, "crelu"))
        # the lcm of the consumers' groups (each divides the channel count) is the CReLU's layout
        module = CReLU(math.lcm(*[getattr(gm.get_submodule(str(n.target)), "groups", 1) for n in consumers]))
        if site.composite:
            identity = composite_act(gm, site.composite, nn.Identity(), self.counts, "changed")
            path = free_path(gm, f"{qualified(node)}_crelu", self.taken)
            self.actions += [SetModule(site.composite, identity),
                             InsertModule(node.name, path, module, path, label=f"{path} ({path})")]
        else:
            activation_input(node)  # refuses a call that reads no tensor
            path = site_path(gm, node, "crelu", self.counts, self.taken)
            self.actions.append(ReplaceCall(node.name, path, module, f"{qualified(node)} ({path})"))
            self.removed.append(qualified(node))
        for consumer in consumers:
            target = str(consumer.target)
            self.actions.append(SetModule(target, widen_input(gm.get_submodule(target), module.groups, self.init)))


def _parse_location(location):
    return "inner" if location == "inner" else parse_location(location)


def crelu_step(proportion: float = 1.0, location="inner", blocks=None, activations=("relu",), stage=None,
               random: bool = False, seed: int = 0, init: str = "preserve", discovery: dict | None = None) -> Step:
    """The CReLU step with its settings (for :func:`run_rewrite` and recipes).

    Example:
        >>> crelu_step(init="random").settings["init"]
        'random'
    """
    if init not in INITS:
        raise SelectionError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    location = _parse_location(location)
    kinds = normalize_kinds(activations)
    settings = selection_settings(proportion, location, blocks, stage, random, seed, kinds, discovery, init=init)
    return Step("crelu", settings, lambda a: _plan(a, settings, location, kinds), tuple(sorted(kinds | {"crelu"})),
                preserves=init == "preserve")


def crelu(model: nn.Module, proportion: float = 1.0, location="inner", blocks=None, activations=("relu",), *,
          init: str = "preserve", stage=None, random: bool = False, seed: int = 0, example_input=None,
          block_types=(), block_names=(), predicate=None, dry_run: bool = False, check: bool = True) -> tuple[nn.Module | None, Report]:
    """CReLU at seed 002's places (``location="inner"``) in a ``proportion`` of the blocks.

    Consumers get doubled input channels; ``init="preserve"`` keeps the model's function exactly
    (``[W, 0]`` per group), ``"random"`` re-initialises them. Sites that are not eligible are listed
    in ``report.warnings`` with the reason. Selection, ``dry_run`` and ``check`` arguments are those of :func:`relu_surgery.erase`.
    Returns ``(new_model, report)``; ``model`` is not modified.

    Example:
        >>> import torch, torchvision
        >>> new, report = crelu(torchvision.models.resnet50(), blocks="1", example_input=torch.randn(1, 3, 64, 64),
        ...                    check=False)
        >>> [c.site for c in report.changes]
        ['layer1.0.relu', 'layer1.0.relu_1']
        >>> report.params_after - report.params_before  # conv2: 64*64*3*3, conv3: 256*64
        53248
    """
    spec = BlockSpec(tuple(block_types), tuple(block_names), predicate)
    step = crelu_step(proportion, location, blocks, activations, stage, random, seed, init,
                      spec.to_recipe() if spec else None)
    return run_rewrite(model, [step], example_input, spec, dry_run, check=check)
