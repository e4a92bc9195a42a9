"""Shared checks for rewritten models: reload from --out, torch.compile, one training step."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import relu_surgery as rs

__all__ = ["check_reload_and_compile", "sgd_step"]


def check_reload_and_compile(new, out, x) -> None:
    """``rs.load(out)`` gives exactly ``new``'s outputs, and dynamo captures ``new`` without breaks."""
    loaded = rs.load(out)
    new.eval(), loaded.eval()
    with torch.no_grad():
        expected = new(x)
        torch.testing.assert_close(loaded(x), expected, atol=0, rtol=0)
        torch.testing.assert_close(torch.compile(new, backend="eager", fullgraph=True)(x), expected)


def sgd_step(model, x, labels) -> torch.Tensor:
    """One SGD step (lr 0.1) in train mode; returns the loss."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = F.cross_entropy(model(x), labels)
    loss.backward()
    opt.step()
    return loss
