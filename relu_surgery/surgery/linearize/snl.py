"""SNL's training-time pieces: the L1 penalty on the masks and the threshold to an exact budget.

:class:`MaskPenalty` is a training hook (the runner's ``extra_loss`` / ``epoch_end`` protocol, see
:mod:`relu_surgery.train.hooks`): it adds ``l1 * sum_i w_i * m_i / mean(w)`` to the loss, where
``m_i = clamp(alpha_i, 0, 1)`` are the trainable mask entries and ``w_i`` the ReLUs each governs
(so a channel of a 32x32 map weighs 16x one of an 8x8 map), and raises ``l1`` by ``growth`` at
every check while more ReLUs than the budget are alive (``alpha > threshold``), as SNL raises its
Lasso coefficient until the mask count reaches the budget. Checks run every ``every`` steps (and
at every epoch end when ``every`` is 0).

:func:`threshold_masks` keeps exactly ``budget`` ReLUs: mask entries ranked by ``alpha`` (ties in
execution order), taken whole while they fit; when whole entries leave a remainder ``r``, the best
entry left out keeps its first ``r`` elements (that one site gets a per-element mask). The result
maps each site to a 0/1 tensor for the frozen masks.

Example:
    >>> import torch
    >>> from relu_surgery.surgery.linearize.masked import MaskedReLU
    >>> net = torch.nn.Sequential(MaskedReLU((2, 1, 1), trainable=True, site_shape=(2, 2, 2)))
    >>> with torch.no_grad():
    ...     _ = net[0].alpha.copy_(torch.tensor([0.9, 0.2]).reshape(2, 1, 1))
    >>> masks = threshold_masks({"a": net[0]}, budget=6)
    >>> masks["a"].shape, int(masks["a"].sum())
    (torch.Size([2, 2, 2]), 6)
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .masked import MaskedReLU

__all__ = ["MaskPenalty", "trainable_masks", "alive_relus", "threshold_masks"]


def trainable_masks(model: nn.Module) -> list[MaskedReLU]:
    """The trainable masked activations of ``model``, in module order.

    Example:
        >>> net = nn.Sequential(MaskedReLU((3,), trainable=True), nn.Linear(3, 3), MaskedReLU((3,)))
        >>> trainable_masks(net)                       # the frozen one is not trained
        [MaskedReLU((3,), trainable)]
    """
    return [m for m in model.modules() if isinstance(m, MaskedReLU) and m.trainable]


def alive_relus(masks) -> int:
    """ReLUs still on (``alpha > threshold``) over ``masks``, at their sites' shapes.

    Example:
        >>> m = MaskedReLU((3, 1, 1), trainable=True, site_shape=(3, 2, 2))
        >>> with torch.no_grad():
        ...     _ = m.alpha.copy_(torch.tensor([0.9, 0.005, 0.5]).reshape(3, 1, 1))
        >>> alive_relus([m])                           # channels 0 and 2, 4 elements each
        8
    """
    return sum(m.rs_relu_count(m.site_shape) for m in masks)


class MaskPenalty:
    """SNL's penalty as a training hook: L1 on the masks, its coefficient raised until the budget is met.

    Example:
        >>> net = nn.Sequential(MaskedReLU((3,), trainable=True, site_shape=(3,)))
        >>> hook = MaskPenalty(budget=1, l1=0.5, growth=2.0, every=1)
        >>> float(hook.extra_loss(net, step=0).detach()), hook.l1
        (1.5, 0.5)
        >>> _ = hook.extra_loss(net, step=1); hook.l1     # 3 alive > 1: raised
        1.0
    """

    def __init__(self, budget: int, l1: float = 1e-4, growth: float = 2.0, every: int = 0):
        self.budget, self.l1, self.growth, self.every = int(budget), float(l1), float(growth), int(every)
        self.alive: int | None = None
        self._masks: list[MaskedReLU] | None = None
        self._weights: list[float] = []

    def _bind(self, model: nn.Module) -> list[MaskedReLU]:
        if self._masks is None:
            self._masks = trainable_masks(model)
            governed = [m.governed() for m in self._masks]
            mean = sum(g * m.alpha.numel() for g, m in zip(governed, self._masks)) / max(
                1, sum(m.alpha.numel() for m in self._masks))
            self._weights = [g / mean for g in governed]
        return self._masks

    def check(self, model: nn.Module) -> None:
        """Count the alive ReLUs; raise ``l1`` when they are over the budget."""
        self.alive = alive_relus(self._bind(model))
        if self.alive > self.budget:
            self.l1 *= self.growth

    def extra_loss(self, model: nn.Module, step: int) -> torch.Tensor:
        """``l1 * sum_i w_i m_i / mean(w)`` over the trainable masks (checked every ``every`` steps)."""
        masks = self._bind(model)
        if self.every and step and step % self.every == 0:
            self.check(model)
        total = sum(w * m.weights().sum() for w, m in zip(self._weights, masks))
        return self.l1 * total

    def epoch_end(self, model: nn.Module, epoch: int, row: dict) -> dict:
        """Extra metrics for the epoch's row: alive ReLUs and the coefficient (checked here if ``every`` is 0)."""
        if not self.every:
            self.check(model)
        alive = alive_relus(self._bind(model))
        return {"relus_alive": alive, "relu_budget": self.budget, "l1": self.l1}

    def state_dict(self) -> dict:
        return {"l1": self.l1, "alive": self.alive}

    def load_state_dict(self, state: dict) -> None:
        self.l1, self.alive = float(state["l1"]), state.get("alive")


