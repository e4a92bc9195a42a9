"""What every rewrite shares: measure before, apply steps to the graph, check, report.

A rewrite step is a pair of functions: ``plan(analysis) -> Plan`` (pure analysis) and
``apply(graph_module, plan) -> StepReport`` (graph edits). :func:`run_rewrite` runs a list of
steps on a private copy of the model and returns the new model and its :class:`Report`.

Example:
    >>> import torchvision
    >>> from relu_surgery.surgery.erase import erase_step
    >>> new, report = run_rewrite(torchvision.models.resnet18(), [erase_step(proportion=1.0)])
    >>> report.target_sites(), report.target_sites(after=True)
    (17, 9)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch.fx as fx
import torch.nn as nn

from ..graph.analysis import Analysis, analyze, count_sites
from ..graph.blocks import BlockSpec, discover_blocks
from ..graph.copying import paused_gc
from ..report.costs import count_params, snapshot_state, state_dict_diff
from ..report.relu_counts import ReluTally
from .checking import compare, probe, resolve_check
from .plan import Plan
from ..report.report import Report, StepReport
from ..graph.tracing import graph_code, graph_records

__all__ = ["Step", "run_rewrite", "remove_node", "record_recipe"]


@dataclass(frozen=True)
class Step:
    """One rewrite: a name, its settings (for the recipe), a planner and an applier."""

    name: str
    settings: dict
    plan: Callable[[Analysis], Plan]
    apply: Callable[[fx.GraphModule, Plan], StepReport]
    targets: tuple[str, ...] = ("relu",)
    preserves: bool = False  # promises the same function: the default check then runs real passes


def remove_node(gm: fx.GraphModule, node: fx.Node) -> None:
    """Replace ``node`` by its (first) input everywhere and delete it from the graph."""
    source = node.args[0] if node.args else next(iter(node.kwargs.values()))
    node.replace_all_uses_with(source)
    gm.graph.erase_node(node)


def record_recipe(model: nn.Module, new_model: nn.Module, steps: Sequence[Step]) -> None:
    """Attach the replayable recipe (source + rewrites) of ``new_model`` as ``rs_recipe``."""
    base = getattr(model, "rs_recipe", None) or {
        "source": dict(getattr(model, "rs_source", None) or {"name": type(model).__name__, "kwargs": None}),
        "rewrites": [],
    }
    new_model.rs_recipe = {
        "source": base["source"],
        "rewrites": list(base["rewrites"]) + [{"rewrite": s.name, **s.settings} for s in steps],
    }


def run_rewrite(model: nn.Module, steps: Sequence[Step], example_input=None, spec: BlockSpec | None = None,
                dry_run: bool = False, prelude: Callable[[Analysis], Sequence[Step]] | None = None,
                check: bool | str = True) -> tuple[nn.Module | None, Report]:
    """Apply ``steps`` in order to a copy of ``model``; return ``(new_model, report)``.

    ``prelude(analysis)`` may return steps to run first (EraseReLU converts pre-activation nets to
    after-activation). With ``dry_run`` every step is planned (a step followed by another is applied
    to the private copy so the next can be planned), the report shows the plans and ``new_model``
    is None. ``check`` (see :mod:`relu_surgery.surgery.checking`): ``True`` / ``"shapes"`` propagates
    shapes before and after without computing values (output shape, MACs, ReLU counts), ``"full"``
    runs real eval-mode passes (also finiteness; the default for steps that preserve the function),
    ``False`` runs nothing and the report says so.
    """
    with paused_gc():  # tens of thousands of short-lived graph objects: no collection mid-way
        return _run(model, steps, example_input, spec, dry_run, prelude, check)


def _run(model, steps, example_input, spec, dry_run, prelude, check) -> tuple[nn.Module | None, Report]:
    analysis = analyze(model, example_input, spec)
    gm = analysis.graph_module
    if prelude is not None:
        steps = [*prelude(analysis), *steps]
    targets = tuple(dict.fromkeys(k for s in steps for k in s.targets))
    code_before, sites_before, records_before = graph_code(gm), count_sites(gm), graph_records(gm)
    mode = resolve_check(check, any(s.preserves for s in steps))
    before = probe(gm, analysis.example_input, analysis.blocks, "shapes" if dry_run else mode) if mode else None
    state_before, params_before = snapshot_state(gm), count_params(gm)
    blocks = tuple(analysis.blocks)
    reports: list[StepReport] = []
    for i, step in enumerate(steps):
        if i:
            analysis.blocks = discover_blocks(analysis.traced, spec)
        plan = step.plan(analysis)
        blocks = tuple(analysis.blocks)  # the report shows the blocks the last step planned on
        if dry_run:
            reports.append(_planned(step, plan))
            if i + 1 < len(steps):
                step.apply(gm, plan)  # the private copy only: the next step plans on its result
                continue
            return None, _dry_report(analysis, blocks, reports, targets, sites_before, code_before, before)
        reports.append(step.apply(gm, plan))
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    after = probe(gm, analysis.example_input, blocks, mode) if mode else None
    forward_check, notes = (compare(before, after, gm, analysis.example_input) if mode else
                            ({"input_shape": tuple(analysis.example_input.shape), "skipped": "check=False"}, []))
    gm.rs_leaves = dict(analysis.traced.leaves)
    record_recipe(model, gm, steps)
    gm.train(model.training)
    report = Report(
        model=analysis.label, blocks=blocks, steps=reports,
        params_before=params_before, params_after=count_params(gm),
        macs_before=before and before.shapes.macs, macs_after=after and after.shapes.macs,
        sites_before=sites_before, sites_after=count_sites(gm), targets=targets,
        state_dict=state_dict_diff(state_before, gm.state_dict(keep_vars=True)),
        forward_check=forward_check,
        leaves=dict(analysis.traced.leaves),
        warnings=[w for r in reports for w in r.warnings] + analysis.traced.warnings + notes,
        code_before=code_before, code_after=graph_code(gm),
        graph_before=records_before, graph_after=graph_records(gm),
        relu_count=ReluTally(before.relus, after.relus) if mode else None,
    )
    return gm, report


def _planned(step: Step, plan: Plan) -> StepReport:
    """The report of a step that was only planned (norm lists where the plan has them)."""
    return StepReport(step.name, step.settings, plan.selected, plan.selection_reason, plan.changes,
                      warnings=plan.warnings, norms_added=getattr(plan, "norms_added", ()),
                      norms_moved=getattr(plan, "norms_moved", ()), norms_removed=getattr(plan, "norms_removed", ()))


def _dry_report(analysis: Analysis, blocks, reports, targets, sites_before, code_before, before) -> Report:
    predicted = dict(sites_before)
    for change in (c for r in reports for c in r.changes):
        if change.kind in predicted:
            predicted[change.kind] -= 1
        if change.new_kind:
            predicted[change.new_kind] = predicted.get(change.new_kind, 0) + 1
    params = count_params(analysis.source)
    return Report(
        model=analysis.label, blocks=blocks, steps=reports, params_before=params, params_after=params,
        macs_before=None, macs_after=None, sites_before=sites_before, sites_after=predicted,
        targets=targets, state_dict={"added": [], "removed": [], "reshaped": [], "unchanged": True},
        forward_check={"input_shape": tuple(analysis.example_input.shape), "skipped": "dry run"},
        leaves=dict(analysis.traced.leaves), warnings=[w for r in reports for w in r.warnings],
        code_before=code_before, code_after=code_before, dry_run=True,
        relu_count=ReluTally(before.relus) if before is not None else None,
    )

