"""NormProp (seed 002, after Arpit et al. 2016): replace BatchNorm by weight-normalised convolutions.

For every conv->BN->[activation] unit the BN goes and the conv becomes a
:class:`~relu_surgery.surgery.layers.NormPropConv2d`, ``z = gamma * (W x) / ||W_row||_2 + beta``:

* ``normprop``: gamma learnable, and the activation that reads the conv (ReLU or CReLU) is followed
  by NormProp's correction ``c * (a - 1/sqrt(2 pi))``, ``c = (1/2 - 1/(2 pi))^(-1/2)``. Activations
  that read no NormProp conv directly (the ReLU after a residual addition) are left plain: no
  constant affine map standardises the sum (seed 002, Proposition 3).
* ``normprop2``: no constants (weight normalisation); gamma learnable.
* ``normprop3``: normprop2 with gamma fixed at 1/1.21 (a buffer: saved, never trained).
* ``plain``: BN removed, a plain conv with (``bias=True``) or without a bias (seed 002's baselines).

BN on the shortcut (identity) path where the spatial size is reduced stays BN (seed 002, footnote 2).
``bias=False`` drops beta (the conv bias for ``plain``).

Initialisation ``init="bn"`` (default) folds the BN's eval statistics into the new layer:
gamma_c = bn.weight_c / sqrt(var_c + eps) * ||W_c||, beta_c = bn.bias_c + s_c * (conv.bias_c - mean_c)
(s_c = bn.weight_c / sqrt(var_c + eps)); for ``plain`` the conv weight is scaled by s_c. Then
``normprop2`` and ``plain`` with a bias compute exactly the eval-mode function of the original model;
the others change it (the report says so). ``init="default"`` starts from gamma = 1/1.21 (NormProp's
suggested initial value), beta = 0 and the conv's own weights.

Example:
    >>> import torch, torchvision
    >>> new, report = normprop(torchvision.models.resnet18(), variant="normprop2", check=False)
    >>> len(report.changes), report.state_dict["added"][:2]
    (17, ['conv1.beta', 'conv1.gamma'])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn

from ..errors import SelectionError
from ..graph.activations import activation_of, composite_activation
from ..graph.analysis import Analysis
from ..graph.blocks import BlockSpec
from ..graph.ops import is_tensor_add, op_role
from ..graph.tracing import annotate_shapes
from ..report.records import SiteChange
from ..report.report import Report
from .actions import InsertModule, RemoveNode, SetModule
from .edits import call_counts, free_path, qualified
from .layers import NORMPROP3_GAMMA, NormPropConv2d, NormPropCorrection
from .pipeline import Step, run_rewrite
from .plan import Plan
from .regions import BlockRegions
from .selection import with_discovery

__all__ = ["normprop", "normprop_step", "VARIANTS", "INITS", "find_units", "Unit", "build_layer"]

VARIANTS = ("normprop", "normprop2", "normprop3", "plain")
INITS = ("bn", "default")
_CORRECTED_KINDS = ("relu", "crelu")


@dataclass(frozen=True)
class Unit:
    """One conv->BN pair of the graph: node names, module paths and the activation reading the BN.

    Example:
        >>> Unit("conv1", "bn1", "conv1", "bn1", "relu", 0).keep is None
        True
    """

    conv: str
    bn: str
    conv_path: str
    bn_path: str
    act: str | None
    block: int
    keep: str | None = None  # why the BN stays (None: it is replaced)


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(str(node.target)) if node.op == "call_module" else None


def _origin(node: fx.Node, gm: fx.GraphModule, block: str) -> fx.Node:
    """Walk back from ``node`` through the block's single-input transparent ops (avg-down pooling)."""
    while (block in node.meta.get("rs_scope", ()) and op_role(node, gm) == "transparent"
           and len(node.all_input_nodes) == 1):
        node = node.all_input_nodes[0]
    return node


def _reaches_add(node: fx.Node, gm: fx.GraphModule) -> bool:
    stack, seen = [node], {node}
    while stack:
        for user in stack.pop().users:
            if is_tensor_add(user):
                return True
            if op_role(user, gm) == "transparent" and user not in seen:
                seen.add(user)
                stack.append(user)
    return False


def _spatial(node: fx.Node):
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape[2:]) if meta is not None and hasattr(meta, "shape") else None


def _reduced_shortcut(gm: fx.GraphModule, conv: fx.Node, bn: fx.Node, block: str | None) -> bool:
    """True for a conv->BN on a shortcut path (block input -> conv -> BN -> add) that reduces the size."""
    if block is None or not _reaches_add(bn, gm):
        return False
    source = conv.args[0] if conv.args and isinstance(conv.args[0], fx.Node) else None
    origin = _origin(source, gm, block) if source is not None else None
    if origin is None or block in origin.meta.get("rs_scope", ()):
        return False
    stride = getattr(_module(gm, conv), "stride", (1,))
    return any(s > 1 for s in stride) or _spatial(origin) != _spatial(bn)