def threshold_masks(masks: dict[str, MaskedReLU], budget: int) -> dict[str, torch.Tensor]:
    """0/1 masks per site keeping exactly ``budget`` ReLUs (the highest ``alpha`` first; see the module doc).

    Example:
        >>> a, b = MaskedReLU((3,), trainable=True, site_shape=(3,)), MaskedReLU((2,), trainable=True, site_shape=(2,))
        >>> with torch.no_grad():
        ...     _ = a.alpha.copy_(torch.tensor([0.2, 0.9, 0.5])), b.alpha.copy_(torch.tensor([0.7, 0.1]))
        >>> threshold_masks({"a": a, "b": b}, budget=3)
        {'a': tensor([0., 1., 1.]), 'b': tensor([1., 0.])}
    """
    names = list(masks)
    alphas = [masks[n].alpha.detach().flatten().float().cpu() for n in names]
    governed = [masks[n].governed() for n in names]
    scores = torch.cat(alphas)
    weights = torch.cat([torch.full((a.numel(),), g, dtype=torch.long) for a, g in zip(alphas, governed)])
    owner = torch.cat([torch.full((a.numel(),), i, dtype=torch.long) for i, a in enumerate(alphas)])
    order = torch.sort(-scores, stable=True).indices.tolist()
    keep = torch.zeros(len(scores), dtype=torch.bool)
    left = int(budget)
    if bool((weights == 1).all()):
        keep[order[:left]] = True
        left = 0
    else:
        for i in order:
            if 0 < weights[i] <= left:
                keep[i], left = True, left - int(weights[i])
    out = {}
    offsets = [0] + list(torch.tensor([a.numel() for a in alphas]).cumsum(0).tolist())
    for k, n in enumerate(names):
        out[n] = keep[offsets[k]:offsets[k + 1]].float().reshape(masks[n].alpha.shape)
    if left:
        partial = next(i for i in order if not keep[i])
        _keep_part(out, masks, names[int(owner[partial])], partial - offsets[int(owner[partial])], left)
    return out


def _keep_part(out: dict, masks: dict, name: str, entry: int, count: int) -> None:
    """Expand site ``name``'s mask to per-element and keep ``count`` elements of mask entry ``entry``."""
    layer = masks[name]
    full = torch.broadcast_to(out[name], layer.site_shape).clone()
    region = torch.zeros(layer.alpha.numel(), dtype=torch.bool)
    region[entry] = True
    region = torch.broadcast_to(region.reshape(layer.alpha.shape), layer.site_shape).flatten()
    where = region.nonzero().flatten()[:count]
    flat = full.flatten()
    flat[where] = 1.0
    out[name] = flat.reshape(layer.site_shape)
