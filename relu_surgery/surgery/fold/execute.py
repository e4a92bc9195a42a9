"""Carry out one fold action on a graph: the only code that edits it.

The planner runs these same functions on a copy of the model whose tensors live on the ``meta``
device (no memory, no arithmetic), so a plan is known to be executable; the applier runs them on
the real model. An action names nodes by FX name: the copy and the model are edited alike, so the
names stay the same in both. No node is created: a merged layer is called by the node of the layer
it replaces (the chain's last, the host branch), and the others are erased.

A module called once is replaced at its own path (its state-dict keys keep their names, with new
shapes); a shared module is never changed: the call gets a new module under a free path.

Example:
    >>> import torch, torch.fx as fx, torch.nn as nn
    >>> from torch.fx.passes.shape_prop import ShapeProp
    >>> from .candidates import norm_candidates
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    >>> gm = fx.symbolic_trace(net)
    >>> x = torch.randn(1, 3, 8, 8)
    >>> expected = ShapeProp(gm).propagate(x)
    >>> execute(gm, norm_candidates(gm)[0]); _ = gm.recompile()
    >>> [n.op for n in gm.graph.nodes], torch.allclose(gm(x), expected, atol=1e-6)
    (['placeholder', 'call_module', 'output'], True)
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.fx as fx
import torch.nn as nn

from ..._compat import BatchNormBase
from ...errors import SurgeryError
from ...graph.activations import submodule
from ..edits import call_counts, free_path
from .geometry import compose
from .kernels import Params, combine_params, compose_params, fold_norm
from .modules import build_layer, params_of, spec_of

__all__ = ["execute", "norm_affine", "fold_norm_into_layer", "merge_chain", "merge_branches"]


def norm_affine(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel of a BatchNorm in eval mode: ``norm(y) = scale * y + shift``.

    Example:
        >>> bn = nn.BatchNorm1d(2, eps=0.0).eval()
        >>> bn.running_var.fill_(4.0); bn.running_mean.fill_(1.0)  # doctest: +ELLIPSIS
        tensor(...)
        >>> [t.tolist() for t in norm_affine(bn)]
        [[0.5, 0.5], [-0.5, -0.5]]
    """
    with torch.no_grad():
        scale = torch.rsqrt(norm.running_var.double() + norm.eps)
        if norm.affine:
            scale = scale * norm.weight.double()
        shift = -norm.running_mean.double() * scale
        if norm.affine:
            shift = shift + norm.bias.double()
    return scale, shift


def _install(gm: fx.GraphModule, node: fx.Node, module: nn.Module) -> None:
    """Make ``node`` call ``module``: at the node's own path when only it calls that path."""
    target = str(node.target)
    path = target if call_counts(gm).get(target, 0) == 1 else free_path(gm, f"{target}_folded", set())
    gm.add_submodule(path, module)
    node.target = path


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module:
    return submodule(gm, str(node.target))


def _checked(gm: fx.GraphModule, node: fx.Node, expected) -> nn.Module:
    """The module ``node`` calls, after checking it is still the layer the plan saw."""
    module = _module(gm, node)
    spec = spec_of(module, expected.in_shape, expected.out_shape)
    if spec != expected:
        raise SurgeryError(f"{node.name} is not the layer the fold was planned on ({spec} != {expected}); plan again")
    return module


def _erase(gm: fx.GraphModule, nodes: list[fx.Node]) -> None:
    """Erase ``nodes`` (none may have users left outside them), readers first."""
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    for node in sorted(nodes, key=order.__getitem__, reverse=True):
        gm.graph.erase_node(node)


def fold_norm_into_layer(gm: fx.GraphModule, nodes: dict, action) -> None:
    layer, norm = nodes[action.layer], nodes[action.norm]
    module = _checked(gm, layer, action.spec)
    params = fold_norm(params_of(module), *norm_affine(_module(gm, norm)))
    _install(gm, layer, build_layer(replace(action.spec, bias=True), params, module.weight))
    norm.replace_all_uses_with(layer)
    gm.graph.erase_node(norm)


def merge_chain(gm: fx.GraphModule, nodes: dict, action) -> None:
    layers = [nodes[name] for name in action.layers]
    first = _checked(gm, layers[0], action.before[0])
    params, spec = params_of(first), action.before[0]
    for node, nxt in zip(layers[1:], action.before[1:]):
        merged = compose(spec, nxt)
        params = compose_params(params, params_of(_checked(gm, node, nxt)), spec, nxt, merged)
        spec = merged
    if spec != action.after:
        raise SurgeryError(f"the merge of {' + '.join(action.names)} does not give the planned layer; plan again")
    last = layers[-1]
    _install(gm, last, build_layer(spec, params, first.weight))
    last.args = (layers[0].args[0],)
    _erase(gm, layers[:-1] + [nodes[name] for name in action.dropped])


def _branch_params(gm: fx.GraphModule, node: fx.Node, spec) -> Params:
    """A sum operand's tensors: a layer's, or a BatchNorm's as a depthwise 1x1 conv (scale, shift)."""
    module = _module(gm, node)
    if isinstance(module, BatchNormBase):
        scale, shift = norm_affine(module)
        like = module.running_var
        return Params(scale.to(like.dtype).reshape(-1, 1, *spec.kernel), shift.to(like.dtype), None)
    return params_of(_checked(gm, node, spec))


def merge_branches(gm: fx.GraphModule, nodes: dict, action) -> None:
    branches = [nodes[name] for name in action.branches]
    pairs = [(_branch_params(gm, node, spec), spec) for node, spec in zip(branches, action.before)]
    host = nodes[action.host]
    params = combine_params(pairs, action.identity, action.after)
    _install(gm, host, build_layer(action.after, params, pairs[0][0].weight))
    adds = [nodes[name] for name in action.adds]
    adds[0].replace_all_uses_with(host)
    _erase(gm, adds)
    _erase(gm, [b for b in branches if b is not host])


def execute(gm: fx.GraphModule, action) -> None:
    """Carry out one fold ``action`` (a :class:`~relu_surgery.surgery.fold.plan.NormFold`,
    ``ChainMerge`` or ``BranchMerge``) on ``gm``'s graph and modules (the caller lints and recompiles).

    Each action knows which of :func:`fold_norm_into_layer`, :func:`merge_chain`, :func:`merge_branches`
    carries it out (its ``apply_to``). See the module example.
    """
    action.apply_to(gm, {n.name: n for n in gm.graph.nodes})
