"""Trace any model with torch.fx, recording which module each node came from.

:func:`trace` wraps ``torch.fx.Tracer`` with three additions:

* every node gets ``node.meta["rs_scope"]`` (the qualified names of the modules whose ``forward``
  was running when it was created), ``node.meta["rs_scope_types"]`` (their classes, as
  ``module.QualName`` strings, so a rewritten GraphModule still knows them) and ``node.meta["rs_name"]``, the name users know from
  torchvision's feature extraction: the module path, with ``_1``, ``_2`` for repeated calls
  (``layer1.0.relu``, ``layer1.0.relu_1``, ``layer1.0.relu_2``);
* composite norm+activation layers (timm's ``BatchNormAct2d`` ...) and timm's own notrace
  modules and functions are leaves;
* a submodule whose code FX cannot trace becomes a leaf and tracing is retried, so the rest of the
  model can still be rewritten; the result names every such leaf.

The caller's module is never modified: the tracer only reads it (pass a copy to rewrite).

Example:
    >>> import torchvision
    >>> traced = trace(torchvision.models.resnet18())
    >>> [n.meta["rs_name"] for n in traced.graph_module.graph.nodes][:5]
    ['x', 'conv1', 'bn1', 'relu', 'maxpool']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn as nn

from .activations import is_norm_act_layer, module_activation_kind, submodule
from .ops import NORM_TYPES, WEIGHT_TYPES
from ..errors import TraceError
from .provenance import provenance_of

__all__ = ["TracedModel", "ScopeTracer", "trace", "is_scoped", "annotate_shapes", "adopt_scope", "graph_records",
           "graph_code"]

_MAX_RETRIES = 64


class ScopeTracer(fx.Tracer):
    """An FX tracer that stamps each node with the module scope that created it.

    Example:
        >>> outer = nn.Sequential(nn.Sequential(nn.ReLU()))
        >>> graph = ScopeTracer().trace(outer)
        >>> [n.meta["rs_scope"] for n in graph.nodes if n.op == "call_module"]
        [('0', '0.0')]
    """

    def __init__(self, leaf_names=(), leaf_types=(), autowrap_functions=()):
        super().__init__(autowrap_functions=tuple(autowrap_functions))
        self.leaf_names = set(leaf_names)
        self.leaf_types = tuple(leaf_types)
        self.rs_scope: list[str] = []
        self.rs_types: list[str] = []
        self.failed_scope: list[str] | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.leaf_names:
            return True
        if self.leaf_types and isinstance(m, self.leaf_types):
            return True
        if is_norm_act_layer(m) or module_activation_kind(m) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m, forward, args, kwargs):
        path = self.path_of_module(m)
        self.rs_scope.append(path)
        self.rs_types.append(f"{type(m).__module__}.{type(m).__qualname__}")
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_scope is None:
                self.failed_scope = list(self.rs_scope)
            raise
        finally:
            self.rs_scope.pop()
            self.rs_types.pop()

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None):
        if kind == "call_function" and target in (torch.cat, torch.concat, torch.stack) and args \
                and _surely_a_tensor(args[0]):
            # ``torch.cat(x)`` of one tensor: a type check on a traced value (``isinstance(x, Tensor)``,
            # torchvision's _DenseLayer) took the wrong branch; the module becomes a leaf
            raise TypeError(f"{getattr(target, '__name__', target)}() of a single tensor: the trace took a "
                            "branch meant for a list (an isinstance check on a traced value)")
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        if kind == "call_module":
            layer = self.root.get_submodule(target)
            node.meta["rs_tensor"] = isinstance(layer, _TENSOR_LAYERS) or module_activation_kind(layer) is not None
        node.meta["rs_scope"] = tuple(self.rs_scope)
        node.meta["rs_scope_types"] = tuple(self.rs_types)
        return node


_TENSOR_LAYERS = tuple(t for t in WEIGHT_TYPES if t is not nn.MultiheadAttention) + NORM_TYPES


def _surely_a_tensor(arg) -> bool:
    """Whether a traced argument is certainly one tensor: a conv / linear / norm / activation leaf's output."""
    return isinstance(arg, fx.Node) and arg.meta.get("rs_tensor", False)


@dataclass
class TracedModel:
    """A traced copy of a model: the GraphModule plus what tracing had to give up on.

    ``source`` is the module that was traced (the GraphModule shares its leaf modules).
    ``leaves`` maps each submodule made a leaf because FX could not trace it to the reason.
    ``warnings`` holds notes a user should see (train/eval differences, ...).

    Example:
        >>> traced = trace(nn.Sequential(nn.ReLU()))
        >>> isinstance(traced.graph_module, fx.GraphModule), traced.leaves
        (True, {})
    """

    graph_module: fx.GraphModule
    source: nn.Module
    leaves: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _library_leaves(model: nn.Module) -> tuple[tuple, tuple]:
    """timm's notrace modules/functions when the model uses timm, else empty."""
    uses_timm = any(type(m).__module__.startswith("timm.") for m in model.modules())
    if not uses_timm:
        return (), ()
    from timm.layers import get_notrace_functions, get_notrace_modules  # noqa: PLC0415 (timm is heavy)

    return tuple(get_notrace_modules()), tuple(get_notrace_functions())


