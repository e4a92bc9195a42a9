"""Find the basic modules (blocks) of a traced model and the activation sites inside each.

Discovery, in order (the first rule that finds anything decides):

1. **User override**: module types / class-name globs, qualified-name globs or a predicate.
2. **Structure**: a module whose own ``forward`` merges paths from its input: a residual ``+``
   (both operands flow from its input, one through a weight layer) or a ``cat`` of two or more
   weighted branches (Inception); values read from a tensor's shape only (a RoPE table built from
   ``x.shape``) are no flow from it; a module of a registered block type (``Inception*``, dense
   layers); the children a container's ``forward`` concatenates when some read two or more earlier
   outputs (dense connectivity: RDNet); a module holding an untraceable leaf of a repeated class
   (the leaf sits inside its block), or the leaves themselves when a container holds two or more
   of them side by side (a stage of untraceable blocks: TinyViT). **The outermost such module
   wins**: a merge nested inside a block (an SK or GC attention, a relative-position sum, a ghost
   module's ``cat``, an ``Inception*`` token mixer) belongs to that block, unless it sits in a
   container of units inside it (CSP's ``blocks``, HRNet's ``branches``: the wrapper is a stage). Every other module of a block's class is a
   block too (MobileNetV2's non-residual inverted residuals), and so are the units of a first
   stage beside the block stages. Then each block widens to its wrapper: a module whose every
   instance holds exactly one block as a direct child (iFormer's ``ConvBlock``, VoVNet's
   ``OsaBlock`` around its ``conv_mid``), or a container running one block then plain layers
   when its sibling containers are built alike (ConvMixer). Merges written in the top-level ``forward``
   (a loop doing ``relu(bn(conv(x)) + x)``) are *virtual* blocks: the fork-join region of the
   dataflow graph between the merge and its immediate dominator (:mod:`.dataflow`), with the
   activations right after it.
3. **Repeated classes**: custom module classes used twice or more that hold a weight layer and an
   activation (plain VGG-style modules); of nested ones the inner class when an outer module holds
   two or more of it (a stage), the outer when each holds at most one (LCNet's SE inside its units).
4. **Units**: weight -> [norm] -> activation -> [dropout/pool] runs of the graph that are not
   modules of their own (the units of a ``Sequential``: VGG, MLP).

A site's location is ``last`` when the block output is reached from it through no weight layer,
norm or other activation on *every* path (only add / cat / pool / dropout / identity / reshape,
or a product with a sigmoid gate whose own branch is ignored: VoVNet's eSE; a pre-activation
shortcut from it does not make it last), ``first`` for the
first other site in execution order, ``middle`` otherwise.

Example:
    >>> import torchvision
    >>> from relu_surgery.graph.tracing import trace
    >>> blocks = discover_blocks(trace(torchvision.models.resnet18()))
    >>> len(blocks), blocks[0].name, [s.name for s in blocks[0].last_sites]
    (8, 'layer1.0', ['layer1.0.relu_1'])
"""

from __future__ import annotations

import fnmatch
import operator
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.fx as fx
import torch.nn as nn

from .activations import activation_of, submodule
from .dataflow import Dataflow
from .ops import is_cat, is_tensor_add, op_role
from .records import Block, Site
from .tracing import TracedModel

__all__ = ["BLOCK_TYPE_PATTERNS", "register_block_type", "BlockSpec", "discover_blocks"]

BLOCK_TYPE_PATTERNS: list[str] = ["Inception*", "_DenseLayer", "DenseLayer"]
# Never blocks: auxiliary classifiers (torchvision's InceptionAux exists only in training mode).
NOT_BLOCK_PATTERNS: list[str] = ["*Aux"]
_PASS_ROLES = ("transparent", "merge")


def register_block_type(pattern: str) -> None:
    """Make every module whose class name matches ``pattern`` (a glob) a block.

    The registration is process-wide; remove the pattern from :data:`BLOCK_TYPE_PATTERNS` to undo it.

    Example:
        >>> register_block_type("MyFancyUnit")
        >>> "MyFancyUnit" in BLOCK_TYPE_PATTERNS
        True
        >>> BLOCK_TYPE_PATTERNS.remove("MyFancyUnit")  # undone: nothing leaks into other code
    """
    if pattern not in BLOCK_TYPE_PATTERNS:
        BLOCK_TYPE_PATTERNS.append(pattern)


