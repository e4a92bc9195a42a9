"""The plan of a linearization, as data: which sites become linear or masked, and how it is applied.

A :class:`LinearizePlan` is an ordinary :class:`~relu_surgery.surgery.plan.Plan` (blocks, selection
reason, site changes for the report) plus typed actions: :class:`EraseSite` (the site becomes the
identity; for a composite norm+act layer only its activation goes) and :class:`MaskSite` (the site
becomes a :class:`~relu_surgery.surgery.linearize.masked.MaskedReLU` with a mask of a given shape,
trainable or frozen, optionally with its values). :func:`apply_plan` executes the actions and
analyses nothing.

Example:
    >>> import torch.fx as fx, torch.nn as nn
    >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 3), nn.ReLU()))
    >>> plan = LinearizePlan("linearize", {}, (), (), "demo", (), method="uniform", budget=0,
    ...                      relus_before=3, relus_after=0, actions=(EraseSite("1", "_1", None, 3),))
    >>> report = apply_plan(gm, plan)
    >>> [n.op for n in gm.graph.nodes]
    ['placeholder', 'call_module', 'output']
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn

from ...report.report import StepReport
from ..edits import call_counts, composite_with_act, replace_with_module, site_path
from ..pipeline import remove_node
from ..plan import Plan
from .masked import MaskedReLU

__all__ = ["EraseSite", "MaskSite", "LinearizePlan", "apply_plan"]


@dataclass(frozen=True)
class EraseSite:
    """Make one site linear: its node removed, or its composite layer's activation set to Identity."""

    site: str
    node: str
    composite: str | None
    relus: int


@dataclass(frozen=True)
class MaskSite:
    """Replace one site by a masked activation with a mask of ``shape`` (per sample)."""

    site: str
    node: str
    composite: str | None
    shape: tuple[int, ...]
    site_shape: tuple[int, ...]
    trainable: bool
    values: torch.Tensor | None = None


@dataclass(frozen=True)
class LinearizePlan(Plan):
    """A linearization decided: the method, the budget and the ReLUs before and (predicted) after."""

    method: str = ""
    budget: int = 0
    relus_before: int = 0
    relus_after: int | None = None
    actions: tuple[EraseSite | MaskSite, ...] = ()


def _masked(action: MaskSite) -> MaskedReLU:
    layer = MaskedReLU(action.shape, trainable=action.trainable, site_shape=action.site_shape)
    if action.values is not None:
        with torch.no_grad():
            (layer.alpha if action.trainable else layer.mask).copy_(action.values.reshape(action.shape))
    return layer


def apply_plan(gm: fx.GraphModule, plan: LinearizePlan) -> StepReport:
    """Execute ``plan``'s actions on ``gm`` (no analysis); the step's report."""
    nodes = {n.name: n for n in gm.graph.nodes}
    counts = call_counts(gm)
    removed, added = [], []
    for action in plan.actions:
        node = nodes[action.node]
        if isinstance(action, EraseSite):
            if action.composite is not None:
                composite_with_act(gm, action.composite, nn.Identity())
            else:
                removed.append(action.site)
                remove_node(gm, node)
        elif action.composite is not None:
            composite_with_act(gm, action.composite, _masked(action))
        else:
            path = site_path(gm, node, "mask", counts)
            replace_with_module(gm, node, path, _masked(action))
            added.append(path)
    return StepReport(plan.rewrite, plan.settings, plan.selected, plan.selection_reason, plan.changes,
                      nodes_removed=tuple(removed), nodes_added=tuple(added), warnings=plan.warnings)
