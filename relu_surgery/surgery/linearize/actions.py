"""The plan of a linearization, as data: which sites become linear or masked, and the edits that do it.

A :class:`LinearizePlan` is an ordinary :class:`~relu_surgery.surgery.plan.Plan` (blocks, selection
reason, site changes for the report, typed graph edits in ``actions``) plus what it decided per site:
:class:`EraseSite` (the site becomes the identity; for a composite norm+act layer only its activation
goes) and :class:`MaskSite` (the site becomes a :class:`~relu_surgery.surgery.linearize.masked.MaskedReLU`
with a mask of a given shape, trainable or frozen, optionally with its values). :func:`site_actions`
turns those decisions into the edits (while planning: the masked layers are built there); the one
executor (:func:`relu_surgery.surgery.actions.execute`) applies them.

Example:
    >>> import torch.fx as fx, torch.nn as nn
    >>> from relu_surgery.surgery.actions import execute
    >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 3), nn.ReLU()))
    >>> actions, removed = site_actions(gm, [EraseSite("1", "_1", None, 3)])
    >>> _ = execute(gm, actions)
    >>> [n.op for n in gm.graph.nodes], removed
    (['placeholder', 'call_module', 'output'], ('_1',))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn

from ..actions import RemoveNode, ReplaceCall, SetModule
from ..builders import composite_act
from ..edits import activation_input, call_counts, qualified, site_path
from ..plan import Plan
from .masked import MaskedReLU

__all__ = ["EraseSite", "MaskSite", "LinearizePlan", "site_actions"]


@dataclass(frozen=True)
class EraseSite:
    """Make one site linear: its node removed, or its composite layer's activation set to Identity.

    Example:
        >>> from relu_surgery.graph.analysis import analyze
        >>> from relu_surgery.surgery.linearize.api import linearize_step
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> linearize_step("uniform", budget=6).plan(analyze(net)).sites   # 12 ReLUs: site 1's 8 go
        (EraseSite(site='1', node='_1', composite=None, relus=8),)
    """

    site: str
    node: str
    composite: str | None
    relus: int


@dataclass(frozen=True)
class MaskSite:
    """Replace one site by a masked activation with a mask of ``shape`` (per sample).

    Example:
        >>> from relu_surgery.graph.analysis import analyze
        >>> from relu_surgery.surgery.linearize.api import linearize_step
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> linearize_step("snl", budget=6, trainable=True).plan(analyze(net)).sites[0]
        MaskSite(site='1', node='_1', composite=None, shape=(8,), site_shape=(8,), trainable=True, values=None)
    """

    site: str
    node: str
    composite: str | None
    shape: tuple[int, ...]
    site_shape: tuple[int, ...]
    trainable: bool
    values: torch.Tensor | None = None


@dataclass(frozen=True)
class LinearizePlan(Plan):
    """A linearization decided: the method, the budget and the ReLUs before and (predicted) after.

    Example:
        >>> from relu_surgery.graph.analysis import analyze
        >>> from relu_surgery.surgery.linearize.api import linearize_step
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> plan = linearize_step("uniform", budget=0.5).plan(analyze(net))
        >>> plan.method, plan.budget, plan.relus_before, plan.relus_after, plan.actions
        ('uniform', 6, 12, 4, (RemoveNode(node='_1'),))
    """

    method: str = ""
    budget: int = 0
    relus_before: int = 0
    relus_after: int | None = None
    sites: tuple[EraseSite | MaskSite, ...] = ()


def _masked(site: MaskSite) -> MaskedReLU:
    layer = MaskedReLU(site.shape, trainable=site.trainable, site_shape=site.site_shape)
    if site.values is not None:
        with torch.no_grad():
            (layer.alpha if site.trainable else layer.mask).copy_(site.values.reshape(site.shape))
    return layer


def site_actions(gm: fx.GraphModule, sites) -> tuple[tuple, tuple[str, ...]]:
    """The graph edits that carry out ``sites`` (:class:`EraseSite` / :class:`MaskSite`) on ``gm``,
    and the qualified names of the nodes they remove. Nothing is changed here.

    Example:
        >>> import torch.fx as fx, torch.nn as nn
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 3), nn.ReLU()))
        >>> actions, _ = site_actions(gm, [MaskSite("1", "_1", None, (3,), (3,), trainable=False)])
        >>> type(actions[0]).__name__, type(actions[0].module).__name__
        ('ReplaceCall', 'MaskedReLU')
    """
    nodes = {n.name: n for n in gm.graph.nodes}
    counts, taken = call_counts(gm), set()
    actions, removed = [], []
    for site in sites:
        node = nodes[site.node]
        if isinstance(site, EraseSite) and site.composite is not None:
            actions.append(SetModule(site.composite, composite_act(gm, site.composite, nn.Identity(), counts, "erased")))
        elif isinstance(site, EraseSite):
            activation_input(node)  # refuses a call that reads no tensor
            actions.append(RemoveNode(node.name))
            removed.append(qualified(node))
        elif site.composite is not None:
            actions.append(SetModule(site.composite, composite_act(gm, site.composite, _masked(site), counts,
                                                                  "masked")))
        else:
            activation_input(node)
            path = site_path(gm, node, "mask", counts, taken)
            actions.append(ReplaceCall(node.name, path, _masked(site), path))
            removed.append(qualified(node))
    return tuple(actions), tuple(removed)
