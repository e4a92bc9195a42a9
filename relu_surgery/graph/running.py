"""Running a model for analysis: eval mode that restores every submodule, the first tensor of an output.

Example:
    >>> import torch, torch.nn as nn
    >>> m = nn.Sequential(nn.Dropout()).train()
    >>> with eval_mode(m):
    ...     m.training
    False
    >>> m.training, first_tensor(({"logits": torch.ones(1)},)).shape
    (True, torch.Size([1]))
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn

__all__ = ["eval_mode", "first_tensor", "output_leaves"]


@contextmanager
def eval_mode(model: nn.Module):
    """Put ``model`` in eval mode for the block and restore every submodule's mode after.

    Example:
        >>> m = nn.BatchNorm1d(2).train()
        >>> with eval_mode(m):
        ...     m.training
        False
        >>> m.training
        True
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in modes:
            m.training = was_training


def first_tensor(output):
    """The first tensor of a model output (tensor, tuple/list, dict or named tuple).

    Example:
        >>> first_tensor({"logits": torch.zeros(2), "aux": torch.ones(1)}).shape
        torch.Size([2])
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def output_leaves(output, path: str = "") -> list[tuple[str, torch.Tensor]]:
    """Every tensor of a model output with where it sits (``[0]['boxes']``), in order.

    Example:
        >>> [(p, tuple(t.shape)) for p, t in output_leaves([{"boxes": torch.zeros(3, 4)}, torch.ones(2)])]
        [("[0]['boxes']", (3, 4)), ('[1]', (2,))]
    """
    if isinstance(output, torch.Tensor):
        return [(path, output)]
    if isinstance(output, dict):
        items = [(f"{path}[{k!r}]", v) for k, v in output.items()]
    elif isinstance(output, (tuple, list)):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(output)]
    else:
        return []
    return [leaf for p, v in items for leaf in output_leaves(v, p)]
