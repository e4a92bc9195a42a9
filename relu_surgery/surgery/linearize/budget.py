"""Budget arithmetic: what a budget means, which sites the uniform rule erases, how sites form stages.

* :func:`resolve_budget`: an integer is a ReLU count, a float in (0, 1) a fraction of the model's
  count (rounded down); anything not positive or above the count is an error.
* :func:`fewest_uniform`: the fewest sites whose erasure meets a budget when ``k`` sites out of ``n``
  are chosen by the uniform rule of seed 000 applied to sites (0-based indices ``floor(j * n / k)``,
  j = 0 .. k-1: spread evenly in execution order).
* :func:`site_groups`: the sites of each stage, in execution order; sites before the first block
  form the ``stem``, sites after the last one the ``head``.

Example:
    >>> resolve_budget(0.5, 1000), resolve_budget(250, 1000)
    (500, 250)
    >>> fewest_uniform([100, 100, 100, 100], 200)   # remove 200 ReLUs: 2 of 4 sites, indices 0 and 2
    [0, 2]
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Sequence

from ...errors import SelectionError
from ...graph.relu_count import SiteRelus

__all__ = ["resolve_budget", "uniform_pick", "fewest_uniform", "site_groups"]


def resolve_budget(budget, total: int) -> int:
    """The ReLU count a budget asks for: an int as is, a float in (0, 1) as ``floor(budget * total)``.

    Raises :class:`SelectionError` (one line) for a budget that is not positive, is larger than
    ``total``, or is a float outside (0, 1). Strings ("5000", "0.2") are read as numbers.

    Example:
        >>> resolve_budget("0.2", 557056)
        111411
    """
    if isinstance(budget, str):
        text = budget.strip()
        try:
            budget = int(text) if text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise SelectionError(f"budget must be a ReLU count or a fraction in (0, 1), got {budget!r}") from None
    if isinstance(budget, bool) or not isinstance(budget, Real) or math.isnan(float(budget)):
        raise SelectionError(f"budget must be a ReLU count or a fraction in (0, 1), got {budget!r}")
    if isinstance(budget, Integral) or float(budget).is_integer() and float(budget) >= 1:
        count = int(budget)
        if count <= 0:
            raise SelectionError(f"budget must be positive, got {count}")
        if count > total:
            raise SelectionError(f"budget {count:,} is larger than the model's {total:,} ReLUs")
        return count
    fraction = float(budget)
    if not 0.0 < fraction < 1.0:
        raise SelectionError(f"a fractional budget must lie in (0, 1), got {fraction}")
    count = math.floor(fraction * total)
    if count <= 0:
        raise SelectionError(f"budget {fraction} of {total:,} ReLUs rounds to 0")
    return count


def uniform_pick(n: int, k: int) -> list[int]:
    """``k`` of ``n`` indices by the uniform rule: ``floor(j * n / k)`` for j = 0 .. k-1.

    Example:
        >>> uniform_pick(10, 5), uniform_pick(8, 6)
        ([0, 2, 4, 6, 8], [0, 1, 2, 4, 5, 6])
    """
    return [(j * n) // k for j in range(k)] if k else []


def fewest_uniform(counts: Sequence[int], to_remove: int) -> list[int] | None:
    """Indices of the fewest sites (uniform rule) whose ReLUs sum to at least ``to_remove``.

    ``to_remove <= 0`` needs none (``[]``); None when even every site is not enough.

    Example:
        >>> fewest_uniform([10, 1, 1, 1], 11), fewest_uniform([1, 1], 5)
        ([0, 2], None)
    """
    if to_remove <= 0:
        return []
    n = len(counts)
    for k in range(1, n + 1):
        picked = uniform_pick(n, k)
        if sum(counts[i] for i in picked) >= to_remove:
            return picked
    return None


def site_groups(sites: Sequence[SiteRelus]) -> dict[str, list[SiteRelus]]:
    """Sites per stage in execution order (``stem`` / ``head`` for sites outside every block).

    Example:
        >>> s = [SiteRelus("stem.relu", "relu", "a", (1,), 1, stage="stem"),
        ...      SiteRelus("l1.0.r", "relu", "b", (1,), 1, 1, "l1.0", "l1")]
        >>> {k: [x.site for x in v] for k, v in site_groups(s).items()}
        {'stem': ['stem.relu'], 'l1': ['l1.0.r']}
    """
    groups: dict[str, list[SiteRelus]] = {}
    for site in sites:
        groups.setdefault(site.stage or site.block_name or "(no stage)", []).append(site)
    return groups
