"""Which blocks a rewrite touches: uniform proportion, explicit lists and globs, stages, random.

The paper's uniform rule (seed 000, Sec. 3.1): for proportion p in (0, 1], the chosen blocks are
those with 0-based index floor(j / p) for j = 0, 1, ... while the index is < n. Exact rational
arithmetic keeps p = 0.75 from skipping the wrong block to rounding.

Example:
    >>> [i + 1 for i in uniform_indices(10, 0.5)]
    [1, 3, 5, 7, 9]
    >>> [i + 1 for i in uniform_indices(8, 0.75)]
    [1, 2, 3, 5, 6, 7]
"""

from __future__ import annotations

import fnmatch
import math
import random as _random
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

from ..errors import SelectionError
from ..graph.records import Block

__all__ = ["uniform_indices", "Selection", "select_blocks", "parse_block_list", "check_proportion", "selection_settings",
           "with_discovery", "preset_selection"]


def check_proportion(p: float) -> Fraction:
    """``p`` as an exact fraction; :class:`SelectionError` unless 0 < p <= 1.

    Example:
        >>> check_proportion(0.25)
        Fraction(1, 4)
    """
    try:
        value = float(p)
    except (TypeError, ValueError):
        raise SelectionError(f"proportion must be a number in (0, 1], got {p!r}") from None
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise SelectionError(f"proportion must be in (0, 1], got {p}")
    exact = Fraction(str(value))
    return exact.limit_denominator(10**6) or exact  # 1e-9 stays 1e-9 (one block), never 0


def uniform_indices(n: int, p: float) -> list[int]:
    """0-based indices floor(j / p), j = 0, 1, ..., below ``n``.

    Example:
        >>> uniform_indices(9, 0.25)
        [0, 4, 8]
    """
    frac = check_proportion(p)
    out, j = [], 0
    while True:
        idx = math.floor(Fraction(j) / frac)
        if idx >= n:
            return out
        out.append(idx)
        j += 1


