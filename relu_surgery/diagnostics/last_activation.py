"""The last activation before the classifier: its mean, std and non-zero ratio (seed 002, Table 1).

The measured tensor is the one the classifier reads, found from the graph: start at the last weight
layer (the classifier) and walk back through pooling, flattening and dropout to the first node that
computes something. In an unchanged ResNet that is the final ReLU (the paper's "last ReLU, before the
softmax layer"); after EraseReLU removed it, it is the residual add that now feeds the head, so the
original and the rewritten model are measured at the same place. Statistics are over every entry
of the feature map (batch, channels, positions) before pooling.

Example:
    >>> import torch, torch.nn as nn
    >>> from relu_surgery.diagnostics.capture import prepare
    >>> net = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    >>> traced, _ = prepare(net)
    >>> s = last_activation(traced.graph_module, torch.tensor([[-1.0, 0.0, 2.0, 3.0]]))
    >>> s.node, s.nonzero_ratio, s.mean
    ('0', 0.5, 1.25)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.fx as fx

from ..graph.activations import activation_of
from ..graph.ops import op_role
from .capture import capture

__all__ = ["LastActivation", "find_last_activation", "activation_stats", "last_activation"]


@dataclass(frozen=True)
class LastActivation:
    """Statistics of the tensor fed to the classifier.

    ``node`` is its qualified name, ``kind`` the activation kind (``relu``) or the node's role
    (``merge`` for an add left by EraseReLU). ``nonzero_ratio`` is the fraction of entries that are
    not zero (the paper's NZR), ``positive_ratio`` the fraction above zero, ``mean`` / ``std`` over all
    entries (population std). ``values`` keeps a sample of entries for plots (not in JSON).

    Example:
        >>> activation_stats(torch.tensor([[0.0, 1.0]]), "relu", "relu").to_dict()["nonzero_ratio"]
        0.5
    """

    node: str
    kind: str
    shape: tuple[int, ...]
    mean: float
    std: float
    nonzero_ratio: float
    positive_ratio: float
    values: torch.Tensor | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("values")
        out["shape"] = list(self.shape)
        return out


def find_last_activation(gm: fx.GraphModule) -> fx.Node | None:
    """The node whose output the classifier reads (see the module docstring), or None.

    Without a weight layer after the last activation, the last activation itself; None for a
    model that has neither.

    Example:
        >>> import torch.nn as nn
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2)))
        >>> find_last_activation(gm).name
        '_1'
    """
    nodes = list(gm.graph.nodes)
    roles = {n: op_role(n, gm) for n in nodes}
    weights = [n for n in nodes if roles[n] == "weight"]
    acts = [n for n in nodes if roles[n] == "activation"]
    fallback = acts[-1] if acts else None
    if not weights or (acts and nodes.index(weights[-1]) < nodes.index(acts[-1])):
        return fallback
    node = weights[-1].all_input_nodes[0] if weights[-1].all_input_nodes else None
    while node is not None and roles[node] == "transparent" and node.all_input_nodes:
        node = node.all_input_nodes[0]
    return node if node is not None and roles[node] not in ("input", "weight") else fallback


def activation_stats(x: torch.Tensor, node: str = "", kind: str = "", sample: int = 20000) -> LastActivation:
    """Mean, population std, non-zero and positive ratio of every entry of ``x``.

    Example:
        >>> s = activation_stats(torch.tensor([0.0, 0.0, 2.0, 3.0]))
        >>> s.mean, round(s.std, 4), s.nonzero_ratio
        (1.25, 1.299, 0.5)
    """
    flat = x.detach().double().flatten()
    step = max(1, flat.numel() // sample)
    return LastActivation(
        node, kind, tuple(x.shape[1:]), float(flat.mean()), float(flat.std(correction=0)),
        float((flat != 0).double().mean()), float((flat > 0).double().mean()), flat[::step].float().cpu().clone(),
    )


def last_activation(gm: fx.GraphModule, inputs: torch.Tensor) -> LastActivation | None:
    """Statistics of the last activation before the classifier of a traced model (None if it has none).

    Example:
        >>> import torch.nn as nn
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))
        >>> stats = last_activation(gm, torch.randn(8, 4))
        >>> stats.shape, 0 <= stats.nonzero_ratio <= 1
        ((4,), True)
    """
    node = find_last_activation(gm)
    if node is None:
        return None
    value = capture(gm, inputs, [node]).get(node)
    if value is None:
        return None
    ref = activation_of(node, gm)
    kind = ref.kind if ref is not None else op_role(node, gm)
    return activation_stats(value, node.meta.get("rs_name", node.name), kind)
