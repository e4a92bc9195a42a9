"""ReLU counts: activation elements per sample at each ReLU-family site, per block, per stage, in total.

Private inference pays for every ReLU *element* (one garbled-circuit evaluation each), so the
figure of merit is the number of ReLU outputs per sample: channels x spatial size of each site's
output at the example input. The shapes come from :func:`relu_surgery.graph.shapes.propagate_shapes`
(no values computed; a real pass only when the graph's shapes depend on values). A site whose
module says how many of its elements are non-linear (``rs_relu_count(shape) -> int``, as a masked
activation does) counts that many; a CReLU counts both halves of its doubled output.

Example:
    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, stride=2, padding=1),
    ...                     nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    >>> counted = relu_count(net, torch.zeros(1, 1, 8, 8))
    >>> [(s.site, s.shape, s.relus) for s in counted.sites], counted.total
    ([('1', (4, 8, 8), 256), ('3', (2, 4, 4), 32)], 288)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn

from .activations import activation_of, submodule
from .records import Block
from .shapes import ShapeError, ShapePass, propagate_shapes, real_pass

__all__ = ["RELU_FAMILY_KINDS", "SiteRelus", "ReluCount", "count_relus", "relu_count", "shape_pass"]

#: Activation kinds that count as ReLUs (piecewise-linear with one comparison per element).
RELU_FAMILY_KINDS = frozenset({"relu", "relu6", "leaky_relu", "prelu", "rrelu", "crelu", "masked_relu"})


@dataclass(frozen=True)
class SiteRelus:
    """One ReLU-family site: its name, kind, per-sample output shape and the ReLUs it evaluates.

    ``block`` / ``block_name`` say where it sits (None outside every block); ``stage`` is the
    block's stage, ``stem`` for a site before the first block and ``head`` after the last one.

    Example:
        >>> s = SiteRelus("layer1.0.relu", "relu", "layer1_0_relu", (16, 32, 32), 16384, 1, "layer1.0", "layer1")
        >>> s.elements, s.to_dict()["shape"], s.to_dict()["stage"]
        (16384, [16, 32, 32], 'layer1')
    """

    site: str
    kind: str
    node: str
    shape: tuple[int, ...]
    relus: int
    block: int | None = None
    block_name: str | None = None
    stage: str | None = None

    @property
    def elements(self) -> int:
        """Output elements per sample (the ReLUs of a plain site)."""
        return math.prod(self.shape)

    def to_dict(self) -> dict:
        return {"site": self.site, "kind": self.kind, "block": self.block, "block_name": self.block_name,
                "stage": self.stage, "shape": list(self.shape), "relus": self.relus}


@dataclass(frozen=True)
class ReluCount:
    """ReLU-family sites of a model at one input size, in execution order.

    Example:
        >>> stem = SiteRelus("relu", "relu", "relu", (4, 8, 8), 256, stage="stem")
        >>> b1 = SiteRelus("layer1.0.relu", "relu", "n1", (4, 8, 8), 256, 1, "layer1.0", "layer1")
        >>> b2 = SiteRelus("layer1.1.relu", "relu", "n2", (4, 8, 8), 256, 2, "layer1.1", "layer1")
        >>> count = ReluCount((stem, b1, b2), (1, 3, 8, 8))
        >>> count.total, count.per_stage()
        (768, {'stem': 256, 'layer1': 512})
        >>> count.per_block()
        {'(outside blocks)': 256, 'layer1.0': 256, 'layer1.1': 256}
    """

    sites: tuple[SiteRelus, ...]
    input_shape: tuple[int, ...]

    @property
    def total(self) -> int:
        """ReLUs per sample over the whole model."""
        return sum(s.relus for s in self.sites)

    def per_block(self) -> dict[str, int]:
        """ReLUs per block name (``"(outside blocks)"`` for the rest), in execution order."""
        return self._sum_by(lambda s: s.block_name or "(outside blocks)")

    def per_stage(self) -> dict[str, int]:
        """ReLUs per stage (``stem`` / ``head`` outside the blocks), in execution order."""
        return self._sum_by(lambda s: s.stage or "(no stage)")

    def _sum_by(self, key) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.sites:
            out[key(s)] = out.get(key(s), 0) + s.relus
        return out

    def to_dict(self) -> dict:
        return {"total": self.total, "input_shape": list(self.input_shape),
                "sites": [s.to_dict() for s in self.sites], "blocks": self.per_block(), "stages": self.per_stage()}


def _block_lookup(blocks) -> tuple[dict[str, Block], dict[str, Block]]:
    by_site = {s.name: b for b in blocks for s in b.sites}
    return by_site, {b.name: b for b in blocks}


def _block_of(node: fx.Node, name: str, by_site: dict, by_name: dict) -> Block | None:
    if name in by_site:
        return by_site[name]
    for scope in reversed(node.meta.get("rs_scope", ())):
        if scope in by_name:
            return by_name[scope]
    return None


def _site_relus(node: fx.Node, gm: fx.GraphModule, per_sample: tuple[int, ...]) -> int:
    if node.op == "call_module":
        module = submodule(gm, str(node.target))
        counter = getattr(module, "rs_relu_count", None) or getattr(getattr(module, "act", None), "rs_relu_count", None)
        if callable(counter):
            return int(counter(per_sample))
    return math.prod(per_sample)


def count_relus(gm: fx.GraphModule, shapes: ShapePass, blocks=(), input_shape=(1,),
                kinds=RELU_FAMILY_KINDS) -> ReluCount:
    """Count the ReLUs of a traced model whose node shapes are known (``shapes``).

    ``input_shape`` gives the batch size (its first dimension): counts are per sample.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(3, 5), nn.ReLU()))
        >>> x = torch.zeros(2, 3)
        >>> count_relus(gm, propagate_shapes(gm, x), input_shape=x.shape).total
        5
    """
    batch = int(input_shape[0]) if len(input_shape) else 1
    by_site, by_name = _block_lookup(blocks)
    sites = []
    for node in gm.graph.nodes:
        if node.name not in shapes.shapes:
            continue
        ref = activation_of(node, gm)
        if ref is None or ref.kind not in kinds:
            continue
        shape = shapes.shapes[node.name]
        per_sample = tuple(shape[1:]) if batch and shape and shape[0] == batch else tuple(shape)
        name = node.meta.get("rs_name", node.name)
        block = _block_of(node, name, by_site, by_name)
        stage = (block.stage or block.name) if block else ("head" if any(s.block for s in sites) else "stem")
        sites.append(SiteRelus(name, ref.kind, node.name, per_sample, _site_relus(node, gm, per_sample),
                               block and block.index, block and block.name, stage))
    return ReluCount(tuple(sites), tuple(input_shape))


def shape_pass(gm: fx.GraphModule, example_input, real: bool = False) -> ShapePass:
    """Shapes and MACs without values (:func:`propagate_shapes`), else from a real pass.

    ``real=True`` always runs the real eval-mode pass (it also tells whether the output is finite).

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(3, 5), nn.ReLU()))
        >>> shape_pass(gm, torch.zeros(1, 3)).mode, shape_pass(gm, torch.zeros(1, 3), real=True).mode
        ('meta', 'real')
    """
    if not real:
        try:
            return propagate_shapes(gm, example_input)
        except (ShapeError, RuntimeError, TypeError, ValueError, IndexError):
            pass  # shapes that depend on values, an op without a meta kernel, an unusual call: compute them
    return real_pass(gm, example_input)


def relu_count(model: nn.Module, example_input=None, blocks=None) -> ReluCount:
    """ReLUs per sample of ``model`` at ``example_input`` (default: the model's own input size).

    Traces the model (it is only read), propagates shapes without computing values and finds the
    blocks (``blocks`` given: those) so each site knows its block and stage.

    Example:
        >>> import relu_surgery as rs
        >>> relu_count(rs.create_model("cifar_resnet18")).total   # the private-inference papers' figure
        557056
    """
    from .blocks import discover_blocks  # noqa: PLC0415
    from .example_inputs import example_input_for  # noqa: PLC0415
    from .tracing import trace  # noqa: PLC0415

    traced = trace(model)
    x = example_input_for(model) if example_input is None else example_input
    found = discover_blocks(traced) if blocks is None else blocks
    gm = traced.graph_module
    return count_relus(gm, shape_pass(gm, x), found, tuple(x.shape))