@dataclass(frozen=True)
class BlockSpec:
    """A user's override of discovery: class types or name globs, module-name globs, a predicate.

    ``predicate(name, module) -> bool`` decides per qualified module name (``module`` is None for a
    container a rewritten GraphModule no longer holds).

    Example:
        >>> spec = BlockSpec(types=("Bottleneck",), names=("layer4.*",))
        >>> bool(spec), spec.to_recipe()
        (True, {'block_types': ['Bottleneck'], 'block_names': ['layer4.*']})
    """

    types: tuple = ()
    names: tuple[str, ...] = ()
    predicate: Callable[[str, nn.Module], bool] | None = None

    def to_recipe(self) -> dict:
        """JSON form for a recipe (types by class name); a predicate cannot be recorded."""
        out = {"block_types": [t if isinstance(t, str) else t.__name__ for t in self.types],
               "block_names": list(self.names)}
        if self.predicate is not None:
            out["predicate"] = getattr(self.predicate, "__qualname__", repr(self.predicate))
        return out

    def __bool__(self) -> bool:
        return bool(self.types or self.names or self.predicate)

    def matches(self, name: str, module: nn.Module, class_name: str) -> bool:
        for t in self.types:
            if isinstance(t, type) and ((module is not None and isinstance(module, t)) or t.__name__ == class_name):
                return True
            if isinstance(t, str) and fnmatch.fnmatchcase(class_name, t):
                return True
        if any(fnmatch.fnmatchcase(name, g) for g in self.names):
            return True
        return bool(self.predicate and self.predicate(name, module))


@dataclass
class _Region:
    name: str
    type: str
    stage: str | None
    rule: str
    nodes: list[fx.Node]


class _Graph:
    """Per-graph caches: node roles, module regions (nodes by scope), flows from region inputs."""

    def __init__(self, traced: TracedModel):
        self.gm = traced.graph_module
        self.nodes = [n for n in self.gm.graph.nodes]
        self.roles = {n: op_role(n, self.gm) for n in self.nodes}
        self.regions: dict[str, list[fx.Node]] = {}
        self.types: dict[str, str] = {}
        for node in self.nodes:
            scope = node.meta.get("rs_scope", ())
            for path, cls in zip(scope, node.meta.get("rs_scope_types", ("",) * len(scope))):
                if path:
                    self.regions.setdefault(path, []).append(node)
                    self.types.setdefault(path, cls)
        self.region_sets = {p: set(nodes) for p, nodes in self.regions.items()}
        self.leaf_targets = {str(n.target) for n in self.nodes if n.op == "call_module"}
        self._flows: dict[str, tuple[set, set]] = {}
        self._ancestors: dict[str, tuple[str, ...]] = {}
        self._root_flow: tuple[set, set] | None = None
        self._dataflow: Dataflow | None = None

        self.source = traced.source
        self.opaque = set(traced.leaves)

    def module(self, path: str) -> nn.Module | None:
        """The module at ``path``; None when a rewritten GraphModule no longer holds it."""
        try:
            return submodule(self.source, path)
        except AttributeError:
            return None

    def class_name(self, path: str) -> str:
        return self.types[path].rsplit(".", 1)[-1]

    def scope_ancestors(self, path: str) -> tuple[str, ...]:
        """The modules whose ``forward`` was running around ``path``'s, outermost first."""
        if path not in self._ancestors:
            scope = next((n.meta["rs_scope"] for n in self.regions.get(path, ()) if path in n.meta.get("rs_scope", ())),
                         ())
            self._ancestors[path] = tuple(scope[:scope.index(path)]) if path in scope else ()
        return self._ancestors[path]

    def between(self, outer: str, inner: str) -> tuple[str, ...]:
        """``outer`` and the modules running between it and ``inner`` (not ``inner`` itself)."""
        anc = self.scope_ancestors(inner)
        return anc[anc.index(outer):] if outer in anc else ()

    def is_container(self, path: str) -> bool:
        """Whether ``path`` is a Sequential / ModuleList / ModuleDict (or a subclass: DenseNet's block)."""
        module = self.module(path)
        if module is not None:
            return isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict))
        return self.types.get(path, "").startswith("torch.nn.modules.container.")

    def root_flow(self) -> tuple[set, set]:
        """(reached, weighted) over the whole graph: nodes fed by the input, and those via a weight op
        (a value computed from a tensor's shape only, such as a RoPE table, is not fed by it)."""
        if self._root_flow is None:
            reached: set = set()
            weighted: set = set()
            for n in self.nodes:
                if n.op == "placeholder" or (not _reads_shape(n) and any(a in reached for a in n.all_input_nodes)):
                    reached.add(n)
                    if self.roles[n] == "weight" or any(a in weighted for a in n.all_input_nodes):
                        weighted.add(n)
            self._root_flow = (reached, weighted)
        return self._root_flow

    @property
    def dataflow(self) -> Dataflow:
        if self._dataflow is None:
            self._dataflow = Dataflow(self.gm.graph)
        return self._dataflow

    def flow(self, path: str) -> tuple[set, set]:
        """(reached, weighted): region nodes fed by the region input, and those via a weight op."""
        if path not in self._flows:
            nodes = self.regions[path]
            inside = self.region_sets[path]
            reached: set = set()
            weighted: set = set()
            for n in nodes:
                ins = n.all_input_nodes
                if not _reads_shape(n) and any((a not in inside and a.op != "get_attr") or a in reached for a in ins):
                    reached.add(n)
                    if self.roles[n] == "weight" or any(a in weighted for a in ins):
                        weighted.add(n)
            self._flows[path] = (reached, weighted)
        return self._flows[path]


