"""Pre-activation -> after-activation (seed 000 Sec. 3.1: what EraseReLU does to pre-act nets first).

Each pre-activation block loses its leading norm+act; a new norm follows the last conv of its
residual branch (``<conv>_norm``) and its projection conv (``<shortcut conv>_norm``); an
activation follows the addition (``<block>.add_act``, the same activation as the removed leading
one). The first block's leading norm+act moves to right after the stem conv (``<stem conv>_norm``
/ ``_act``, before a stem pool), so both paths of the first block read the activated stem; the
network's final pre-head norm+act is removed.

Example:
    >>> import relu_surgery as rs
    >>> from relu_surgery.graph.analysis import analyze
    >>> plan = plan_after(analyze(rs.create_model("preact_resnet110")))
    >>> plan.norms_moved
    (('layer1.0.bn1', 'conv1_norm', 'after the stem conv conv1'),)
"""

from __future__ import annotations

import torch.fx as fx

from ...graph.analysis import Analysis
from ...graph.ops import op_role
from ..actions import InsertModule, MoveAfter, Redirect, Rehome, RemoveNode, ReplaceInput
from ..builders import describe, fresh_norm, moved_copy
from ..edits import layer_path, parent_scope
from ..plan import Plan
from .anatomy import PreActUnit, out_channels, preact_unit
from .chains import Chain, final_chain, stem_anchor
from .obstacles import preact_obstacle
from .planning import PlanBook, find_units, is_composite, module_of

__all__ = ["plan_after"]

_ROOT = ((), ())


def plan_after(analysis: Analysis) -> Plan:
    """Plan the conversion of every pre-activation block (raises when there is none); see the module example.

    Example:
        >>> import relu_surgery as rs
        >>> from relu_surgery.graph.analysis import analyze
        >>> plan = plan_after(analyze(rs.create_model("wrn_52_1")))
        >>> plan.norms_removed[-1], type(plan.actions[0]).__name__
        ('bn_final', 'RemoveNode')
    """
    gm, blocks = analysis.graph_module, analysis.blocks
    units, warnings = find_units(analysis, preact_unit, "a pre-activation block", "pre-activation blocks",
                                 explain=preact_obstacle)
    book = PlanBook(analysis)
    first = units[0]
    anchor = stem_anchor(gm, book.nodes[first.input], blocks)
    for unit in units:
        if unit is first:
            _plan_stem_move(book, unit, anchor)
        else:
            book.drop(unit.block, unit.norm, "pre-activation")
            book.drop(unit.block, unit.act, "pre-activation")
        _plan_new_layers(book, unit)
    final = final_chain(gm, book.nodes[units[-1].add], blocks)
    if final is not None:
        book.drop(units[-1].block, final.norm, "final, before the head")
        book.drop(units[-1].block, final.act, "final, before the head")
    _actions(book, units, Chain(anchor.name, first.norm, first.act), final)
    reason = ("pre-activation blocks (norm -> act first on the residual branch, output the bare addition): "
              f"{len(units)} of {len(blocks)}")
    return book.plan(analysis, units, reason, warnings)


def _template(gm: fx.GraphModule, nodes: dict, unit: PreActUnit):
    """The module new norms copy: the block's leading norm (or composite norm+act)."""
    return module_of(gm, nodes[unit.norm] if unit.norm else nodes[unit.act])


def _plan_new_layers(book: PlanBook, unit: PreActUnit) -> None:
    gm, template = book.gm, _template(book.gm, book.nodes, unit)
    last = book.nodes[unit.last_weight]
    book.new_norm(unit.block, f"{unit.block}:norm", lambda: out_channels(gm, last), template,
                  f"after {layer_path(last)}", f"{layer_path(last)}_norm")
    if unit.proj_weight:
        proj = book.nodes[unit.proj_weight]
        book.new_norm(unit.block, f"{unit.block}:proj_norm", lambda: out_channels(gm, proj), template,
                      f"after the shortcut conv {layer_path(proj)}", f"{layer_path(proj)}_norm")
    lead = book.nodes[unit.act]
    path = book.path(f"{unit.block}:act", f"{unit.name}.add_act")
    book.change(unit.block, path, "(none)", f"{describe(gm, lead).split(' + ')[-1]} after the addition (new)",
                new_kind=book.kind(unit.act))


def _plan_stem_move(book: PlanBook, unit: PreActUnit, anchor: fx.Node) -> None:
    is_conv = op_role(anchor, book.gm) == "weight"
    base = layer_path(anchor) if is_conv else "stem"
    where = f"after the stem conv {base}" if is_conv else "before the first block"
    before = f"pre-activation of {unit.name}"
    if unit.norm:
        book.move(unit.block, book.nodes[unit.norm], before, book.path("stem:norm", f"{base}_norm"), where)
    lead = book.nodes[unit.act]
    composite = is_composite(book.gm, lead)
    path = book.path("stem:act", f"{base}_norm" if composite else f"{base}_act")
    book.move(unit.block, lead, before, path, where, book.kind(unit.act))


def _actions(book: PlanBook, units: list[PreActUnit], stem: Chain, final: Chain | None) -> None:
    """The edits, blocks last to first (so every node a later edit names is still there)."""
    if final is not None:
        book.actions += [RemoveNode(name) for name in (final.act, final.norm) if name]
    for unit in reversed(units):
        _add_layers(book, unit)
        if unit is units[0]:
            _move_to_stem(book, unit, stem)
        else:
            book.actions += [RemoveNode(unit.act)] + ([RemoveNode(unit.norm)] if unit.norm else [])


def _add_layers(book: PlanBook, unit: PreActUnit) -> None:
    """A new norm after the last conv and after the projection conv, an activation after the addition."""
    template = _template(book.gm, book.nodes, unit)
    for key, weight in ((f"{unit.block}:norm", unit.last_weight), (f"{unit.block}:proj_norm", unit.proj_weight)):
        if weight:
            node, path = book.nodes[weight], book.paths[key]
            book.actions.append(InsertModule(weight, path, fresh_norm(template, book.sizes[key]), path,
                                             parent_scope(node)))
    add = book.nodes[unit.add]
    book.insert_act(unit.add, book.nodes[unit.act], book.paths[f"{unit.block}:act"], parent_scope(add))


def _move_to_stem(book: PlanBook, unit: PreActUnit, stem: Chain) -> None:
    """The first block's leading norm+act moves to right after the stem conv (before its pool)."""
    gm, nodes = book.gm, book.nodes
    norm, act = nodes.get(unit.norm), nodes[unit.act]
    head = norm or act
    x, anchor = head.all_input_nodes[0], nodes[stem.anchor]
    scope = parent_scope(anchor) if op_role(anchor, gm) == "weight" else _ROOT
    if anchor is x:  # nothing between the stem and the block: both paths read the activation
        book.actions.append(Redirect(x.name, act.name, keep=(head.name,)))
    else:  # stem conv -> norm -> act -> pool -> block
        moved = tuple(n.name for n in (norm, act) if n is not None)
        book.actions += [Redirect(anchor.name, act.name, keep=(head.name,)),
                         *[ReplaceInput(user.name, act.name, x.name) for user in act.users],
                         ReplaceInput(head.name, x.name, anchor.name), MoveAfter(anchor.name, moved)]
    if norm is not None:
        book.actions.append(Rehome(norm.name, book.paths["stem:norm"], scope))
    copy = None if is_composite(gm, act) or act.op != "call_module" else moved_copy(module_of(gm, act))
    book.actions.append(Rehome(act.name, book.paths["stem:act"], scope, copy))
