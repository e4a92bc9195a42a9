"""Graph edits shared by the pre-/after-activation conversions and the unit variants.

New modules are built like the layers they replace (:func:`fresh_norm`: same norm class, eps and
momentum; timm's composite ``BatchNormAct2d`` stays composite), inserted with
:func:`insert_module` (``gm.add_submodule`` + a ``call_module`` node right after an anchor, scope
metadata adopted so later block discovery sees it), moved with :func:`move_after` and given a new
home with :func:`rehome` (the same module object under a new path: its state-dict keys change).
Activation copies are never in-place (a moved ReLU must not overwrite a tensor the shortcut reads).

Example:
    >>> import torch.nn as nn
    >>> norm = fresh_norm(nn.BatchNorm2d(8, eps=1e-3), 32)
    >>> type(norm).__name__, norm.num_features, norm.eps
    ('BatchNorm2d', 32, 0.001)
"""

from __future__ import annotations

import copy
import inspect

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ...graph.activations import activation_of, make_activation
from ...errors import SurgeryError
from ...graph.tracing import adopt_scope

__all__ = ["free_path", "fresh_norm", "act_module", "describe", "insert_module", "insert_act",
           "move_after", "rehome", "set_scope", "parent_scope", "is_norm_act", "layer_path"]


def free_path(gm: fx.GraphModule, path: str, taken: set) -> str:
    """``path``, or ``path_1``, ``path_2`` ... when a module (or an earlier plan entry) has it."""
    candidate, n = path, 0
    while candidate in taken or _exists(gm, candidate):
        n += 1
        candidate = f"{path}_{n}"
    taken.add(candidate)
    return candidate


def _exists(gm: nn.Module, path: str) -> bool:
    try:
        gm.get_submodule(path)
    except AttributeError:
        return False
    return True


def is_norm_act(module: nn.Module | None) -> bool:
    """True for a timm-style composite norm+act layer (it has ``act`` and takes ``apply_act``)."""
    if module is None or not hasattr(module, "act"):
        return False
    return "apply_act" in inspect.signature(type(module).__init__).parameters


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
    kw = {"eps": getattr(template, "eps", 1e-5)}
    if isinstance(template, nn.GroupNorm):
        kw["affine"] = template.affine
        if is_norm_act(template):
            new = type(template)(channels, num_groups=template.num_groups, apply_act=False, **kw)
        else:
            new = nn.GroupNorm(template.num_groups, channels, **kw)
    elif isinstance(template, nn.modules.batchnorm._BatchNorm):
        kw.update(momentum=template.momentum, affine=template.affine,
                  track_running_stats=template.track_running_stats)
        cls = type(template)
        new = cls(channels, apply_act=False, **kw) if is_norm_act(template) else cls(channels, **kw)
    else:
        new = nn.BatchNorm2d(channels)
    if act is not None and is_norm_act(new):
        new.act = act
    return _placed(new, template)


def _not_inplace(module: nn.Module) -> nn.Module:
    if hasattr(module, "inplace"):
        module.inplace = False
    return module


def act_module(gm: fx.GraphModule, node: fx.Node) -> nn.Module:
    """A fresh, non-inplace copy of the activation ``node`` computes (a composite's ``act``)."""
    ref = activation_of(node, gm)
    if ref is None:
        raise SurgeryError(f"{node.meta.get('rs_name', node.name)} is not an activation")
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        if ref.composite is not None:
            module = getattr(module, "act")
        return _not_inplace(copy.deepcopy(module))
    return make_activation(ref.kind)


def describe(gm: fx.GraphModule, node: fx.Node) -> str:
    """What a norm / activation node is, as a user reads it: ``BatchNorm2d(64)``, ``F.relu`` ..."""
    ref = activation_of(node, gm)
    if node.op != "call_module":
        return ref.spelling if ref is not None else str(getattr(node.target, "__name__", node.target))
    module = gm.get_submodule(str(node.target))
    size = getattr(module, "num_features", None) or getattr(module, "num_channels", None)
    head = f"{type(module).__name__}({size})" if size else type(module).__name__
    if ref is not None and ref.composite is not None:
        return f"{head} + {type(module.act).__name__}"
    return ref.spelling if ref is not None else head


def _in_layer(node: fx.Node) -> bool:
    """True when ``node`` runs inside a conv / linear layer's own forward (timm's ``StdConv2d``)."""
    scope = node.meta.get("rs_scope", ())
    types = node.meta.get("rs_scope_types", ())
    if node.op == "call_module":
        return bool(scope) and scope[-1] == str(node.target)
    return bool(scope) and len(types) == len(scope) and any(k in types[-1].rsplit(".", 1)[-1] for k in ("Conv", "Linear"))