_SHAPE_ATTRS = ("shape", "ndim", "dtype", "device")


def _reads_shape(node: fx.Node) -> bool:
    """Whether ``node`` reads only a tensor's metadata (``x.shape``, ``x.size()``, ``x.dim()``), not its values."""
    if node.op == "call_function" and node.target is getattr:
        return len(node.args) > 1 and node.args[1] in _SHAPE_ATTRS
    return node.op == "call_method" and node.target in ("size", "dim", "numel")


def _tensor_operands(node: fx.Node) -> list[fx.Node]:
    if is_cat(node):
        seq = node.args[0] if node.args else node.kwargs.get("tensors", ())
        if isinstance(seq, fx.Node):  # cat of one traced tensor (torchvision's _DenseLayer called on a tensor)
            return [seq]
        return [a for a in seq if isinstance(a, fx.Node)]
    return [a for a in node.args[:2] if isinstance(a, fx.Node)]


def _merge_kind(node: fx.Node, reached: set, weighted: set, inside: set) -> str | None:
    """"residual" / "multi-branch" when ``node`` merges paths from its owner's input, else None."""
    ops = _tensor_operands(node)
    if is_tensor_add(node) and all(a in reached or a not in inside for a in ops) and any(a in weighted for a in ops):
        return "residual"
    if is_cat(node) and sum(a in weighted for a in ops) >= 2:
        return "multi-branch"
    return None


def _merge_owners(g: _Graph) -> tuple[dict[str, str], list[tuple[fx.Node, str]]]:
    """Modules whose own ``forward`` merges paths from their input, and such merges outside any module."""
    owners: dict[str, str] = {}
    loose: list[tuple[fx.Node, str]] = []
    for node in g.nodes:
        if g.roles[node] != "merge":
            continue
        scope = node.meta.get("rs_scope", ())
        if scope and scope[-1] in g.leaf_targets:
            continue
        if not scope:
            kind = _merge_kind(node, *g.root_flow(), set(g.nodes))
            if kind:
                loose.append((node, kind))
            continue
        reached, weighted = g.flow(scope[-1])
        kind = _merge_kind(node, reached, weighted, g.region_sets[scope[-1]])
        if kind and (_has(g, scope[-1], "activation") or any(a not in weighted for a in _tensor_operands(node))):
            # a head averaging two classifiers (no shortcut, no activation) is none; a residual add
            # names the rule over a concat before it (MaxViT-PM's parallel attention, then its shortcut)
            if kind == "residual" or scope[-1] not in owners:
                owners[scope[-1]] = kind
    return owners, loose


def _typed(g: _Graph) -> dict[str, str]:
    """Modules of a registered block type (Inception*, dense layers): blocks whatever they nest."""
    return {p: f"type {g.class_name(p)}" for p in g.regions
            if p not in g.leaf_targets and any(fnmatch.fnmatchcase(g.class_name(p), x) for x in BLOCK_TYPE_PATTERNS)}


