"""Models whose root cannot be traced: the largest submodules that can, and those that stay Python.

:func:`find_parts` walks the module tree from the root. A module the project's tracer can trace
(its failing submodules made leaves) is a *traced part*; one it cannot stays *Python*, with a
one-line reason, and its children are tried in turn. Inside a traced part, a submodule the tracer
made a leaf because it failed is tried the same way, so every module that holds part of the network
is either inside a traced part or listed as Python with its reason.

A part's trace is local to the part (targets ``body.conv1``). :func:`part_view` restates it in the
root's terms: targets, scopes and qualified names start with the part's path, and the part itself
is a region, so block discovery sees a part traced alone exactly as it would see it inside a trace of
the whole model. :func:`localize` turns a (rewritten) view back into a module to :func:`install` at
the part's path of a private copy, whose own Python code keeps calling it; the state-dict keys
stay the same.

Example:
    >>> import torch
    >>> import torch.nn as nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    ...     def forward(self, x):
    ...         return self.body(x) if x.sum() > 0 else x   # control flow on a traced value
    >>> root = find_parts(Net())
    >>> [(p.path or "(root)", p.is_traced) for p in walk(root)]
    [('(root)', False), ('body', True)]
    >>> root.reason
    'TraceError: symbolically traced variables cannot be used as inputs to control flow'
    >>> net = Net()
    >>> view = part_view(net, find_parts(net).children[0])
    >>> [n.meta["rs_name"] for n in view.graph_module.graph.nodes]
    ['body.input_1', 'body.0', 'body.1', 'body.output']
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch.fx as fx
import torch.nn as nn

from .provenance import Provenance, provenance_of, set_provenance
from ..errors import TraceError
from .tracing import TracedModel, trace

__all__ = ["Part", "find_parts", "walk", "part_view", "localize", "install", "with_prefix"]

_TENSOR_DICTS = ("_parameters", "_buffers", "_modules")
_NO_FORWARD = "no forward of its own (its parent calls its items or methods)"


@dataclass
class Part:
    """One module of an untraceable model: traced (``traced`` is its local trace) or Python (``reason``).

    ``children`` are the parts tried below it: a Python part's children, or the failing leaves of a
    traced part. ``path`` is the module's qualified name in the root ("" for the root).

    Example:
        >>> part = Part("body", "Sequential", reason="TraceError: control flow")
        >>> part.is_traced, part.to_dict()
        (False, {'path': 'body', 'type': 'Sequential', 'traced': False, 'reason': 'TraceError: control flow'})
    """

    path: str
    type: str
    traced: TracedModel | None = None
    reason: str = ""
    children: list["Part"] = field(default_factory=list)

    @property
    def is_traced(self) -> bool:
        return self.traced is not None

    def to_dict(self) -> dict:
        """JSON-ready summary (no graph)."""
        out = {"path": self.path, "type": self.type, "traced": self.is_traced}
        if not self.is_traced:
            out["reason"] = self.reason
        return out


def with_prefix(prefix: str, name: str) -> str:
    """``name`` qualified by ``prefix`` (either may be empty).

    Example:
        >>> with_prefix("backbone", "body.conv1"), with_prefix("", "fc"), with_prefix("head", "")
        ('backbone.body.conv1', 'fc', 'head')
    """
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _reason(exc: BaseException) -> str:
    """One line from a trace failure: the exception and its first sentence, without the wrapper text."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    head, sep, rest = text.partition(": ")
    if sep and head.startswith("cannot trace "):
        text = rest
    text = text.removesuffix(" (in the model's own forward)")
    first, dot, _ = text.partition(". ")
    return first if dot else text


def _has_forward(module: nn.Module) -> bool:
    return type(module).forward is not nn.Module.forward


@contextmanager
def _state_kept(module: nn.Module):
    """Undo what tracing writes into modules' plain attributes (torchvision's ``MultiScaleRoIAlign``
    caches its scales on the first call: traced, it would keep proxies)."""
    kept = [(m, {k: v for k, v in vars(m).items() if k not in _TENSOR_DICTS}) for m in module.modules()]
    try:
        yield
    finally:
        for m, attrs in kept:
            for key in [k for k in vars(m) if k not in _TENSOR_DICTS and k not in attrs]:
                del m.__dict__[key]
            m.__dict__.update(attrs)


def _explore(module: nn.Module, path: str) -> Part:
    part = Part(path, type(module).__name__)
    if not _has_forward(module):
        part.reason = _NO_FORWARD
    else:
        try:
            with _state_kept(module):
                part.traced = trace(module)
        except TraceError as exc:
            part.reason = _reason(exc)
    if part.is_traced:
        failed = [name for name, why in part.traced.leaves.items() if not why.startswith("timm notrace")]
        part.children = [_explore(module.get_submodule(name), with_prefix(path, name)) for name in failed]
    else:
        part.children = [_explore(child, with_prefix(path, name)) for name, child in module.named_children()]
    return part


def find_parts(model: nn.Module) -> Part:
    """The tree of parts of ``model``: the largest traceable submodules and the Python ones between them.

    The root is returned whether it traces or not; read :func:`walk` for every part. ``model`` is
    only read (tracing never changes a module).

    Example:
        >>> tree = find_parts(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
        >>> tree.is_traced, tree.children
        (True, [])
    """
    return _explore(model, "")


