"""After-activation -> pre-activation (seed 003): full pre-activation (Fig. 4e) and ReLU-only (Fig. 4d).

The conversion rules of :mod:`.preact_after` run backwards. Full pre-activation (``with_norm``):
each block loses the norm after its last conv, the norm on its projection shortcut and the
activation after its addition; a new norm+act leads its residual branch (``<block>.pre_norm`` /
``<block>.pre_act``; a projection shortcut reads the pre-activated input, "also with
pre-activation", an identity shortcut the raw input). Seed 003's appendix for the first and last
units: the stem's norm+act moves into the first block, before the split into two paths (so both
paths read it), and after the last addition come a new norm (``final_norm``) and the last block's
activation (``final_act``) before the head. ReLU-only pre-activation keeps every norm where it is
and moves only activations.

Example:
    >>> import torchvision
    >>> from relu_surgery.graph.analysis import analyze
    >>> plan = plan_pre(analyze(torchvision.models.resnet18()))
    >>> plan.norms_added[:2], plan.norms_moved[0][:2]
    (('layer1.1.pre_norm', 'layer2.0.pre_norm'), ('bn1', 'layer1.0.pre_norm'))
"""

from __future__ import annotations

import torch.fx as fx

from ...graph.analysis import Analysis
from .anatomy import (PostActUnit, block_region, identity_readers, in_channels, out_channels, any_preactivation, postact_unit, stem_chain)
from .edit import (act_module, describe, fresh_norm, insert_act, insert_module, is_norm_act, move_after, parent_scope, rehome)
from .planning import ConvertPlan, PlanBook, bypass, find_units, is_composite, module_of, site_name, step_report

__all__ = ["plan_pre", "apply_pre", "plan_relu_only", "apply_relu_only"]

_ROOT = ((), ())


def plan_pre(analysis: Analysis) -> ConvertPlan:
    """Plan the full pre-activation conversion (seed 003 Fig. 4e) of every after-activation block."""
    return _plan(analysis, with_norm=True)


def plan_relu_only(analysis: Analysis) -> ConvertPlan:
    """Plan ReLU-only pre-activation (seed 003 Fig. 4d): activations move, norms stay."""
    return _plan(analysis, with_norm=False)


def _normed_unit(gm: fx.GraphModule, block, region=None) -> PostActUnit | None:
    unit = postact_unit(gm, block, region)
    return unit if unit is not None and unit.last_norm is not None else None


def _plan(analysis: Analysis, with_norm: bool) -> ConvertPlan:
    gm, blocks = analysis.graph_module, analysis.blocks
    missing = "after-activation residual blocks" + (" with a norm after the last conv" if with_norm else "")
    if any_preactivation(gm, blocks):
        missing += " (its blocks are pre-activation already)"
    units, warnings = find_units(analysis, _normed_unit if with_norm else postact_unit,
                                 "an after-activation residual block", missing)
    book = PlanBook(analysis)
    stem = stem_chain(gm, book.nodes[units[0].input], blocks, need_norm=with_norm)
    if stem is not None and not with_norm and is_composite(gm, book.nodes[stem.act]):
        stem = None  # a composite stem norm+act cannot give up its activation alone
    for unit in units:
        if unit is units[0] and stem is not None:
            _plan_stem_into_block(book, unit, stem, with_norm)
        else:
            _plan_lead(book, unit, with_norm)
        if with_norm:
            book.drop(unit.block, unit.last_norm, f"after {site_name(book.nodes[unit.last_weight])}")
            book.drop(unit.block, unit.proj_norm, "on the projection shortcut")
        if unit is not units[-1]:
            book.drop(unit.block, unit.act, "after the addition")
    _plan_final(book, units[-1], with_norm)
    reason = f"after-activation residual blocks (activation after the addition): {len(units)} of {len(blocks)}"
    to = "pre-activation" if with_norm else "relu-only-preact"
    return book.plan(analysis, {"to": to}, units, reason, warnings, stem=stem)


def _composite_lead(book: PlanBook, unit: PostActUnit, with_norm: bool):
    """(norm template, whether the new norm+act is one composite layer)."""
    template = module_of(book.gm, book.nodes[unit.last_norm]) if unit.last_norm else None
    return template, with_norm and is_norm_act(template)


def _plan_lead(book: PlanBook, unit: PostActUnit, with_norm: bool) -> None:
    template, composite = _composite_lead(book, unit, with_norm)
    act, kind = book.nodes[unit.act], book.kind(unit.act)
    if with_norm:
        x, inside = book.nodes[unit.input], set(block_region(book.gm, unit.name))
        extra = " + activation" if composite else ""
        book.new_norm(unit.block, f"{unit.block}:pre_norm", lambda: in_channels(book.gm, x, inside), template,
                      f"{extra} leading the block (pre-activation)".strip(), f"{unit.name}.pre_norm",
                      new_kind=kind if composite else "")
    if not composite:
        path = book.path(f"{unit.block}:pre_act", f"{unit.name}.pre_act")
        book.change(unit.block, path, "(none)", f"{describe(book.gm, act)} leading the block (new)",
                    new_kind=kind)