def _opaque_homes(g: _Graph) -> dict[str, str]:
    """Untraceable leaves of a repeated class: the module holding each (with its own weight layers
    and activations outside the leaf) is the block; a leaf held by no such module is one itself,
    and so is every leaf of a class that a container holds two or more of side by side (a stage of
    untraceable blocks: TinyViT's attention blocks, not the stage around them)."""
    counts = Counter(g.types[p] for p in g.opaque if p in g.types)
    side_by_side = Counter((_parent(p), g.types[p]) for p in g.opaque if p in g.types)
    staged = {cls for (parent, cls), n in side_by_side.items() if n >= 2 and parent and g.is_container(parent)}
    out: dict[str, str] = {}
    for leaf in sorted(g.opaque):
        if counts.get(g.types.get(leaf), 0) < 2:
            continue
        if g.types.get(leaf) in staged:
            out[leaf] = "opaque leaf"
            continue
        home = next((a for a in reversed(g.scope_ancestors(leaf)) if not g.is_container(a)
                     and _has(g, a, "weight", outside=leaf) and _has(g, a, "activation", outside=leaf)), None)
        out.setdefault(home or leaf, f"holds opaque leaf {leaf}" if home else "opaque leaf")
    return out


def _dense_units(g: _Graph, owners: dict[str, str]) -> dict[str, str]:
    """Children of a container whose own ``forward`` concatenates their outputs and feeds each
    one the earlier ones (dense connectivity, RDNet's ``DenseStage``): two or more children of one
    class, each with a weight layer and an activation, some reading two or more earlier outputs,
    are the units (blocks) of that stage. A chain whose outputs are concatenated once (VoVNet's
    one-shot aggregation) is not: each of its layers reads only the one before."""
    out: dict[str, str] = {}
    for owner in owners:
        if not g.is_container(owner):
            continue
        fed: dict[str, set[str]] = {}
        for node in g.regions[owner]:
            if not is_cat(node) or node.meta.get("rs_scope", ())[-1:] != (owner,):
                continue
            for a in _tensor_operands(node):
                scope = a.meta.get("rs_scope", ())
                if owner in scope[:-1]:
                    child = scope[scope.index(owner) + 1]
                    fed.setdefault(g.types.get(child, ""), set()).add(child)
        for children in fed.values():
            units = [c for c in children if _has(g, c, "weight") and _has(g, c, "activation")]
            if len(units) >= 2 and any(len(_external_inputs(g, c)) >= 2 for c in units):
                out.update({c: f"dense unit of {owner}" for c in units})
    return out


def _external_inputs(g: _Graph, path: str) -> set[fx.Node]:
    """The tensors from outside module ``path`` that its nodes read (parameters aside)."""
    inside = g.region_sets[path]
    return {a for n in g.regions[path] for a in n.all_input_nodes if a not in inside and a.op != "get_attr"}


def _choose(g: _Graph, cands: dict[str, str]) -> list[str]:
    """The outermost candidates: a merge nested in a block belongs to that block (an SK or GC
    attention, a ghost module's ``cat``), unless it sits in a container of units inside it (a
    stage held by a wrapper: CSP's ``blocks``, HRNet's ``branches``);
    then the units are the blocks and the wrapper is not."""
    parent = {p: next((a for a in reversed(g.scope_ancestors(p)) if a in cands), None) for p in cands}
    children: dict[str | None, list[str]] = {}
    for p in cands:
        children.setdefault(parent[p], []).append(p)

    def resolve(q: str) -> list[str]:
        kids = children.get(q, [])
        inner = [c for c in kids if any(g.is_container(m) for m in g.between(q, c))]
        if not inner:
            return [q]
        return [b for c in inner for b in resolve(c)]

    return [b for root in children.get(None, []) for b in resolve(root)]


def _structural_candidates(g: _Graph) -> tuple[dict[str, str], list[tuple[fx.Node, str]]]:
    owners, loose = _merge_owners(g)
    typed = _typed(g)
    cands = {**_opaque_homes(g), **owners, **typed, **_dense_units(g, owners)}
    for path in [p for p in cands if any(fnmatch.fnmatchcase(g.class_name(p), x) for x in NOT_BLOCK_PATTERNS)]:
        del cands[path]
    chosen = {p: cands[p] for p in _choose(g, cands)}
    if chosen:
        _complete(g, chosen)
        chosen = _widen(g, chosen)
    return chosen, loose


