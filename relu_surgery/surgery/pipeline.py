"""What every rewrite shares: measure before, apply steps to the graph, check, report.

A rewrite step is a name, its settings and a planner ``plan(analysis) -> Plan`` (pure analysis:
the plan holds every edit as data). :func:`run_rewrite` plans each step on a private copy of the
model, applies the plan's actions (:func:`relu_surgery.surgery.actions.execute`), and returns the
new model and its :class:`Report`.

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

import torch
import torch.fx as fx
import torch.nn as nn

from ..errors import InternalError, NoBlocksError, TraceError
from ..graph.analysis import Analysis, analyze, count_sites
from ..graph.blocks import BlockSpec, discover_blocks
from ..graph.copying import paused_gc
from ..graph.example_inputs import example_input_for
from ..graph.intake import on_meta, unwrap_model
from ..graph.provenance import Provenance, provenance_of, set_provenance
from ..report.relu_counts import ReluTally
from .checking import compare, probe, resolve_check
from .partial import run_partial
from ..graph.tracing import graph_code, graph_records
from ..report.costs import count_params, snapshot_state, state_dict_diff
from ..report.report import Report, StepReport
from .actions import execute
from .plan import Plan

__all__ = ["Step", "run_rewrite", "step_report", "record_recipe"]


@dataclass(frozen=True)
class Step:
    """One rewrite: its name, its settings (what the recipe records and the report shows), its
    planner, and the activation kinds it targets.

    Example:
        >>> from relu_surgery.surgery.erase import erase_step
        >>> step = erase_step(proportion=0.5)
        >>> step.name, step.settings["proportion"], step.targets
        ('erase', 0.5, ('relu',))
    """

    name: str
    settings: dict
    plan: Callable[[Analysis], Plan]
    targets: tuple[str, ...] = ("relu",)
    needs_blocks: bool = True  # False: the step works on the whole graph (fold), no block needs to be found
    report: Callable[..., StepReport] | None = None  # its own step report (fold adds its function check)
    preserves: bool = False  # promises the same function: the default check then runs real passes

    def report_of(self, plan: Plan, gm: fx.GraphModule | None = None, made=None) -> StepReport:
        """This step's report of ``plan``: planned only (``made`` None) or applied to ``gm``."""
        return (self.report or step_report)(self, plan, gm, made)


def step_report(step: Step, plan: Plan, gm: fx.GraphModule | None = None, made=None) -> StepReport:
    """The report of ``step``: planned only (``made`` None), or applied to ``gm`` (``made``: what
    :func:`~relu_surgery.surgery.actions.execute` inserted).

    Example:
        >>> from relu_surgery.surgery.erase import erase_step
        >>> plan = Plan("erase", (), (), "none", ())
        >>> step_report(erase_step(), plan).nodes_removed
        ()
    """
    applied = made is not None
    return StepReport(step.name, step.settings, plan.selected, plan.selection_reason, plan.changes,
                      nodes_removed=plan.nodes_removed if applied else (),
                      nodes_added=plan.nodes_added(gm, made) if applied else (),
                      warnings=plan.warnings, norms_added=plan.norms_added, norms_moved=plan.norms_moved,
                      norms_removed=plan.norms_removed)


