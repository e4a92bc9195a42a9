"""A rewrite decided but not yet applied.

Example:
    >>> plan = Plan("erase", {}, blocks=(), selected=(), selection_reason="none", changes=())
    >>> plan.selected_blocks
    ()
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..graph.records import Block
from ..report.records import SiteChange

__all__ = ["Plan"]


@dataclass(frozen=True)
class Plan:
    """A rewrite decided but not yet applied: which blocks, which sites, what happens to each."""

    rewrite: str
    settings: dict
    blocks: tuple[Block, ...]
    selected: tuple[int, ...]
    selection_reason: str
    changes: tuple[SiteChange, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def selected_blocks(self) -> tuple[Block, ...]:
        chosen = set(self.selected)
        return tuple(b for b in self.blocks if b.index in chosen)
