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

__all__ = ["eval_mode", "first_tensor"]


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
