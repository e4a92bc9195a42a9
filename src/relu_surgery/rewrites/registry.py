"""Rewrite steps by name, so a recipe can be replayed.

Example:
    >>> {"erase", "crelu", "normprop", "swap"} <= set(STEP_BUILDERS)
    True
"""

from __future__ import annotations

import torch.nn as nn

from ..blocks import BlockSpec
from ..errors import SurgeryError
from .base import run_rewrite
from .convert import convert_step
from .crelu import crelu_step
from .erase import erase_step
from .normprop import normprop_step
from .swap import swap_step

__all__ = ["STEP_BUILDERS", "register_step", "replay"]

STEP_BUILDERS = {"erase": erase_step, "convert": convert_step, "crelu": crelu_step, "normprop": normprop_step,
                 "swap": swap_step}


def register_step(name: str, builder) -> None:
    """Make ``builder(**settings) -> Step`` replayable under ``name``."""
    STEP_BUILDERS[name] = builder


def replay(model: nn.Module, rewrites: list[dict]) -> nn.Module:
    """Apply recorded rewrites (``[{"rewrite": "erase", **settings}, ...]``) to ``model``."""
    for entry in rewrites:
        settings = dict(entry)
        name = settings.pop("rewrite")
        discovery = settings.pop("discovery", None) or {}
        if name not in STEP_BUILDERS:
            raise SurgeryError(f"unknown rewrite {name!r} in recipe (known: {', '.join(sorted(STEP_BUILDERS))})")
        spec = BlockSpec(tuple(discovery.get("block_types", ())), tuple(discovery.get("block_names", ())))
        model, _ = run_rewrite(model, [STEP_BUILDERS[name](**settings)], spec=spec)
    return model
