"""Rewrites by name, the one place that maps a name to a rewrite: the public functions (for the CLI,
the probe and the training runner) and their steps (for replaying recipes).

Example:
    >>> {"erase", "crelu", "normprop", "swap", "convert", "fold"} <= set(REWRITES) == set(STEP_BUILDERS)
    True
    >>> get_rewrite("erase").__name__
    'erase'
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import SelectionError, SurgeryError
from ..graph.blocks import BlockSpec
from .convert.api import convert, convert_step
from .crelu import crelu, crelu_step
from .erase import erase, erase_step
from .fold.api import fold, fold_step
from .linearize.api import linearize_sites, linearize_step
from .normprop import normprop, normprop_step
from .pipeline import run_rewrite
from .swap import swap, swap_step

__all__ = ["REWRITES", "STEP_BUILDERS", "get_rewrite", "replay"]

REWRITES = {"erase": erase, "convert": convert, "crelu": crelu, "normprop": normprop, "swap": swap, "fold": fold,
            "linearize": linearize_sites}

STEP_BUILDERS = {"erase": erase_step, "convert": convert_step, "crelu": crelu_step, "normprop": normprop_step,
                 "swap": swap_step, "fold": fold_step, "linearize": linearize_step}


def get_rewrite(name: str):
    """The public function of rewrite ``name`` (``fn(model, **options) -> (new_model, report)``).

    Raises :class:`~relu_surgery.errors.SelectionError` listing the known names otherwise.

    Example:
        >>> get_rewrite("sparkle")
        Traceback (most recent call last):
        ...
        relu_surgery.errors.SelectionError: unknown rewrite 'sparkle'; known: convert, crelu, erase, fold, linearize, normprop, swap
    """
    if name not in REWRITES:
        raise SelectionError(f"unknown rewrite {name!r}; known: {', '.join(sorted(REWRITES))}")
    return REWRITES[name]


def replay(model: nn.Module, rewrites: list[dict]) -> nn.Module:
    """Apply recorded rewrites (``[{"rewrite": "erase", **settings}, ...]``) to ``model``.

    Example:
        >>> import relu_surgery as rs
        >>> model = rs.create_model("cifar_resnet20")
        >>> new = replay(model, [{"rewrite": "erase", "proportion": 1.0, "location": "last"}])
        >>> new.code == rs.erase(model, proportion=1.0, check=False)[0].code
        True
    """
    for entry in rewrites:
        settings = dict(entry)
        name = settings.pop("rewrite")
        if name not in STEP_BUILDERS:
            raise SurgeryError(f"unknown rewrite {name!r} in recipe (known: {', '.join(sorted(STEP_BUILDERS))})")
        discovery = settings.get("discovery") or {}
        size = settings.pop("input_size", None)  # recorded where shapes decide the structure (masks)
        example = torch.zeros(1, *size) if size else None
        spec = BlockSpec(tuple(discovery.get("block_types", ())), tuple(discovery.get("block_names", ())))
        model, _ = run_rewrite(model, [STEP_BUILDERS[name](**settings)], example, spec=spec)
    return model
