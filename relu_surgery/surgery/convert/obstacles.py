"""Why a pre-activation block cannot be converted to after-activation: one reason, for convert and erase alike.

The after-activation conversion (seed 000 Sec. 3.1) moves a residual unit's leading norm+act to
after its addition; a block without that addition has nowhere to move it to. DenseNet's dense
layers are the common case: their output is concatenated with their inputs, never added.

Example:
    >>> import torchvision
    >>> from relu_surgery.graph.analysis import analyze
    >>> a = analyze(torchvision.models.DenseNet(4, (1, 1), 8, 2))
    >>> preact_obstacle(a.graph_module, a.blocks[0]) == DENSE_LAYER
    True
"""

from __future__ import annotations

import torch.fx as fx

from ...graph.ops import is_cat, is_tensor_add
from ...graph.records import Block
from ..regions import BlockRegions
from .anatomy import gated_input, node_role, preact_unit, walk_back

__all__ = ["DENSE_LAYER", "NO_SUM", "UNKNOWN_SUM", "preact_obstacle", "cannot_convert", "none_convertible",
           "first_obstacle"]

DENSE_LAYER = ("dense layers have no residual sum; their output is concatenated with their inputs (dense "
               "connectivity), so there is no addition for the leading norm+activation to follow (seed 000 "
               "converts residual units; it reports no EraseReLU result on DenseNet)")
NO_SUM = ("it has no residual sum (its output is not an addition), so there is no addition for the leading "
          "norm+activation to follow")
UNKNOWN_SUM = ("its residual sum has a shape the converter does not know (it needs norm -> activation leading "
               "the residual branch, a weight layer or a squeeze-excitation gate last, an identity or "
               "projection shortcut)")


def _outputs(nodes: list[fx.Node]) -> list[fx.Node]:
    inside = set(nodes)
    return [n for n in nodes if any(u not in inside for u in n.users)]


def _ends_in_sum(out: fx.Node, gm: fx.GraphModule) -> bool:
    """True when ``out`` is an addition, through transparent ops and gating products."""
    node = walk_back(out, gm)
    while (scaled := gated_input(node, gm)) is not None:
        node = walk_back(scaled, gm)
    return is_tensor_add(node)


def _concatenated(out: fx.Node, gm: fx.GraphModule) -> bool:
    """True when ``out`` is a concat or is read by one (through transparent ops): dense connectivity."""
    stack, seen = [out], {out}
    while stack:
        node = stack.pop()
        if is_cat(node):
            return True
        for user in node.users:
            if user not in seen and (is_cat(user) or node_role(user, gm) == "transparent"):
                seen.add(user)
                stack.append(user)
    return False


def preact_obstacle(gm: fx.GraphModule, block: Block, region: list[fx.Node] | None = None) -> str | None:
    """Why pre-activation ``block`` cannot be converted to after-activation; None when it can be, or is not
    pre-activation (``block.form``).

    One of :data:`DENSE_LAYER`, :data:`NO_SUM` or :data:`UNKNOWN_SUM`.

    Example:
        >>> import relu_surgery as rs
        >>> from relu_surgery.graph.analysis import analyze
        >>> a = analyze(rs.create_model("preact_resnet110"))
        >>> preact_obstacle(a.graph_module, a.blocks[1]) is None
        True
    """
    if block.form != "pre-activation" or preact_unit(gm, block, region) is not None:
        return None
    outs = _outputs(BlockRegions(gm, [block]).nodes(block.name) if region is None else region)
    if any(_ends_in_sum(out, gm) for out in outs):
        return UNKNOWN_SUM
    return DENSE_LAYER if any(_concatenated(out, gm) for out in outs) else NO_SUM


def cannot_convert(reason: str) -> str:
    """The one wording erase and convert share for a pre-activation block left as it is (a predicate).

    Example:
        >>> cannot_convert(NO_SUM)[:62]
        'is pre-activation but cannot be converted to after-activation:'
    """
    return f"is pre-activation but cannot be converted to after-activation: {reason}"


def none_convertible(label: str, obstacles: list[tuple[Block, str]]) -> str:
    """The one-line error when no pre-activation block of model ``label`` can be converted.

    ``obstacles``: (block, :func:`preact_obstacle` reason) for each; one reason is given once.

    Example:
        >>> b = Block(1, "b1", "DenseLayer", None, ())
        >>> none_convertible("net", [(b, NO_SUM), (b, NO_SUM)])[:76]
        "convert: none of net's 2 pre-activation blocks can be converted to after-act"
    """
    reasons = list(dict.fromkeys(reason for _, reason in obstacles))
    if len(reasons) > 1:  # each reason once, with the first block it holds for and how many more
        groups = [[b for b, r in obstacles if r == reason] for reason in reasons]
        reasons = [f"block {g[0].index} ({g[0].name})" + (f" and {len(g) - 1} more" if len(g) > 1 else "") + f": {r}"
                   for g, r in zip(groups, reasons)]
    count = len(obstacles)
    what = "pre-activation block" + ("s" if count > 1 else "")
    return (f"convert: none of {label}'s {count} {what} can be converted to after-activation: "
            + " | ".join(reasons))


def first_obstacle(gm: fx.GraphModule, blocks) -> str | None:
    """The :func:`preact_obstacle` reason of the first pre-activation block of ``blocks`` that has one.

    Example:
        >>> import torchvision
        >>> from relu_surgery.graph.analysis import analyze
        >>> a = analyze(torchvision.models.DenseNet(4, (1, 1), 8, 2))
        >>> first_obstacle(a.graph_module, a.blocks)[:39]
        'dense layers have no residual sum; thei'
    """
    regions = BlockRegions(gm, blocks)
    found = (preact_obstacle(gm, b, regions.nodes(b.name)) for b in blocks if b.form == "pre-activation")
    return next((reason for reason in found if reason is not None), None)
