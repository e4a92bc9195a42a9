"""Training hooks: what a rewrite may add to a training run (an extra loss term, per-epoch work).

A hook is any object with some of these methods (all optional):

* ``extra_loss(model, step) -> Tensor | None``: added to the cross-entropy before backward at
  every step (``step`` is the global step; ``model`` the raw module, never a DDP/compiled wrapper);
* ``epoch_end(model, epoch, row) -> dict | None``: called once per epoch after evaluation, before
  the row is written; what it returns is added to the metrics row;
* ``state_dict() -> dict`` / ``load_state_dict(state)``: saved in the checkpoint, so a resumed
  run continues the hook exactly.

:func:`relu_surgery.train.runner.run_training` takes ``hooks=[...]``. SNL's mask penalty
(:class:`relu_surgery.surgery.linearize.snl.MaskPenalty`) is one such hook.

Example:
    >>> import torch, torch.nn as nn
    >>> class WeightNorm:
    ...     def extra_loss(self, model, step):
    ...         return 1e-3 * sum(p.square().sum() for p in model.parameters())
    >>> model = nn.Linear(2, 1)
    >>> hooks = collect_hooks(model, [WeightNorm()])
    >>> bool(hook_loss(hooks, model, 0) > 0), hook_states(hooks)
    (True, [None])
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

__all__ = ["collect_hooks", "hook_loss", "hook_epoch_end", "hook_states", "load_hook_states"]


def collect_hooks(model: nn.Module, hooks: Sequence[Any] | None = None) -> list[Any]:
    """The hooks of a run (those given to :func:`~relu_surgery.train.runner.run_training`), as a list.

    Example:
        >>> from relu_surgery.surgery.linearize.snl import MaskPenalty
        >>> penalty = MaskPenalty(budget=10)
        >>> collect_hooks(nn.Linear(2, 1)), collect_hooks(nn.Linear(2, 1), (penalty,)) == [penalty]
        ([], True)
    """
    return list(hooks or ())


def hook_loss(hooks: Sequence[Any], model: nn.Module, step: int) -> torch.Tensor | None:
    """The sum of the hooks' extra loss terms at ``step`` (None when none gives one).

    Example:
        >>> from relu_surgery.surgery.linearize.masked import MaskedReLU
        >>> from relu_surgery.surgery.linearize.snl import MaskPenalty
        >>> net = nn.Sequential(MaskedReLU((3,), trainable=True, site_shape=(3,)))
        >>> hook_loss([MaskPenalty(budget=1, l1=0.5), object()], net, step=0)   # 0.5 * three masks at 1
        tensor(1.5000, grad_fn=<MulBackward0>)
        >>> hook_loss([object()], net, step=0) is None
        True
    """
    total = None
    for hook in hooks:
        fn = getattr(hook, "extra_loss", None)
        term = fn(model, step) if fn is not None else None
        if term is not None:
            total = term if total is None else total + term
    return total


def hook_epoch_end(hooks: Sequence[Any], model: nn.Module, epoch: int, row: dict) -> dict:
    """Metrics the hooks add to the row of (0-based) ``epoch``.

    Example:
        >>> from relu_surgery.surgery.linearize.masked import MaskedReLU
        >>> from relu_surgery.surgery.linearize.snl import MaskPenalty
        >>> net = nn.Sequential(MaskedReLU((3,), trainable=True, site_shape=(3,)))
        >>> hook_epoch_end([MaskPenalty(budget=1, l1=0.5), object()], net, 0, {"test_acc": 50.0})
        {'relus_alive': 3, 'relu_budget': 1, 'l1': 1.0}
    """
    extra: dict = {}
    for hook in hooks:
        fn = getattr(hook, "epoch_end", None)
        extra.update((fn(model, epoch, row) if fn is not None else None) or {})
    return extra


def hook_states(hooks: Sequence[Any]) -> list[dict | None]:
    """Each hook's state (None for a hook without ``state_dict``), for the checkpoint.

    Example:
        >>> from relu_surgery.surgery.linearize.snl import MaskPenalty
        >>> hook_states([MaskPenalty(budget=10, l1=0.5), object()])
        [{'l1': 0.5, 'alive': None}, None]
    """
    return [hook.state_dict() if hasattr(hook, "state_dict") else None for hook in hooks]


def load_hook_states(hooks: Sequence[Any], states: Sequence[dict | None] | None) -> None:
    """Restore what :func:`hook_states` saved (a checkpoint without hook states leaves them as they are).

    Example:
        >>> from relu_surgery.surgery.linearize.snl import MaskPenalty
        >>> penalty = MaskPenalty(budget=10, l1=0.5)
        >>> load_hook_states([penalty, object()], [{"l1": 0.25, "alive": 7}, None])
        >>> penalty.l1, penalty.alive
        (0.25, 7)
        >>> load_hook_states([penalty], None); penalty.l1         # an older checkpoint: left as it is
        0.25
    """
    for hook, state in zip(hooks, states or ()):
        if state is not None and hasattr(hook, "load_state_dict"):
            hook.load_state_dict(state)
