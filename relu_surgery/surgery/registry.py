"""Rewrites by name: the public functions (for the CLI and the runner) and their steps (for recipes).

Example:
    >>> {"erase", "crelu", "normprop", "swap", "convert"} <= set(REWRITES) == set(STEP_BUILDERS)
    True
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..graph.blocks import BlockSpec
from ..errors import SurgeryError
from .pipeline import run_rewrite
from .convert.api import convert, convert_step
from .crelu import crelu, crelu_step
from .erase import erase, erase_step
from .linearize.api import linearize_sites, linearize_step
from .normprop import normprop, normprop_step
from .swap import swap, swap_step

__all__ = ["REWRITES", "STEP_BUILDERS", "register_step", "replay"]

REWRITES = {"erase": erase, "convert": convert, "crelu": crelu, "normprop": normprop, "swap": swap,
            "linearize": linearize_sites}

STEP_BUILDERS = {"erase": erase_step, "convert": convert_step, "crelu": crelu_step, "normprop": normprop_step,
                 "swap": swap_step, "linearize": linearize_step}


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
        size = settings.pop("input_size", None)  # recorded where shapes decide the structure (masks)
        example = torch.zeros(1, *size) if size else None
        spec = BlockSpec(tuple(discovery.get("block_types", ())), tuple(discovery.get("block_names", ())))
        model, _ = run_rewrite(model, [STEP_BUILDERS[name](**settings)], example, spec=spec)
    return model
