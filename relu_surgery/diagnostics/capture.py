"""Run a traced model node by node and keep the values of chosen nodes; find each block's region.

The diagnostics measure tensors *inside* a network (a block's input and output, the activation
fed to the classifier). Hooks do not fire for the blocks of a rewritten ``GraphModule`` (its graph
calls the leaf layers directly), so values are taken from the graph itself with
:class:`torch.fx.Interpreter`, the same way for the original and the rewritten model.

Example:
    >>> import torch, torch.nn as nn
    >>> from relu_surgery.graph.tracing import trace
    >>> gm = trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU())).graph_module
    >>> relu = list(gm.graph.nodes)[2]
    >>> capture(gm, torch.ones(1, 2), [relu])[relu].shape
    torch.Size([1, 2])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.fx as fx
import torch.nn as nn

from .._compat import BatchNormBase
from ..graph.blocks import BlockSpec, discover_blocks
from ..graph.copying import private_copy
from ..graph.ops import is_tensor_add, op_role
from ..graph.records import Block
from ..graph.tracing import TracedModel, trace

__all__ = ["BlockRegion", "prepare", "block_regions", "capture", "set_norm_mode"]


@dataclass(frozen=True)
class BlockRegion:
    """The graph nodes of one block, its input and output node and, for residual blocks, the shortcut.

    ``shortcut`` is the operand of the block's residual add that passes through fewer weight
    layers (the identity, or the projection of a downsampling block); ``None`` when the block has no
    residual add or both operands are equally weighted.

    Example:
        >>> import relu_surgery as rs
        >>> model = rs.create_model("cifar_resnet20")
        >>> traced, blocks = prepare(model)
        >>> region = block_regions(traced.graph_module, blocks)[3]  # layer2.0: its shortcut zero-pads
        >>> region.input.name, region.output.name, region.shortcut.name
        ('layer1_2_relu2', 'layer2_0_relu2', 'pad')
    """

    block: Block
    nodes: tuple[fx.Node, ...]
    input: fx.Node | None
    output: fx.Node | None
    shortcut: fx.Node | None


def set_norm_mode(gm: nn.Module, norm_stats: str) -> None:
    """Eval mode everywhere; with ``norm_stats="batch"`` BatchNorm layers normalise with batch statistics.

    Only call this on a private copy: in batch mode the running statistics of the copy change.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
        >>> set_norm_mode(net, "batch")
        >>> net[0].training, net[1].training
        (False, True)
    """
    if norm_stats not in ("running", "batch"):
        from .inputs import ProbeError  # noqa: PLC0415

        raise ProbeError(f"norm_stats must be 'running' or 'batch', got {norm_stats!r}")
    gm.eval()
    if norm_stats == "batch":
        for m in gm.modules():
            if isinstance(m, BatchNormBase):
                m.train()


def prepare(model: nn.Module, spec: BlockSpec | None = None, norm_stats: str = "running",
            ) -> tuple[TracedModel, list[Block]]:
    """Trace a private copy of ``model`` (norm layers set per ``norm_stats``) and find its blocks.

    Example:
        >>> import relu_surgery as rs
        >>> model = rs.create_model("cifar_resnet20")
        >>> traced, blocks = prepare(model, norm_stats="batch")
        >>> len(blocks), traced.graph_module.training
        (9, False)
    """
    private = private_copy(model)
    traced = trace(private)
    set_norm_mode(traced.graph_module, norm_stats)
    return traced, discover_blocks(traced, spec)


def _region_nodes(gm: fx.GraphModule, block: Block) -> list[fx.Node]:
    if block.rule != "unit":
        return [n for n in gm.graph.nodes if block.name in n.meta.get("rs_scope", ()) and n.op != "get_attr"]
    # a unit of a Sequential: from its head (named like the block) up to the next weight layer
    out, started = [], False
    for n in gm.graph.nodes:
        if n.op in ("placeholder", "output", "get_attr"):
            continue
        role = op_role(n, gm)
        if n.meta.get("rs_name") == block.name:
            started = True
        elif started and role == "weight":
            break
        if started:
            out.append(n)
    return out


def _weight_ancestors(node: fx.Node, inside: set, gm: fx.GraphModule) -> int:
    stack, seen, count = [node], set(), 0
    while stack:
        n = stack.pop()
        if n in seen or n not in inside:
            continue
        seen.add(n)
        count += op_role(n, gm) == "weight"
        stack.extend(n.all_input_nodes)
    return count


def _shortcut(gm: fx.GraphModule, nodes: list[fx.Node], output: fx.Node) -> fx.Node | None:
    inside = set(nodes)
    adds = [n for n in nodes if is_tensor_add(n)]
    if not adds:
        return None
    ops = [a for a in adds[-1].args[:2] if isinstance(a, fx.Node)]
    counts = [_weight_ancestors(a, inside, gm) for a in ops]
    if len(ops) != 2 or counts[0] == counts[1]:
        return None
    return ops[counts.index(min(counts))]


def block_regions(gm: fx.GraphModule, blocks: Iterable[Block]) -> list[BlockRegion]:
    """One :class:`BlockRegion` per block (nodes in graph order).

    Example:
        >>> import relu_surgery as rs
        >>> model = rs.create_model("cifar_resnet20")
        >>> traced, blocks = prepare(model)
        >>> [r.block.name for r in block_regions(traced.graph_module, blocks)][:2]
        ['layer1.0', 'layer1.1']
    """
    regions = []
    for block in blocks:
        nodes = _region_nodes(gm, block)
        inside = set(nodes)
        outside_inputs = [a for n in nodes for a in n.all_input_nodes if a not in inside and a.op != "get_attr"]
        outputs = [n for n in nodes if any(u not in inside for u in n.users)]
        out = outputs[-1] if outputs else None
        regions.append(BlockRegion(block, tuple(nodes), outside_inputs[0] if outside_inputs else None, out,
                                   _shortcut(gm, nodes, out) if out is not None else None))
    return regions


class _Recorder(fx.Interpreter):
    """An interpreter that clones the values of the nodes it is asked to keep (safe from in-place ops)."""

    def __init__(self, gm: fx.GraphModule, keep: set):
        super().__init__(gm)
        self.keep = keep
        self.values: dict[fx.Node, torch.Tensor] = {}

    def run_node(self, n: fx.Node):
        result = super().run_node(n)
        if n in self.keep and isinstance(result, torch.Tensor):
            self.values[n] = result.detach().clone()
        return result


def capture(gm: fx.GraphModule, inputs: torch.Tensor, nodes: Iterable[fx.Node]) -> dict[fx.Node, torch.Tensor]:
    """Run ``gm`` on ``inputs`` (no grad, modes as set) and return the values of ``nodes``.

    Example:
        >>> from relu_surgery.graph.tracing import trace
        >>> gm = trace(nn.Sequential(nn.ReLU())).graph_module
        >>> node = list(gm.graph.nodes)[1]
        >>> capture(gm, torch.tensor([[-1.0, 2.0]]), [node])[node].tolist()
        [[0.0, 2.0]]
    """
    recorder = _Recorder(gm, set(nodes))
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    with torch.no_grad():
        recorder.run(*args)
    return recorder.values
