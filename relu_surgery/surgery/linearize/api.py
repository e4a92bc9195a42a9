"""Linearize a model to a ReLU budget: the step (for recipes) and the data-free public function.

:func:`linearize_step` plans on the ReLU count at the example input and records in its settings
what it chose (``sites`` erased, or ``masks`` with their shapes), so replaying a recipe rebuilds the
same structure without counting again (a frozen mask's values then come from the weights file).
:func:`linearize_sites` runs the data-free methods: ``uniform``, and ``stage`` with a given stage
order. The data-driven ones (``stage`` with a measured order, ``snl``) are
:func:`relu_surgery.train.linearize.linearize`, which trains through the runner.

Example:
    >>> import relu_surgery as rs
    >>> new, report = linearize_sites(rs.create_model("cifar_resnet18"), budget=0.5)
    >>> report.relu_count.total_before, report.relu_count.total_after <= 278528
    (557056, True)
"""

from __future__ import annotations

import torch.fx as fx
import torch.nn as nn

from ...errors import SelectionError
from ...graph.activations import activation_of, normalize_kinds
from ...graph.analysis import Analysis
from ...graph.blocks import BlockSpec
from ...graph.relu_count import ReluCount, SiteRelus, count_relus, shape_pass
from ...report.records import SiteChange
from ...report.report import Report
from ..pipeline import Step, run_rewrite
from .actions import EraseSite, LinearizePlan, MaskSite, site_actions
from .budget import resolve_budget
from .methods import GRANULARITIES, choose_stages, choose_uniform, mask_shape

__all__ = ["METHODS", "linearize_step", "linearize_sites", "plan_count"]

METHODS = ("uniform", "stage", "snl")


def plan_count(analysis: Analysis) -> ReluCount:
    """The ReLU count of the model being planned on, at its example input (shapes only).

    Example:
        >>> from relu_surgery.graph.analysis import analyze
        >>> count = plan_count(analyze(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))))
        >>> count.total, [(s.site, s.shape) for s in count.sites]
        (8, [('1', (8,))])
    """
    gm, x = analysis.graph_module, analysis.example_input
    return count_relus(gm, shape_pass(gm, x), analysis.blocks, tuple(x.shape))


def _targets(count: ReluCount, kinds: frozenset[str], label: str) -> list[SiteRelus]:
    if not count.sites:
        raise SelectionError(f"{label} has no ReLU-family sites (relu, relu6, leaky_relu, prelu, crelu, ...): "
                             "nothing to linearize")
    targets = [s for s in count.sites if "all" in kinds or s.kind in kinds]
    if not targets:
        raise SelectionError(f"{label} has no {'/'.join(sorted(kinds))} sites to linearize "
                             f"(its ReLU-family kinds: {', '.join(sorted({s.kind for s in count.sites}))})")
    return targets


def _named(targets: list[SiteRelus], names) -> list[SiteRelus]:
    by_name = {s.site: s for s in targets}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise SelectionError(f"recipe names site(s) this model does not have: {', '.join(missing[:4])}")
    return [by_name[n] for n in names]


def _change(gm: fx.GraphModule, nodes: dict, site: SiteRelus, after: str, new_kind: str) -> SiteChange:
    ref = activation_of(nodes[site.node], gm)
    return SiteChange(site.block or 0, site.site, ref.spelling, after, site.node, site.kind, new_kind)


def _erase_plan(analysis, count, targets, cfg, settings) -> tuple[list[SiteRelus], str]:
    budget = settings["budget"]
    if cfg["sites"] is not None:
        chosen = _named(targets, cfg["sites"])
        return chosen, f"{settings['method']}: the {len(chosen)} sites the recipe names erased"
    if settings["method"] == "uniform":
        return choose_uniform(targets, count.total, budget)
    if not cfg["order"]:
        raise SelectionError("stage needs a stage order (order=[...], --order) or data to measure it "
                             "(relu_surgery.linearize / relu-surgery linearize --dataset ...)")
    return choose_stages(targets, count.total, budget, cfg["order"], cfg["order_source"])


def _mask_actions(gm, nodes, targets, cfg, settings) -> list[MaskSite]:
    shapes = cfg["masks"] or {s.site: mask_shape(s.shape, settings["granularity"]) for s in targets}
    chosen = _named(targets, list(shapes))
    values = cfg["values"] or {}
    return [MaskSite(s.site, s.node, activation_of(nodes[s.node], gm).composite, tuple(shapes[s.site]), s.shape,
                     settings["trainable"], values.get(s.site)) for s in chosen]


