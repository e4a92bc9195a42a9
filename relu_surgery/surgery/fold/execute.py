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
    """Carry out a :class:`~relu_surgery.surgery.fold.plan.NormFold`: the layer takes the norm's
    scale and shift, and the norm's node is erased (``nodes``: the graph's nodes by name).

    Example:
        >>> from torch.fx.passes.shape_prop import ShapeProp
        >>> from .candidates import norm_candidates
        >>> net = nn.Sequential(nn.Linear(1, 1), nn.BatchNorm1d(1, eps=0.0)).eval()
        >>> with torch.no_grad():  # y = 2x, then (y - 1) / sqrt(4)
        ...     _ = net[0].weight.fill_(2.0), net[0].bias.zero_(), net[1].running_var.fill_(4.0), \
net[1].running_mean.fill_(1.0)
        >>> gm = fx.symbolic_trace(net)
        >>> _ = ShapeProp(gm).propagate(torch.zeros(2, 1))
        >>> fold_norm_into_layer(gm, {n.name: n for n in gm.graph.nodes}, norm_candidates(gm)[0])
        >>> [n.target for n in gm.graph.nodes if n.op == "call_module"], gm.get_submodule("0").weight.item(), \
gm.get_submodule("0").bias.item()
        (['0'], 1.0, -0.5)
    """
    layer, norm = nodes[action.layer], nodes[action.norm]
    module = _checked(gm, layer, action.spec)
    params = fold_norm(params_of(module), *norm_affine(_module(gm, norm)))
    _install(gm, layer, build_layer(replace(action.spec, bias=True), params, module.weight))
    norm.replace_all_uses_with(layer)
    gm.graph.erase_node(norm)


def merge_chain(gm: fx.GraphModule, nodes: dict, action) -> None:
    """Carry out a :class:`~relu_surgery.surgery.fold.plan.ChainMerge`: the chain's last node calls the
    merged layer and reads the first layer's input; the other layers' nodes are erased.

    Example:
        >>> from torch.fx.passes.shape_prop import ShapeProp
        >>> from .candidates import chains
        >>> from .plan import ChainMerge
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 3)))
        >>> x = torch.randn(1, 3, 6, 6)
        >>> expected = ShapeProp(gm).propagate(x)
        >>> c = chains(gm)[0][0]
        >>> merge_chain(gm, {n.name: n for n in gm.graph.nodes}, ChainMerge(c.layers, c.names, (), c.specs,
        ...                                                                 compose(*c.specs)))
        >>> _ = gm.recompile()
        >>> gm.get_submodule("1"), torch.allclose(gm(x), expected, atol=1e-5)
        (Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1)), True)
    """
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
    """Carry out a :class:`~relu_surgery.surgery.fold.plan.BranchMerge`: the host branch's node calls
    the one layer for the whole sum; the adds and the other branches are erased.

    Example:
        >>> from torch.fx.passes.shape_prop import ShapeProp
        >>> from .candidates import branch_candidates
        >>> class Rep(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.k3, self.k1 = nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 1)
        ...     def forward(self, x):
        ...         return self.k3(x) + self.k1(x) + x
        >>> gm = fx.symbolic_trace(Rep())
        >>> x = torch.randn(1, 2, 5, 5)
        >>> expected = ShapeProp(gm).propagate(x)
        >>> merge_branches(gm, {n.name: n for n in gm.graph.nodes}, branch_candidates(gm)[0])
        >>> _ = gm.recompile()
        >>> [str(n.target) for n in gm.graph.nodes], torch.allclose(gm(x), expected, atol=1e-5)
        (['x', 'k3', 'output'], True)
    """
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
    carries it out (its ``apply_to``). See also the module example.

    Example:
        >>> from .planner import make_plan
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 2)))
        >>> x = torch.randn(4, 2)
        >>> expected = gm(x)
        >>> execute(gm, make_plan(gm, x).actions[0]); _ = gm.recompile()
        >>> gm.get_submodule("1"), torch.allclose(gm(x), expected, atol=1e-6)
        (Linear(in_features=2, out_features=2, bias=True), True)
    """
    action.apply_to(gm, {n.name: n for n in gm.graph.nodes})