def _complete(g: _Graph, chosen: dict[str, str]) -> None:
    """Add the blocks the first rules imply: modules of a block's class and a first stage's units."""
    _same_type(g, chosen)
    _stage_siblings(g, chosen)
    _same_type(g, chosen)


def _widen(g: _Graph, chosen: dict[str, str]) -> dict[str, str]:
    """Each block as its outermost wrapper. A module holding one block as a direct child, when
    every module of its class (two or more) does so: iFormer's ``ConvBlock`` whose ``forward`` only
    calls its ``Residual``, VoVNet's ``OsaBlock`` around the ``cat`` of its ``conv_mid`` (then its
    concat conv and attention); not a stage that happens to hold one block. Or a container running
    one block and then plain layers, when every sibling container holding a block is built the
    same way (ConvMixer's ``Sequential(Residual(depthwise), pointwise conv, act, norm)``)."""
    out: dict[str, str] = {}
    held: dict[str, list[str]] = {}
    for p in chosen:
        for a in g.scope_ancestors(p):
            held.setdefault(a, []).append(p)

    def wraps(a: str, q: str) -> bool:
        return _parent(q) == a and not g.is_container(a) and held.get(a) == [q]

    wrappers: dict[str, list[bool]] = {}  # class -> per module of it: wraps exactly one block
    for a in g.regions:
        if a not in g.leaf_targets and not g.is_container(a):
            wrappers.setdefault(g.types[a], []).append(len(held.get(a, ())) == 1 and wraps(a, held[a][0]))
    uniform = {cls for cls, each in wrappers.items() if len(each) >= 2 and all(each)}
    for p, rule in chosen.items():
        q = p
        for a in reversed(g.scope_ancestors(p)):
            if a in g.leaf_targets or len(held.get(a, ())) != 1:
                break
            if wraps(a, q) and g.types[a] in uniform:
                q = a
            elif g.is_container(a) and _block_then_layers(g, a, q) and _uniform_siblings(g, a, held):
                q = a
            else:
                break
        out[q] = rule if q == p else f"{rule} (wrapped in {g.class_name(q)})"
    return out


def _block_then_layers(g: _Graph, container: str, block: str) -> bool:
    """Whether ``container`` runs ``block`` first and then plain layers (leaf children, a weight layer among them)."""
    mine = g.region_sets[block]
    rest = [n for n in g.regions[container] if n not in mine]
    if not any(g.roles[n] == "weight" for n in rest):
        return False
    scopes = [n.meta.get("rs_scope", ()) for n in rest]
    if not all(sc and sc[-1] in g.leaf_targets and _parent(sc[-1]) == container for sc in scopes):
        return False
    order = {n: i for i, n in enumerate(g.nodes)}
    end = max(order[n] for n in mine)
    return all(order[n] > end for n in rest)


def _uniform_siblings(g: _Graph, container: str, held: dict[str, list[str]]) -> bool:
    """Whether the container children of ``container``'s parent that hold blocks hold one each (two or more such)."""
    parent = _parent(container)
    peers = [p for p in held if p != parent and _parent(p) == parent and g.is_container(p)]
    return len(peers) >= 2 and all(len(held[p]) == 1 for p in peers)


def _same_type(g: _Graph, chosen: dict[str, str]) -> None:
    """Every module of a block's class is a block (MobileNetV2's non-residual inverted residuals),
    unless it holds or sits inside a block."""
    first = {g.types[p]: p for p in sorted(chosen, key=len, reverse=True) if not g.is_container(p)}
    for path in g.regions:
        ref = first.get(g.types[path])
        if ref is None or path in chosen or path in g.leaf_targets or any(path.startswith(c + ".") for c in chosen):
            continue
        for inner in [c for c in chosen if c.startswith(path + ".")]:  # a VoVNet OSA block, not its inner merge
            del chosen[inner]
        chosen[path] = f"same type as {ref}"


def _nested(path: str, chosen: dict[str, str]) -> bool:
    return any(c.startswith(path + ".") or path.startswith(c + ".") for c in chosen)


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