def _opaque_library_leaves(gm: fx.GraphModule, leaf_types: tuple) -> dict[str, str]:
    """Library notrace modules with submodules of their own (their insides stay unseen)."""
    out = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or not leaf_types:
            continue
        module = submodule(gm, str(node.target))
        if isinstance(module, leaf_types) and not is_norm_act_layer(module) and any(True for _ in module.children()):
            out[str(node.target)] = f"timm notrace module {type(module).__name__} (not traced into)"
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _name_nodes(graph: fx.Graph) -> None:
    """Give every node a qualified name: module path + op, ``_N`` for repeats."""
    counts: dict[str, int] = {}
    for node in graph.nodes:
        scope = node.meta.get("rs_scope", ())
        if node.op == "call_module":
            base = str(node.target)
        elif node.op in ("call_function", "call_method"):
            op = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "op")
            base = f"{scope[-1]}.{op}" if scope and scope[-1] else str(op)
        elif node.op == "get_attr":
            base = str(node.target)
        else:
            base = node.name
        seen = counts.get(base, 0)
        counts[base] = seen + 1
        node.meta["rs_name"] = base if seen == 0 else f"{base}_{seen}"


def is_scoped(model: nn.Module) -> bool:
    """True for a GraphModule made by relu_surgery (its nodes still carry scope metadata).

    Example:
        >>> is_scoped(trace(nn.ReLU()).graph_module), is_scoped(fx.symbolic_trace(nn.ReLU()))
        (True, False)
    """
    return isinstance(model, fx.GraphModule) and all(
        "rs_scope" in n.meta for n in model.graph.nodes if n.op != "output"
    )


def trace(model: nn.Module, leaf_modules=(), concrete_args=None) -> TracedModel:
    """Trace ``model`` into a GraphModule, making untraceable submodules leaves.

    ``leaf_modules`` lists extra qualified names to keep opaque. Raises :class:`TraceError` (one
    line) when the failure is in the model's own ``forward`` and no leaf can help.

    Example:
        >>> traced = trace(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))
        >>> traced.leaves
        {}
    """
    if is_scoped(model):  # a rewritten model: its graph (and scopes) are already known
        return TracedModel(model, model, dict(provenance_of(model).leaves))
    leaf_types, wrap_fns = _library_leaves(model)
    leaves: dict[str, str] = {}
    names = set(leaf_modules)
    for _ in range(_MAX_RETRIES):
        tracer = ScopeTracer(names | set(leaves), leaf_types, wrap_fns)
        try:
            graph = tracer.trace(model, concrete_args=concrete_args)
        except Exception as exc:  # FX raises many types; each becomes a leaf or a TraceError
            failing = [s for s in (tracer.failed_scope or []) if s]
            if not failing or failing[-1] in leaves:
                raise TraceError(
                    f"cannot trace {type(model).__name__}: {_first_line(exc)} (in the model's own forward)"
                ) from exc
            leaves[failing[-1]] = _first_line(exc)
            continue
        _name_nodes(graph)
        gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
        leaves.update(_opaque_library_leaves(gm, leaf_types))
        return TracedModel(gm, model, leaves)
    raise TraceError(f"cannot trace {type(model).__name__}: gave up after {_MAX_RETRIES} leaves")


def annotate_shapes(traced: TracedModel, example_input) -> None:
    """Record each node's output shape (``node.meta["tensor_meta"]``) from one eval-mode pass.

    Example:
        >>> import torch
        >>> t = trace(nn.Sequential(nn.Linear(3, 5), nn.ReLU()))
        >>> annotate_shapes(t, torch.zeros(2, 3))
        >>> tuple(list(t.graph_module.graph.nodes)[2].meta["tensor_meta"].shape)
        (2, 5)
    """
    import torch  # noqa: PLC0415
    from torch.fx.passes.shape_prop import ShapeProp  # noqa: PLC0415

    from .running import eval_mode  # noqa: PLC0415

    args = example_input if isinstance(example_input, tuple) else (example_input,)
    with eval_mode(traced.graph_module), torch.no_grad():
        ShapeProp(traced.graph_module).propagate(*args)


def adopt_scope(new: fx.Node, like: fx.Node, name: str) -> fx.Node:
    """Give a node a rewrite inserted the scope of ``like`` and the qualified name ``name``.

    Rewrites that insert nodes call this so later analysis (blocks, reports, drawings) sees them.

    Example:
        >>> gm = fx.symbolic_trace(nn.ReLU())
        >>> x = next(iter(gm.graph.nodes))
        >>> adopt_scope(x, x, "x").meta["rs_name"]
        'x'
    """
    new.meta["rs_scope"] = like.meta.get("rs_scope", ())
    new.meta["rs_scope_types"] = like.meta.get("rs_scope_types", ())
    new.meta["rs_name"] = name
    return new


def graph_records(gm: fx.GraphModule) -> list[dict]:
    """A plain-data copy of a graph for reports and drawings: one dict per node.

    Each record has ``name`` (qualified), ``op``, ``target``, ``role`` (see
    :func:`relu_surgery.graph.ops.op_role`), ``inputs`` (qualified names) and ``scope``.

    Example:
        >>> [r["role"] for r in graph_records(fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU())))]
        ['input', 'weight', 'activation', 'output']
    """
    from .ops import op_role  # noqa: PLC0415 (graph_ops imports activations, which is light)

    def name(n: fx.Node) -> str:
        return n.meta.get("rs_name", n.name)

    return [
        {"name": name(n), "op": n.op, "target": n.target if isinstance(n.target, str) else getattr(
            n.target, "__name__", str(n.target)), "role": op_role(n, gm),
         "inputs": [name(a) for a in n.all_input_nodes], "scope": list(n.meta.get("rs_scope", ()))}
        for n in gm.graph.nodes
    ]


def graph_code(gm: fx.GraphModule) -> str:
    """The generated Python ``forward`` of a GraphModule (for code diffs).

    Example:
        >>> "def forward" in graph_code(fx.symbolic_trace(nn.ReLU()))
        True
    """
    return gm.code.strip() + "\n"