def walk(part: Part) -> Iterator[Part]:
    """Every part of the tree below (and including) ``part``, parents before children.

    Example:
        >>> [p.type for p in walk(Part("", "Net", children=[Part("a", "Linear")]))]
        ['Net', 'Linear']
    """
    yield part
    for child in part.children:
        yield from walk(child)


def _rescope(graph: fx.Graph, rename, scope_of, types_of) -> None:
    for node in graph.nodes:
        if node.op in ("call_module", "get_attr"):
            node.target = rename(str(node.target))
        if "rs_scope" in node.meta:
            scope, types = node.meta["rs_scope"], node.meta.get("rs_scope_types", ())
            node.meta["rs_scope"], node.meta["rs_scope_types"] = scope_of(node, scope), types_of(node, scope, types)
        if "rs_name" in node.meta:
            node.meta["rs_name"] = rename(node.meta["rs_name"])


def part_view(root: nn.Module, part: Part) -> TracedModel:
    """``part``'s trace in the root's terms: a GraphModule over ``root`` with global names.

    Targets and qualified names get the part's path in front and every node inside the part's
    forward (not its inputs and output) is scoped to the part itself, so the part is a region.
    The view shares every module and tensor with ``root``.

    Example:
        >>> root = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
        >>> view = part_view(root, Part("1", "Sequential", traced=trace(root[1])))
        >>> [(str(n.target), n.meta["rs_scope"]) for n in view.graph_module.graph.nodes if n.op == "call_module"]
        [('1.0', ('1', '1.0')), ('1.1', ('1', '1.1'))]
    """
    local = part.traced.graph_module
    if not part.path:
        return part.traced
    graph = copy.deepcopy(local.graph)
    cls = type(root.get_submodule(part.path))
    output = graph.find_nodes(op="output")[0]
    own = output.meta.setdefault("rs_part_type", f"{cls.__module__}.{cls.__qualname__}")  # kept by localize
    outer = ("placeholder", "output")

    def scope_of(node, scope):
        inner = tuple(with_prefix(part.path, s) for s in scope if s)
        return inner if node.op in outer else (part.path, *inner)

    def types_of(node, scope, types):
        return tuple(types) if node.op in outer else (own, *types)

    _rescope(graph, lambda name: with_prefix(part.path, name), scope_of, types_of)
    gm = fx.GraphModule(root, graph, type(local).__name__)
    leaves = {with_prefix(part.path, k): v for k, v in part.traced.leaves.items()}
    return TracedModel(gm, root, leaves, list(part.traced.warnings))


def _strip(path: str, name: str) -> str:
    return name[len(path) + 1:] if name.startswith(path + ".") else "" if name == path else name


def localize(view: fx.GraphModule, path: str, like: nn.Module) -> fx.GraphModule:
    """The module to install at ``path``: ``view`` (a part view, rewritten) in the part's own terms.

    Plain attributes of the module it replaces (``like``: ``out_channels``, ``hidden_state_size``)
    are kept, so Python code reading them still works; the leaves it records are local again.

    Example:
        >>> root = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
        >>> view = part_view(root, Part("1", "Sequential", traced=trace(root[1])))
        >>> local = localize(view.graph_module, "1", root[1])
        >>> [str(n.target) for n in local.graph.nodes if n.op == "call_module"], isinstance(local, fx.GraphModule)
        (['0', '1'], True)
        >>> install(root, "1", local)
        >>> list(root.state_dict())                      # the same keys as before
        ['0.weight', '0.bias', '1.0.weight', '1.0.bias']
    """
    if not path:
        gm = view
    else:
        graph = copy.deepcopy(view.graph)

        def scope_of(node, scope):
            return tuple(_strip(path, s) for s in scope if s != path)

        def types_of(node, scope, types):
            return tuple(t for s, t in zip(scope, types) if s != path)

        _rescope(graph, lambda name: _strip(path, name), scope_of, types_of)
        gm = fx.GraphModule(view.get_submodule(path), graph, type(view).__name__)
    _order_like(gm, like)
    for key, value in vars(like).items():
        if not key.startswith("_") and key != "training" and key not in vars(gm) and not hasattr(type(gm), key):
            setattr(gm, key, value)
    leaves = provenance_of(view).leaves
    return set_provenance(gm, Provenance(leaves={_strip(path, k) if path else k: v for k, v in leaves.items()}))


def _order_like(gm: nn.Module, like: nn.Module) -> None:
    """Order the containers a GraphModule built (children, parameters, buffers) as in ``like``, so the
    state dict lists its keys in the original order (a GraphModule would follow call order)."""
    for path, container in gm.named_modules():
        if container is not gm and type(container) is not nn.Module:
            continue  # a module the part still shares with the original: already in its order
        try:
            original = like.get_submodule(path)
        except AttributeError:
            continue
        for attr in _TENSOR_DICTS:
            mine, theirs = getattr(container, attr), list(getattr(original, attr))
            rank = {k: i for i, k in enumerate(theirs)}
            ordered = sorted(mine, key=lambda k: rank.get(k, len(rank)))
            if ordered != list(mine):
                container.__dict__[attr] = type(mine)((k, mine[k]) for k in ordered)


def install(root: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` at ``path`` inside ``root`` (the parent's own code then calls it).

    Example:
        >>> seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
        >>> install(seq, "1", nn.Identity())
        >>> type(seq[1]).__name__
        'Identity'
    """
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)
