"""The three ways to meet a ReLU budget, as planners: which sites to erase or mask.

* :func:`choose_uniform`: erase whole sites, the fewest the uniform rule needs (execution order,
  indices ``floor(j * n / k)``) for the count to be at or under the budget. Site-granular: it
  usually ends a little under the budget, never over.
* :func:`choose_stages`: DeepReDuce-style (Jha et al., 2021): whole stages linearized in the given
  order (least critical first) while the count stays at or above the budget; the stage that would
  overshoot is thinned site by site by the uniform rule until the count is at or under the budget.
* :func:`mask_actions`: SNL: every target site gets a masked activation (per-channel or per-pixel mask).

Each planner returns the sites and a sentence for the report; :func:`relu_surgery.surgery.linearize.api`
turns them into a typed plan.

Example:
    >>> from relu_surgery.graph.relu_count import SiteRelus
    >>> sites = [SiteRelus(f"s{i}", "relu", f"n{i}", (4,), 4, i, f"b{i}", "l1" if i < 2 else "l2") for i in range(4)]
    >>> [s.site for s in choose_uniform(sites, 16, 8)[0]]
    ['s0', 's2']
    >>> [s.site for s in choose_stages(sites, 16, 8, ["l2", "l1"])[0]]
    ['s2', 's3']
"""

from __future__ import annotations

from typing import Sequence

from ...errors import SelectionError
from ...graph.relu_count import SiteRelus
from .budget import fewest_uniform, site_groups

__all__ = ["choose_uniform", "choose_stages", "mask_shape", "GRANULARITIES"]

GRANULARITIES = ("channel", "pixel")


def _unreachable(total: int, removable: int, budget: int, what: str) -> SelectionError:
    return SelectionError(f"budget {budget:,} cannot be met: linearizing {what} leaves {total - removable:,} "
                          f"of {total:,} ReLUs (other ReLU-family sites are not targets; widen --activations)")


def choose_uniform(targets: Sequence[SiteRelus], total: int, budget: int) -> tuple[list[SiteRelus], str]:
    """The sites to erase (fewest by the uniform rule) and the reason line.

    Example:
        >>> from relu_surgery.graph.relu_count import SiteRelus
        >>> s = [SiteRelus(f"s{i}", "relu", "n", (1,), 10) for i in range(3)]
        >>> choose_uniform(s, 30, 30)[0]
        []
    """
    picked = fewest_uniform([s.relus for s in targets], total - budget)
    if picked is None:
        raise _unreachable(total, sum(s.relus for s in targets), budget, f"all {len(targets)} target sites")
    chosen = [targets[i] for i in picked]
    after = total - sum(s.relus for s in chosen)
    reason = (f"uniform: {len(chosen)} of {len(targets)} sites erased whole (indices floor(j*n/k) in execution "
              f"order, the fewest that meet the budget); {after:,} ReLUs for a budget of {budget:,} "
              f"(site-granular: at or under the budget, not exactly on it)")
    return chosen, reason


def choose_stages(targets: Sequence[SiteRelus], total: int, budget: int, order: Sequence[str],
                  how: str = "given") -> tuple[list[SiteRelus], str]:
    """The sites to erase, stage by stage in ``order`` (names from :func:`site_groups`), and the reason line.

    ``how`` says where the order came from (``given`` or a criticality measurement), for the report.

    Example:
        >>> from relu_surgery.graph.relu_count import SiteRelus
        >>> sites = [SiteRelus(f"s{i}", "relu", "n", (4,), 4, i + 1, f"b{i}", "l1" if i < 2 else "l2")
        ...          for i in range(4)]
        >>> chosen, reason = choose_stages(sites, 16, 4, ["l2", "l1"])   # l2 whole, then l1 thinned
        >>> [s.site for s in chosen]
        ['s2', 's3', 's0']
        >>> print(reason)
        stage (DeepReDuce-style), order l2 > l1 (given): linearized whole: l2 (8); stage l1 thinned:
        1 of 2 sites erased (uniform rule); 4 ReLUs for a budget of 4
    """
    groups = site_groups(targets)
    unknown = [g for g in order if g not in groups]
    if unknown:
        raise SelectionError(f"unknown stage(s) {', '.join(map(str, unknown))} in the stage order; "
                             f"stages with target sites: {', '.join(groups)}")
    remaining, chosen, whole, thinned = total, [], [], ""
    for name in order:
        if remaining <= budget:
            break
        sites = groups[name]
        relus = sum(s.relus for s in sites)
        if remaining - relus >= budget:
            chosen += sites
            whole.append(f"{name} ({relus:,})")
            remaining -= relus
            continue
        picked = fewest_uniform([s.relus for s in sites], remaining - budget)
        chosen += [sites[i] for i in picked]
        remaining -= sum(sites[i].relus for i in picked)
        if len(picked) == len(sites):
            whole.append(f"{name} ({relus:,})")
        else:
            thinned = f"; stage {name} thinned: {len(picked)} of {len(sites)} sites erased (uniform rule)"
    if remaining > budget:
        raise _unreachable(total, total - remaining, budget, f"the stages {', '.join(order)}")
    reason = (f"stage (DeepReDuce-style), order {' > '.join(order)} ({how}): linearized whole: "
              f"{', '.join(whole) or 'none'}{thinned}; {remaining:,} ReLUs for a budget of {budget:,}")
    return chosen, reason


def mask_shape(site_shape: Sequence[int], granularity: str) -> tuple[int, ...]:
    """The mask of a site: one entry per channel (dim 1 of the batched output) or per element.

    Example:
        >>> mask_shape((16, 28, 28), "channel"), mask_shape((16, 28, 28), "pixel"), mask_shape((100,), "channel")
        ((16, 1, 1), (16, 28, 28), (100,))
    """
    if granularity not in GRANULARITIES:
        raise SelectionError(f"mask granularity must be channel or pixel, got {granularity!r}")
    shape = tuple(int(d) for d in site_shape)
    if granularity == "pixel" or len(shape) <= 1:
        return shape
    return (shape[0],) + (1,) * (len(shape) - 1)
