"""Pre-activation <-> after-activation conversion and seed 003's residual-unit variants, by name.

``to`` names the unit every residual block ends up with (seed 003 Fig. 4):

* ``after-activation`` (4a): x_{l+1} = act(S(x_l) + BN(conv(...act(BN(conv(x_l)))...))) — what
  EraseReLU works on; pre-activation nets (timm ``resnetv2_*``, the zoo's ``preact_resnet*`` and
  ``wrn_*``, your own BN + ReLU-first blocks) are converted to it (:mod:`.after`);
* ``pre-activation`` (4e, full pre-activation; :mod:`.pre`);
* ``relu-only-preact`` (4d; :mod:`.pre`);
* ``bn-after-add`` (4b) and ``relu-before-add`` (4c) (:mod:`.variants`).

The variants start from after-activation blocks: a pre-activation network is converted to
after-activation first, and the report's ``steps`` lists both steps. The report lists every norm
that is new (no pretrained values: trained from scratch), moved, or removed.

Names of the modules added (state-dict prefixes): ``<conv>_norm`` (a new norm after the conv at
``<conv>``: ``layer1.0.conv2_norm``, ``layer2.0.shortcut.0_norm``,
``stages.1.blocks.0.downsample.conv_norm``), ``<block>.add_act`` (activation after the addition),
``<stem conv>_norm`` / ``<stem conv>_act`` (the first block's leading norm / act moved after the
stem conv: ``conv1_norm``, ``stem.conv_norm``), ``<block>.pre_norm`` / ``<block>.pre_act`` (a
block's leading norm / act) and ``final_norm`` / ``final_act`` (after the last block, before the
head). A moved norm is the same module object under the new path (its values travel with it; its
state-dict keys change); a moved activation is a non-inplace copy. A timm composite
``BatchNormAct2d`` stays one composite layer (a new one has ``act`` = Identity where it is a norm only).

Example:
    >>> import relu_surgery as rs
    >>> new, report = to_after_activation(rs.create_model("wrn_52_1"), check=False)
    >>> report.norms_added[:2], len(report.norms_added)
    (('layer1.0.conv2_norm', 'layer1.1.conv2_norm'), 26)
"""

from __future__ import annotations

import torch.nn as nn

from ...errors import SelectionError
from ...graph.analysis import Analysis
from ...graph.blocks import BlockSpec
from ...report.report import Report
from ..pipeline import Step, run_rewrite
from ..selection import with_discovery
from .after import plan_after
from .anatomy import any_preactivation
from .pre import plan_pre, plan_relu_only
from .variants import plan_bn_after_add, plan_relu_before_add

__all__ = ["CONVERSIONS", "convert", "convert_step", "to_after_activation", "to_pre_activation",
           "has_preactivation_blocks", "preactivation_prelude"]

_PLANNERS = {
    "after-activation": plan_after,
    "pre-activation": plan_pre,
    "relu-only-preact": plan_relu_only,
    "bn-after-add": plan_bn_after_add,
    "relu-before-add": plan_relu_before_add,
}
CONVERSIONS = tuple(_PLANNERS)


def convert_step(to: str = "after-activation", discovery: dict | None = None) -> Step:
    """The conversion step to unit form ``to`` (one of :data:`CONVERSIONS`), for recipes.

    Example:
        >>> convert_step("pre-activation").settings
        {'to': 'pre-activation'}
    """
    if to not in _PLANNERS:
        raise SelectionError(f"convert: unknown unit form {to!r}; choose one of {', '.join(CONVERSIONS)}")
    return Step("convert", with_discovery({"to": to}, discovery), _PLANNERS[to], ("relu",))


def has_preactivation_blocks(analysis: Analysis) -> bool:
    """True when any discovered block is a pre-activation block (norm -> act first, bare addition out).

    Example:
        >>> import relu_surgery as rs
        >>> from relu_surgery.graph.analysis import analyze
        >>> has_preactivation_blocks(analyze(rs.create_model("preact_resnet110")))
        True
    """
    return any_preactivation(analysis.graph_module, analysis.blocks)


def preactivation_prelude(spec: BlockSpec | None = None):
    """A ``run_rewrite`` prelude: the after-activation conversion when the model is pre-activation.

    EraseReLU (and the unit variants) call this so pre-activation nets are converted first
    (seed 000 Sec. 3.1); for any other model it adds nothing.

    Example:
        >>> import relu_surgery as rs
        >>> from relu_surgery.graph.analysis import analyze
        >>> [s.settings for s in preactivation_prelude()(analyze(rs.create_model("preact_resnet110")))]
        [{'to': 'after-activation'}]
    """
    def prelude(analysis: Analysis) -> list[Step]:
        if not has_preactivation_blocks(analysis):
            return []
        return [convert_step("after-activation", spec.to_recipe() if spec else None)]

    return prelude


def convert(model: nn.Module, to: str = "after-activation", *, example_input=None, block_types=(),
            block_names=(), predicate=None, dry_run: bool = False, check: bool = True) -> tuple[nn.Module | None, Report]:
    """Convert every residual block of ``model`` to unit form ``to``; return ``(new_model, report)``.

    ``to``: ``after-activation``, ``pre-activation`` (full, seed 003 Fig. 4e), ``relu-only-preact``
    (4d), ``bn-after-add`` (4b) or ``relu-before-add`` (4c). ``model`` is not modified. For the
    variants a pre-activation model is first converted to after-activation (two steps in the
    report). ``block_types`` / ``block_names`` / ``predicate`` replace block discovery; with
    ``dry_run`` nothing is returned but the report of the plan; ``check=False`` skips the forward
    passes (MACs, output check). Raises
    :class:`~relu_surgery.errors.NoBlocksError` when no block has the needed form.

    Example:
        >>> import torchvision
        >>> new, report = convert(torchvision.models.resnet18(), "pre-activation", check=False)
        >>> report.norms_added[-1], [c.site for c in report.changes][:2]
        ('final_norm', ['bn1', 'relu'])
    """
    spec = BlockSpec(tuple(block_types), tuple(block_names), predicate)
    step = convert_step(to, spec.to_recipe() if spec else None)
    prelude = preactivation_prelude(spec) if to not in ("after-activation", "pre-activation") else None
    return run_rewrite(model, [step], example_input, spec, dry_run, prelude=prelude, check=check)


def to_after_activation(model: nn.Module, **options) -> tuple[nn.Module | None, Report]:
    """Convert a pre-activation network to after-activation (seed 000 Sec. 3.1); see :func:`convert`.

    Example:
        >>> import timm, torch
        >>> new, report = to_after_activation(timm.create_model("resnetv2_50"),
        ...                                   example_input=torch.randn(1, 3, 64, 64), check=False)
        >>> report.steps[0].norms_moved[0][:2]
        ('stages.0.blocks.0.norm1', 'stem.conv_norm')
    """
    return convert(model, "after-activation", **options)


def to_pre_activation(model: nn.Module, **options) -> tuple[nn.Module | None, Report]:
    """Convert an after-activation network to full pre-activation (seed 003 Fig. 4e); see :func:`convert`.

    Example:
        >>> import relu_surgery as rs
        >>> new, report = to_pre_activation(rs.create_model("cifar_resnet20"), check=False)
        >>> report.steps[0].norms_moved
        (('stem.bn', 'layer1.0.pre_norm', 'leading layer1.0, before the split into two paths'),)
    """
    return convert(model, "pre-activation", **options)