def _stage_siblings(g: _Graph, cands: dict[str, str]) -> None:
    """Children of a container beside stages of blocks are blocks too (EfficientNet's first stage).

    Only classes from the same Python module as the blocks count, so a stem of generic layers stays out.
    """
    inner = list(cands)
    stages = {_parent(p) for p in inner}
    families = {g.types[p].rsplit(".", 1)[0] for p in inner}
    children: dict[str, list[str]] = {}
    for path in g.regions:
        children.setdefault(_parent(path), []).append(path)
    for stage in stages:
        for sibling in children.get(_parent(stage), []):
            if sibling in stages or not g.types[sibling].startswith("torch.nn.modules.container."):
                continue
            for child in children.get(sibling, []):
                if (child not in cands and not _nested(child, cands) and g.types[child].rsplit(".", 1)[0] in families
                        and _has(g, child, "weight") and _has(g, child, "activation")):
                    cands[child] = f"beside stage {stage}"


def _ancestors(path: str) -> list[str]:
    """The dotted prefixes of a module path: "a.b.c" -> ["a", "a.b"]."""
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _innermost(cands: Iterable[str]) -> list[str]:
    """The candidates that contain no other candidate (in the given order)."""
    cands = list(cands)
    enclosing = {a for c in cands for a in _ancestors(c)}
    return [c for c in cands if c not in enclosing]


def _outermost(cands: Iterable[str]) -> list[str]:
    """The candidates inside no other candidate (in the given order)."""
    cands = list(cands)
    present = set(cands)
    return [c for c in cands if not any(a in present for a in _ancestors(c))]


def _has(g: _Graph, path: str, role: str, outside: str | None = None) -> bool:
    """Whether ``path`` runs a node of ``role`` (not counting those inside the module ``outside``)."""
    return any(g.roles[n] == role and not (outside and outside in n.meta.get("rs_scope", ()))
               for n in g.regions[path])


def _repeated_classes(g: _Graph) -> list[str]:
    """Custom classes used twice or more with a weight layer and an activation. Of two nested
    classes the inner one wins when some outer module holds two or more of it (a stage of blocks),
    the outer one when each holds at most one (a block with a squeeze-excitation part)."""
    by_class: dict[str, list[str]] = {}
    for path in g.regions:
        if g.types[path].startswith("torch.nn.") or path in g.leaf_targets:
            continue
        if _has(g, path, "weight") and _has(g, path, "activation"):
            by_class.setdefault(g.types[path], []).append(path)
    paths = [p for ps in by_class.values() if len(ps) >= 2 for p in ps]
    held: dict[tuple[str, str], Counter] = {}
    for p in paths:
        for a in _ancestors(p):
            if a in g.types and g.types[a] in by_class and len(by_class[g.types[a]]) >= 2:
                held.setdefault((g.types[a], g.types[p]), Counter())[a] += 1
    parts = {inner for (outer, inner), counts in held.items() if max(counts.values()) == 1}
    stages = {outer for (outer, inner), counts in held.items() if max(counts.values()) >= 2}
    keep = [p for p in paths if g.types[p] not in parts or g.types[p] in stages]
    return _innermost(keep)


def _stage_of(path: str) -> str | None:
    return path.rsplit(".", 1)[0] if "." in path else None


def _module_regions(g: _Graph, paths: list[str], rules: dict[str, str]) -> list[_Region]:
    regions = [
        _Region(p, g.class_name(p), _stage_of(p), rules.get(p, ""), g.regions[p]) for p in paths
    ]
    order = {n: i for i, n in enumerate(g.nodes)}
    return sorted(regions, key=lambda r: order[r.nodes[0]])


def _unit_regions(g: _Graph) -> list[_Region]:
    """Runs weight -> ... up to the next weight op, keeping those with an activation."""
    units: list[list[fx.Node]] = []
    for node in g.nodes:
        role = g.roles[node]
        if role in ("input", "output") or node.op == "get_attr":
            continue
        if role == "weight":
            units.append([node])
        elif units:
            units[-1].append(node)
    out = []
    for nodes in units:
        if not any(g.roles[n] == "activation" for n in nodes):
            continue
        head = nodes[0]
        name = head.meta["rs_name"]
        parts = [
            type(submodule(g.gm, str(n.target))).__name__ if n.op == "call_module" else n.meta["rs_name"].rsplit(".", 1)[-1]
            for n in nodes if g.roles[n] in ("weight", "norm", "activation")
        ]
        scope = head.meta.get("rs_scope", ())
        stage = _stage_of(str(head.target)) if head.op == "call_module" else (scope[-1] if scope else None)
        out.append(_Region(name, "unit(" + ", ".join(parts) + ")", stage, "unit", nodes))
    return out