def record_recipe(model: nn.Module, new_model: nn.Module, steps: Sequence[Step], leaves: dict,
                  input_size: tuple[int, ...] | None = None) -> None:
    """Give ``new_model`` the provenance of ``model`` plus ``steps`` (its replayable recipe), the
    ``leaves`` tracing kept opaque and the example ``input_size`` it was checked on.

    Example:
        >>> import torch.fx as fx, torch.nn as nn
        >>> from relu_surgery.graph.provenance import recipe_of
        >>> from relu_surgery.surgery.erase import erase_step
        >>> new = fx.symbolic_trace(nn.ReLU())
        >>> record_recipe(nn.ReLU(), new, [erase_step()], {})
        >>> [r["rewrite"] for r in recipe_of(new)["rewrites"]]
        ['erase']
    """
    base = provenance_of(model)
    source = dict(base.source) if base.source else None
    rewrites = base.rewrites + tuple({"rewrite": s.name, **s.settings} for s in steps)
    set_provenance(new_model, Provenance(source=source, rewrites=rewrites, leaves=dict(leaves),
                                         input_size=input_size or base.input_size))


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
    ``False`` runs nothing and the report says so (as it does for a model on the meta device, which
    has no values to compute with). A DataParallel / DistributedDataParallel wrapper is removed
    first, and the report says so.

    Example:
        >>> import relu_surgery as rs
        >>> from relu_surgery.surgery.swap import swap_step
        >>> from relu_surgery.surgery.erase import erase_step
        >>> new, report = run_rewrite(rs.create_model("cifar_resnet20"), [erase_step(), swap_step("gelu")], check=False)
        >>> [s.rewrite for s in report.steps], report.sites_after
        (['erase', 'swap'], {'relu': 1, 'gelu': 9})
    """
    model, notes = unwrap_model(model)
    with paused_gc():  # tens of thousands of short-lived graph objects: no collection mid-way
        new_model, report = _run(model, steps, example_input, spec, dry_run, prelude, check)
    report.warnings[:0] = notes
    return new_model, report


def _run(model, steps, example_input, spec, dry_run, prelude, check) -> tuple[nn.Module | None, Report]:
    if example_input is None and provenance_of(model).input_size:  # the size a rewritten model was checked on
        example_input = example_input_for(model)
    try:
        analysis = analyze(model, example_input, spec, require_blocks=any(s.needs_blocks for s in steps))
    except (TraceError, NoBlocksError) as exc:  # the root cannot be traced: rewrite inside the parts that can
        new_model, report, steps = run_partial(model, steps, example_input, spec, dry_run, prelude, check, exc)
        if new_model is not None:
            record_recipe(model, new_model, steps, {})
        return new_model, report
    gm = analysis.graph_module
    if prelude is not None:
        steps = [*prelude(analysis), *steps]
    targets = tuple(dict.fromkeys(k for s in steps for k in s.targets))
    code_before, sites_before, records_before = graph_code(gm), count_sites(gm), graph_records(gm)
    meta = on_meta(gm)
    mode = None if meta else resolve_check(check, any(s.preserves for s in steps))
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
            reports.append(step.report_of(plan))
            if i + 1 < len(steps):
                execute(gm, plan.actions)  # the private copy only: the next step plans on its result
                continue
            return None, _dry_report(analysis, blocks, reports, targets, sites_before, code_before, before)
        reports.append(step.report_of(plan, gm, execute(gm, plan.actions)))
    _lint(gm)
    gm.delete_all_unused_submodules()
    gm.recompile()
    after = probe(gm, analysis.example_input, blocks, mode) if mode else None
    forward_check, notes = _forward_check(before, after, gm, analysis.example_input, meta)
    size = tuple(analysis.example_input.shape[1:]) if isinstance(analysis.example_input, torch.Tensor) else None
    record_recipe(model, gm, steps, analysis.traced.leaves, size)  # a later rewrite checks on the same size
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


def _lint(gm: fx.GraphModule) -> None:
    try:
        gm.graph.lint()
    except Exception as exc:  # torch.fx raises RuntimeError and others: the rewrite broke the graph
        raise InternalError(f"the rewritten graph fails torch.fx's lint: {exc}") from exc


def _forward_check(before, after, gm: fx.GraphModule, example_input, meta: bool) -> tuple[dict, list[str]]:
    """The report's ``forward_check`` and notes (:func:`relu_surgery.surgery.checking.compare`)."""
    shape = tuple(example_input.shape)
    if meta:
        return {"input_shape": shape, "skipped": "meta device (no values)"}, [
            "the model is on the meta device (structure only, no values): the forward checks and MAC counts "
            "were skipped"]
    if before is None:
        return {"input_shape": shape, "skipped": "check=False"}, []
    return compare(before, after, gm, example_input)


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

