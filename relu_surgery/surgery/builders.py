"""New modules a plan builds: norms like an existing one, activation copies, composites with a new act.

Rewrites build every new module while planning, so a plan is complete data and applying it only
installs what it holds. :func:`fresh_norm` copies a norm's kind (class, eps, momentum; timm's
composite ``BatchNormAct2d`` stays composite); :func:`act_module` copies an activation, never
in-place (a moved ReLU must not overwrite a tensor the shortcut reads); :func:`composite_act`
gives a norm+act layer a new activation without touching the caller's layer.

Example:
    >>> norm = fresh_norm(nn.BatchNorm2d(8, eps=1e-3), 32)
    >>> type(norm).__name__, norm.num_features, norm.eps
    ('BatchNorm2d', 32, 0.001)
"""

from __future__ import annotations

import copy
import inspect

import torch.fx as fx
import torch.nn as nn

from .._compat import BatchNormBase, shallow_copy
from ..errors import InternalError, SelectionError
from ..graph.activations import activation_of, is_norm_act_layer, make_activation
from .edits import qualified

__all__ = ["fresh_norm", "act_module", "moved_copy", "composite_act", "describe"]


def _takes(cls: type, name: str) -> bool:
    return name in inspect.signature(cls.__init__).parameters


def _placed(module: nn.Module, like: nn.Module | None) -> nn.Module:
    param = next((p for p in like.parameters()), None) if like is not None else None
    return module.to(device=param.device, dtype=param.dtype) if param is not None else module


def fresh_norm(template: nn.Module | None, channels: int, act: nn.Module | None = None) -> nn.Module:
    """A new, untrained norm over ``channels`` of ``template``'s kind (BatchNorm2d when unknown).

    A composite template (timm ``BatchNormAct2d``, ``GroupNormAct``) gives a composite whose
    activation is ``act`` (``Identity`` when None).

    Example:
        >>> from timm.layers import BatchNormAct2d
        >>> type(fresh_norm(BatchNormAct2d(8), 16, nn.ReLU()).act).__name__
        'ReLU'
    """
    composite = template is not None and is_norm_act_layer(template) and _takes(type(template), "apply_act")
    kw = {"eps": getattr(template, "eps", 1e-5)}
    if isinstance(template, nn.GroupNorm):
        kw["affine"] = template.affine
        if composite:
            new = type(template)(channels, num_groups=template.num_groups, apply_act=False, **kw)
        else:
            new = nn.GroupNorm(template.num_groups, channels, **kw)
    elif isinstance(template, BatchNormBase):
        kw.update(momentum=template.momentum, affine=template.affine,
                  track_running_stats=template.track_running_stats)
        cls = type(template)
        new = cls(channels, apply_act=False, **kw) if composite else cls(channels, **kw)
    else:
        new = nn.BatchNorm2d(channels)
    if act is not None and composite:
        new.act = act
    return _placed(new, template)


def _not_inplace(module: nn.Module) -> nn.Module:
    if hasattr(module, "inplace"):
        module.inplace = False
    return module


def act_module(gm: fx.GraphModule, node: fx.Node) -> nn.Module:
    """A fresh, non-inplace copy of the activation ``node`` computes (a composite's ``act``).

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.ReLU(inplace=True)))
        >>> act_module(gm, list(gm.graph.nodes)[1])
        ReLU()
    """
    ref = activation_of(node, gm)
    if ref is None:
        raise InternalError(f"{qualified(node)} is not an activation")
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        if ref.composite is not None:
            module = getattr(module, "act")
        return moved_copy(module)
    return make_activation(ref.kind)


def moved_copy(module: nn.Module) -> nn.Module:
    """A non-inplace deep copy of ``module`` (an activation given a new place).

    Example:
        >>> moved_copy(nn.ReLU(inplace=True)).inplace
        False
    """
    return _not_inplace(copy.deepcopy(module))


def composite_act(gm: fx.GraphModule, layer: str, act: nn.Module, counts: dict[str, int], verb: str) -> nn.Module:
    """A copy of the norm+act layer at ``layer`` whose ``act`` is ``act`` (same tensors, same keys).

    Raises :class:`SelectionError` when the layer is called more than once (``counts``: calls per
    module path), since one call cannot change alone; ``verb`` says what the rewrite does
    ("erased", "changed").

    Example:
        >>> from timm.layers import BatchNormAct2d
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Conv2d(1, 4, 1), BatchNormAct2d(4)))
        >>> type(composite_act(gm, "1", nn.Identity(), {"1": 1}, "erased").act).__name__
        'Identity'
    """
    calls = counts.get(layer, 0)
    if calls > 1:
        raise SelectionError(f"{layer} is a norm+activation layer called {calls} times; "
                             f"its activation cannot be {verb} at one call only")
    changed = shallow_copy(gm.get_submodule(layer))
    changed.act = act
    return changed


def describe(gm: fx.GraphModule, node: fx.Node) -> str:
    """What a norm / activation node is, as a user reads it: ``BatchNorm2d(64)``, ``F.relu`` ...

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.BatchNorm2d(3), nn.ReLU()))
        >>> [describe(gm, n) for n in list(gm.graph.nodes)[1:3]]
        ['BatchNorm2d(3)', 'nn.ReLU']
    """
    ref = activation_of(node, gm)
    if node.op != "call_module":
        return ref.spelling if ref is not None else str(getattr(node.target, "__name__", node.target))
    module = gm.get_submodule(str(node.target))
    size = getattr(module, "num_features", None) or getattr(module, "num_channels", None)
    head = f"{type(module).__name__}({size})" if size else type(module).__name__
    if ref is not None and ref.composite is not None:
        return f"{head} + {type(module.act).__name__}"
    return ref.spelling if ref is not None else head