def _plan_stem_into_block(book: PlanBook, unit: PostActUnit, stem, with_norm: bool) -> None:
    where = f"leading {unit.name}, before the split into two paths"
    if with_norm and stem.norm:
        book.move(unit.block, book.nodes[stem.norm], "after the stem conv",
                  book.path("stem:norm", f"{unit.name}.pre_norm"), where)
    node = book.nodes[stem.act]
    wanted = f"{unit.name}.pre_norm" if is_composite(book.gm, node) else f"{unit.name}.pre_act"
    book.move(unit.block, node, "after the stem conv", book.path("stem:act", wanted), where, book.kind(stem.act))


def _plan_final(book: PlanBook, unit: PostActUnit, with_norm: bool) -> None:
    template, composite = _composite_lead(book, unit, with_norm)
    act, kind = book.nodes[unit.act], book.kind(unit.act)
    where = "after the last addition, before the head"
    if with_norm:
        norm = book.nodes[unit.last_norm]
        book.new_norm(unit.block, "final:norm", lambda: out_channels(book.gm, norm), template,
                      ("+ activation " if composite else "") + where, "final_norm")
    if composite:
        book.change(unit.block, site_name(act), f"{describe(book.gm, act)} after the addition",
                    f"moved into {book.paths['final:norm']}, {where}", unit.act, kind, kind)
    else:
        book.move(unit.block, act, "after the addition", book.path("final:act", "final_act"), where, kind)


def apply_pre(gm: fx.GraphModule, plan: ConvertPlan):
    """Apply a :func:`plan_pre` or :func:`plan_relu_only` plan (blocks last to first)."""
    nodes = {n.name: n for n in gm.graph.nodes}
    before = set(nodes.values())
    removed = [site_name(nodes[c.node]) for c in plan.changes if c.after == "removed" and c.node]
    with_norm = plan.settings["to"] == "pre-activation"
    for unit in reversed(plan.units):
        template = module_of(gm, nodes.get(unit.last_norm))
        if unit is plan.units[0] and plan.stem is not None:
            _move_into_block(gm, plan, unit, nodes, with_norm)
        else:
            _add_lead(gm, plan, unit, nodes, template, with_norm)
        if unit is plan.units[-1]:
            _add_final(gm, plan, unit, nodes, template, with_norm)
        else:
            bypass(gm, nodes[unit.act])
        if with_norm:
            for name in (unit.last_norm, unit.proj_norm):
                if name:
                    bypass(gm, nodes[name])
    return step_report(gm, plan, before, removed)


apply_relu_only = apply_pre


def _readers(gm: fx.GraphModule, unit: PostActUnit, x: fx.Node, nodes: dict) -> list[fx.Node]:
    """The block's readers of ``x`` that now read the pre-activated input (not the identity path)."""
    inside = set(block_region(gm, unit.name))
    keep = identity_readers(gm, x, nodes[unit.add]) if unit.proj_weight is None else set()
    return [u for u in x.users if u in inside and u not in keep]


def _add_lead(gm, plan: ConvertPlan, unit: PostActUnit, nodes: dict, template, with_norm: bool) -> None:
    x, act, scope = nodes[unit.input], nodes[unit.act], parent_scope(nodes[unit.add])
    readers = _readers(gm, unit, x, nodes)
    if not with_norm:
        insert_act(gm, x, act, plan.paths[f"{unit.block}:pre_act"], scope, users=readers)
        return
    composite = is_norm_act(template)
    norm = fresh_norm(template, plan.sizes[f"{unit.block}:pre_norm"], act_module(gm, act) if composite else None)
    norm_node = insert_module(gm, x, plan.paths[f"{unit.block}:pre_norm"], norm, scope, users=readers)
    if not composite:
        insert_act(gm, norm_node, act, plan.paths[f"{unit.block}:pre_act"], scope)


def _move_into_block(gm, plan: ConvertPlan, unit: PostActUnit, nodes: dict, with_norm: bool) -> None:
    """The stem's norm+act moves into the first block, before the split (both paths read it)."""
    x, act = nodes[unit.input], nodes[plan.stem.act]
    norm = nodes[plan.stem.norm] if with_norm and plan.stem.norm else None
    head, scope = norm or act, parent_scope(nodes[unit.add])
    if act is not x:  # stem conv -> norm -> act -> pool -> block  becomes  conv -> pool -> norm -> act
        inside = set(block_region(gm, unit.name))
        block_uses = [u for u in x.users if u in inside]
        source = head.all_input_nodes[0]
        act.replace_all_uses_with(source)
        head.replace_input_with(source, x)
        for user in block_uses:
            user.replace_input_with(x, act)
        move_after(x, *[n for n in (norm, act) if n is not None])
    if norm is not None:
        rehome(gm, norm, plan.paths["stem:norm"], scope)
    rehome(gm, act, plan.paths["stem:act"], scope, copy_module=not is_composite(gm, act))


def _add_final(gm, plan: ConvertPlan, unit: PostActUnit, nodes: dict, template, with_norm: bool) -> None:
    add, act = nodes[unit.add], nodes[unit.act]
    if with_norm:
        channels = plan.sizes["final:norm"]
        if is_norm_act(template):
            insert_module(gm, add, plan.paths["final:norm"], fresh_norm(template, channels, act_module(gm, act)),
                          _ROOT)
            bypass(gm, act)
            return
        insert_module(gm, add, plan.paths["final:norm"], fresh_norm(template, channels), _ROOT)
    rehome(gm, act, plan.paths["final:act"], _ROOT, copy_module=True)