def _unit_problem(gm: fx.GraphModule, conv: fx.Node, bn_module: nn.Module, counts: dict) -> str | None:
    module = _module(gm, conv)
    if type(module) is not nn.Conv2d:
        return f"its input is a {type(module).__name__ if module is not None else conv.op}, not an nn.Conv2d"
    if counts.get(str(conv.target), 0) != 1 or len(conv.users) != 1:
        return f"the conv {conv.target} is called more than once or read elsewhere"
    if bn_module.running_mean is None:
        return "it keeps no running statistics"
    return None


def find_units(gm: fx.GraphModule, blocks) -> tuple[list[Unit], list[str]]:
    """Every BatchNorm2d call of ``gm`` as a :class:`Unit`, and notes on the BNs that cannot change.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))
        >>> find_units(gm, [])
        ([Unit(conv='_0', bn='_1', conv_path='0', bn_path='1', act='_2', block=0, keep=None)], [])
    """
    counts, regions = call_counts(gm), BlockRegions(gm, blocks)
    units, notes = [], []
    for node in gm.graph.nodes:
        bn = _module(gm, node)
        if not isinstance(bn, nn.BatchNorm2d):
            continue
        name = qualified(node)
        if composite_activation(bn) is not None:
            notes.append(f"{name}: a norm+activation layer ({type(bn).__name__}); not converted")
            continue
        conv = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        problem = "it reads no tensor" if conv is None else _unit_problem(gm, conv, bn, counts)
        if problem is None and counts.get(str(node.target), 0) != 1:
            problem = f"the BatchNorm {node.target} is called more than once"
        if problem:
            notes.append(f"{name}: BatchNorm kept ({problem})")
            continue
        found = regions.block_of(conv)
        index, block = (found.index, found.name) if found is not None else (0, None)
        users = list(node.users)
        ref = activation_of(users[0], gm) if len(users) == 1 else None
        act = users[0] if ref is not None and ref.kind in _CORRECTED_KINDS else None
        keep = "on the shortcut where the spatial size is reduced" if _reduced_shortcut(gm, conv, node, block) \
            else None
        units.append(Unit(conv.name, node.name, str(conv.target), str(node.target),
                          act.name if act is not None else None, index, keep))
    return units, notes


