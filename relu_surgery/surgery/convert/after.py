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
from ...report.report import StepReport
from .anatomy import Chain, PreActUnit, final_chain, out_channels, preact_unit, stem_anchor
from .edit import describe, fresh_norm, insert_act, insert_module, layer_path, move_after, parent_scope, rehome
from .planning import ConvertPlan, PlanBook, bypass, find_units, is_composite, module_of, site_name, step_report

__all__ = ["plan_after", "apply_after"]

_ROOT = ((), ())


def plan_after(analysis: Analysis) -> ConvertPlan:
    """Plan the conversion of every pre-activation block (raises when there is none)."""
    gm, blocks = analysis.graph_module, analysis.blocks
    units, warnings = find_units(analysis, preact_unit, "a pre-activation block", "pre-activation blocks")
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
    reason = ("pre-activation blocks (norm -> act first on the residual branch, output the bare addition): "
              f"{len(units)} of {len(blocks)}")
    return book.plan(analysis, {"to": "after-activation"}, units, reason, warnings,
                     stem=Chain(anchor.name, first.norm, first.act), final=final)


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


def apply_after(gm: fx.GraphModule, plan: ConvertPlan) -> StepReport:
    """Apply :func:`plan_after`'s plan to ``gm`` (blocks last to first, so inputs stay valid)."""
    nodes = {n.name: n for n in gm.graph.nodes}
    before = set(nodes.values())
    removed = [site_name(nodes[c.node]) for c in plan.changes if c.after == "removed" and c.node]
    if plan.final is not None:
        for name in (plan.final.act, plan.final.norm):
            if name:
                bypass(gm, nodes[name])
    for unit in reversed(plan.units):
        _add_layers(gm, plan, unit, nodes)
        if unit is plan.units[0]:
            _move_to_stem(gm, plan, unit, nodes)
        else:
            _drop_lead(gm, nodes.get(unit.norm), nodes[unit.act])
    return step_report(gm, plan, before, removed)


def _add_layers(gm: fx.GraphModule, plan: ConvertPlan, unit: PreActUnit, nodes: dict) -> None:
    template = _template(gm, nodes, unit)
    last = nodes[unit.last_weight]
    key = f"{unit.block}:norm"
    insert_module(gm, last, plan.paths[key], fresh_norm(template, plan.sizes[key]), parent_scope(last))
    if unit.proj_weight:
        proj = nodes[unit.proj_weight]
        key = f"{unit.block}:proj_norm"
        insert_module(gm, proj, plan.paths[key], fresh_norm(template, plan.sizes[key]), parent_scope(proj))
    add = nodes[unit.add]
    insert_act(gm, add, nodes[unit.act], plan.paths[f"{unit.block}:act"], parent_scope(add))


def _drop_lead(gm: fx.GraphModule, norm: fx.Node | None, act: fx.Node) -> None:
    x = (norm or act).all_input_nodes[0]
    act.replace_all_uses_with(x)
    gm.graph.erase_node(act)
    if norm is not None:
        gm.graph.erase_node(norm)


def _move_to_stem(gm: fx.GraphModule, plan: ConvertPlan, unit: PreActUnit, nodes: dict) -> None:
    """The first block's leading norm+act moves to right after the stem conv (before its pool)."""
    norm, act = nodes.get(unit.norm), nodes[unit.act]
    head = norm or act
    x, anchor = head.all_input_nodes[0], nodes[plan.stem.anchor]
    scope = parent_scope(anchor) if op_role(anchor, gm) == "weight" else _ROOT
    if anchor is x:  # nothing between the stem and the block: both paths read the activation
        x.replace_all_uses_with(act, delete_user_cb=lambda user: user is not head)
    else:  # stem conv -> norm -> act -> pool -> block
        block_uses = list(act.users)
        anchor.replace_all_uses_with(act, delete_user_cb=lambda user: user is not head)
        for user in block_uses:
            user.replace_input_with(act, x)
        head.replace_input_with(x, anchor)
        move_after(anchor, *[n for n in (norm, act) if n is not None])
    if norm is not None:
        rehome(gm, norm, plan.paths["stem:norm"], scope)
    rehome(gm, act, plan.paths["stem:act"], scope, copy_module=not is_composite(gm, act))