def _virtual_regions(g: _Graph, loose: list[tuple[fx.Node, str]], blocks: dict[str, str]) -> list[_Region]:
    """Merges written in the top-level ``forward`` (a loop over a ModuleList doing
    ``relu(bn(conv(x)) + x)``): each merge's fork-join region, with the activations and
    reshapes right after it, is a block with no module of its own. A region around module
    blocks (a U-Net's skip ``cat``) is not one; of nested ones the outermost is."""
    taken = {n for p in blocks for n in g.region_sets[p]}
    spans = [(node, kind, g.dataflow.merge_region(node)) for node, kind in loose]
    out = []
    for node, kind, nodes in sorted(spans, key=lambda s: -len(s[2])):
        if not nodes or any(n in taken for n in nodes) or not any(g.roles[n] == "weight" for n in nodes):
            continue
        fork = g.dataflow.fork(node)
        if kind == "residual" and fork not in _tensor_operands(node):  # two weighted branches: no shortcut
            continue
        tail = node
        while len(tail.users) == 1:
            user = next(iter(tail.users))
            if g.roles[user] not in ("activation", "transparent") or user in taken or (
                    user.op != "call_module" and user.meta.get("rs_scope")):
                break
            nodes.append(user)
            tail = user
        if not any(g.roles[n] == "activation" for n in nodes):
            continue
        taken.update(nodes)
        parts = [type(submodule(g.gm, str(n.target))).__name__ if n.op == "call_module" else n.meta["rs_name"]
                 for n in nodes if g.roles[n] in ("weight", "norm", "activation", "merge")]
        label = "residual" if kind == "residual" else "branches"
        out.append(_Region(node.meta["rs_name"], f"{label}({', '.join(parts)})", None, f"virtual {kind}", nodes))
    return out


_GATE_KINDS = ("sigmoid", "hardsigmoid")


def _gate_product(g: _Graph, node: fx.Node) -> fx.Node | None:
    """The gate operand when ``node`` is ``x * gate`` with ``gate`` a sigmoid's output (in [0, 1]), else None."""
    if not ((node.op == "call_function" and node.target in (operator.mul, torch.mul))
            or (node.op == "call_method" and node.target in ("mul", "mul_"))):
        return None
    ops = [a for a in node.args[:2] if isinstance(a, fx.Node)]
    if len(ops) != 2:
        return None
    gates = [a for a in ops if _is_gate(g, a)]
    return gates[-1] if len(gates) == 1 else None


_SHAPE_METHODS = ("view", "reshape", "expand", "expand_as", "unsqueeze", "squeeze", "flatten", "permute",
                  "transpose", "contiguous")


def _shape_reference(node: fx.Node, arg: fx.Node) -> bool:
    """Whether ``node`` uses ``arg`` only for its shape (``x.shape``, ``x.size()``, ``y.expand_as(x)``)."""
    if _reads_shape(node):
        return True
    return (node.op == "call_method" and node.target in ("expand_as", "view_as", "reshape_as", "type_as")
            and len(node.args) > 1 and node.args[0] is not arg)


def _is_gate(g: _Graph, node: fx.Node) -> bool:
    """Whether ``node`` is a sigmoid's output, possibly reshaped / broadcast (ECA's ``y.view(...).expand_as(x)``)."""
    while True:
        if g.roles[node] == "activation":
            return activation_of(node, g.gm).kind in _GATE_KINDS
        if node.op == "call_method" and node.target in _SHAPE_METHODS and isinstance(node.args[0], fx.Node):
            node = node.args[0]
        else:
            return False