def _plan(analysis: Analysis, cfg: dict, settings: dict, kinds: frozenset[str]) -> LinearizePlan:
    gm = analysis.graph_module
    nodes = {n.name: n for n in gm.graph.nodes}
    count = plan_count(analysis)
    targets = _targets(count, kinds, analysis.label)
    replay = cfg["sites"] is not None or cfg["masks"] is not None
    settings["budget"] = cfg["budget"] if replay or cfg["budget"] is None else resolve_budget(cfg["budget"], count.total)
    settings["input_size"] = list(analysis.example_input.shape[1:])  # a recipe replays at this size
    if settings["method"] == "snl":
        actions = _mask_actions(gm, nodes, targets, cfg, settings)
        settings["masks"] = {a.site: list(a.shape) for a in actions}
        after = f"MaskedReLU ({'trainable' if settings['trainable'] else 'frozen'} {settings['granularity']} mask)"
        changes = [_change(gm, nodes, s, after, "masked_relu") for s in _named(targets, settings["masks"])]
        reason = cfg["reason"] or (f"snl: every {'/'.join(sorted(kinds))} site masked ({len(actions)} sites, "
                                   f"per-{settings['granularity']} masks)")
        relus_after = None
    else:
        chosen, reason = _erase_plan(analysis, count, targets, cfg, settings)
        settings["sites"] = [s.site for s in chosen]
        actions = [EraseSite(s.site, s.node, activation_of(nodes[s.node], gm).composite, s.relus) for s in chosen]
        changes = [_change(gm, nodes, s, "Identity (linearized)", "") for s in chosen]
        relus_after = count.total - sum(s.relus for s in chosen)
    selected = tuple(sorted({c.block for c in changes if c.block}))
    edits, removed = site_actions(gm, actions)
    return LinearizePlan("linearize", tuple(analysis.blocks), selected, reason, tuple(changes), actions=edits,
                         nodes_removed=removed, method=settings["method"], budget=settings["budget"] or 0,
                         relus_before=count.total, relus_after=relus_after, sites=tuple(actions))


def linearize_step(method: str = "uniform", budget=None, *, order=None, order_source: str = "given", sites=None,
                   granularity: str = "channel", masks=None, trainable: bool = False, values=None,
                   reason: str | None = None, activations=("relu",)) -> Step:
    """The linearize step (for :func:`run_rewrite` and recipes).

    ``uniform`` / ``stage`` erase sites (``sites``: exactly these, as a recipe records them);
    ``snl`` masks every target site (``masks``: site -> mask shape, as a recipe records them;
    ``values``: site -> mask values, not recorded: a saved model's masks come from its weights).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> new, report = run_rewrite(net, [linearize_step("uniform", 0.5)])
        >>> report.steps[0].settings["sites"], report.relu_count.summary()    # what a recipe replays
        (['1'], '12 -> 4 (-66.67%) per sample at input 1x4')
        >>> new, _ = run_rewrite(net, [linearize_step("snl", 6)])   # frozen masks of ones: every ReLU kept
        >>> new.get_submodule("1"), new.get_submodule("3")
        (MaskedReLU((8,), frozen), MaskedReLU((4,), frozen))
    """
    if method not in METHODS:
        raise SelectionError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if granularity not in GRANULARITIES:
        raise SelectionError(f"mask granularity must be channel or pixel, got {granularity!r}")
    kinds = normalize_kinds(activations)
    settings = {"method": method, "activations": sorted(kinds)}
    if method == "snl":
        settings.update(granularity=granularity, trainable=bool(trainable))
    else:
        settings.update(order=list(order) if order else None)
    cfg = {"budget": budget, "order": list(order) if order else None, "order_source": order_source,
           "sites": list(sites) if sites is not None else None, "masks": dict(masks) if masks else None,
           "values": values, "reason": reason}
    return Step("linearize", settings, lambda a: _plan(a, cfg, settings, kinds), tuple(sorted(kinds)))


def linearize_sites(model: nn.Module, budget, method: str = "uniform", *, order=None, activations=("relu",),
                    example_input=None, block_types=(), block_names=(), dry_run: bool = False,
                    check=True) -> tuple[nn.Module | None, Report]:
    """Erase whole sites until ``model``'s ReLU count is at or under ``budget`` (no data needed).

    ``budget``: an int is a ReLU count, a float in (0, 1) a fraction of the model's count.
    ``method="uniform"`` erases the fewest sites the uniform rule needs; ``method="stage"`` takes
    ``order`` (stage names, least critical first; see
    :func:`relu_surgery.surgery.linearize.budget.site_groups`). Returns ``(new_model, report)``.

    Example:
        >>> import relu_surgery as rs
        >>> m = rs.create_model("cifar_resnet20")
        >>> new, report = linearize_sites(m, 0.5, "stage", order=["layer1", "layer2", "layer3", "stem"])
        >>> report.relu_count.total_after <= report.relu_count.total_before // 2
        True
    """
    if method == "snl":
        raise SelectionError("snl trains masks: use relu_surgery.linearize(model, budget, method='snl', data=...)")
    step = linearize_step(method, budget, order=order, activations=activations)
    spec = BlockSpec(tuple(block_types), tuple(block_names))
    if spec:
        step.settings["discovery"] = spec.to_recipe()
    return run_rewrite(model, [step], example_input, spec, dry_run, check=check)
