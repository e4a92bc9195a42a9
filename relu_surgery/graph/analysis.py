"""Pure analysis of a model: copy, trace, find blocks and sites. Nothing here changes a model.

Example:
    >>> import torchvision
    >>> blocks = find_blocks(torchvision.models.resnet18())
    >>> [(b.index, b.name, b.type) for b in blocks[:2]]
    [(1, 'layer1.0', 'BasicBlock'), (2, 'layer1.1', 'BasicBlock')]
    >>> [(s.name, s.location) for s in blocks[0].sites]
    [('layer1.0.relu', 'first'), ('layer1.0.relu_1', 'last')]
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn as nn

from .activations import activation_of
from .blocks import BlockSpec, discover_blocks
from .copying import private_copy
from ..errors import NoBlocksError, TraceError
from .example_inputs import example_input_for
from .intake import match_input, unwrap_model
from .provenance import provenance_of
from .part_analysis import analyze_parts
from .records import Block
from .tracing import TracedModel, annotate_shapes, trace

__all__ = ["Analysis", "analyze", "find_blocks", "count_sites", "model_label"]


def model_label(model: nn.Module) -> str:
    """The name a report shows: the source name a model was created from, else its class.

    Example:
        >>> model_label(nn.Linear(2, 2))
        'Linear'
    """
    return provenance_of(model).label(model)


def count_sites(gm: torch.fx.GraphModule) -> dict[str, int]:
    """Activation sites per kind over a whole traced model.

    Example:
        >>> count_sites(torch.fx.symbolic_trace(nn.Sequential(nn.ReLU(), nn.ReLU(), nn.GELU())))
        {'relu': 2, 'gelu': 1}
    """
    kinds = Counter()
    for node in gm.graph.nodes:
        ref = activation_of(node, gm)
        if ref is not None:
            kinds[ref.kind] += 1
    return dict(kinds)


@dataclass
class Analysis:
    """A private copy of a model, its trace, its blocks and an example input for checks.

    Example:
        >>> a = analyze(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))
        >>> [b.name for b in a.blocks], tuple(a.example_input.shape), a.label
        (['0'], (1, 4), 'Sequential')
    """

    source: nn.Module
    traced: TracedModel
    blocks: list[Block]
    example_input: torch.Tensor
    label: str

    @property
    def graph_module(self) -> torch.fx.GraphModule:
        return self.traced.graph_module


def analyze(model: nn.Module, example_input=None, spec: BlockSpec | None = None,
            require_blocks: bool = True) -> Analysis:
    """Copy ``model``, trace the copy and find its blocks (the caller's model is not touched).

    Raises :class:`NoBlocksError` with a hint when ``require_blocks`` and nothing is found.

    Example:
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        >>> a = analyze(model)
        >>> a.source is not model, [s.name for s in a.blocks[0].sites]
        (True, ['1'])
    """
    source = private_copy(model)
    source.train(model.training)
    traced = trace(source)
    blocks = discover_blocks(traced, spec)
    if require_blocks and not blocks:
        inside = f" outside its untraceable leaves ({', '.join(traced.leaves)})" if traced.leaves else ""
        raise NoBlocksError(
            f"no blocks found in {type(model).__name__}{inside}: name them with block_types=/--block-type "
            "(a class name) or block_names=/--block-name (a module-name glob)"
        )
    example_input = example_input_for(source) if example_input is None else match_input(example_input, source)
    return Analysis(source, traced, blocks, example_input, model_label(model))


def find_blocks(model: nn.Module, example_input=None, *, block_types=(), block_names=(),
                predicate=None) -> list[Block]:
    """The blocks (basic modules) of ``model`` in execution order, each with its activation sites.

    ``block_types`` (classes or class-name globs), ``block_names`` (module-name globs) or
    ``predicate(name, module)`` replace the default discovery. Returns ``[]`` when none is found.
    With ``example_input``, each site also records its channel count (``site.channels``). A model
    whose root cannot be traced is traced in parts (:mod:`relu_surgery.graph.part_analysis`): its
    blocks come from all of them, in execution order on ``example_input``.

    Example:
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)
        ...     def forward(self, x):
        ...         return self.b(torch.relu(self.a(x)))
        >>> [(b.name, [s.spelling for s in b.sites]) for b in find_blocks(Net())]
        [('a', ['torch.relu'])]
    """
    spec = BlockSpec(tuple(block_types), tuple(block_names), predicate)
    model = unwrap_model(model)[0]
    try:
        traced = trace(private_copy(model))
    except TraceError:  # the root cannot be traced: the blocks of the parts that can
        return analyze_parts(model, example_input, spec).blocks
    if example_input is not None:
        annotate_shapes(traced, example_input)
    blocks = discover_blocks(traced, spec)
    if not blocks and traced.leaves:  # every block may sit inside an untraceable leaf
        parted = analyze_parts(model, example_input, spec)
        blocks = parted.blocks if parted is not None else blocks
    return blocks
