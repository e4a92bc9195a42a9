"""Per-block input/output difference Delta (seed 002, Fig. 2).

For a block with input ``x_l`` and output ``x_{l+1}`` of shape ``[c, h, w]``::

    Delta = 1/(w h) * sum_{i,j} || x_l(:, i, j) - x_{l+1}(:, i, j) ||_2

averaged over the probe batch (channels on dim 1; a vector output is one position). A large Delta
means the residual branch changes the signal a lot; Delta near 0 means the block mostly passes its
input on through the identity. Where a block changes the shape (a downsampling block), ``x_l`` is
replaced by the block's shortcut output ``S(x_l)`` (option-A subsampling + zero padding, or the
projection), which is ``x_l`` itself for an identity block; a block with neither a matching shape
nor a shortcut gets ``nan``.

Example:
    >>> import torch
    >>> delta_value(torch.zeros(1, 2, 1, 2), torch.tensor([[[[3.0, 0.0]], [[4.0, 0.0]]]]))
    2.5
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.fx as fx

from .capture import BlockRegion, block_regions, capture

__all__ = ["BlockDelta", "delta_value", "block_deltas"]


@dataclass(frozen=True)
class BlockDelta:
    """Delta of one block; ``reference`` says what ``x_l`` was: ``input`` or ``shortcut`` (or ``none``).

    Example:
        >>> import relu_surgery as rs
        >>> deltas = rs.probe(rs.create_model("cifar_resnet20"), samples=2, gradient_study=False).models[0].deltas
        >>> deltas[0].name, deltas[0].reference, deltas[0].shape_out
        ('layer1.0', 'input', (16, 32, 32))
    """

    index: int
    name: str
    type: str
    stage: str | None
    delta: float
    reference: str
    shape_in: tuple[int, ...]
    shape_out: tuple[int, ...]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["delta"] = None if math.isnan(self.delta) else self.delta
        out["shape_in"], out["shape_out"] = list(self.shape_in), list(self.shape_out)
        return out


def delta_value(x_in: torch.Tensor, x_out: torch.Tensor) -> float:
    """Mean over batch and positions of the channel-wise L2 norm of ``x_out - x_in`` (same shapes).

    Example:
        >>> delta_value(torch.ones(2, 3), torch.ones(2, 3) * 2)  # vectors: one position each
        1.7320508075688772
    """
    diff = (x_out - x_in).double()
    if diff.dim() <= 2:
        norms = diff.reshape(diff.shape[0], -1).norm(dim=1)
    else:
        norms = diff.flatten(2).norm(dim=1)
    return float(norms.mean())


def _reference(region: BlockRegion, values: dict) -> tuple[torch.Tensor | None, str]:
    x_out = values.get(region.output)
    x_in = values.get(region.input)
    if region.shortcut is not None and region.shortcut in values and values[region.shortcut].shape == x_out.shape:
        return values[region.shortcut], "shortcut" if region.shortcut is not region.input else "input"
    if x_in is not None and x_in.shape == x_out.shape:
        return x_in, "input"
    return None, "none"


def block_deltas(gm: fx.GraphModule, blocks, inputs: torch.Tensor) -> list[BlockDelta]:
    """Delta of every block of a traced model, in block order (see the module docstring).

    ``gm`` is a traced model (:func:`relu_surgery.graph.tracing.trace`), ``blocks`` its blocks
    (:func:`relu_surgery.graph.blocks.discover_blocks`); the modes set on ``gm`` are used as they are.

    Example:
        >>> import torch.nn as nn
        >>> from relu_surgery.diagnostics.capture import prepare
        >>> class Res(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc = nn.Linear(2, 2, bias=False)
        ...         nn.init.eye_(self.fc.weight)
        ...     def forward(self, x):
        ...         return x + self.fc(x)
        >>> traced, blocks = prepare(nn.Sequential(Res(), Res()))
        >>> [round(d.delta, 4) for d in block_deltas(traced.graph_module, blocks, torch.tensor([[3.0, 4.0]]))]
        [5.0, 10.0]
    """
    regions = [r for r in block_regions(gm, blocks)]
    wanted = {n for r in regions for n in (r.input, r.output, r.shortcut) if n is not None}
    values = capture(gm, inputs, wanted)
    out = []
    for r in regions:
        b = r.block
        x_out = values.get(r.output)
        if x_out is None:
            out.append(BlockDelta(b.index, b.name, b.type, b.stage, math.nan, "none", (), ()))
            continue
        x_in = values.get(r.input)
        ref, kind = _reference(r, values)
        value = delta_value(ref, x_out) if ref is not None else math.nan
        shape_in = tuple(x_in.shape[1:]) if x_in is not None else ()
        out.append(BlockDelta(b.index, b.name, b.type, b.stage, value, kind, shape_in, tuple(x_out.shape[1:])))
    return out