def _bn_affine(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, shift) with BN(conv(x)) = s * (W x) + shift per channel in eval mode."""
    ones = torch.ones_like(bn.running_mean)
    weight = bn.weight.detach() if bn.weight is not None else ones
    bias = bn.bias.detach() if bn.bias is not None else torch.zeros_like(ones)
    scale = weight / torch.sqrt(bn.running_var + bn.eps)
    conv_bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(ones)
    return scale, bias + scale * (conv_bias - bn.running_mean)


@torch.no_grad()
def build_layer(conv: nn.Conv2d, bn: nn.BatchNorm2d, variant: str, bias: bool = True, init: str = "bn") -> nn.Conv2d:
    """The layer replacing ``conv`` -> ``bn`` for ``variant`` (see the module docstring for ``init``).

    Example:
        >>> conv, bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4).eval()
        >>> layer = build_layer(conv, bn, "normprop2")
        >>> x = torch.randn(2, 3, 8, 8)
        >>> torch.allclose(layer(x), bn(conv(x)), atol=1e-6)
        True
    """
    scale, shift = _bn_affine(conv, bn)
    if variant == "plain":
        new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                        conv.dilation, conv.groups, bias, conv.padding_mode,
                        device=conv.weight.device, dtype=conv.weight.dtype)
        folded = init == "bn"
        new.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1) if folded else conv.weight)
        if bias:
            new.bias.copy_(shift if folded else torch.zeros_like(shift))
        return new
    fixed = variant == "normprop3"
    new = NormPropConv2d.like(conv, bias=bias, learn_gamma=not fixed, gamma=NORMPROP3_GAMMA)
    if init == "bn":
        if not fixed:
            new.gamma.copy_(scale * new.filter_norms())
        if bias:
            new.beta.copy_(shift)
    elif bias:
        new.beta.zero_()
    return new


def _preserves(variant: str, bias: bool, init: str) -> bool:
    return init == "bn" and bias and variant in ("normprop2", "plain")


def _describe(unit: Unit, variant: str, bias: bool, gm: fx.GraphModule, nodes) -> tuple[str, str]:
    before = f"{type(gm.get_submodule(unit.conv_path)).__name__} + BatchNorm2d ({unit.bn_path})"
    if variant == "plain":
        return before, f"Conv2d ({'with' if bias else 'no'} bias, BN removed)"
    gamma = "gamma fixed 1/1.21" if variant == "normprop3" else "gamma learnable"
    after = f"NormPropConv2d ({variant}: {gamma}{', beta' if bias else ', no beta'})"
    if variant == "normprop" and unit.act is not None:
        after += f" + correction after {qualified(nodes[unit.act])}"
    return before, after


def _plan(analysis: Analysis, variant: str, bias: bool, init: str) -> Plan:
    annotate_shapes(analysis.traced, analysis.example_input)
    gm = analysis.graph_module
    nodes = {n.name: n for n in gm.graph.nodes}
    units, warnings = find_units(gm, analysis.blocks)
    changes, actions, removed, taken = [], [], [], set()
    for unit in units:
        if unit.keep:
            warnings.append(f"{unit.bn_path}: BatchNorm kept ({unit.keep}, as seed 002 does)")
            continue
        before, after = _describe(unit, variant, bias, gm, nodes)
        changes.append(SiteChange(unit.block, unit.conv_path, before, after, unit.bn))
        conv, bn = gm.get_submodule(unit.conv_path), gm.get_submodule(unit.bn_path)
        actions += [SetModule(unit.conv_path, build_layer(conv, bn, variant, bias, init)), RemoveNode(unit.bn)]
        removed.append(qualified(nodes[unit.bn]))
        if variant == "normprop" and unit.act is not None:
            path = free_path(gm, f"{qualified(nodes[unit.act])}_normprop", taken)
            actions.append(InsertModule(unit.act, path, NormPropCorrection(), path))
    if changes and not _preserves(variant, bias, init):
        why = "init='default'" if init != "bn" else (
            "no bias/beta" if not bias else "gamma fixed at 1/1.21" if variant == "normprop3"
            else "the correction c * (ReLU - 1/sqrt(2 pi)) follows the ReLUs")
        warnings.insert(0, f"{variant} changes the model's function ({why}); only normprop2 and plain "
                           "with bias, initialised from BN statistics, reproduce it")
    selected = tuple(sorted({c.block for c in changes} - {0}))
    reason = (f"every conv->BatchNorm unit ({len(changes)} converted, {len(units) - len(changes)} kept)" if units
              else "the model has no conv->BatchNorm unit (a Conv2d whose output goes straight into a BatchNorm2d)")
    return Plan("normprop", tuple(analysis.blocks), selected, reason, tuple(changes), tuple(warnings),
                tuple(actions), tuple(removed))


def normprop_step(variant: str = "normprop2", bias: bool = True, init: str = "bn",
                  discovery: dict | None = None) -> Step:
    """The NormProp step with its settings (for :func:`run_rewrite` and recipes).

    Example:
        >>> normprop_step("plain", bias=False).settings
        {'variant': 'plain', 'bias': False, 'init': 'bn'}
    """
    if variant not in VARIANTS:
        raise SelectionError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if init not in INITS:
        raise SelectionError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    settings = with_discovery({"variant": variant, "bias": bool(bias), "init": init}, discovery)
    return Step("normprop", settings, lambda a: _plan(a, variant, bool(bias), init), ("relu", "crelu"),
                preserves=variant == "normprop2" and init == "bn" and bool(bias))


def normprop(model: nn.Module, variant: str = "normprop2", bias: bool = True, *, init: str = "bn",
             example_input=None, block_types=(), block_names=(), predicate=None,
             dry_run: bool = False, check: bool = True) -> tuple[nn.Module | None, Report]:
    """Replace BatchNorm by NormProp (``normprop``, ``normprop2``, ``normprop3``) or nothing (``plain``).

    Every conv->BN unit changes except BN on a shortcut that reduces the spatial size. With
    ``init="bn"`` (default) ``normprop2`` (and ``plain`` with a bias) reproduce the eval-mode
    function of ``model``; the report warns when a variant changes it. ``block_types`` /
    ``block_names`` / ``predicate`` only change how the report groups units into blocks; ``dry_run``
    and ``check`` are those of :func:`relu_surgery.erase`. Returns ``(new_model, report)``; ``model``
    is not modified.

    Example:
        >>> import torch, torchvision
        >>> new, report = normprop(torchvision.models.resnet50(), variant="normprop3", check=False)
        >>> len(report.changes), report.warnings[1].split(':')[0]
        (50, 'layer2.0.downsample.1')
        >>> "layer1.0.conv1.gamma" in dict(new.named_parameters())
        False
    """
    spec = BlockSpec(tuple(block_types), tuple(block_names), predicate)
    step = normprop_step(variant, bias, init, spec.to_recipe() if spec else None)
    return run_rewrite(model, [step], example_input, spec, dry_run, check=check)
