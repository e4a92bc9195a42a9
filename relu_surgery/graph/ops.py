"""What each graph node does, in the terms block and site analysis needs.

:func:`op_role` sorts a node into ``weight`` (conv, linear, matmul, any leaf with parameters),
``norm``, ``activation``, ``merge`` (tensor add / cat), ``transparent`` (pool, dropout, identity,
reshape, scalar scaling: ops through which a last activation still reaches the block output), or
``other`` (everything that blocks that path: gating products, softmax, ...).

Example:
    >>> import torch.fx as fx, torch.nn as nn
    >>> gm = fx.symbolic_trace(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()))
    >>> [op_role(n, gm) for n in gm.graph.nodes]
    ['input', 'weight', 'norm', 'activation', 'output']
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .._compat import BatchNormBase, DropoutBase, InstanceNormBase
from .activations import activation_of, submodule

__all__ = ["op_role", "is_channelwise", "is_tensor_add", "is_cat", "WEIGHT_TYPES", "NORM_TYPES"]

WEIGHT_TYPES = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.Linear, nn.Bilinear, nn.Embedding, nn.MultiheadAttention,
)
NORM_TYPES = (BatchNormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm, InstanceNormBase)

_WEIGHT_FUNCTIONS = {
    F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
    F.linear, torch.conv2d, torch.matmul, torch.mm, torch.bmm, torch.addmm, torch.einsum,
    operator.matmul, F.scaled_dot_product_attention,
}
_NORM_FUNCTIONS = {F.batch_norm, F.layer_norm, F.group_norm, F.instance_norm, F.normalize, F.rms_norm}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_ADD_METHODS = {"add", "add_"}
_CAT_FUNCTIONS = {torch.cat, torch.concat, torch.stack}
# Channel-wise ops: each output channel comes from its own input channel only (pool, dropout,
# identity, resizing, dtype moves), so a CReLU's doubled channels pass through them unchanged. All
# are transparent, except NormPropCorrection (an elementwise affine map, role "other").
_CHANNELWISE_MODULES = (
    nn.Identity, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    DropoutBase, nn.ZeroPad2d, nn.Upsample,
)
_CHANNELWISE_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.dropout, F.dropout2d, F.interpolate,
}
_CHANNELWISE_METHODS = {"contiguous", "clone", "float", "half", "to", "type_as"}
# Library modules without parameters that only drop or pool (matched by class name).
_CHANNELWISE_CLASS_NAMES = {"DropPath", "StochasticDepth", "DropBlock2d"}
_CHANNELWISE_OTHER_CLASS_NAMES = {"NormPropCorrection"}

# Transparent ops: the channel-wise ones plus reshapes, padding, reductions and indexing.
_TRANSPARENT_FUNCTIONS = _CHANNELWISE_FUNCTIONS | {
    F.adaptive_avg_pool1d, F.adaptive_avg_pool3d, F.dropout3d, F.alpha_dropout, F.pad, torch.flatten,
    torch.reshape, torch.permute, torch.transpose, torch.squeeze, torch.unsqueeze, torch.chunk, torch.split,
    torch.mean, operator.getitem, getattr, torch.nn.functional.pixel_shuffle,
}
_TRANSPARENT_METHODS = _CHANNELWISE_METHODS | {
    "view", "reshape", "flatten", "permute", "transpose", "squeeze", "unsqueeze", "chunk", "split", "mean",
    "size", "dim", "expand", "expand_as", "repeat", "narrow",
}
_TRANSPARENT_MODULES = _CHANNELWISE_MODULES + (nn.Flatten, nn.Unflatten, nn.ConstantPad2d, nn.PixelShuffle)
_TRANSPARENT_CLASS_NAMES = _CHANNELWISE_CLASS_NAMES | {
    "SelectAdaptivePool2d", "AdaptiveAvgMaxPool2d", "FastAdaptiveAvgPool", "AvgPool2dSame", "MaxPool2dSame",
    "BlurPool2d", "Permute",
}


def _is_scalar_product(node: fx.Node) -> bool:
    if node.op == "call_function" and node.target in (operator.mul, torch.mul, operator.truediv):
        return sum(isinstance(a, fx.Node) for a in node.args) == 1
    if node.op == "call_method" and node.target in ("mul", "mul_", "div", "div_"):
        return not any(isinstance(a, fx.Node) for a in node.args[1:])
    return False


def is_tensor_add(node: fx.Node) -> bool:
    """True for ``a + b`` / ``torch.add`` / ``a.add_(b)`` with two tensor operands.

    Example:
        >>> gm = fx.symbolic_trace(lambda x: x + x)
        >>> [is_tensor_add(n) for n in gm.graph.nodes]
        [False, True, False]
    """
    if node.op == "call_function" and node.target in _ADD_FUNCTIONS:
        return sum(isinstance(a, fx.Node) for a in node.args[:2]) == 2
    if node.op == "call_method" and node.target in _ADD_METHODS:
        return sum(isinstance(a, fx.Node) for a in node.args[:2]) == 2
    return False


def is_cat(node: fx.Node) -> bool:
    """True for ``torch.cat`` / ``concat`` / ``stack`` (the join of multi-branch modules).

    Example:
        >>> gm = fx.symbolic_trace(lambda x: torch.cat([x, x]))
        >>> [is_cat(n) for n in gm.graph.nodes]
        [False, True, False]
    """
    return node.op == "call_function" and node.target in _CAT_FUNCTIONS


def _module_role(module: nn.Module) -> str:
    if isinstance(module, WEIGHT_TYPES):
        return "weight"
    if isinstance(module, NORM_TYPES) or "Norm" in type(module).__name__:
        return "norm"
    if isinstance(module, _TRANSPARENT_MODULES) or type(module).__name__ in _TRANSPARENT_CLASS_NAMES:
        return "transparent"
    if any(True for _ in module.parameters()):
        return "weight"
    return "other"


def op_role(node: fx.Node, root: nn.Module) -> str:
    """Role of ``node``: input, output, weight, norm, activation, merge, transparent or other.

    A composite norm+activation leaf is an ``activation`` (its norm part is implied).

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.Dropout()))
        >>> [op_role(n, gm) for n in gm.graph.nodes][1:3]
        ['weight', 'transparent']
    """
    if node.op == "placeholder":
        return "input"
    if node.op == "output":
        return "output"
    if node.op == "get_attr":
        return "transparent"
    if activation_of(node, root) is not None:
        return "activation"
    if is_tensor_add(node) or is_cat(node):
        return "merge"
    if node.op == "call_module":
        return _module_role(submodule(root, str(node.target)))
    if node.op == "call_function":
        if node.target in _WEIGHT_FUNCTIONS:
            return "weight"
        if node.target in _NORM_FUNCTIONS:
            return "norm"
        if node.target in _TRANSPARENT_FUNCTIONS or _is_scalar_product(node):
            return "transparent"
        return "other"
    if node.op == "call_method":
        if node.target in _TRANSPARENT_METHODS or _is_scalar_product(node):
            return "transparent"
        return "other"
    return "other"


def is_channelwise(node: fx.Node, root: nn.Module) -> bool:
    """True when each output channel of ``node`` comes from its own input channel only (pool,
    dropout, identity, resize, dtype move, NormProp's correction): what a CReLU's doubled channels
    may pass through on their way to a weight layer.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.MaxPool2d(2), nn.Flatten()))
        >>> [is_channelwise(n, gm) for n in list(gm.graph.nodes)[1:3]]
        [True, False]
    """
    if node.op == "call_module":
        module = submodule(root, str(node.target))
        name = type(module).__name__
        return (isinstance(module, _CHANNELWISE_MODULES) or name in _CHANNELWISE_CLASS_NAMES
                or name in _CHANNELWISE_OTHER_CLASS_NAMES)
    if node.op == "call_function":
        return node.target in _CHANNELWISE_FUNCTIONS
    return node.op == "call_method" and node.target in _CHANNELWISE_METHODS