def layer_path(node: fx.Node) -> str:
    """The module path of the layer that computes ``node`` (``stem.conv`` for timm's StdConv2d)."""
    if node.op == "call_module":
        return str(node.target)
    if _in_layer(node):
        return node.meta["rs_scope"][-1]
    return node.meta.get("rs_name", node.name)


def parent_scope(node: fx.Node) -> tuple[tuple, tuple]:
    """(scope, scope types) of ``node`` without the layer that computed it (its leaf module)."""
    scope = tuple(node.meta.get("rs_scope", ()))
    types = tuple(node.meta.get("rs_scope_types", ("",) * len(scope)))
    if _in_layer(node):
        return scope[:-1], types[:-1]
    return scope, types


def set_scope(node: fx.Node, scope: tuple, types: tuple, name: str) -> fx.Node:
    """Give ``node`` module scope ``scope`` (with ``types``) and the qualified name ``name``."""
    adopt_scope(node, node, name)
    node.meta["rs_scope"], node.meta["rs_scope_types"] = tuple(scope), tuple(types)
    return node


def _redirect(anchor: fx.Node, new: fx.Node, users) -> None:
    if users is None:
        anchor.replace_all_uses_with(new, delete_user_cb=lambda user: user is not new)
    else:
        for user in users:
            user.replace_input_with(anchor, new)


def insert_module(gm: fx.GraphModule, anchor: fx.Node, path: str, module: nn.Module, scope,
                  users=None) -> fx.Node:
    """Register ``module`` at ``path`` and call it on ``anchor``'s output.

    ``anchor``'s ``users`` (all of them when None) read the new node instead. ``scope`` is the
    (scope, types) pair the new node gets.
    """
    gm.add_submodule(path, module)
    with gm.graph.inserting_after(anchor):
        new = gm.graph.call_module(path, (anchor,))
    _redirect(anchor, new, users)
    return set_scope(new, *scope, path)


_FUNCTION_FORMS = {F.relu_: F.relu, torch.relu_: torch.relu, F.leaky_relu_: F.leaky_relu}


def insert_act(gm: fx.GraphModule, anchor: fx.Node, template: fx.Node, path: str, scope,
               users=None) -> fx.Node:
    """An activation like ``template`` (same spelling, never in-place) after ``anchor``.

    A module activation (or a composite's) becomes a new module at ``path``; a function or method
    activation (``F.relu``, ``x.relu()``) is inserted as the same call.
    """
    if template.op == "call_module":
        return insert_module(gm, anchor, path, act_module(gm, template), scope, users)
    target = _FUNCTION_FORMS.get(template.target, template.target)
    if isinstance(target, str):
        target = target.rstrip("_")
    kwargs = {k: (False if k == "inplace" else v) for k, v in template.kwargs.items()}
    with gm.graph.inserting_after(anchor):
        new = gm.graph.create_node(template.op, target, (anchor, *template.args[1:]), kwargs)
    _redirect(anchor, new, users)
    _rename(new, path)
    return set_scope(new, *scope, path)


def move_after(anchor: fx.Node, *nodes: fx.Node) -> None:
    """Move ``nodes`` (in order) to right after ``anchor`` in the graph's node list."""
    for node in nodes:
        anchor.append(node)
        anchor = node


def rehome(gm: fx.GraphModule, node: fx.Node, path: str, scope, copy_module: bool = False) -> None:
    """Point ``node`` at ``path`` holding its module (a copy when ``copy_module``), new scope too.

    Without ``copy_module`` the same module object moves (its state-dict keys change with the
    path); the old path goes when nothing calls it any more. A function node (``F.relu``) keeps its
    call and takes ``path`` as its qualified name.
    """
    if node.op == "call_module":
        old = str(node.target)
        module = gm.get_submodule(old)
        gm.add_submodule(path, _not_inplace(copy.deepcopy(module)) if copy_module else module)
        node.target = path
        if not copy_module and not gm.graph.find_nodes(op="call_module", target=old):
            gm.delete_submodule(old)  # one object, one path (its state-dict keys move with it)
    set_scope(node, *scope, path)
    _rename(node, path)


def _rename(node: fx.Node, path: str) -> None:
    """Name the node (the generated code's variable) after ``path`` where torch.fx allows it."""
    rename = getattr(node, "_rename", None)
    if rename is not None:
        rename(path.replace(".", "_"))
