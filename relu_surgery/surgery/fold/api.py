"""``rs.fold``: turn what is linear into fewer, cheaper layers, and prove the function is the same.

In eval mode, on a private copy: every BatchNorm whose statistics are fixed folds into the conv or
linear layer before it (also the norms a conversion added); weight layers with nothing non-linear
between them merge (conv after conv by kernel composition, linear after linear, 1x1 convs into
their neighbours), and so do branches of one input summed by adds (RepVGG: kxk + 1x1 + identity),
wherever the merged layer does not cost more MACs (``cost="latency"``: where it measures faster on
this device). Zero padding is handled exactly or the pair is kept (see :mod:`.geometry`). The
report lists every fold and merge with its MACs, every candidate kept and why, and the largest
output difference against the unfolded model on the example input; a difference above
``tolerance`` (relative to the output's magnitude) is an error, never a silent change.

The folded model is for inference: its norms are gone and dropout between merged layers too.

Example:
    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(16, 96, 1), nn.BatchNorm2d(96), nn.Conv2d(96, 96, 3, padding=1, groups=96),
    ...                     nn.BatchNorm2d(96), nn.Conv2d(96, 16, 1), nn.BatchNorm2d(16)).eval()  # an erased MBConv
    >>> folded, report = fold(net, example_input=torch.randn(1, 16, 14, 14))
    >>> step = report.steps[0]
    >>> len(step.norms_folded), [m.after for m in step.layer_merges], report.macs_before > report.macs_after
    (3, ['conv 3x3 16->16 +border'], True)
    >>> step.check["relative"] < 1e-5
    True
"""

from __future__ import annotations

import copy

import torch
import torch.fx as fx
import torch.nn as nn

from ...errors import SurgeryError
from ...graph.analysis import Analysis
from ...graph.running import eval_mode, first_tensor
from ...report.fold import FoldRecord, FoldStepReport
from ...report.records import SiteChange
from ...report.report import Report
from ..pipeline import Step, run_rewrite
from .candidates import count_layers, label
from .execute import execute
from .geometry import describe
from .plan import Action, FoldPlan, NormFold, Refusal
from .planner import COSTS, choice_key, make_plan

__all__ = ["fold", "fold_step"]


def _block_of(name: str, blocks) -> int:
    for block in blocks:
        if name == block.name or name.startswith(block.name + "."):
            return block.index
    return 0


def _record(action: Action) -> FoldRecord:
    if isinstance(action, NormFold):
        return FoldRecord("norm", action.names, f"{describe(action.spec)} -> {action.norm_type}",
                          f"{describe(action.spec)} with the norm folded in")
    kind = "chain" if hasattr(action, "layers") else "branch"
    parts = [describe(s) for s in action.before] + (["identity"] if getattr(action, "identity", False) else [])
    names = action.names + (("identity",) if getattr(action, "identity", False) else ())
    return FoldRecord(kind, names, " + ".join(parts), describe(action.after), action.macs_before, action.macs_after)


def _change(record: FoldRecord, blocks) -> SiteChange:
    macs = "" if record.macs_before is None else " (MACs {:,})"
    return SiteChange(_block_of(record.names[0], blocks), " + ".join(record.names),
                      record.before + macs.format(record.macs_before), record.after + macs.format(record.macs_after))


def _refusal_record(refusal: Refusal) -> FoldRecord:
    return FoldRecord(refusal.kind, refusal.names, "", refusal.reason, refusal.macs_before, refusal.macs_after)


def _plan(analysis: Analysis, settings: dict, cost: str, tolerance: float, choices) -> FoldPlan:
    planned = make_plan(analysis.graph_module, analysis.example_input, cost, choices)
    if cost == "latency" and choices is None:  # measured once; the recipe replays the same merges
        settings["choices"] = [choice_key(a) for a in planned.actions if not isinstance(a, NormFold)]
    records = [_record(a) for a in planned.actions]
    warnings = [f"fold kept {r.describe()}" for r in planned.refusals]
    if analysis.source.training:
        warnings.append("fold computes the eval-mode function: the folded model has no norms (and no dropout "
                        "between merged layers) left to train")
    gm = analysis.graph_module
    return FoldPlan("fold", tuple(analysis.blocks), (), "every layer of the model (fold is not per block)",
                    tuple(_change(r, analysis.blocks) for r in records), tuple(warnings),
                    actions=planned.actions, refusals=planned.refusals, example_input=analysis.example_input,
                    reference=planned.reference, tolerance=tolerance, layers_before=planned.layers_before,
                    unfolded=fx.GraphModule(gm, copy.deepcopy(gm.graph)))  # edits replace layers, never mutate them


def _outputs(models, x) -> list[torch.Tensor]:
    with torch.no_grad():
        outs = []
        for model in models:
            with eval_mode(model):
                outs.append(first_tensor(model(x)).double())
        return outs


