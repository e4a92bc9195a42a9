"""Analysis of a model traced in parts: the blocks of every traced part, ranked and ordered as one model.

When the root of a model cannot be traced (:mod:`relu_surgery.graph.parts`), each traced part is
searched for blocks on its own, and then the parts are put together the way one trace would be:

* **rule precedence across parts**: discovery takes the first rule that finds anything (user
  override, then structure, then repeated classes, then weight->act units); across parts, only the
  blocks of the best rule any part found count (the ReLUs of Faster R-CNN's two-layer box head are
  units, so they do not count beside the bottlenecks of its ResNet backbone);
* **innermost wins**: a block holding another part's block is not a block;
* **execution order**: parts in the order of their first call (forward hooks on the example input,
  :mod:`relu_surgery.graph.calls`), blocks in graph order inside a part, a part nested in another's
  leaf at the place of that call; block indices run over all parts.

Example:
    >>> import torch, torch.nn as nn
    >>> class Unit(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv, self.relu = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
    ...     def forward(self, x):
    ...         return self.relu(x + self.conv(x))
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.late, self.early = Unit(), Unit()
    ...     def forward(self, x):
    ...         x = self.early(x)
    ...         return self.late(x) if x.sum() > 0 else x
    >>> pa = analyze_parts(Net(), torch.randn(1, 4, 8, 8))
    >>> [(b.index, b.name, b.rule) for b in pa.blocks]
    [(1, 'early', 'residual'), (2, 'late', 'residual')]
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch.fx as fx
import torch.nn as nn

from .blocks import BlockSpec, discover_blocks
from .calls import Calls, materialize, record_calls
from .copying import private_copy
from .example_inputs import conform_input, describe_input, example_input_for
from .intake import match_input
from .parts import Part, find_parts, part_view, walk
from .records import Block
from .tracing import TracedModel

__all__ = ["PartAnalysis", "PartialAnalysis", "analyze_parts", "rule_rank"]


def rule_rank(rule: str) -> int:
    """Precedence of a discovery rule: 0 user, 1 structure, 2 repeated classes, 3 units.

    Example:
        >>> rule_rank("residual"), rule_rank("unit"), rule_rank("same type as layer1.0")
        (1, 3, 1)
    """
    return {"user": 0, "repeated class": 2, "unit": 3}.get(rule, 1)


@dataclass
class PartAnalysis:
    """One traced part: its view (global names), its blocks (global indices) and the input it got.

    Example:
        >>> import torch
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU())
        ...     def forward(self, x):
        ...         return self.body(x) if x.sum() > 0 else -self.body(x)
        >>> part = analyze_parts(Net(), torch.zeros(2, 4)).parts[0]
        >>> part.path, [(b.index, b.name) for b in part.blocks], part.example_input.shape
        ('body', [(1, 'body.0'), (2, 'body.2')], torch.Size([2, 4]))
    """

    part: Part
    traced: TracedModel
    blocks: list[Block]
    example_input: object = None

    @property
    def path(self) -> str:
        return self.part.path


@dataclass
class PartialAnalysis:
    """A private copy of a model traced in parts, with all its blocks in execution order.

    Example:
        >>> import torch
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU())
        ...     def forward(self, x):
        ...         return self.body(x) if x.sum() > 0 else -self.body(x)
        >>> pa = analyze_parts(Net(), torch.zeros(2, 4))
        >>> [p.path or "(root)" for p in pa.python_parts], [b.name for b in pa.blocks]
        (['(root)'], ['body.0', 'body.2'])
        >>> pa.summary()["parts"][1], pa.summary()["input"]
        ({'path': 'body', 'type': 'Sequential', 'traced': True, 'blocks': 2}, 'tensor (2, 4)')
    """

    source: nn.Module
    tree: Part
    parts: list[PartAnalysis]
    blocks: list[Block]
    example_input: object
    label: str
    order: str
    calls: Calls = field(repr=False, default_factory=Calls)

    @property
    def python_parts(self) -> list[Part]:
        """The modules that stayed Python, with their reasons."""
        return [p for p in walk(self.tree) if not p.is_traced]

    def summary(self) -> dict:
        """What a report shows: the parts (traced with block counts, Python with reasons), the order, the input."""
        counts = {p.path: len(p.blocks) for p in self.parts}
        rows = [{**p.to_dict(), **({"blocks": counts[p.path]} if p.is_traced else {})} for p in walk(self.tree)]
        return {"parts": rows, "order": self.order, "input": describe_input(self.example_input)}


def _positions(gm: fx.GraphModule, names: set[str]) -> dict[str, int]:
    """First graph position of each name: a node's qualified name or a module in its scope."""
    out: dict[str, int] = {}
    for i, node in enumerate(gm.graph.nodes):
        for name in (*node.meta.get("rs_scope", ()), node.meta.get("rs_name"), str(node.target)):
            if name in names and name not in out:
                out[name] = i
    return out


