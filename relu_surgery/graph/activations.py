"""Every spelling of an activation, recognised in one place.

A traced graph spells ReLU as ``nn.ReLU`` (call_module), ``F.relu`` / ``torch.relu`` (call_function),
``x.relu()`` / ``x.relu_()`` (call_method), or hides it inside a composite norm+activation leaf such
as timm's ``BatchNormAct2d``. :func:`activation_of` maps a node to its canonical kind ("relu",
"relu6", "gelu", ...) and the spelling a user would recognise.

Example:
    >>> import torch.fx as fx, torch.nn as nn, torch.nn.functional as F
    >>> class M(nn.Module):
    ...     def forward(self, x):
    ...         return F.relu(x).sigmoid()
    >>> gm = fx.symbolic_trace(M())
    >>> [activation_of(n, gm).kind for n in gm.graph.nodes if activation_of(n, gm)]
    ['relu', 'sigmoid']
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .._compat import children
from ..errors import SelectionError

__all__ = [
    "ActivationRef",
    "KNOWN_KINDS",
    "activation_of",
    "module_activation_kind",
    "composite_activation",
    "is_norm_act_layer",
    "normalize_kinds",
    "make_activation",
    "submodule",
]

# Module classes -> kind. Subclasses come first (ReLU6 is a Hardtanh).
_MODULE_KINDS: list[tuple[type, str]] = [
    (nn.ReLU6, "relu6"),
    (nn.ReLU, "relu"),
    (nn.LeakyReLU, "leaky_relu"),
    (nn.PReLU, "prelu"),
    (nn.RReLU, "rrelu"),
    (nn.ELU, "elu"),
    (nn.SELU, "selu"),
    (nn.CELU, "celu"),
    (nn.GELU, "gelu"),
    (nn.SiLU, "silu"),
    (nn.Mish, "mish"),
    (nn.Hardswish, "hardswish"),
    (nn.Hardsigmoid, "hardsigmoid"),
    (nn.Hardtanh, "hardtanh"),
    (nn.Sigmoid, "sigmoid"),
    (nn.Tanh, "tanh"),
    (nn.Softplus, "softplus"),
]

# Class names of activation modules defined by other libraries (timm's own GELU, Swish, ...).
_CLASS_NAME_KINDS = {
    "relu": "relu", "relu6": "relu6", "leakyrelu": "leaky_relu", "prelu": "prelu",
    "gelu": "gelu", "gelutanh": "gelu", "quickgelu": "gelu", "silu": "silu", "swish": "silu",
    "mish": "mish", "hardswish": "hardswish", "hardsigmoid": "hardsigmoid", "sigmoid": "sigmoid",
    "tanh": "tanh", "elu": "elu", "selu": "selu", "celu": "celu", "softplus": "softplus",
    "hardtanh": "hardtanh", "hardmish": "mish", "crelu": "crelu",
}

_FUNCTION_KINDS = {
    F.relu: "relu", F.relu_: "relu", torch.relu: "relu", torch.relu_: "relu",
    F.relu6: "relu6", F.leaky_relu: "leaky_relu", F.leaky_relu_: "leaky_relu",
    F.prelu: "prelu", torch.prelu: "prelu", F.rrelu: "rrelu",
    F.elu: "elu", F.selu: "selu", torch.selu: "selu", F.celu: "celu",
    F.gelu: "gelu", F.silu: "silu", F.mish: "mish", F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid", F.hardtanh: "hardtanh", F.softplus: "softplus",
    torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.tanh: "tanh", F.tanh: "tanh",
}

_METHOD_KINDS = {
    "relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid",
    "tanh": "tanh", "tanh_": "tanh",
}

KNOWN_KINDS = frozenset(
    [k for _, k in _MODULE_KINDS] + list(_CLASS_NAME_KINDS.values()) + list(_FUNCTION_KINDS.values())
    + ["masked_relu"]  # relu_surgery's own masked activation (SNL), which declares its kind
)

_ALIASES = {"swish": "silu", "leakyrelu": "leaky_relu", "hard_swish": "hardswish"}


@dataclass(frozen=True)
class ActivationRef:
    """What a node is as an activation: its canonical ``kind`` and user-facing ``spelling``.

    ``composite`` is the qualified name of the norm+act leaf holding it (None for plain sites);
    ``inplace`` says whether the original call mutates its input.

    Example:
        >>> ActivationRef("relu", "F.relu").composite is None
        True
    """

    kind: str
    spelling: str
    composite: str | None = None
    inplace: bool = False


def normalize_kinds(kinds) -> frozenset[str]:
    """Canonical activation kinds from user input ("relu,ReLU6", ["gelu"], ...).

    Example:
        >>> sorted(normalize_kinds("relu, ReLU6,swish"))
        ['relu', 'relu6', 'silu']
    """
    if isinstance(kinds, str):
        kinds = kinds.split(",")
    out = set()
    for raw in kinds:
        name = str(raw).strip().lower()
        if not name:
            continue
        name = _ALIASES.get(name, name)
        if name not in KNOWN_KINDS and name != "all":
            raise SelectionError(f"unknown activation {raw!r}; known: {', '.join(sorted(KNOWN_KINDS))}")
        out.add(name)
    return frozenset(out)


def module_activation_kind(module: nn.Module) -> str | None:
    """Kind of an activation module (``nn.ReLU()`` -> "relu"), else None.

    A class may declare its kind as ``rs_activation_kind`` (relu_surgery's masked activation does).

    Example:
        >>> module_activation_kind(nn.ReLU6()), module_activation_kind(nn.Conv2d(1, 1, 1))
        ('relu6', None)
    """
    declared = getattr(type(module), "rs_activation_kind", None)
    if declared is not None:
        return declared
    kind = _class_kind(type(module))
    if kind is not _BY_NAME:
        return kind
    name = type(module).__name__.lower()
    if next(module.children(), None) is None and next(module.parameters(recurse=False), None) is None:
        return _CLASS_NAME_KINDS.get(name)
    return "prelu" if name == "prelu" else None


_BY_NAME = object()  # the class name suggests an activation: the instance must be looked at


@cache
def _class_kind(cls: type) -> str | None | object:
    """The kind every instance of ``cls`` has, None for none, or ``_BY_NAME`` (decided per instance)."""
    for base, kind in _MODULE_KINDS:
        if issubclass(cls, base):
            return kind
    name = cls.__name__.lower()
    return _BY_NAME if name in _CLASS_NAME_KINDS or name == "prelu" else None


def submodule(root: nn.Module, target: str) -> nn.Module:
    """``root.get_submodule(target)`` without its per-level checks (hot in graph walks).

    Example:
        >>> submodule(nn.Sequential(nn.Sequential(nn.ReLU())), "0.0")
        ReLU()
    """
    module = root
    try:
        for part in target.split("."):
            module = children(module)[part]
    except (KeyError, AttributeError):
        return root.get_submodule(target)  # raises its own clear error when there is none
    if module is None:
        return root.get_submodule(target)
    return module


def is_norm_act_layer(module: nn.Module) -> bool:
    """True for composite norm+activation layers (timm's BatchNormAct2d, GroupNormAct, ...), not ConvNormAct.

    Example:
        >>> is_norm_act_layer(nn.BatchNorm2d(3))
        False
    """
    name = type(module).__name__
    if "NormAct" not in name and name != "InplaceAbn":
        return False
    return not any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) for m in module.modules())


def composite_activation(module: nn.Module) -> tuple[str, str] | None:
    """(attribute, kind) of the activation inside a norm+act layer such as timm's BatchNormAct2d.

    Example:
        >>> composite_activation(nn.ReLU()) is None
        True
    """
    if module_activation_kind(module) is not None or not is_norm_act_layer(module):
        return None
    act = getattr(module, "act", None)
    if isinstance(act, nn.Module):
        kind = module_activation_kind(act)
        if kind is not None:
            return "act", kind
    return None


def _is_inplace(node: fx.Node) -> bool:
    if node.op == "call_method":
        return str(node.target).endswith("_")
    if node.op == "call_function":
        return bool(node.kwargs.get("inplace", False)) or getattr(node.target, "__name__", "").endswith("_")
    return False


def activation_of(node: fx.Node, root: nn.Module) -> ActivationRef | None:
    """The activation a graph node computes, or None when it is not an activation.

    ``root`` is the traced module (to look up ``call_module`` targets).

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
        >>> [activation_of(n, gm) for n in gm.graph.nodes][2]
        ActivationRef(kind='relu', spelling='nn.ReLU', composite=None, inplace=False)
    """
    if node.op == "call_module":
        module = submodule(root, str(node.target))
        kind = module_activation_kind(module)
        if kind is not None:
            cls = type(module)
            prefix = "nn." if cls.__module__.startswith("torch.nn") else ""
            return ActivationRef(kind, f"{prefix}{cls.__name__}", None, bool(getattr(module, "inplace", False)))
        found = composite_activation(module)
        if found is not None:
            attr, kind = found
            act = getattr(module, attr)
            return ActivationRef(kind, f"{type(module).__name__}.{attr} ({type(act).__name__})", str(node.target))
        return None
    if node.op == "call_function":
        kind = _FUNCTION_KINDS.get(node.target)
        if kind is None:
            return None
        mod = "F" if getattr(F, node.target.__name__, None) is node.target else "torch"
        return ActivationRef(kind, f"{mod}.{node.target.__name__}", None, _is_inplace(node))
    if node.op == "call_method":
        kind = _METHOD_KINDS.get(str(node.target))
        if kind is None:
            return None
        return ActivationRef(kind, f"Tensor.{node.target}", None, _is_inplace(node))
    return None


def make_activation(kind: str, channels: int | None = None) -> nn.Module:
    """A fresh module computing activation ``kind`` (PReLU is channel-wise with init 0.25).

    Example:
        >>> make_activation("prelu", channels=4).weight.shape
        torch.Size([4])
    """
    kind = _ALIASES.get(kind, kind)
    if kind == "prelu":
        return nn.PReLU(num_parameters=channels or 1, init=0.25)
    if kind == "identity":
        return nn.Identity()
    table = {k: cls for cls, k in _MODULE_KINDS}
    if kind not in table:
        raise ValueError(f"cannot build activation {kind!r}")
    return table[kind]()