def _in_float64(unfolded: fx.GraphModule, plan: FoldPlan, scale: float) -> dict:
    """The fold redone in float64 (the same actions on a float64 copy) against the unfolded model in
    float64, and the unfolded float32 model's own error."""
    unfolded64, folded64 = copy.deepcopy(unfolded).double(), copy.deepcopy(unfolded).double()
    for action in plan.actions:
        execute(folded64, action)
    folded64.recompile()
    x = plan.example_input
    (a, b), (c,) = _outputs([folded64, unfolded64], x.double()), _outputs([unfolded], x)
    return {"float64_relative": float((a - b).abs().max()) / scale,
            "unfolded_float32_error": float((c - b).abs().max()) / scale}


def _function_check(gm: fx.GraphModule, unfolded: fx.GraphModule, plan: FoldPlan) -> dict:
    """Largest output difference against the unfolded model; an error when above the tolerance, unless the
    two agree in float64 (then the float32 difference is the model's own rounding, amplified)."""
    reference, x = plan.reference, plan.example_input
    if reference is None or not torch.isfinite(reference).all():
        return {"skipped": "the unfolded model's output on the example input is not finite"}
    (out,) = _outputs([gm], x)
    diff, scale = float((out - reference.double()).abs().max()), float(reference.double().abs().max()) or 1.0
    check = {"max_abs_diff": diff, "max_abs_reference": scale, "relative": diff / scale, "tolerance": plan.tolerance,
             "input_shape": tuple(x.shape)}
    if check["relative"] <= plan.tolerance:
        return check
    check.update(_in_float64(unfolded, plan, scale))
    if check["float64_relative"] <= 1e-9:
        check["note"] = (f"the float32 difference is rounding: in float64 the folded and unfolded models agree to "
                         f"{check['float64_relative']:.1e}, and the unfolded float32 model is itself "
                         f"{check['unfolded_float32_error']:.1e} (relative) from its float64 output")
        return check
    raise SurgeryError(f"fold changed the model's function: max |output difference| {diff:.3g} (relative "
                       f"{check['relative']:.3g}, {check['float64_relative']:.3g} in float64) is above the tolerance "
                       f"{plan.tolerance:g}; nothing was returned. This is a bug in relu_surgery's fold: please "
                       "report it with the model")


def _report(step: Step, plan: FoldPlan, gm: fx.GraphModule | None = None, made=None) -> FoldStepReport:
    """The fold's step report; once applied (``made`` given), with the function check against the unfolded graph."""
    applied = made is not None
    if applied:
        gm.recompile()
        before = {n.name: label(n) for n in plan.unfolded.graph.nodes}
        left = {n.name for n in gm.graph.nodes}
    return FoldStepReport(
        "fold", step.settings, (), plan.selection_reason, plan.changes,
        nodes_removed=tuple(q for n, q in before.items() if n not in left) if applied else (),
        warnings=plan.warnings, merges=tuple(_record(a) for a in plan.actions),
        refusals=tuple(_refusal_record(r) for r in plan.refusals),
        check=_function_check(gm, plan.unfolded, plan) if applied else {"skipped": "dry run"},
        layers_before=plan.layers_before, layers_after=count_layers(gm) if applied else plan.layers_before,
    )


def fold_step(cost: str = "macs", tolerance: float = 1e-4, choices=None) -> Step:
    """The fold step with its settings (for :func:`run_rewrite` and recipes).

    ``choices`` (recorded by a latency fold) are the merges to make, as ``[kind, node, ...]`` lists.

    Example:
        >>> fold_step(cost="macs").settings
        {'cost': 'macs', 'tolerance': 0.0001}
    """
    if cost not in COSTS:
        raise SurgeryError(f"cost must be one of {', '.join(COSTS)}, got {cost!r}")
    if not tolerance > 0:
        raise SurgeryError(f"tolerance must be > 0, got {tolerance!r}")
    settings = {"cost": cost, "tolerance": float(tolerance)}
    if choices is not None:
        settings["choices"] = [list(c) for c in choices]
    return Step("fold", settings, lambda a: _plan(a, settings, cost, tolerance, choices), ("all",),
                needs_blocks=False, report=_report)


def fold(model: nn.Module, cost: str = "macs", *, example_input=None, tolerance: float = 1e-4,
         dry_run: bool = False, check: bool = True) -> tuple[nn.Module | None, Report]:
    """Fold ``model`` for inference: norms into weights, linear neighbours and summed branches merged.

    Returns ``(new_model, report)``; ``model`` is not modified. ``cost`` is ``"macs"`` (merge where
    the merged layer costs no more MACs) or ``"latency"`` (where it measures faster here).
    ``tolerance`` bounds the relative output difference of the function check, which always runs
    (on ``example_input``, default: the model's usual input at batch 1); ``check=False`` skips only
    the MAC count. With ``dry_run`` the report shows the plan and ``new_model`` is None.

    Example:
        >>> import torch, torch.nn as nn
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1)).eval()
        >>> folded, report = fold(net, example_input=torch.randn(1, 3, 16, 16))
        >>> [type(m).__name__ for m in folded.children()], report.steps[0].layers_after
        (['Conv2d'], 1)
    """
    step = fold_step(cost, tolerance)
    return run_rewrite(model, [step], example_input, None, dry_run, check=check)