def _sibling_key(calls: Calls, modules: list[str]):
    order = {path: i for i, path in enumerate(modules)}

    def key(part: Part):
        rank = calls.rank_of(part.path)
        return (0, rank, 0) if rank is not None else (1, 0, order.get(part.path, 0))
    return key


def _emit(part: Part, views: dict[str, PartAnalysis], key, out: list[Block]) -> None:
    """Blocks below ``part`` in execution order (nested parts at the place of their call)."""
    if not part.is_traced:
        for child in sorted(part.children, key=key):
            _emit(child, views, key, out)
        return
    view = views[part.path]
    spots = _positions(view.traced.graph_module, {b.name for b in view.blocks} | {c.path for c in part.children})
    items = [(spots.get(b.name, 0), 0, b) for b in view.blocks] + [(spots.get(c.path, 0), 1, c) for c in part.children]
    for _, is_part, item in sorted(items, key=lambda t: (t[0], t[1])):
        if is_part:
            _emit(item, views, key, out)
        else:
            out.append(item)


def _keep(blocks_by_part: dict[str, list[Block]]) -> dict[str, list[Block]]:
    """Rule precedence across parts, then innermost wins across parts."""
    every = [b for bs in blocks_by_part.values() for b in bs]
    if not every:
        return blocks_by_part
    best = min(rule_rank(b.rule) for b in every)
    names = {b.name for b in every if rule_rank(b.rule) == best}
    inner = {n for n in names if any(m.startswith(n + ".") for m in names)}
    return {p: [b for b in bs if b.name in names and b.name not in inner] for p, bs in blocks_by_part.items()}


def _order_note(calls: Calls, parts: list[PartAnalysis]) -> str:
    with_blocks = [p for p in parts if p.blocks]
    unreached = [p.path for p in with_blocks if calls.rank_of(p.path) is None]
    how = f"forward hooks on the example input ({calls.device} device)"
    if len(with_blocks) <= 1:
        how = "one part holds blocks: graph order inside it"
    elif unreached:
        how += f"; the forward stopped ({calls.stopped}), so {', '.join(unreached)} follow in module order"
    return f"execution order: {how}"


def _inputs(source: nn.Module, calls: Calls, path: str):
    """What the part got on its first call, with values: one tensor, or the tuple of its arguments."""
    captured = calls.inputs.get(path)
    if captured is None:
        return None
    args = materialize(tuple(captured[0]), source)
    return args[0] if len(args) == 1 and not captured[1] else args


def analyze_parts(model: nn.Module, example_input=None, spec: BlockSpec | None = None, *,
                  calls: Calls | None = None, copy: bool = True, label: str | None = None) -> PartialAnalysis | None:
    """Trace ``model`` in parts and find its blocks across them (see the module docstring).

    Returns None when there is nothing to add to a plain trace: the root traces and no submodule
    failed inside it. ``model`` is copied first (``copy=False`` analyses it in place: a private
    copy already). ``example_input`` defaults to :func:`example_input_for`; a tensor given for a
    model that takes a list of images or several tensors is made into that
    (:func:`conform_input`). ``calls`` reuses the call order of an earlier analysis of the same
    model; ``label`` is the name a report shows (default: the class name).

    Example:
        >>> analyze_parts(nn.Sequential(nn.Linear(2, 2), nn.ReLU())) is None   # traces whole: nothing to add
        True
    """
    source = private_copy(model) if copy else model
    source.train(model.training)
    tree = find_parts(source)
    if tree.is_traced and not tree.children:
        return None
    traced = [p for p in walk(tree) if p.is_traced]
    views = {p.path: part_view(source, p) for p in traced}
    found = _keep({path: discover_blocks(view, spec) for path, view in views.items()})
    x = example_input_for(source) if example_input is None else conform_input(source, match_input(example_input, source))
    if calls is None:
        holding = [p for p, bs in found.items() if bs]
        calls = record_calls(source, x, capture=list(views), need=holding)
    parts = {p.path: PartAnalysis(p, views[p.path], found[p.path], _inputs(source, calls, p.path)) for p in traced}
    ordered: list[Block] = []
    _emit(tree, parts, _sibling_key(calls, [n for n, _ in source.named_modules()]), ordered)
    index = {b.name: i for i, b in enumerate(ordered, start=1)}
    for part in parts.values():
        part.blocks = sorted((replace(b, index=index[b.name]) for b in part.blocks), key=lambda b: b.index)
    blocks = [replace(b, index=index[b.name]) for b in ordered]
    emitted = sorted(parts.values(), key=lambda p: min((b.index for b in p.blocks), default=len(blocks) + 1))
    return PartialAnalysis(source, tree, emitted, blocks, x, label or type(model).__name__,
                           _order_note(calls, emitted), calls)
