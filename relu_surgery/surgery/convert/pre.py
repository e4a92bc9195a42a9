"""After-activation -> pre-activation (seed 003): full pre-activation (Fig. 4e) and ReLU-only (Fig. 4d).

The conversion rules of :mod:`.after` run backwards. Full pre-activation (``with_norm``):
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

from ...graph.activations import is_norm_act_layer
from ...graph.analysis import Analysis
from ..actions import InsertModule, MoveAfter, New, Redirect, Rehome, RemoveNode, ReplaceInput
from ..builders import act_module, describe, fresh_norm, moved_copy
from ..edits import parent_scope, qualified
from ..plan import Plan
from .anatomy import PostActUnit, any_preactivation, identity_readers, in_channels, out_channels, postact_unit
from .chains import stem_chain
from .planning import PlanBook, find_units, is_composite, module_of

__all__ = ["plan_pre", "plan_relu_only"]

_ROOT = ((), ())


def plan_pre(analysis: Analysis) -> Plan:
    """Plan the full pre-activation conversion (seed 003 Fig. 4e) of every after-activation block.

    See the module example.

    Example:
        >>> import relu_surgery as rs
        >>> from relu_surgery.graph.analysis import analyze
        >>> plan_pre(analyze(rs.create_model("cifar_resnet20"))).norms_added[-1]
        'final_norm'
    """
    return _plan(analysis, with_norm=True)


def plan_relu_only(analysis: Analysis) -> Plan:
    """Plan ReLU-only pre-activation (seed 003 Fig. 4d): activations move, norms stay.

    Example:
        >>> import torchvision
        >>> from relu_surgery.graph.analysis import analyze
        >>> plan = plan_relu_only(analyze(torchvision.models.resnet18()))
        >>> plan.norms_added, [c.site for c in plan.changes][:2]
        ((), ['relu', 'layer1.0.relu_1'])
    """
    return _plan(analysis, with_norm=False)


def _normed_unit(gm: fx.GraphModule, block, region=None) -> PostActUnit | None:
    unit = postact_unit(gm, block, region)
    return unit if unit is not None and unit.last_norm is not None else None


def _plan(analysis: Analysis, with_norm: bool) -> Plan:
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
            book.drop(unit.block, unit.last_norm, f"after {qualified(book.nodes[unit.last_weight])}")
            book.drop(unit.block, unit.proj_norm, "on the projection shortcut")
        if unit is not units[-1]:
            book.drop(unit.block, unit.act, "after the addition")
    _plan_final(book, units[-1], with_norm)
    _actions(book, units, stem, with_norm)
    reason = f"after-activation residual blocks (activation after the addition): {len(units)} of {len(blocks)}"
    return book.plan(analysis, units, reason, warnings)


def _composite_lead(book: PlanBook, unit: PostActUnit, with_norm: bool):
    """(norm template, whether the new norm+act is one composite layer)."""
    template = module_of(book.gm, book.nodes[unit.last_norm]) if unit.last_norm else None
    return template, with_norm and template is not None and is_norm_act_layer(template)


def _plan_lead(book: PlanBook, unit: PostActUnit, with_norm: bool) -> None:
    template, composite = _composite_lead(book, unit, with_norm)
    act, kind = book.nodes[unit.act], book.kind(unit.act)
    if with_norm:
        x, inside = book.nodes[unit.input], set(book.regions.nodes(unit.name))
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
        book.change(unit.block, qualified(act), f"{describe(book.gm, act)} after the addition",
                    f"moved into {book.paths['final:norm']}, {where}", unit.act, kind, kind)
    else:
        book.move(unit.block, act, "after the addition", book.path("final:act", "final_act"), where, kind)


def _actions(book: PlanBook, units: list[PostActUnit], stem, with_norm: bool) -> None:
    """The edits, blocks last to first (so every node a later edit names is still there)."""
    for unit in reversed(units):
        template = module_of(book.gm, book.nodes.get(unit.last_norm))
        if unit is units[0] and stem is not None:
            _move_into_block(book, unit, stem, with_norm)
        else:
            _add_lead(book, unit, template, with_norm)
        if unit is units[-1]:
            _add_final(book, unit, template, with_norm)
        else:
            book.actions.append(RemoveNode(unit.act))
        if with_norm:
            book.actions += [RemoveNode(name) for name in (unit.last_norm, unit.proj_norm) if name]


def _readers(book: PlanBook, unit: PostActUnit, x: fx.Node) -> tuple[str, ...]:
    """The block's readers of ``x`` that read the pre-activated input (not the identity path)."""
    inside = set(book.regions.nodes(unit.name))
    keep = identity_readers(book.gm, x, book.nodes[unit.add]) if unit.proj_weight is None else set()
    return tuple(u.name for u in x.users if u in inside and u not in keep)


def _add_lead(book: PlanBook, unit: PostActUnit, template, with_norm: bool) -> None:
    x, act, scope = book.nodes[unit.input], book.nodes[unit.act], parent_scope(book.nodes[unit.add])
    readers = _readers(book, unit, x)
    if not with_norm:
        book.insert_act(x.name, act, book.paths[f"{unit.block}:pre_act"], scope, users=readers)
        return
    composite = is_norm_act_layer(template)
    path = book.paths[f"{unit.block}:pre_norm"]
    norm = fresh_norm(template, book.sizes[f"{unit.block}:pre_norm"], act_module(book.gm, act) if composite else None)
    book.actions.append(InsertModule(x.name, path, norm, path, scope, readers))
    if not composite:
        book.insert_act(New(path), act, book.paths[f"{unit.block}:pre_act"], scope)


def _move_into_block(book: PlanBook, unit: PostActUnit, stem, with_norm: bool) -> None:
    """The stem's norm+act moves into the first block, before the split (both paths read it)."""
    gm, nodes = book.gm, book.nodes
    x, act = nodes[unit.input], nodes[stem.act]
    norm = nodes[stem.norm] if with_norm and stem.norm else None
    head, scope = norm or act, parent_scope(nodes[unit.add])
    if act is not x:  # stem conv -> norm -> act -> pool -> block  becomes  conv -> pool -> norm -> act
        inside = set(book.regions.nodes(unit.name))
        source = head.all_input_nodes[0]
        moved = tuple(n.name for n in (norm, act) if n is not None)
        book.actions += [Redirect(act.name, source.name), ReplaceInput(head.name, source.name, x.name),
                         *[ReplaceInput(u.name, x.name, act.name) for u in x.users if u in inside],
                         MoveAfter(x.name, moved)]
    if norm is not None:
        book.actions.append(Rehome(norm.name, book.paths["stem:norm"], scope))
    copy = None if is_composite(gm, act) or act.op != "call_module" else moved_copy(module_of(gm, act))
    book.actions.append(Rehome(act.name, book.paths["stem:act"], scope, copy))


def _add_final(book: PlanBook, unit: PostActUnit, template, with_norm: bool) -> None:
    gm, add, act = book.gm, book.nodes[unit.add], book.nodes[unit.act]
    if with_norm:
        path, channels = book.paths["final:norm"], book.sizes["final:norm"]
        if is_norm_act_layer(template):
            book.actions += [InsertModule(add.name, path, fresh_norm(template, channels, act_module(gm, act)), path,
                                          _ROOT), RemoveNode(act.name)]
            return
        book.actions.append(InsertModule(add.name, path, fresh_norm(template, channels), path, _ROOT))
    copy = moved_copy(module_of(gm, act)) if act.op == "call_module" else None
    book.actions.append(Rehome(act.name, book.paths["final:act"], _ROOT, copy))
