"""Rewrite a model whose root cannot be traced: inside the largest parts that can, as one model.

:func:`run_partial` is what :func:`relu_surgery.surgery.pipeline.run_rewrite` falls back to when
the root's own ``forward`` cannot be traced (torchvision's detection models take a list of images,
RAFT branches on traced values, research code calls ``m.forward(x)``), or when the root traces but
every block sits inside submodules that could not be. It

1. copies the model (the caller's is never touched) and finds its parts and their blocks
   (:func:`relu_surgery.graph.part_analysis.analyze_parts`: rule precedence and execution order
   decided across all parts, block indices over all of them);
2. for each step, selects blocks over *all* blocks once (the uniform proportion counts every
   part's blocks), then plans and applies each part's share on that part's graph;
3. swaps every rewritten part (a GraphModule, same state-dict keys) into the private copy, whose
   own Python code keeps calling it;
4. checks a forward pass of the whole model (output structure unchanged but for leading
   dimensions, which count detections; finite) and reports the parts, the order and the input.

Saving works as for any rewrite: the recipe replays the same rewrites on a fresh build, which
finds the same parts and blocks.

Example:
    >>> import torch, torch.nn as nn
    >>> from torchvision.models.resnet import BasicBlock
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.a, self.b = BasicBlock(4, 4), BasicBlock(4, 4)
    ...     def forward(self, x):
    ...         x = self.a.forward(x)                  # FX would inline this call
    ...         return self.b(x) if x.mean() > 0 else -self.b(x)
    >>> from relu_surgery.surgery.erase import erase_step
    >>> new, report, _ = run_partial(Net(), [erase_step(proportion=0.5)], torch.randn(1, 4, 8, 8))
    >>> [c.site for c in report.changes], type(new.a).__name__, type(new).__name__
    (['a.relu_1'], 'BasicBlock', 'Net')
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

import torch
import torch.nn as nn

from ..errors import NoBlocksError, SurgeryError
from ..graph.analysis import Analysis, count_sites, model_label
from ..graph.blocks import BlockSpec
from ..graph.intake import on_meta
from ..graph.provenance import Provenance, set_provenance
from ..graph.part_analysis import PartAnalysis, PartialAnalysis, analyze_parts
from ..graph.parts import install, localize
from ..graph.tracing import graph_code, graph_records
from ..report.costs import Measurement, count_params, measure, snapshot_state, state_dict_diff
from ..report.report import Report, StepReport
from .actions import execute
from .plan import Plan
from .selection import Selection, preset_selection, select_blocks

__all__ = ["run_partial", "plan_parts"]


def _analysis(pa: PartialAnalysis, part: PartAnalysis) -> Analysis:
    return Analysis(pa.source, part.traced, part.blocks, part.example_input, pa.label)


def _global_selection(pa: PartialAnalysis, step) -> Selection | None:
    s = step.settings
    if "proportion" not in s or not pa.blocks:
        return None
    return select_blocks(pa.blocks, s["proportion"], s.get("blocks"), s.get("stage"), s.get("random", False),
                         s.get("seed", 0))


def plan_parts(pa: PartialAnalysis, step) -> tuple[Plan, list[tuple[PartAnalysis, Plan]]]:
    """Plan ``step`` on every part of ``pa``: (the plan over all parts, each part's own plan).

    A step that selects blocks (proportion, blocks, stage, random) selects over all blocks once;
    each part then plans the chosen blocks it holds. A step that needs no blocks (fold) plans on
    every traced part.

    Example:
        >>> from relu_surgery.surgery.erase import erase_step
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU())
        ...     def forward(self, x):
        ...         return self.body(x) if x.sum() > 0 else -self.body(x)
        >>> plan, plans = plan_parts(analyze_parts(Net(), torch.zeros(1, 4)), erase_step(proportion=0.5))
        >>> plan.selected, [(part.path, p.actions) for part, p in plans]
        ((1,), [('body', (RemoveNode(node='_1'),))])
    """
    selection = _global_selection(pa, step)
    chosen = set(selection.indices) if selection else None
    plans, skipped, missing = [], [], []
    for part in pa.parts:
        holds = {b.index for b in part.blocks}
        if (step.needs_blocks and not holds) or (chosen is not None and not chosen & holds):
            continue
        if not step.needs_blocks and not isinstance(part.example_input, torch.Tensor):
            skipped.append(part.path or "(root)")  # a whole-graph step runs the part on one tensor
            continue
        try:
            with preset_selection(selection):
                plans.append((part, step.plan(_analysis(pa, part))))
        except NoBlocksError as exc:  # this part has no block of the form the step needs (convert); others may
            missing.append(exc)
    if missing and not plans:
        raise missing[0]
    changes = sorted((c for _, p in plans for c in p.changes), key=lambda c: c.block)
    selected = selection.indices if selection else tuple(sorted({i for _, p in plans for i in p.selected}))
    reason = selection.reason if selection else "; ".join(dict.fromkeys(p.selection_reason for _, p in plans))
    warnings = tuple(dict.fromkeys(w for _, p in plans for w in p.warnings))
    if skipped:
        warnings += (f"{step.name}: parts not called with one tensor on the example input left as they are: "
                     f"{', '.join(skipped)}",)
    return Plan(step.name, tuple(pa.blocks), selected, reason, tuple(changes), warnings), plans


def _merged(step, plan: Plan, reports: Sequence[StepReport]) -> StepReport:
    def every(attr):
        return tuple(x for r in reports for x in getattr(r, attr))

    warnings = tuple(dict.fromkeys((*plan.warnings, *every("warnings"))))
    return StepReport(plan.rewrite, step.settings, plan.selected, plan.selection_reason, plan.changes,
                      every("nodes_removed"), every("nodes_added"), warnings, every("norms_added"),
                      every("norms_moved"), every("norms_removed"))


def _apply(pa: PartialAnalysis, step, plans: list[tuple[PartAnalysis, Plan]]) -> tuple[nn.Module, list[StepReport]]:
    """Apply each part's plan to its view, then install the changed parts (outer before inner)."""
    reports, changed = [], []
    for part, plan in plans:
        gm = part.traced.graph_module
        report = step.report_of(plan, gm, execute(gm, plan.actions))
        gm.graph.lint()
        gm.delete_all_unused_submodules()
        gm.recompile()
        set_provenance(gm, Provenance(leaves=dict(part.traced.leaves)))  # a later trace keeps them leaves
        reports.append(report)
        if report.changed_something:
            changed.append(part)
    root = pa.source
    for part in sorted(changed, key=lambda p: (p.path.count(".") if p.path else -1, p.path)):
        new = localize(part.traced.graph_module, part.path, root.get_submodule(part.path))
        if part.path:
            install(root, part.path, new)
        else:
            root = new
    return root, reports


