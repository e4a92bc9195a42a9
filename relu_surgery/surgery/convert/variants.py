"""Seed 003 Fig. 4 (b) and (c): the after-activation unit with its norm or activation moved.

* ``bn-after-add`` (Fig. 4b): the norm after the last conv of the residual branch moves to after
  the addition (before the activation): x_{l+1} = act(BN(S(x_l) + conv(...))). The norm keeps its
  module path and values (it normalises the same channels), so the state dict is unchanged.
* ``relu-before-add`` (Fig. 4c): the activation after the addition moves to the end of the
  residual branch: x_{l+1} = S(x_l) + act(BN(conv(...))). Same module, state dict unchanged.

Both change what the network computes; they are ablations, to be trained.

Example:
    >>> import torchvision
    >>> from relu_surgery.graph.analysis import analyze
    >>> plan = plan_bn_after_add(analyze(torchvision.models.resnet18()))
    >>> plan.norms_moved[0]
    ('layer1.0.bn2', 'layer1.0.bn2', 'after the addition layer1.0.add')
"""

from __future__ import annotations

from ...graph.analysis import Analysis
from ..actions import Relocate
from ..builders import describe
from ..edits import qualified
from ..plan import Plan
from .anatomy import PostActUnit, any_preactivation, postact_unit
from .obstacles import first_obstacle
from .planning import PlanBook, find_units

__all__ = ["plan_bn_after_add", "plan_relu_before_add"]


def _units(analysis: Analysis, need_norm: bool) -> tuple[list[PostActUnit], list[str]]:
    def finder(gm, block, region):
        unit = postact_unit(gm, block, region)
        return None if unit is None or (need_norm and unit.last_norm is None) else unit

    missing = "after-activation residual blocks" + (" with a norm after the last conv" if need_norm else "")
    if any_preactivation(analysis.graph_module, analysis.blocks):
        missing += " (its blocks are pre-activation: convert to after-activation first)"
    elif (obstacle := first_obstacle(analysis.graph_module, analysis.blocks)) is not None:
        missing += f" (its blocks are pre-activation and cannot be converted to after-activation: {obstacle})"
    return find_units(analysis, finder, "an after-activation residual block", missing)


def _reason(units, analysis: Analysis) -> str:
    return f"after-activation residual blocks (activation after the addition): {len(units)} of {len(analysis.blocks)}"


def plan_bn_after_add(analysis: Analysis) -> Plan:
    """Plan Fig. 4b: every after-activation block's last norm moves to after the addition.

    See the module example.

    Example:
        >>> import relu_surgery as rs
        >>> from relu_surgery.graph.analysis import analyze
        >>> plan = plan_bn_after_add(analyze(rs.create_model("cifar_resnet20")))
        >>> len(plan.actions), plan.actions[0]
        (9, Relocate(node='layer1_0_bn2', after='add'))
    """
    units, warnings = _units(analysis, need_norm=True)
    book = PlanBook(analysis)
    for unit in units:
        norm, add = book.nodes[unit.last_norm], book.nodes[unit.add]
        where = f"after the addition {qualified(add)}"
        book.move(unit.block, norm, f"after {qualified(book.nodes[unit.last_weight])}", str(norm.target), where)
        book.actions.append(Relocate(unit.last_norm, unit.add))  # conv -> add -> norm -> act
    return book.plan(analysis, units, _reason(units, analysis), warnings)


def plan_relu_before_add(analysis: Analysis) -> Plan:
    """Plan Fig. 4c: every after-activation block's post-addition activation moves before the addition.

    Example:
        >>> import torchvision
        >>> from relu_surgery.graph.analysis import analyze
        >>> plan = plan_relu_before_add(analyze(torchvision.models.resnet18()))
        >>> plan.changes[0].after
        'nn.ReLU before the addition, after layer1.0.bn2'
    """
    units, warnings = _units(analysis, need_norm=False)
    book = PlanBook(analysis)
    for unit in units:
        act = book.nodes[unit.act]
        anchor = unit.last_norm or unit.last_weight
        kind = book.kind(unit.act)
        book.change(unit.block, qualified(act), f"{describe(book.gm, act)} after the addition",
                    f"{describe(book.gm, act)} before the addition, after {qualified(book.nodes[anchor])}", unit.act,
                    kind, kind)
        book.actions.append(Relocate(unit.act, anchor))  # conv -> norm -> act -> add
    return book.plan(analysis, units, _reason(units, analysis), warnings)