def _form(g: _Graph, region: _Region, sites: tuple[Site, ...]) -> str:
    """after-activation / pre-activation / linear-output / no-activation (see Block.form)."""
    if region.name in g.opaque:
        return "opaque"
    if not sites:
        return "no-activation"
    if any(s.location == "last" for s in sites):
        return "after-activation"
    inside = set(region.nodes)
    stack = [n for n in region.nodes if any(a not in inside and a.op != "get_attr" for a in n.all_input_nodes)]
    seen = set(stack)
    while stack:
        n = stack.pop()
        role = g.roles[n]
        if role == "activation":
            return "pre-activation"
        if role == "weight":
            continue
        for u in n.users:
            if u in inside and u not in seen:
                seen.add(u)
                stack.append(u)
    return "linear-output"


def _sites(g: _Graph, region: _Region) -> tuple[Site, ...]:
    inside = set(region.nodes)
    outputs = {n for n in region.nodes if any(u not in inside for u in n.users)}
    acts = [n for n in region.nodes if g.roles[n] == "activation"]

    def gate_branch(head: fx.Node, data: set) -> bool:
        """Whether every path from ``head`` ends as the gate operand of a gating product (SE)."""
        stack, seen = [head], {head}
        while stack:
            n = stack.pop()
            if n in outputs:
                return False
            for u in n.users:
                if u not in inside:
                    return False
                if u in seen or _shape_reference(u, n):
                    continue
                if _gate_product(g, u) is n and u in data:
                    continue
                if u in data:
                    return False
                seen.add(u)
                stack.append(u)
        return True

    def reaches_output(start: fx.Node) -> bool:
        """Whether the block output follows from ``start`` through no weight, norm or activation on
        any path (a pre-activation shortcut of ``start`` alone does not make it last). A product
        with a sigmoid gate passes ``start`` on, and the gate's own branch (squeeze-excitation:
        pool, convs, sigmoid) is not a path to the output."""
        data, stack, leaves, side = {start}, [start], False, []
        while stack:
            n = stack.pop()
            leaves = leaves or n in outputs
            for u in n.users:
                if u not in inside or u in data or _shape_reference(u, n):
                    continue
                gate = _gate_product(g, u)
                if g.roles[u] in _PASS_ROLES or (gate is not None and gate is not n):
                    data.add(u)
                    stack.append(u)
                elif g.roles[u] in ("weight", "norm", "activation"):
                    side.append(u)
        return leaves and all(gate_branch(u, data) for u in side)

    sites, first_taken = [], False
    for i, node in enumerate(acts, start=1):
        ref = activation_of(node, g.gm)
        if reaches_output(node):
            location = "last"
        elif not first_taken:
            location, first_taken = "first", True
        else:
            location = "middle"
        name = node.meta["rs_name"] + (".act" if ref.composite else "")
        meta = node.meta.get("tensor_meta")
        channels = int(meta.shape[1]) if meta is not None and len(getattr(meta, "shape", ())) > 1 else None
        sites.append(Site(name, ref.kind, ref.spelling, location, i, node.name, ref.composite, channels))
    return tuple(sites)


def discover_blocks(traced: TracedModel, spec: BlockSpec | None = None) -> list[Block]:
    """The blocks of a traced model, in execution order, each with its activation sites.

    ``spec`` overrides discovery (see :class:`BlockSpec`). Returns an empty list when nothing
    looks like a block.

    Example:
        >>> from relu_surgery.graph.tracing import trace
        >>> mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> [(b.name, b.type) for b in discover_blocks(trace(mlp))]
        [('0', 'unit(Linear, ReLU)'), ('2', 'unit(Linear, ReLU)')]
    """
    g = _Graph(traced)
    if spec:
        paths = _outermost(p for p in g.regions if spec.matches(p, g.module(p), g.class_name(p)))
        regions = _module_regions(g, paths, {p: "user" for p in paths})
    else:
        cands, loose = _structural_candidates(g)
        regions = _module_regions(g, list(cands), cands) + _virtual_regions(g, loose, cands)
        if regions:
            order = {n: i for i, n in enumerate(g.nodes)}
            regions.sort(key=lambda r: order[r.nodes[0]])
        else:
            repeated = {p: "repeated class" for p in _repeated_classes(g)}
            if repeated:
                _complete(g, repeated)
                regions = _module_regions(g, list(repeated), repeated)
            else:
                regions = _unit_regions(g)
    blocks = []
    for i, r in enumerate(regions, start=1):
        sites = _sites(g, r)
        blocks.append(Block(i, r.name, r.type, r.stage, sites, r.rule, _form(g, r, sites)))
    return blocks