def _sites(pa: PartialAnalysis) -> dict[str, int]:
    total: Counter = Counter()
    for part in pa.parts:
        total.update(count_sites(part.traced.graph_module))
    return dict(total)


def _shown(pa: PartialAnalysis) -> tuple[str, list[dict]]:
    """Generated code and graph records of the parts holding blocks (for diffs and drawings)."""
    parts = [p for p in pa.parts if p.blocks]
    code = "".join(f"# part {p.path or '(root)'}\n{graph_code(p.traced.graph_module)}" for p in parts)
    return code, [r for p in parts for r in graph_records(p.traced.graph_module)]


def _structure(m: Measurement) -> list[tuple[str, tuple[int, ...]]]:
    """Output tensors by place and shape without the leading dimension (a count of detections)."""
    return [(where, (len(shape), *shape[1:])) for where, shape, _ in m.outputs]


def _check(root: nn.Module, x, before: Measurement | None, meta: bool, described: str) -> tuple:
    """The forward check of the whole model: (after, forward_check, notes); structure as :func:`_structure`."""
    if meta:
        return None, {"input_shape": described, "skipped": "meta device (no values)"}, []
    if before is None:
        return None, {"input_shape": described, "skipped": "check=False"}, []
    after = measure(root, x)
    if not all(finite for *_, finite in before.outputs):
        raise SurgeryError("the model's output is already non-finite before the rewrite: check its weights; "
                           "the rewrite is not the cause")
    if _structure(after) != _structure(before):
        raise SurgeryError(f"the rewritten model's output changed structure: {_structure(before)} -> {_structure(after)}")
    if not all(finite for *_, finite in after.outputs):
        raise SurgeryError("the rewritten model produced non-finite values on the example input (untrained "
                           "normalisation statistics?); check=False / --no-check skips this check")
    shown = ", ".join(f"{w or 'output'} {s}" for w, s, _ in after.outputs[:6])
    moved = [f"{w or 'output'} {a} -> {b}" for (w, a, _), (_, b, _) in zip(before.outputs, after.outputs) if a != b]
    notes = [f"output sizes changed only in their leading dimension, a data-dependent count (detections): "
             f"{', '.join(moved[:3])}{', ...' if len(moved) > 3 else ''}"] if moved else []
    return after, {"input_shape": described, "output_shape": after.output_shape,
                   "output_shape_before": before.output_shape, "finite": True, "mode": "eval",
                   "outputs": shown + (", ..." if len(after.outputs) > 6 else "")}, notes


def _partial_note(pa: PartialAnalysis, changed: list[str]) -> str:
    root = pa.tree
    why = f"its root cannot be traced ({root.reason})" if not root.is_traced else \
        f"its blocks sit inside submodules that cannot be traced ({', '.join(c.path for c in root.children)})"
    where = ", ".join(changed) or "none"
    traced, python = len(pa.parts), len(pa.python_parts)
    return (f"{pa.label} is traced in parts: {why}; {traced} part{'s' if traced != 1 else ''} traced, {python} "
            f"stayed Python; parts rewritten (swapped into a private copy whose own Python code calls them): {where}")


def _no_blocks(pa: PartialAnalysis) -> NoBlocksError:
    traced = ", ".join(p.path or "(root)" for p in pa.parts) or "none"
    root = pa.tree.reason or "untraceable submodules"
    return NoBlocksError(f"no blocks found in {pa.tree.type}: it is traced in parts ({root}) and its traced parts "
                         f"({traced}) hold no blocks; name them with block_types=/--block-type or "
                         "block_names=/--block-name")