def parse_block_list(text: str | Sequence) -> list[int | str]:
    """``"1,3,layer4.*"`` -> ``[1, 3, "layer4.*"]``; ranges ``"2-5"`` expand.

    Block numbers are 1-based; a range whose start is after its end (``"5-2"``) is refused.

    Example:
        >>> parse_block_list("1,3-4,layer2.*")
        [1, 3, 4, 'layer2.*']
        >>> parse_block_list("5-2")
        Traceback (most recent call last):
        ...
        relu_surgery.errors.SelectionError: block range '5-2' is empty: its start is after its end (did you mean 2-5?)
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[int | str] = []
    for item in items:
        if isinstance(item, int):
            out.append(item)
            continue
        item = str(item).strip()
        if not item:
            continue
        lo, sep, hi = item.partition("-")
        if item.isdigit() or (sep and lo.isdigit() and hi.isdigit()):
            first, last = int(lo), int(hi if sep else lo)
            if first < 1:
                raise SelectionError(f"block numbers are 1-based (the first block is 1), got {item!r}")
            if first > last:
                raise SelectionError(f"block range {item!r} is empty: its start is after its end "
                                     f"(did you mean {last}-{first}?)")
            out.extend(range(first, last + 1))
        else:
            out.append(item)
    return out


def with_discovery(settings: dict, discovery: dict | None) -> dict:
    """``settings`` with the block override ``discovery`` (a recipe dict) last, when there is one.

    Example:
        >>> with_discovery({"to": "pre-activation"}, {"block_types": ["Bottleneck"], "block_names": []})
        {'to': 'pre-activation', 'discovery': {'block_types': ['Bottleneck'], 'block_names': []}}
    """
    return {**settings, "discovery": discovery} if discovery else dict(settings)


def selection_settings(proportion, location, blocks, stage, random, seed, kinds, discovery: dict | None = None,
                       **extra) -> dict:
    """The settings a recipe records for a rewrite that selects blocks and sites (``extra`` after them).

    Example:
        >>> selection_settings(0.5, "last", None, None, False, 0, {"relu"}, init="preserve")
        {'proportion': 0.5, 'location': 'last', 'blocks': None, 'stage': None, 'random': False, 'seed': 0, \
'activations': ['relu'], 'init': 'preserve'}
    """
    settings = {"proportion": float(proportion), "location": location, "blocks": blocks, "stage": stage,
                "random": random, "seed": seed, "activations": sorted(kinds), **extra}
    return with_discovery(settings, discovery)


@dataclass(frozen=True)
class Selection:
    """The chosen 1-based block indices and a sentence saying why.

    Example:
        >>> Selection((1, 3), "uniform proportion 0.5").indices
        (1, 3)
    """

    indices: tuple[int, ...]
    reason: str


def _filter_stage(blocks: list[Block], stage) -> list[Block]:
    stages = list(dict.fromkeys(b.stage for b in blocks))
    wanted = stage if isinstance(stage, (list, tuple)) else [stage]
    names = set()
    for w in wanted:
        if isinstance(w, int) or str(w).isdigit():
            k = int(w)
            if not 1 <= k <= len(stages):
                raise SelectionError(f"stage {k} out of range: the model has {len(stages)} stages")
            names.add(stages[k - 1])
        else:
            names.update(s for s in stages if s is not None and fnmatch.fnmatchcase(s, str(w)))
    kept = [b for b in blocks if b.stage in names]
    if not kept:
        raise SelectionError(f"no blocks in stage {stage!r}; stages: {', '.join(map(str, stages))}")
    return kept


def _filter_list(blocks: list[Block], spec) -> list[Block]:
    items = parse_block_list(spec)
    by_index = {b.index: b for b in blocks}
    kept: dict[int, Block] = {}
    for item in items:
        if isinstance(item, int):
            if item not in by_index:
                raise SelectionError(f"block {item} does not exist: blocks are numbered 1..{len(blocks)}")
            kept[item] = by_index[item]
            continue
        hits = [b for b in blocks if fnmatch.fnmatchcase(b.name, item)]
        if not hits:
            raise SelectionError(f"no block name matches {item!r} (e.g. {blocks[0].name!r})")
        kept.update((b.index, b) for b in hits)
    return [kept[i] for i in sorted(kept)]


def _ranges(indices: Sequence[int]) -> str:
    if len(indices) <= 8:
        return ", ".join(map(str, indices))
    return ", ".join(map(str, indices[:4])) + ", ..., " + ", ".join(map(str, indices[-2:]))


_PRESET: ContextVar[Selection | None] = ContextVar("relu_surgery_preset_selection", default=None)


@contextmanager
def preset_selection(selection: Selection | None):
    """Within the block, :func:`select_blocks` returns ``selection`` (restricted to the blocks it is
    given) instead of choosing: a model traced in parts selects over all its blocks once, then each
    part plans its share.

    Example:
        >>> from relu_surgery.graph.records import Block
        >>> with preset_selection(Selection((2, 5), "chosen across parts")):
        ...     select_blocks([Block(i, f"b{i}", "T", None, ()) for i in (1, 2, 3)], 0.25).indices
        (2,)
    """
    token = _PRESET.set(selection)
    try:
        yield
    finally:
        _PRESET.reset(token)


def select_blocks(blocks: Sequence[Block], proportion: float = 1.0, blocks_spec=None, stage=None,
                  random: bool = False, seed: int = 0) -> Selection:
    """Choose blocks: filter by ``stage`` and ``blocks_spec``, then take ``proportion`` of the rest.

    Uniform by default (the paper's rule); ``random=True`` samples round(p * n) blocks with ``seed``.

    Example:
        >>> from relu_surgery.graph.records import Block
        >>> bs = [Block(i, f"b{i}", "T", None, ()) for i in range(1, 7)]
        >>> select_blocks(bs, 0.5).indices
        (1, 3, 5)
    """
    preset = _PRESET.get()
    if preset is not None:
        present = {b.index for b in blocks}
        return Selection(tuple(i for i in preset.indices if i in present), preset.reason)
    frac = check_proportion(proportion)
    pool = list(blocks)
    if not pool:
        raise SelectionError("there are no blocks to select from")
    filters = []
    if stage is not None:
        pool = _filter_stage(pool, stage)
        filters.append(f"stage {stage}")
    if blocks_spec:
        pool = _filter_list(pool, blocks_spec)
        filters.append(f"blocks {blocks_spec}")
    if random:
        k = max(1, round(float(frac) * len(pool)))
        chosen = sorted(_random.Random(seed).sample(range(len(pool)), k))
        how = f"random {k} of {len(pool)} (seed {seed})"
    else:
        chosen = uniform_indices(len(pool), float(frac))
        how = f"uniform proportion {float(frac):g}: floor(j/{float(frac):g}), j = 0..{len(chosen) - 1}"
    indices = tuple(pool[i].index for i in chosen)
    scope = f" among {', '.join(filters)}" if filters else ""
    return Selection(indices, f"{how}{scope} -> {len(indices)} of {len(blocks)} blocks: {_ranges(indices)}")
