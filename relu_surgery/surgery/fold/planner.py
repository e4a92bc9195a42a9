"""Decide a fold: which norms fold, which chains and branch sums merge, and why the rest stay.

The planner works on a copy of the traced model whose tensors are on the ``meta`` device: it finds
the candidates (:mod:`.candidates`), chooses, carries the chosen actions out on the copy
(:mod:`.execute`) and looks again, until nothing more merges (a chain merged into one conv can make
a RepVGG sum, whose merged conv can start a new chain). Norms fold first, everywhere they can.

Chains are split by dynamic programming into the segments of least total cost: MACs (default; a
merge is kept when it does not raise them, ties merge: one layer instead of several) or, with
``cost="latency"``, the time each layer takes on the example input's device. A branch sum merges
under the same rule. ``choices`` replays earlier decisions exactly (a recipe of a latency fold).

Example:
    >>> import torch, torch.fx as fx, torch.nn as nn
    >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(8, 64), nn.Linear(64, 8)).eval())
    >>> plan = make_plan(gm, torch.zeros(1, 8))
    >>> [a.describe() for a in plan.actions]
    ['0 + 1: linear 8->64 + linear 64->8 -> linear 8->8, MACs 1,024 -> 64']
"""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.passes.shape_prop import ShapeProp

from ...graph.running import eval_mode, first_tensor
from .candidates import Chain, branch_candidates, chains, count_layers, norm_candidates
from .execute import execute
from .geometry import LayerSpec, compose
from .kernels import Params
from .modules import build_layer
from .plan import Action, BranchMerge, ChainMerge, NormFold, Refusal

__all__ = ["make_plan", "Planned", "meta_copy", "choice_key", "COSTS"]

COSTS = ("macs", "latency")


@dataclass(frozen=True)
class Planned:
    """What :func:`make_plan` decided: the actions in order, the refusals, the unfolded model's output on
    the example input, and its count of weight and norm layers.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).eval())
        >>> planned = make_plan(gm, torch.zeros(3, 2))
        >>> [type(a).__name__ for a in planned.actions], planned.layers_before, tuple(planned.reference.shape)
        (['NormFold'], 2, (3, 2))
    """

    actions: tuple[Action, ...]
    refusals: tuple[Refusal, ...]
    reference: torch.Tensor | None
    layers_before: int


