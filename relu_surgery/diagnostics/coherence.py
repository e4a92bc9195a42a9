"""Filter coherence mu of each conv layer (seed 002, supplement, Definition 2 and Fig. 3).

For a conv weight reshaped to a matrix W with one row per output filter::

    mu = max_{i != j} |W_i . W_j| / (||W_i||_2 ||W_j||_2)

mu = 0 for orthogonal filters, 1 when two filters are parallel (or anti-parallel). NormProp's
derivation assumes mu ~ 0; the paper measures it to show ResNet filters are not incoherent. A
grouped conv's filter matrix is block-diagonal (a filter sees only its group's inputs), so only
filters of the same group are compared. All-zero filters are ignored.

Example:
    >>> import torch
    >>> round(filter_coherence(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-3.0, -4.0]])), 6)
    0.8
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

__all__ = ["LayerCoherence", "filter_coherence", "conv_coherence"]


@dataclass(frozen=True)
class LayerCoherence:
    """mu of one conv layer: its qualified name, filter count, filter length and groups.

    Example:
        >>> [c.to_dict()["name"] for c in conv_coherence(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1)))]
        ['0', '1']
    """

    name: str
    filters: int
    length: int
    groups: int
    mu: float

    def to_dict(self) -> dict:
        return {"name": self.name, "filters": self.filters, "length": self.length, "groups": self.groups,
                "mu": None if math.isnan(self.mu) else self.mu}


def filter_coherence(weight: torch.Tensor, groups: int = 1) -> float:
    """mu of a weight whose dim 0 indexes filters (conv ``[out, in/groups, *k]`` or linear ``[out, in]``).

    Returns ``nan`` when no group has two non-zero filters.

    Example:
        >>> w = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])  # groups: {0,1}, {2,3}
        >>> filter_coherence(w, groups=2), filter_coherence(w[[0, 2]])
        (1.0, 0.0)
    """
    rows = weight.detach().double().flatten(1)
    best = math.nan
    for group in rows.chunk(groups, dim=0):
        norms = group.norm(dim=1)
        group = group[norms > 0] / norms[norms > 0, None]
        if len(group) < 2:
            continue
        gram = (group @ group.T).abs()
        gram.fill_diagonal_(0)
        value = float(gram.max().clamp(max=1.0))
        best = value if math.isnan(best) else max(best, value)
    return best


def _is_conv(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    transposed = getattr(module, "transposed", False)
    return isinstance(weight, torch.Tensor) and weight.dim() >= 3 and not transposed and hasattr(module, "groups")


def conv_coherence(model: nn.Module) -> list[LayerCoherence]:
    """mu of every conv layer of ``model`` (``nn.Conv1d/2d/3d`` and subclasses, NormProp convs
    included), in module order; layers with fewer than two filters per group are left out.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(2, 3, 1, bias=False))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-3.0, -4.0]]).reshape(3, 2, 1, 1))
        >>> [(c.name, round(c.mu, 6)) for c in conv_coherence(net)]
        [('0', 0.8)]
    """
    out = []
    seen: set[int] = set()
    for name, module in model.named_modules():
        if not _is_conv(module) or id(module.weight) in seen:
            continue
        seen.add(id(module.weight))
        mu = filter_coherence(module.weight, module.groups)
        if not math.isnan(mu):
            w = module.weight
            out.append(LayerCoherence(name, int(w.shape[0]), int(w[0].numel()), int(module.groups), mu))
    return out
