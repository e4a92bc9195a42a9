"""The fold plan as data: every edit it will make, in order, and every candidate it turned down.

Three kinds of action, each naming graph nodes by their FX names (the applier executes them
without analysing the graph again; all refusals were decided when the plan was made):

* :class:`NormFold` — a BatchNorm folded into the conv or linear layer that feeds it;
* :class:`ChainMerge` — consecutive weight layers with nothing non-linear between them become one;
* :class:`BranchMerge` — branches of one input summed by adds (RepVGG: kxk + 1x1 + identity)
  become one layer.

A :class:`Refusal` says which candidate stays as it is and why. :class:`FoldPlan` holds them all,
with the example input and the unfolded model's output on it for the function check.

Example:
    >>> from .geometry import LayerSpec
    >>> s = LayerSpec("linear", 4, 4, (), (), (), (), 1, True, False, (1, 4), (1, 4))
    >>> m = ChainMerge(("fc1", "fc2"), ("fc1", "fc2"), (), (s, s), s)
    >>> m.macs_before, m.macs_after, m.describe()
    (32, 16, 'fc1 + fc2: linear 4->4 + linear 4->4 -> linear 4->4, MACs 32 -> 16')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from ..plan import Plan
from .execute import fold_norm_into_layer, merge_branches, merge_chain
from .geometry import LayerSpec, describe

__all__ = ["NormFold", "ChainMerge", "BranchMerge", "Refusal", "Action", "FoldPlan"]


class _Runs:
    """What :func:`relu_surgery.surgery.actions.execute` needs of an action: ``run`` and ``label``."""

    label = ""

    def run(self, gm, _nodes):
        self.apply_to(gm, {n.name: n for n in gm.graph.nodes})
        return None  # a fold names no new node: merged layers are called by the node they replace


@dataclass(frozen=True)
class NormFold(_Runs):
    """Fold the norm at node ``norm`` into the layer at node ``layer`` (``names``: their module paths).

    Example:
        >>> s = LayerSpec("conv", 3, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, False, False, (1, 3, 8, 8), (1, 4, 8, 8))
        >>> NormFold("conv", "bn", ("conv", "bn"), s, "BatchNorm2d").describe()
        'bn (BatchNorm2d) folded into conv (conv 3x3 3->4)'
    """

    layer: str
    norm: str
    names: tuple[str, str]
    spec: LayerSpec
    norm_type: str

    def describe(self) -> str:
        return f"{self.names[1]} ({self.norm_type}) folded into {self.names[0]} ({describe(self.spec)})"

    def apply_to(self, gm, nodes) -> None:
        fold_norm_into_layer(gm, nodes, self)


class _Merge(_Runs):
    """What a merge of layers ``before`` into ``after`` costs, and how the report says it (a mixin for
    the dataclasses below, which hold ``before``, ``after``, ``names`` and maybe ``identity``)."""

    @property
    def macs_before(self) -> int:
        return sum(s.macs() for s in self.before)

    @property
    def macs_after(self) -> int:
        return self.after.macs()

    def describe(self) -> str:
        identity = getattr(self, "identity", False)
        parts = " + ".join([*(describe(s) for s in self.before), *(["identity"] if identity else [])])
        return (f"{' + '.join(self.names)}{' + identity' if identity else ''}: {parts} -> "
                f"{describe(self.after)}, MACs {self.macs_before:,} -> {self.macs_after:,}")


@dataclass(frozen=True)
class ChainMerge(_Merge):
    """Replace the weight layers ``layers`` (in order; the ``dropped`` pass-through nodes between
    them go too) by one layer of spec ``after``, called where the last one was.

    Example:
        >>> from .geometry import compose
        >>> a = LayerSpec("conv", 8, 2, (1, 1), (1, 1), (0, 0), (1, 1), 1, True, False, (1, 8, 5, 5), (1, 2, 5, 5))
        >>> b = LayerSpec("conv", 2, 8, (3, 3), (1, 1), (0, 0), (1, 1), 1, True, False, (1, 2, 5, 5), (1, 8, 3, 3))
        >>> ChainMerge(("_0", "_1"), ("0", "1"), (), (a, b), compose(a, b)).describe()  # exact, but dearer
        '0 + 1: conv 1x1 8->2 + conv 3x3 2->8 -> conv 3x3 8->8, MACs 1,696 -> 5,184'
    """

    layers: tuple[str, ...]
    names: tuple[str, ...]
    dropped: tuple[str, ...]
    before: tuple[LayerSpec, ...]
    after: LayerSpec

    def apply_to(self, gm, nodes) -> None:
        merge_chain(gm, nodes, self)


@dataclass(frozen=True)
class BranchMerge(_Merge):
    """Replace the add nodes ``adds`` (the last first, then the pass-through calls between the branches
    and the adds) summing the ``branches`` (weight layers reading node ``input``, plus ``input`` itself
    when ``identity``) by one layer of spec ``after`` at node ``host``.

    Example:
        >>> from dataclasses import replace
        >>> k3 = LayerSpec("conv", 4, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, True, False, (1, 4, 8, 8), (1, 4, 8, 8))
        >>> k1 = replace(k3, kernel=(1, 1), padding=(0, 0))
        >>> BranchMerge(("add_1", "add"), "k3", ("k3", "k1"), ("k3", "k1"), "x", True, (k3, k1), k3).describe()
        'k3 + k1 + identity: conv 3x3 4->4 + conv 1x1 4->4 + identity -> conv 3x3 4->4, MACs 10,240 -> 9,216'
    """

    adds: tuple[str, ...]
    host: str
    branches: tuple[str, ...]
    names: tuple[str, ...]
    input: str
    identity: bool
    before: tuple[LayerSpec, ...]
    after: LayerSpec

    def apply_to(self, gm, nodes) -> None:
        merge_branches(gm, nodes, self)


Action = Union[NormFold, ChainMerge, BranchMerge]


@dataclass(frozen=True)
class Refusal:
    """A candidate left as it is: ``kind`` (norm, chain or branch), its module paths and why.

    Example:
        >>> Refusal("norm", ("bn",), "it has no running statistics (track_running_stats=False)").describe()
        'norm bn: it has no running statistics (track_running_stats=False)'
    """

    kind: str
    names: tuple[str, ...]
    reason: str
    macs_before: int | None = None
    macs_after: int | None = None

    def describe(self) -> str:
        return f"{self.kind} {' + '.join(self.names)}: {self.reason}"


@dataclass(frozen=True)
class FoldPlan(Plan):
    """A fold decided but not applied: the actions in order, the refusals, and what to check against.

    Example:
        >>> import torch, torch.nn as nn
        >>> from relu_surgery.graph.analysis import analyze
        >>> from .api import fold_step
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        >>> plan = fold_step().plan(analyze(net, torch.zeros(1, 3, 8, 8)))
        >>> [a.describe() for a in plan.actions], plan.refusals, plan.layers_before, tuple(plan.reference.shape)
        (['1 (BatchNorm2d) folded into 0 (conv 3x3 3->4)'], (), 2, (1, 4, 6, 6))
    """

    actions: tuple[Action, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    example_input: Any = field(default=None, repr=False)
    reference: Any = field(default=None, repr=False)
    unfolded: Any = field(default=None, repr=False)  # the graph before the actions (it shares the layers)
    tolerance: float = 1e-4
    layers_before: int = 0