def meta_copy(gm: fx.GraphModule) -> fx.GraphModule:
    """A deep copy of ``gm`` (graph, node names and shapes) whose parameters and buffers are on ``meta``.

    Example:
        >>> meta_copy(fx.symbolic_trace(nn.Linear(2, 2))).weight.device.type
        'meta'
    """
    memo = {}
    for t in itertools.chain(gm.parameters(), gm.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(gm, memo)


def choice_key(action: ChainMerge | BranchMerge) -> list[str]:
    """How a recipe names a merge: its kind, then the nodes of its layers.

    Example:
        >>> choice_key(ChainMerge(("a", "b"), ("a", "b"), (), (), None))
        ['chain', 'a', 'b']
    """
    if isinstance(action, ChainMerge):
        return ["chain", *action.layers]
    return ["branch", *action.branches]


class _Costs:
    """Cost of a layer spec: its MACs, or its measured time (min of a few runs) on the example's device."""

    def __init__(self, cost: str, like: torch.Tensor):
        self.cost, self.like, self.cache = cost, like, {}

    def __call__(self, spec: LayerSpec) -> float:
        if self.cost == "macs":
            return spec.macs()
        if spec not in self.cache:
            self.cache[spec] = _time_layer(spec, self.like)
        return self.cache[spec]


def _time_layer(spec: LayerSpec, like: torch.Tensor, repeats: int = 7) -> float:
    """Seconds one call of a layer of ``spec`` (random weights) takes on ``like``'s device (min of runs)."""
    gen = torch.Generator().manual_seed(0)
    shape = (spec.out_channels, spec.in_channels // spec.groups, *spec.kernel)
    weight = torch.randn(shape, generator=gen).to(like)
    params = Params(weight, torch.zeros(spec.out_channels).to(like) if spec.bias else None,
                    torch.zeros(spec.out_channels, 1, *spec.kernel).to(like) if spec.border else None)
    layer, x = build_layer(spec, params, like).eval(), torch.randn(spec.in_shape, generator=gen).to(like)
    times = []
    with torch.no_grad():
        for _ in range(repeats + 2):
            if x.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            layer(x)
            if x.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return min(times[2:])


def _segments(chain: Chain) -> dict[tuple[int, int], LayerSpec | str]:
    """Merged spec (or refusal reason) of every run ``i..j`` of the chain, composed left to right."""
    out = {}
    for i in range(len(chain.specs)):
        merged = chain.specs[i]
        for j in range(i + 1, len(chain.specs)):
            merged = compose(merged, chain.specs[j])
            out[(i, j)] = merged
            if isinstance(merged, str):
                break
    return out


def _best_split(chain: Chain, segments, cost, allowed) -> list[tuple[int, int]]:
    """The runs (i, j) of least total cost, ties to fewer runs; ``allowed(i, j)`` filters merges."""
    n = len(chain.specs)
    best = [(0.0, 0, [])] + [None] * n
    for j in range(1, n + 1):
        for i in range(j):
            run = chain.specs[i] if i == j - 1 else segments.get((i, j - 1))
            if isinstance(run, str) or run is None or (i < j - 1 and not allowed(i, j - 1)):
                continue
            c = cost(run) if i < j - 1 else cost(chain.specs[i])
            total, count, runs = best[i]
            option = (total + c, count + 1, runs + [(i, j - 1)])
            if best[j] is None or option[:2] < best[j][:2]:
                best[j] = option
    return [r for r in best[n][2] if r[0] < r[1]]


def _chain_decisions(chain: Chain, cost, choices) -> tuple[list[ChainMerge], list[Refusal]]:
    segments = _segments(chain)
    chosen_keys = None if choices is None else {tuple(c[1:]) for c in choices if c[0] == "chain"}

    def allowed(i, j):
        return chosen_keys is None or chain.layers[i:j + 1] in chosen_keys

    runs = _best_split(chain, segments, cost, allowed)
    merges = [ChainMerge(chain.layers[i:j + 1], chain.names[i:j + 1], sum(chain.between[i:j], ()),
                         chain.specs[i:j + 1], segments[(i, j)]) for i, j in runs]
    inside = {k for i, j in runs for k in range(i, j)}
    refusals = []
    for k in range(len(chain.specs) - 1):
        if k in inside:
            continue
        pair = segments[(k, k + 1)]
        names = chain.names[k:k + 2]
        if isinstance(pair, str):
            refusals.append(Refusal("chain", names, pair))
            continue
        apart = sum(s.macs() for s in chain.specs[k:k + 2])
        refusals.append(Refusal("chain", names, _cost_reason(cost, chain.specs[k:k + 2], pair, choices, runs, chain),
                                apart, pair.macs()))
    return merges, refusals


def _cost_reason(cost, pair_specs, pair, choices, runs, chain) -> str:
    if choices is not None:
        return "not merged when this fold was first planned (recorded choice)"
    apart, merged = sum(cost(s) for s in pair_specs), cost(pair)
    if merged > apart:
        return _slower(cost, merged, apart)
    split = ", ".join("+".join(chain.names[i:j + 1]) for i, j in runs) or "no merge"
    return f"the chain costs less split another way ({split})"


def _slower(cost, merged: float, apart: float) -> str:
    if cost.cost == "macs":
        return f"merged it costs more: {int(merged):,} MACs vs {int(apart):,} apart"
    return f"merged it measured slower: {merged * 1e3:.3f} ms vs {apart * 1e3:.3f} ms apart"


def _branch_decisions(found, cost, choices) -> tuple[list[BranchMerge], list[Refusal]]:
    merges, refusals = [], []
    chosen = None if choices is None else {tuple(c[1:]) for c in choices if c[0] == "branch"}
    for cand in found:
        if isinstance(cand, Refusal):
            refusals.append(cand)
        elif chosen is not None and cand.branches not in chosen:
            refusals.append(Refusal("branch", cand.names, "not merged when this fold was first planned (recorded "
                                    "choice)", cand.macs_before, cand.macs_after))
        elif chosen is None and cost(cand.after) > sum(cost(s) for s in cand.before):
            refusals.append(Refusal("branch", cand.names, _slower(cost, cost(cand.after), sum(map(cost, cand.before))),
                                    cand.macs_before, cand.macs_after))
        else:
            merges.append(cand)
    return merges, refusals


def make_plan(gm: fx.GraphModule, example_input, cost: str = "macs", choices=None) -> Planned:
    """Plan the fold of ``gm`` (eval mode) on ``example_input``.

    Runs ``gm`` once (shapes and the reference output for the function check); changes nothing in it.

    Example:
        >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(64, 8), nn.Linear(8, 64)))
        >>> plan = make_plan(gm, torch.zeros(1, 64))  # a bottleneck: merged it would cost more
        >>> plan.actions, [r.describe() for r in plan.refusals]
        ((), ['chain 0 + 1: merged it costs more: 4,096 MACs vs 1,024 apart'])
    """
    with eval_mode(gm), torch.no_grad():
        reference = first_tensor(ShapeProp(gm).propagate(example_input))
    sim = meta_copy(gm)
    costs = _Costs(cost, example_input)
    actions: list[Action] = []
    refusals: list[Refusal] = []
    for cand in norm_candidates(sim):
        (actions if isinstance(cand, NormFold) else refusals).append(cand)
        if isinstance(cand, NormFold):
            execute(sim, cand)
    while True:
        found, chain_refusals = chains(sim)
        merged = []
        for chain in found:
            merges, kept = _chain_decisions(chain, costs, choices)
            merged += merges
            chain_refusals += kept
        for action in merged:
            execute(sim, action)
        branch_merges, branch_refusals = _branch_decisions(branch_candidates(sim), costs, choices)
        for action in branch_merges:
            execute(sim, action)
        actions += merged + branch_merges
        if not merged and not branch_merges:
            break
    merged_norms = {name for a in actions if isinstance(a, BranchMerge) for name in a.names}
    refusals = [r for r in refusals if r.names[0] not in merged_norms]  # a RepVGG identity-path norm merged later
    return Planned(tuple(actions), tuple(refusals + chain_refusals + branch_refusals), reference, count_layers(gm))