def _prelude(pa: PartialAnalysis, prelude) -> list:
    steps: dict[str, object] = {}
    for part in (p for p in pa.parts if p.blocks):
        for step in prelude(_analysis(pa, part)):
            steps.setdefault(step.name, step)
    return list(steps.values())


def run_partial(model: nn.Module, steps: Sequence, example_input=None, spec: BlockSpec | None = None,
                dry_run: bool = False, prelude: Callable | None = None, check: bool = True,
                failure: SurgeryError | None = None) -> tuple[nn.Module | None, Report, list]:
    """Apply ``steps`` to a copy of ``model`` traced in parts: ``(new_model, report, steps run)``.

    The arguments are those of :func:`relu_surgery.surgery.pipeline.run_rewrite`; ``failure`` is
    the error a plain trace gave, raised again when tracing in parts adds nothing (the root traces
    and nothing failed inside it). ``steps run`` includes what ``prelude`` added.

    Example:
        >>> from relu_surgery.surgery.erase import erase_step
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU())
        ...     def forward(self, x):
        ...         return self.body(x) if x.sum() > 0 else -self.body(x)
        >>> new, report, steps = run_partial(Net(), [erase_step(proportion=0.5)], torch.zeros(1, 4))
        >>> type(new).__name__, [c.site for c in report.changes], [s.name for s in steps]
        ('Net', ['body.1'], ['erase'])
        >>> [(p["path"] or "(root)", p["traced"]) for p in report.partial["parts"]]
        [('(root)', False), ('body', True)]
    """
    pa = analyze_parts(model, example_input, spec, label=model_label(model))
    if pa is None:
        raise failure or NoBlocksError(f"no blocks found in {type(model).__name__}")
    if any(s.needs_blocks for s in steps) and not pa.blocks:
        raise _no_blocks(pa)
    steps = [*(_prelude(pa, prelude) if prelude else []), *steps]
    targets = tuple(dict.fromkeys(k for s in steps for k in s.targets))
    meta, described = on_meta(pa.source), pa.summary()["input"]
    sites_before, (code_before, records_before) = _sites(pa), _shown(pa)
    before = measure(pa.source, pa.example_input) if check and not dry_run and not meta else None
    state_before, params_before = snapshot_state(pa.source), count_params(pa.source)
    root, reports, changed, first = pa.source, [], [], pa
    for i, step in enumerate(steps):
        if i:
            pa = analyze_parts(root, pa.example_input, spec, calls=pa.calls, copy=False, label=pa.label)
        plan, plans = plan_parts(pa, step)
        root, parts = _apply(pa, step, plans) if not dry_run or i + 1 < len(steps) else (root, [])
        changed += [p.path or "(root)" for (p, _), r in zip(plans, parts) if r.changed_something]
        reports.append(_merged(step, plan, parts))
    note = _partial_note(first, list(dict.fromkeys(changed)))
    if dry_run:
        return None, _dry_report(first, pa, reports, targets, sites_before, code_before, described, note), steps
    after, forward_check, notes = _check(root, pa.example_input, before, meta, described)
    root.train(model.training)
    code_after, records_after = _shown(pa)
    report = Report(
        model=pa.label, blocks=tuple(pa.blocks), steps=reports, params_before=params_before,
        params_after=count_params(root), macs_before=before and before.macs, macs_after=after and after.macs,
        sites_before=sites_before, sites_after=_sites(pa), targets=targets,
        state_dict=state_dict_diff(state_before, root.state_dict(keep_vars=True)), forward_check=forward_check,
        leaves=_leaves(first), warnings=[note, *(w for r in reports for w in r.warnings), *notes],
        code_before=code_before, code_after=code_after, graph_before=records_before, graph_after=records_after,
        partial=first.summary(),
    )
    return root, report, steps


def _leaves(pa: PartialAnalysis) -> dict[str, str]:
    """Leaves no part went into (library notrace modules): still opaque."""
    explored = {c.path for p in pa.parts for c in p.part.children}
    return {k: v for p in pa.parts for k, v in p.traced.leaves.items() if k not in explored}


def _dry_report(first: PartialAnalysis, pa: PartialAnalysis, reports, targets, sites_before, code, described,
                note) -> Report:
    changes = [c for r in reports for c in r.changes]
    predicted = Counter(sites_before)
    predicted.subtract(Counter(c.kind for c in changes if c.kind in predicted))
    predicted.update(Counter(c.new_kind for c in changes if c.new_kind))
    params = count_params(first.source)
    return Report(
        model=pa.label, blocks=tuple(pa.blocks), steps=reports, params_before=params, params_after=params,
        macs_before=None, macs_after=None, sites_before=sites_before, sites_after=dict(predicted),
        targets=targets, state_dict={"added": [], "removed": [], "reshaped": [], "unchanged": True},
        forward_check={"input_shape": described, "skipped": "dry run"}, leaves=_leaves(first),
        warnings=[note, *(w for r in reports for w in r.warnings)], code_before=code, code_after=code,
        dry_run=True, partial=first.summary(),
    )
