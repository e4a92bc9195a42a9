"""Coverage sweep: every timm and torchvision model -> trace, blocks, sites, EraseReLU plan, oracles.

Each model is built on ``torch.device("meta")`` (no weight memory), traced (untraceable parts become
leaves), its blocks and sites are found, and EraseReLU at proportion 1.0 is planned (dry run: no
forward pass). Outcomes: ``traced`` (fully), ``leaves`` (traced with untraceable parts as leaves),
``partial`` (the root cannot be traced, or every block sits inside untraceable leaves: traced in
parts, with the traced and the Python parts and their reasons), ``no-blocks`` / ``failed`` with a
one-line reason.

Two oracles, which use none of the discovery code, say whether the found blocks are right:

* **stage oracle** (timm models with ``feature_info``): the children of the stages ``feature_info``
  names are the oracle blocks (:func:`oracle_stages`); the found blocks inside those stages are
  ``equal``, ``finer`` / ``coarser`` (with a ``reason_class`` from :data:`STAGE_REASONS`, or
  ``unclassified``) or ``disagree`` (:func:`compare_stages`);
* **sign oracle** (ReLU-family CNNs up to 150M parameters, :func:`activation_family`): random CPU
  weights, every BatchNorm randomised, one eval forward on 1x3x64x64 (larger when 64 fails): a block
  whose last sites are ReLU / ReLU6 must output only values >= 0, a block without a last site some
  value < 0 (:func:`check_signs`); then ``relu_surgery.erase(model, 1.0)``: each erased site's block
  output must go from >= 0 to some value < 0 (:func:`check_rewrites`), else it is a wrong rewrite.

    python bench/coverage.py                       # everything, 2 worker processes
    python bench/coverage.py --filter 'resnet*' --limit 50
    python bench/coverage.py --filter 'resnet18,vgg11' --no-sign --out /tmp/cov.json

Writes bench/results/coverage.json (one line per model) and prints a summary table (counts per
outcome, per family, per oracle, the models the oracles flag, slowest models; a per-model table when
40 models or fewer were swept).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import fnmatch
import json
import multiprocessing as mp
import os
import platform
import re
import signal
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch
import torch.nn as nn

RESULTS = Path(__file__).resolve().parent / "results" / "coverage.json"
TIMEOUT_S = 120


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


# In-place ops that keep a tensor's shape: weight initialisation on the meta device (no data to
# write) returns its tensor at once instead of running torch's Python reference implementations.
_INIT_OPS = frozenset({
    "normal_", "uniform_", "trunc_normal_", "clamp_", "clamp_min_", "clamp_max_", "fill_", "zero_", "erfinv_",
    "mul_", "add_", "sub_", "div_", "copy_", "exponential_", "bernoulli_", "log_normal_", "random_", "sqrt_",
    "abs_", "neg_", "exp_", "log_", "orthogonal_", "kaiming_normal_", "kaiming_uniform_", "xavier_normal_",
    "xavier_uniform_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
})


class _MetaInit(torch.overrides.TorchFunctionMode):
    """Skip the value-only work of building a model on the meta device (its weights hold no data)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in _INIT_OPS and args and isinstance(args[0], torch.Tensor) \
                and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


def _build(source: str, name: str):
    """The model on the meta device; on the CPU when its builder computes with tensors (torchvision RegNet)."""
    import torch

    from relu_surgery.models.resolve import create_model

    prefix = "timm:" if source == "timm" else "tv:"
    try:
        with torch.device("meta"), _MetaInit():
            return create_model(prefix + name), "meta"
    except NotImplementedError:  # "Cannot copy out of meta tensor": build for real
        return create_model(prefix + name), "cpu"


def sweep_one(task: tuple) -> dict:
    """Build, trace, discover and plan one model, then run the oracles; never raises.

    ``task`` is ``(source, name)`` or ``(source, name, sign)``; ``sign=False`` skips the sign oracle.
    """
    import warnings

    warnings.filterwarnings("ignore")
    from relu_surgery.graph.analysis import analyze
    from relu_surgery.errors import SurgeryError, TraceError
    from relu_surgery.surgery.erase import erase_step

    torch.set_num_threads(1)
    source, name, sign = (*task, True)[:3]
    row = {"model": name, "source": source}
    start = time.perf_counter()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT_S)
    model = blocks = None
    graphs = ()
    try:
        model, row["device"] = _build(source, name)
        row["build_s"] = round(time.perf_counter() - start, 3)
        try:
            analysis = analyze(model, example_input=torch.zeros(1, device=row["device"]), require_blocks=False)
        except TraceError:  # the root cannot be traced: traced in parts
            analysis = None
        parted = None
        if analysis is None or (not analysis.blocks and analysis.traced.leaves):
            parted = _partial_row(model, row)
        if parted is not None:
            blocks, graphs = parted.blocks, [p.traced.graph_module for p in parted.parts]
        else:
            plan = erase_step(proportion=1.0).plan(analysis) if analysis.blocks else None
            blocks, graphs = analysis.blocks, [analysis.traced.graph_module]
            row.update(
                outcome=("leaves" if analysis.traced.leaves else "traced") if blocks else "no-blocks",
                leaves=sorted(analysis.traced.leaves),
                blocks=len(blocks),
                block_types=sorted(Counter(b.type for b in blocks)),
                rules=sorted({b.rule.split(" ")[0] for b in blocks}),
                sites=sum(len(b.sites) for b in blocks),
                last_sites=sum(len(b.last_sites) for b in blocks),
                planned_changes=len(plan.changes) if plan else 0,
            )
            if not blocks:
                leaves = ", ".join(sorted(analysis.traced.leaves))
                row["reason"] = f"no blocks found outside the untraceable leaves {leaves}" if leaves else "no blocks found"
    except _Timeout:
        row.update(outcome="failed", reason=f"timed out after {TIMEOUT_S} s")
    except SurgeryError as exc:
        row.update(outcome="failed", reason=str(exc))
    except Exception as exc:  # building the model itself failed: record, never crash the sweep
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        row.update(outcome="failed", reason=f"{type(exc).__name__}: {first}"[:300])
    finally:
        signal.alarm(0)
    row["seconds"] = round(time.perf_counter() - start, 3)
    if blocks:
        try:
            row.update(stage_oracle(model, source, blocks))
        except Exception as exc:  # the oracle itself failed on this model: say so
            row.update(stage_oracle="n/a", stage_oracle_detail=f"oracle failed: {type(exc).__name__}: {exc}"[:200])
        if sign:
            row.update(sign_oracle(model, source, name, blocks, graphs, row.get("device", "meta")))
        else:
            row.update(sign_oracle="n/a", sign_oracle_why="--no-sign")
    else:
        row.update(stage_oracle="n/a", stage_oracle_detail="no blocks", sign_oracle="n/a", sign_oracle_why="no blocks")
    return row


def _partial_row(model, row: dict):
    """Trace ``model`` in parts and fill ``row`` (outcome ``partial``, or ``no-blocks`` with the parts as
    reason); returns the part analysis, or None when the model is not traced in parts."""
    from relu_surgery.graph.part_analysis import analyze_parts
    from relu_surgery.graph.parts import walk
    from relu_surgery.surgery.erase import erase_step
    from relu_surgery.surgery.partial import plan_parts

    parted = analyze_parts(model)
    if parted is None:
        return None
    blocks = parted.blocks
    plan = plan_parts(parted, erase_step(proportion=1.0))[0] if blocks else None
    python = {p.path or "(root)": p.reason for p in parted.python_parts}
    row.update(
        outcome="partial" if blocks else "no-blocks",
        traced_parts={p.path or "(root)": len(p.blocks) for p in parted.parts},
        python_parts=python, order=parted.order,
        blocks=len(blocks), block_types=sorted(Counter(b.type for b in blocks)),
        rules=sorted({b.rule.split(" ")[0] for b in blocks}), sites=sum(len(b.sites) for b in blocks),
        last_sites=sum(len(b.last_sites) for b in blocks), planned_changes=len(plan.changes) if plan else 0,
    )
    if not blocks:
        row["reason"] = f"traced in parts, no part holds blocks ({len(parted.parts)} traced; " \
                        f"{len([p for p in walk(parted.tree) if not p.is_traced])} Python: {python.get('(root)', '')})"
    return parted


# ----------------------------------------------------------------------------------------------
# Oracles: are the found blocks right? Two checks that use none of the discovery code.
# ----------------------------------------------------------------------------------------------

#: Why found blocks may be finer or coarser than timm's stages and still be right (the README lists
#: these). A finer / coarser outcome whose class is not here does not count as "documented".
STAGE_REASONS = {
    "several residual units per stage child":
        "a stage child holds two or more residual units that together hold all its weight layers, each unit "
        "one block (MaxViT / CoAtNet: MBConv, window and grid attention inside one MaxxVitBlock)",
    "parallel branches per stage child":
        "a stage child runs parallel branches of blocks, the blocks hold all the branches' weight layers "
        "(HRNet's HighResolutionModule; its fuse layers are no block)",
    "cross-stage (CSP) region per stage child":
        "a stage child is a cross-stage-partial region (split, blocks on one part, concatenated): the "
        "blocks inside its .blocks are found, its split / merge convolutions are no block (CSPNeXt)",
    "cross-stage (CSP) region spans the stage":
        "the stage is one cross-stage-partial region, found as one block holding the stage's blocks",
    "residual around the whole stage":
        "the found block is a module above the stage children that owns a residual add over them",
}

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _weight_layers(module: nn.Module) -> int:
    """Parameters with two or more dimensions (conv / linear weights, embeddings) in ``module``'s subtree."""
    return sum(1 for p in module.parameters() if p.dim() >= 2)


def _block_like(module: nn.Module) -> bool:
    """A stage child that can be a block: not a leaf layer, and two or more weight layers, or one with
    a skip (timm's ``ConvBnAct`` block: ``has_skip``; iFormer's ``RepCPE``: :func:`_skips_input`).
    A conv-norm-act or norm-act child is a stem / downsample / transition, not a block."""
    if next(iter(module.children()), None) is None:
        return False
    weights = _weight_layers(module)
    return weights >= 2 or (weights == 1 and (hasattr(module, "has_skip") or _skips_input(module)))


def _skips_input(module: nn.Module) -> bool:
    """Whether a module with one conv / linear layer passes its input through unchanged once every
    parameter is zero (``x + f(x)``: a one-layer residual unit). A CPU copy runs on random input; a
    conv-norm-act downsample gives zeros (or another shape) instead. False when it cannot be run."""
    layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if len(layers) != 1:
        return False
    layer = layers[0]
    shape = (1, layer.in_channels, 8, 8) if isinstance(layer, nn.Conv2d) else (1, 4, layer.in_features)
    try:
        probe = copy.deepcopy(module)
        if any(t.is_meta for t in [*probe.parameters(), *probe.buffers()]):
            probe = probe.to_empty(device="cpu")
        with torch.no_grad():
            for name, t in [*probe.named_parameters(), *probe.named_buffers()]:
                if t.is_floating_point():
                    t.fill_(1.0 if name.endswith("running_var") else 0.0)
            probe.eval()
            x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
            y = probe(x)
    except Exception:  # noqa: BLE001 - a module that cannot run alone is not counted as a skip
        return False
    return isinstance(y, torch.Tensor) and y.shape == x.shape and torch.allclose(y, x)


def _block_children(path: str, holder: nn.Module) -> list[tuple[str, nn.Module]]:
    """The block-like children of a stage: :func:`_block_like` ones, and every child of the class of
    one (MobileOne's 1x1 ``MobileOneBlock`` beside its 3x3 ones: one class, one kind of unit)."""
    kids = list(holder.named_children())
    block_classes = {type(c) for _, c in kids if _block_like(c)} - set(_CONTAINERS)
    return [(f"{path}.{k}" if path else k, c) for k, c in kids
            if _block_like(c) or (type(c) in block_classes and next(iter(c.children()), None) is not None)]


def _feature_modules(model: nn.Module) -> list[str] | None:
    info = getattr(model, "feature_info", None)
    if info is None:
        return None
    if hasattr(info, "module_name"):  # timm's FeatureInfo
        return [info.module_name(i) for i in range(len(info))]
    try:
        return [entry["module"] for entry in info]
    except (TypeError, KeyError):
        return None


def _holds_bare_layers(container: nn.Module) -> bool:
    """Whether a container runs one block-like child with leaf weight layers beside it (a bare conv /
    linear): ConvMixer's ``Sequential(Residual, conv, act, norm)`` is one block, not a stage of one.
    A stage of several blocks after a bare downsampling conv (CSATv2), or of a bare downsampling
    conv and a container of blocks (RDNet's ``DenseStage``), is still a stage."""
    kids = list(container.children())
    bare = any(next(iter(c.children()), None) is None and _weight_layers(c) for c in kids)
    blocks = [c for c in kids if _block_like(c)]
    return bare and len(blocks) <= 1 and not any(isinstance(c, _CONTAINERS) for c in blocks)


def _expand(path: str, module: nn.Module) -> list[str]:
    """Oracle block names for a block-like stage child: a container of block-like modules (a branch or
    sub-stage Sequential) stands for its children, anything else for itself (so does a container
    with bare weight layers beside them: ConvMixer's ``Sequential(Residual, conv, act, norm)``)."""
    if isinstance(module, _CONTAINERS) and not _holds_bare_layers(module):
        kids = _block_children(path, module)
        if kids:
            return [name for k, c in kids for name in _expand(k, c)]
    return [path]


#: Attributes of a stage module holding its blocks (timm: most stages' ``.blocks``, NesT's levels).
STAGE_ATTRS = ("blocks", "transformer_encoder")


def _holders(name: str, module: nn.Module, modules: dict, parents: Counter) -> list[str]:
    """Candidate container paths, in order, whose children are the oracle blocks for feature_info entry ``name``."""
    parent = name.rsplit(".", 1)[0] if "." in name else ""
    out = []
    if isinstance(module, _CONTAINERS) and not _holds_bare_layers(module):
        out.append(name)
    out += [f"{name}.{a}" for a in STAGE_ATTRS if isinstance(getattr(module, a, None), _CONTAINERS)]
    if parent and isinstance(modules.get(parent), _CONTAINERS) and parents[parent] >= 2 \
            and _block_like(module):
        out.append(parent)  # ViT: feature_info names the blocks themselves
    kids = list(module.children())
    if kids and len({type(c) for c in kids}) == 1 and not isinstance(kids[0], _CONTAINERS) and \
            all(_block_like(c) for c in kids):
        out.append(name)  # a stage module holding only blocks (RegNet's RegStage: b1, b2, ...)
    return out


def oracle_stages(model: nn.Module) -> tuple[dict[str, list[str]], str]:
    """The stages timm's ``feature_info`` names and their children (the oracle blocks).

    For each entry's module M (the root, ``""``, names no stage), the stage is the first of these
    with block-like children: M itself when it is an ``nn.Sequential`` / ``ModuleList`` /
    ``ModuleDict``; M's ``.blocks`` (or another :data:`STAGE_ATTRS`) container; M's parent when that
    is a container and ``feature_info`` names two or more of its children (ViT's ``blocks.0`` ..
    ``blocks.11``); M when its children are all block-like and of one class (RegNet's ``RegStage``).
    Otherwise the entry gives nothing (``act1``, a stem). The oracle blocks are the stage's
    block-like children (:func:`_block_like`), a container child standing for its own children
    (:func:`_expand`). Returns ``({stage path: [oracle block names]}, why)`` where ``why`` says why
    nothing was found.
    """
    names = _feature_modules(model)
    if names is None:
        return {}, "no feature_info"
    modules = dict(model.named_modules())
    parents = Counter(n.rsplit(".", 1)[0] if "." in n else "" for n in names)
    stages: dict[str, list[str]] = {}
    for name in names:
        module = modules.get(name) if name else None
        for stage in _holders(name, module, modules, parents) if module is not None else ():
            kids = [o for k, child in _block_children(stage, modules[stage]) for o in _expand(k, child)]
            if kids:
                if stage not in stages and not any(_below(stage, s) or _below(s, stage) for s in stages):
                    stages[stage] = kids
                break
    if not stages:
        return {}, f"feature_info names no block containers ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"
    return stages, ""


def _below(name: str, path: str) -> bool:
    return name == path or name.startswith(path + ".")


def _strictly_below(name: str, path: str) -> bool:
    return name.startswith(path + ".")


def compare_stages(stages: dict[str, list[str]], found: list[str], model: nn.Module | None = None,
                   rules: dict[str, str] | None = None) -> dict:
    """Found block names against the oracle blocks of ``stages`` (see :func:`oracle_stages`).

    Only found names inside a stage (equal to or below its path, or above one of its oracle blocks)
    take part. ``equal``: the same set. ``finer``: every oracle block is found or split into two or
    more found blocks below it, and one is split. ``coarser``: every oracle block is found or lies
    below a found block, and one does. ``disagree``: anything else. ``model`` (the built model, for
    the module classes) and ``rules`` (found name -> discovery rule) only serve ``reason_class``.
    Returns ``{"outcome", "detail", "reason_class", "oracle", "found"}`` (the last three for
    non-equal outcomes).
    """
    oracle = list(dict.fromkeys(o for kids in stages.values() for o in kids))
    inside = [f for f in dict.fromkeys(found)
              if any(_below(f, s) for s in stages) or any(_strictly_below(o, f) for o in oracle)]
    if set(inside) == set(oracle):
        return {"outcome": "equal"}
    in_found = set(inside)
    relation, missing = {}, []
    for o in oracle:
        down = [f for f in inside if _strictly_below(f, o)]
        up = [f for f in inside if _strictly_below(o, f)]
        if o in in_found and not down and not up:
            relation[o] = "equal"
        elif o not in in_found and len(down) >= 2 and not up:
            relation[o] = "split"
        elif o not in in_found and not down and up:
            relation[o] = "merged"
        else:
            relation[o] = "missing"
            why = "nested" if o in in_found else f"only {down[0]}" if len(down) == 1 else \
                "inside and above" if up else "not found"
            missing.append(f"{o} ({why})")
    oracle_set = set(oracle)
    extra = [f for f in inside if f not in oracle_set and not any(_strictly_below(f, o) for o in oracle)
             and not any(_strictly_below(o, f) for o in oracle)]
    kinds = set(relation.values())
    if not missing and not extra and "split" in kinds and "merged" not in kinds:
        outcome = "finer"
    elif not missing and not extra and "merged" in kinds and "split" not in kinds:
        outcome = "coarser"
    else:
        outcome = "disagree"
    out = {"outcome": outcome, "oracle": oracle, "found": inside}
    if outcome == "disagree":
        parts = [f"{len(missing)} oracle blocks missing: {', '.join(missing[:3])}"] if missing else []
        parts += [f"{len(extra)} found blocks unrelated: {', '.join(extra[:3])}"] if extra else []
        if not parts:
            parts = ["some oracle blocks are split, others merged"]
        out["detail"] = "; ".join(parts)
    else:
        which = "split" if outcome == "finer" else "merged"
        example = next(o for o in oracle if relation[o] == which)
        if outcome == "finer":
            down = [f for f in inside if _strictly_below(f, example)]
            out["detail"] = f"{sum(r == 'split' for r in relation.values())} of {len(oracle)} oracle blocks split, " \
                            f"e.g. {example} -> {', '.join(down[:3])}{', ...' if len(down) > 3 else ''}"
        else:
            up = next(f for f in inside if _strictly_below(example, f))
            out["detail"] = f"{sum(r == 'merged' for r in relation.values())} of {len(oracle)} oracle blocks " \
                            f"inside a found block, e.g. {example} in {up}"
        out["reason_class"] = _reason_class(outcome, oracle, inside, relation, model, rules or {})
    return out


def _covers(module: nn.Module, parts: list[nn.Module]) -> bool:
    """True when every weight layer (parameter of two or more dimensions) of ``module`` lies in ``parts``."""
    inside = {id(p) for part in parts for p in part.parameters()}
    return all(id(p) in inside for p in module.parameters() if p.dim() >= 2)


def _reason_class(outcome: str, oracle: list[str], inside: list[str], relation: dict, model, rules: dict) -> str:
    """The documented reason (a :data:`STAGE_REASONS` key, several joined by `` + ``) for a finer /
    coarser outcome, else ``unclassified``.

    Finer: each split oracle block must be fully covered (every weight layer inside one of its found
    blocks) by parallel branches, by the blocks of a CSP region, or by residual units; a split that
    leaves weight layers outside the found blocks (their own convolutions, a shortcut) is unclassified.
    """
    modules = dict(model.named_modules()) if model is not None else {}
    if outcome == "finer":
        classes = set()
        for o in (o for o in oracle if relation[o] == "split"):
            down = [f for f in inside if _strictly_below(f, o)]
            parts = [modules[f] for f in down if f in modules]
            block = modules.get(o)
            if block is None or len(parts) < len(down):
                return "unclassified"
            heads = {f[len(o) + 1:].split(".")[0] for f in down}
            head = f"{o}.{next(iter(heads))}"
            if heads == {"blocks"} and isinstance(modules.get(head), _CONTAINERS) and _covers(modules[head], parts) \
                    and not _covers(block, parts):
                classes.add("cross-stage (CSP) region per stage child")
            elif len(heads) == 1 and isinstance(modules.get(head), nn.ModuleList) and \
                    all(f[len(head) + 1:].count(".") >= 1 for f in down) and \
                    len({f[len(head) + 1:].split(".")[0] for f in down}) >= 2 and _covers(modules[head], parts):
                classes.add("parallel branches per stage child")
            elif _covers(block, parts) and all(rules.get(f, "").startswith("residual") for f in down):
                classes.add("several residual units per stage child")
            else:
                return "unclassified"
        return " + ".join(sorted(classes))
    classes = set()
    for f in {f for f in inside if any(_strictly_below(o, f) for o in oracle)}:
        module = modules.get(f)
        name = type(module).__name__ if module is not None else ""
        if module is not None and ("CrossStage" in name or "Csp" in name or hasattr(module, "conv_transition")):
            classes.add("cross-stage (CSP) region spans the stage")
        elif rules.get(f, "").startswith("residual"):
            classes.add("residual around the whole stage")
        else:
            return "unclassified"
    return " + ".join(sorted(classes))


def stage_oracle(model: nn.Module, source: str, blocks) -> dict:
    """The stage-oracle fields of a row: ``stage_oracle`` and, unless equal, ``stage_oracle_detail``
    (and ``reason_class``, the oracle and found names where they differ)."""
    if source != "timm":
        return {"stage_oracle": "n/a", "stage_oracle_detail": f"{source} model (no feature_info)"}
    stages, why = oracle_stages(model)
    if not stages:
        return {"stage_oracle": "n/a", "stage_oracle_detail": why}
    names = [b.name for b in blocks]
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown and len(unknown) == len(names):
        return {"stage_oracle": "n/a", "stage_oracle_detail": f"block names are not module paths ({unknown[0]}, ...)"}
    result = compare_stages(stages, names, model, {b.name: b.rule for b in blocks})
    row = {"stage_oracle": result["outcome"]}
    if result["outcome"] != "equal":
        row["stage_oracle_detail"] = result["detail"]
        if "reason_class" in result:
            row["reason_class"] = result["reason_class"]
        row["stage_oracle_blocks"], row["stage_found_blocks"] = result["oracle"], result["found"]
    return row


# --- sign oracle --------------------------------------------------------------------------------

_RELU_NAMES = {"relu", "relu6"}
_GATE_NAMES = {"sigmoid", "hardsigmoid", "hard_sigmoid"}  # gates: they scale a tensor by [0, 1]
_OTHER_NAMES = {"gelu", "gelutanh", "quickgelu", "silu", "swish", "mish", "hardswish", "hard_swish", "hardmish",
                "hard_mish", "tanh", "hardtanh", "elu", "selu", "celu", "leakyrelu", "leaky_relu", "prelu", "rrelu",
                "softplus", "starrelu", "squaredrelu", "tanhshrink", "softsign", "logsigmoid", "glu", "swiglu",
                "geglu", "gelu_tanh", "quick_gelu", "crelu", "frelu", "dyrelu"}
SIGN_MAX_PARAMS = 150_000_000
SIGN_SIZES = (64, 96, 128, 224)
SIGN_TIMEOUT_S = 60


def _activation_name(name: str) -> str:
    return name.lower().rstrip("_").replace("-", "")


def activation_family(model: nn.Module, graph_modules=()) -> tuple[str | None, str]:
    """``("relu" | "relu+gate", "")`` when every activation in ``model`` is ReLU / ReLU6 (sigmoid
    gates allowed) and it has a 2-d convolution, else ``(None, why)``.

    Looks at the module classes of ``model`` and at the ``call_function`` / ``call_method`` targets
    of ``graph_modules`` (``torch.relu``, ``F.relu6``, ``hardtanh(x, 0, 6)``, ``x.sigmoid()`` ...).
    """
    kinds, others = set(), set()
    has_conv = False
    for module in model.modules():
        has_conv = has_conv or isinstance(module, nn.Conv2d)
        name = _activation_name(type(module).__name__)
        if isinstance(module, (nn.ReLU, nn.ReLU6)):
            kinds.add("relu")
        elif isinstance(module, nn.Hardtanh):
            (kinds.add("relu") if (module.min_val, module.max_val) == (0.0, 6.0) else others.add("hardtanh"))
        elif name in _GATE_NAMES:
            kinds.add("gate")
        elif name in _OTHER_NAMES:
            others.add(name)
    for gm in graph_modules:
        for node in gm.graph.nodes:
            if node.op not in ("call_function", "call_method"):
                continue
            name = _activation_name(node.target if node.op == "call_method" else getattr(node.target, "__name__", ""))
            if name in _RELU_NAMES:
                kinds.add("relu")
            elif name == "hardtanh":
                bounds = tuple(node.args[1:3]) or (node.kwargs.get("min_val", -1.0), node.kwargs.get("max_val", 1.0))
                (kinds.add("relu") if tuple(map(float, bounds)) == (0.0, 6.0) else others.add("hardtanh"))
            elif name in _GATE_NAMES:
                kinds.add("gate")
            elif name in _OTHER_NAMES:
                others.add(name)
    if others:
        return None, f"activations {', '.join(sorted(others))}"
    if "relu" not in kinds:
        return None, "no ReLU"
    if not has_conv:
        return None, "not a CNN (no Conv2d)"
    return ("relu+gate" if "gate" in kinds else "relu"), ""


def randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Every BatchNorm: running_mean ~ N(0, 1), running_var ~ U(0.5, 2), weight and bias ~ N(0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                if module.running_mean is not None:
                    module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen))
                    module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) * 1.5 + 0.5)
                if module.weight is not None:
                    module.weight.copy_(torch.randn(module.weight.shape, generator=gen))
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen))


_NOISE: list[torch.Tensor] = []


def _noise(n: int, offset: int) -> torch.Tensor:
    """``n`` values in [-1, 1) from a fixed random table (seeded once per process), read cyclically from
    ``offset``: as random as the sign checks need, ten times cheaper than drawing every weight."""
    if not _NOISE:
        table = torch.rand(1_048_583, generator=torch.Generator().manual_seed(1)) * 2 - 1
        _NOISE.append(torch.cat([table, table]))
    table = _NOISE[0]
    size = table.numel() // 2
    start = offset % size
    if n <= size:
        return table[start:start + n]
    return table[start:start + size].repeat(n // size + 1)[:n]


def _materialize(model: nn.Module, source: str, name: str) -> nn.Module:
    """A float32 CPU copy of the meta-built ``model`` with random weights.

    Cheap path: ``to_empty`` and a He-uniform-scaled fill (:func:`_noise`), when BatchNorm statistics
    are its only buffers and no module holds a plain tensor attribute (their values would be lost).
    Otherwise the model is built again on the CPU.
    """
    bn = nn.modules.batchnorm._BatchNorm
    cheap = all(isinstance(m, bn) or not list(m.buffers(recurse=False)) for m in model.modules()) and not any(
        isinstance(v, torch.Tensor) and not isinstance(v, nn.Parameter) for m in model.modules()
        for k, v in vars(m).items() if not k.startswith("_"))
    if not cheap:
        from relu_surgery.models.resolve import create_model

        return create_model(("timm:" if source == "timm" else "tv:") + name).float()
    model = model.to_empty(device="cpu").float()
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            bound = (6.0 / max(1, p[0].numel())) ** 0.5 if p.dim() >= 2 else 1.0
            p.view(-1).copy_(_noise(p.numel(), offset)).mul_(bound)
            offset += 7919 * p.numel() + 1
        for m in model.modules():
            if isinstance(m, bn) and m.num_batches_tracked is not None:
                m.num_batches_tracked.zero_()
    return model


def _tensor_range(value) -> tuple[float, float] | None:
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel():
        return float(value.min()), float(value.max())
    return None


def module_outputs(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, tuple | str]:
    """One eval forward of ``model`` on ``x``; ``{name: (min, max)}`` of each named module's output,
    or why there is none (not a module, not called, called twice, not a tensor)."""
    out: dict[str, tuple | str] = {}
    calls: Counter = Counter()
    handles = []
    modules = dict(model.named_modules())

    def hook(name):
        def record(module, args, output):
            calls[name] += 1
            rng = _tensor_range(output)
            out[name] = rng if rng is not None else f"output is a {type(output).__name__}, not a float tensor"
        return record

    try:
        for name in names:
            if name in modules:
                handles.append(modules[name].register_forward_hook(hook(name)))
            else:
                out[name] = "not a module (virtual block)"
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    for name in names:
        if name not in out:
            out[name] = "module not called"
        elif calls[name] > 1:
            out[name] = f"module called {calls[name]} times"
    return out


def graph_output_nodes(gm, names) -> dict[str, object]:
    """Per block name, its output node in ``gm``: the last node in graph order whose ``rs_scope``
    holds the name and that has a user outside it; or why there is none."""
    nodes = list(gm.graph.nodes)
    found: dict[str, object] = {}
    for name in names:
        leaving = [n for n in nodes if name in n.meta.get("rs_scope", ())
                   and any(name not in u.meta.get("rs_scope", ()) for u in n.users)]
        found[name] = leaving[-1] if leaving else "no node of the block is used outside it"
    return found


def graph_outputs(gm, names: list[str], x: torch.Tensor) -> dict[str, tuple | str]:
    """Run ``gm`` node by node on ``x``; ``{name: (min, max)}`` of each block's output node (taken as
    the node runs, before any in-place op), or why there is none."""
    import torch.fx as fx

    where = graph_output_nodes(gm, names)
    watch = {node.name: name for name, node in where.items() if isinstance(node, fx.Node)}
    out: dict[str, tuple | str] = {n: w for n, w in where.items() if isinstance(w, str)}

    class Watch(fx.Interpreter):
        def run_node(self, node):
            value = super().run_node(node)
            if node.name in watch:
                rng = _tensor_range(value)
                out[watch[node.name]] = rng if rng is not None else f"output is a {type(value).__name__}"
            return value

    with torch.no_grad():
        Watch(gm).run(x)
    return out


def _flipped_outputs(model: nn.Module, names: list[str], x: torch.Tensor) -> dict:
    """:func:`module_outputs` with every parameter of fewer than two dimensions outside the BatchNorms
    (biases, layer scales, learnable affines) negated; the model is restored afterwards."""
    bn = nn.modules.batchnorm._BatchNorm
    norms = {id(p) for m in model.modules() if isinstance(m, bn) for p in m.parameters(recurse=False)}
    flip = [p for p in model.parameters() if p.dim() < 2 and id(p) not in norms]
    with torch.no_grad():
        for p in flip:
            p.neg_()
        try:
            return module_outputs(model, names, x)
        finally:
            for p in flip:
                p.neg_()


def _input_sizes(model: nn.Module) -> list[int]:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    size = cfg.get("input_size", (3, 224, 224))[-1] if isinstance(cfg, dict) else 224
    return list(dict.fromkeys([*SIGN_SIZES, int(size)]))


def _min(value) -> float:
    return round(value[0], 4)


def sign_oracle(model: nn.Module, source: str, name: str, blocks, graph_modules=(), device: str = "meta") -> dict:
    """The sign-oracle fields of a row (``sign_oracle``: ``ok`` / ``contradicts`` / ``n/a``).

    For a ReLU-family CNN (:func:`activation_family`) of at most :data:`SIGN_MAX_PARAMS` parameters:
    random CPU weights, every BatchNorm randomised (:func:`randomize_norms`), eval mode, one forward
    on a 1x3xSxS input (S = 64, else the next size in :data:`SIGN_SIZES` that runs). A block with a
    last ReLU / ReLU6 site must output only values >= 0, a block without a last site some value < 0
    (``sign_contradictions``: block, expected, min). Then ``relu_surgery.erase(model, 1.0)``: the block
    of every erased site must have output >= 0 before and some value < 0 after (``wrong_rewrites``:
    site, block, min before, min after). Blocks the check cannot read go to ``sign_oracle_na``.
    """
    family_, why = activation_family(model, graph_modules)
    if family_ is None:
        return {"sign_oracle": "n/a", "sign_oracle_why": why}
    params = sum(p.numel() for p in model.parameters())
    if params > SIGN_MAX_PARAMS:
        return {"sign_oracle": "n/a", "sign_oracle_why": f"skipped: {params / 1e6:.0f}M parameters > "
                                                         f"{SIGN_MAX_PARAMS / 1e6:.0f}M"}
    if all(any(not _below(s.name, b.name) for s in b.sites) for b in blocks):
        return {"sign_oracle": "n/a", "act_family": family_, "sign_oracle_why": "no readable block: every block is "
                "a unit named after its first layer, its sites outside that module (VGG)"}
    start = time.perf_counter()
    row: dict = {"act_family": family_}
    signal.alarm(SIGN_TIMEOUT_S)
    try:
        row.update(_sign_checks(model, source, name, blocks, device))
    except _Timeout:
        row.update(sign_oracle="n/a", sign_oracle_why=f"timed out after {SIGN_TIMEOUT_S} s")
    except Exception as exc:  # a model the check cannot run: say so, never crash the sweep
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        row.update(sign_oracle="n/a", sign_oracle_why=f"{type(exc).__name__}: {first}"[:200])
    finally:
        signal.alarm(0)
    row["sign_s"] = round(time.perf_counter() - start, 3)
    return row


def check_signs(blocks, outputs: dict, again=None) -> tuple[list, list, int]:
    """The sign rule on one forward: ``(contradictions, not_checkable, blocks_checked)``.

    ``outputs`` maps block names to ``(min, max)`` of the block's output, or why there is none. A
    block whose last sites are all ReLU / ReLU6 must have min >= 0; a block without a last site must
    have min < 0: when its min is >= 0, ``again(names)`` (a second forward with other weights, same
    format) must agree before it counts. A block with a site outside its named module (a unit named
    after its first layer) has no readable output: its entry in ``outputs`` is replaced by the reason.
    """
    contradictions, na, suspects, checked = [], [], [], 0
    for block in blocks:
        got = outputs.get(block.name, "no output recorded")
        last = block.last_sites
        outside = [s.name for s in block.sites if not _below(s.name, block.name)]
        if outside:  # a unit named after its first module (VGG's conv): that module's output is a pre-activation
            got = f"site {outside[0]} is outside module {block.name} (its output is a pre-activation)"
            outputs[block.name] = got
        if isinstance(got, str):
            na.append([block.name, got])
        elif last and all(s.kind in ("relu", "relu6") for s in last):
            checked += 1
            if got[0] < 0:
                contradictions.append([block.name, f">= 0 (last site {last[0].name})", _min(got)])
        elif not last:
            checked += 1
            if got[0] >= 0:
                suspects.append(block.name)
        else:
            na.append([block.name, f"last site of kind {'/'.join(sorted({s.kind for s in last}))}"])
    if suspects:  # no last site yet >= 0: a second draw (biases and scalar scales negated) must agree
        second = again(suspects) if again is not None else outputs
        contradictions += [[b, "some < 0 (no last site)", _min(outputs[b])] for b in suspects
                           if not isinstance(second.get(b, ""), str) and second[b][0] >= 0]
    return contradictions, na, checked


def check_rewrites(changed: list[tuple[str, str]], before: dict, after: dict) -> tuple[list, list]:
    """Erased sites against block outputs: ``(wrong_rewrites, not_checkable)``.

    ``changed`` holds ``(site, block name)`` per erased site; ``before`` / ``after`` map block names to
    ``(min, max)`` or a reason. A rewrite is right when its block's output had min >= 0 before and has
    min < 0 after; a wrong one is listed as ``[site, block, min before, min after]``. A block whose
    output is exactly the same before and after (the erased ReLU's input was already >= 0 on this
    input: legacy SE-ResNet's final ReLU after ``relu(x) * gate + non-negative shortcut``) is a
    no-op erasure, not checkable by the sign: it goes to ``not_checkable``.
    """
    wrong, na = [], []
    for site, block in changed:
        old, now = before.get(block, "not among the sweep's blocks"), after.get(block, "no block")
        if isinstance(old, str) or isinstance(now, str):
            na.append([site, f"before: {old}" if isinstance(old, str) else f"after: {now}"])
        elif old[0] >= 0 and tuple(old) == tuple(now):
            na.append([site, "no-op erasure: the block output is unchanged (the ReLU's input was already >= 0)"])
        elif old[0] < 0 or now[0] >= 0:
            wrong.append([site, block, _min(old), _min(now)])
    return wrong, na


def _sign_checks(model: nn.Module, source: str, name: str, blocks, device: str) -> dict:
    import torch.fx as fx

    import relu_surgery as rs

    cpu = model if device == "cpu" else _materialize(model, source, name)
    cpu.eval()
    randomize_norms(cpu)
    names = [b.name for b in blocks]
    gen = torch.Generator().manual_seed(0)
    errors = []
    for size in _input_sizes(cpu):
        x = torch.randn(1, 3, size, size, generator=gen)
        try:
            before = module_outputs(cpu, names, x)
            break
        except _Timeout:
            raise
        except Exception as exc:
            errors.append(f"{size}: {type(exc).__name__}")
    else:
        return {"sign_oracle": "n/a", "sign_oracle_why": f"forward failed at {', '.join(errors)}"}
    contradictions, na, checked = check_signs(blocks, before, lambda names: _flipped_outputs(cpu, names, x))
    row = {"sign_oracle": "contradicts" if contradictions else "ok", "sign_input": int(x.shape[-1]),
           "sign_blocks_checked": checked, "sign_contradictions": contradictions}
    new, report = rs.erase(cpu, proportion=1.0, check=False, example_input=x)
    by_index = {b.index: b.name for b in report.blocks}
    changed = [(c.site, by_index.get(c.block, "")) for step in report.steps if step.rewrite == "erase"
               for c in step.changes]  # report.changes also holds a conversion's moves
    wrong, na_rewrites = [], []
    converted = "convert" in [s.rewrite for s in report.steps]
    if changed and not isinstance(new, fx.GraphModule):
        na_rewrites = [[site, "erased model is traced in parts"] for site, _ in changed]
    elif changed:
        new.eval()
        names = list(dict.fromkeys(b for _, b in changed))
        after = graph_outputs(new, names, x)
        if converted:  # pre-activation: erase converted to after-activation first; compare with that model
            row["sign_converted"] = True
            twin, _ = rs.to_after_activation(cpu, example_input=x, check=False)
            before = graph_outputs(twin.eval(), names, x)
        wrong, na_rewrites = check_rewrites(changed, before, after)
    row.update(sign_erased=len(changed), wrong_rewrites=wrong)
    if wrong and not contradictions:
        row["sign_oracle"] = "wrong-rewrites"
    elif wrong:
        row["sign_oracle"] = "contradicts+wrong-rewrites"
    na += na_rewrites
    if na:
        row["sign_oracle_na"] = na[:8] + ([[f"... {len(na) - 8} more", ""]] if len(na) > 8 else [])
        row["sign_na_count"] = len(na)
    return row


def family(name: str) -> str:
    """Family of a model name: the leading letters (resnet50d -> resnet, vit_base_... -> vit)."""
    head = re.split(r"[_\d.]", name, maxsplit=1)[0]
    return head or name


def all_tasks(pattern: str | None, limit: int | None) -> list[tuple[str, str]]:
    import timm
    import torchvision

    tasks = [("timm", n) for n in timm.list_models()]
    tasks += [("torchvision", n) for n in torchvision.models.list_models()]
    if pattern:
        globs = [g.strip() for g in pattern.split(",") if g.strip()]
        tasks = [t for t in tasks if any(fnmatch.fnmatchcase(t[1], g) for g in globs)]
    return tasks[:limit] if limit else tasks


def oracle_summary(rows: list[dict]) -> dict:
    """Per oracle: where it applied, its outcomes, and the models it flags."""
    stage = [r for r in rows if r.get("stage_oracle", "n/a") != "n/a"]
    counts = Counter(r["stage_oracle"] for r in stage)
    documented = sum(1 for r in stage if r["stage_oracle"] == "equal" or _documented(r))
    sign = [r for r in rows if r.get("sign_oracle", "n/a") != "n/a"]
    return {
        "stage": {
            "applied": len(stage), **{k: counts[k] for k in ("equal", "finer", "coarser", "disagree")},
            "equal_or_documented_pct": round(100 * documented / max(1, len(stage)), 2),
            "reason_classes": dict(Counter(r["reason_class"] for r in stage if r.get("reason_class"))),
            "not_applied": dict(Counter(_why(r.get("stage_oracle_detail", "")) for r in rows
                                        if r.get("stage_oracle", "n/a") == "n/a")),
            "disagree_models": [r["model"] for r in stage if r["stage_oracle"] == "disagree"],
            "undocumented_models": [r["model"] for r in stage if r["stage_oracle"] in ("finer", "coarser")
                                    and not _documented(r)],
        },
        "sign": {
            "applied": len(sign), "blocks_checked": sum(r.get("sign_blocks_checked", 0) for r in sign),
            "sites_erased": sum(r.get("sign_erased", 0) for r in sign),
            "contradictions": sum(len(r.get("sign_contradictions", ())) for r in sign),
            "wrong_rewrites": sum(len(r.get("wrong_rewrites", ())) for r in sign),
            "not_applicable_blocks": sum(r.get("sign_na_count", 0) for r in sign),
            "contradicting_models": [r["model"] for r in sign if r.get("sign_contradictions")],
            "wrong_rewrite_models": [r["model"] for r in sign if r.get("wrong_rewrites")],
            "not_applied": dict(Counter(_why(r.get("sign_oracle_why", "")) for r in rows
                                        if r.get("sign_oracle", "n/a") == "n/a")),
            "seconds": round(sum(r.get("sign_s", 0) for r in rows), 1),
        },
    }


def _documented(row: dict) -> bool:
    """A finer / coarser row whose reason class (or each of its `` + `` parts) is in :data:`STAGE_REASONS`."""
    reason = row.get("reason_class")
    return bool(reason) and all(part in STAGE_REASONS for part in reason.split(" + "))


def _why(text: str) -> str:
    """A reason without its model-specific tail (for counting): up to the first '(' or ':'."""
    return re.split(r" \(|: ", text, maxsplit=1)[0] or "?"


def summarize(rows: list[dict], wall: float) -> dict:
    outcomes = Counter(r["outcome"] for r in rows)
    with_plan = outcomes["traced"] + outcomes["leaves"] + outcomes["partial"]
    per_family: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        per_family[f"{r['source']}:{family(r['model'])}"][r["outcome"]] += 1
    return {
        "models": len(rows), "outcomes": dict(outcomes),
        "with_plan_pct": round(100 * with_plan / max(1, len(rows)), 2),
        "with_plan_or_reason_pct": round(100 * sum(1 for r in rows if r["outcome"] in ("traced", "leaves", "partial")
                                                   or r.get("reason")) / max(1, len(rows)), 2),
        "wall_seconds": round(wall, 1),
        "oracles": oracle_summary(rows),
        "families": {k: dict(v) for k, v in sorted(per_family.items())},
        "slowest": sorted(({"model": r["model"], "seconds": round(r["seconds"] + r.get("sign_s", 0), 3)} for r in rows),
                          key=lambda r: -r["seconds"])[:15],
    }


def print_summary(summary: dict, rows: list[dict] | None = None) -> None:
    print(f"\nmodels: {summary['models']}  wall: {summary['wall_seconds']} s")
    print(f"{'outcome':<12}{'count':>8}")
    for k, v in sorted(summary["outcomes"].items()):
        print(f"{k:<12}{v:>8}")
    print(f"with a plan: {summary['with_plan_pct']}%   with a plan or a reason: {summary['with_plan_or_reason_pct']}%")
    bad = {f: c for f, c in summary["families"].items() if set(c) - {"traced", "leaves", "partial"}}
    print("\nfamilies with models lacking a plan:")
    for fam, counts in bad.items():
        print(f"  {fam:<32} {dict(counts)}")
    stage, sign = summary["oracles"]["stage"], summary["oracles"]["sign"]
    print(f"\nstage oracle (timm feature_info): applied to {stage['applied']}: equal {stage['equal']}, "
          f"finer {stage['finer']}, coarser {stage['coarser']}, disagree {stage['disagree']}; "
          f"equal or documented reason: {stage['equal_or_documented_pct']}%")
    for reason, n in sorted(stage["reason_classes"].items()):
        print(f"  {n:>5}  {reason}")
    print(f"  not applied: {stage['not_applied']}")
    _print_models("  disagree", stage["disagree_models"])
    _print_models("  finer/coarser without a documented reason", stage["undocumented_models"])
    print(f"\nsign oracle (ReLU-family CNNs): applied to {sign['applied']}, {sign['blocks_checked']} blocks checked, "
          f"{sign['sites_erased']} erased sites: {sign['contradictions']} contradictions, "
          f"{sign['wrong_rewrites']} wrong rewrites, {sign['not_applicable_blocks']} not checkable; "
          f"{sign['seconds']} s")
    print(f"  not applied: {sign['not_applied']}")
    _print_models("  contradicting", sign["contradicting_models"])
    _print_models("  wrong rewrites", sign["wrong_rewrite_models"])
    if rows is not None and len(rows) <= 40:
        print(f"\n{'model':<28}{'blocks':>7}  {'stage oracle':<14}{'reason / detail':<60}{'sign':<14}"
              f"{'contra':>7}{'wrong':>6}{'sign s':>8}  sign n/a")
        for r in rows:
            detail = r.get("reason_class") or r.get("stage_oracle_detail", "")
            print(f"{r['model'][:27]:<28}{r.get('blocks', 0):>7}  {r.get('stage_oracle', ''):<14}{detail[:58]:<60}"
                  f"{r.get('sign_oracle', ''):<14}{len(r.get('sign_contradictions', ())):>7}"
                  f"{len(r.get('wrong_rewrites', ())):>6}{r.get('sign_s', 0):>8.2f}  {r.get('sign_oracle_why', '')[:40]}")
    print("\nslowest:")
    for r in summary["slowest"]:
        print(f"  {r['model']:<48}{r['seconds']:>8.2f} s")


def _print_models(label: str, models: list[str], limit: int = 30) -> None:
    if models:
        more = f" ... (+{len(models) - limit})" if len(models) > limit else ""
        print(f"{label} ({len(models)}): {', '.join(models[:limit])}{more}")


def dump_results(meta: dict, summary: dict, rows: list[dict]) -> str:
    """The results file: meta and summary indented, one line per model."""
    head = json.dumps({"meta": meta, "summary": summary}, indent=1)[:-2]
    models = ",\n".join("  " + json.dumps(r) for r in rows)
    return f'{head},\n "models": [\n{models}\n ]\n}}\n'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filter", default=None, help="glob over model names (several: comma-separated)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-sign", action="store_true",
                        help="skip the sign oracle (CPU forwards of the ReLU-family CNNs)")
    parser.add_argument("--update", action="store_true",
                        help="re-run only the --filter models and replace their rows in the existing --out "
                             "file (its full-sweep wall time is kept; meta.updates records the re-run)")
    parser.add_argument("--note", help="a line kept in the results' meta (e.g. what else ran on the machine)")
    args = parser.parse_args(argv)
    if args.update and not (args.filter and args.out.exists()):
        parser.error("--update needs --filter and an existing --out file")
    tasks = [(source, name, not args.no_sign) for source, name in all_tasks(args.filter, args.limit)]
    start = time.perf_counter()
    rows = []
    with contextlib.ExitStack() as stack:
        if args.workers > 1:
            pool = stack.enter_context(mp.get_context("fork").Pool(args.workers, maxtasksperchild=50))
            results = pool.imap_unordered(sweep_one, tasks, chunksize=4)
        else:  # in this process (one worker: no pickling, easier to debug)
            results = map(sweep_one, tasks)
        for i, row in enumerate(results, 1):
            rows.append(row)
            if i % 100 == 0:
                print(f"{i}/{len(tasks)} models, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    command = "python bench/coverage.py " + " ".join(argv or sys.argv[1:])
    updates = []
    if args.update:
        earlier = json.loads(args.out.read_text())
        redone = {(r["source"], r["model"]) for r in rows}
        rows += [r for r in earlier["models"] if (r["source"], r["model"]) not in redone]
        updates = earlier["meta"].get("updates", []) + [
            {"command": command, "models": len(redone), "seconds": round(wall, 1),
             "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}]
        meta = {**earlier["meta"], "updates": updates}
        wall = earlier["summary"]["wall_seconds"]
    rows.sort(key=lambda r: (r["source"], r["model"]))
    summary = summarize(rows, wall)
    print_summary(summary, rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.update:
        meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
                "python": platform.python_version(), "command": command,
                "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "loadavg_end": list(os.getloadavg())}
    import timm
    import torchvision

    meta.update(torch=torch.__version__, torchvision=torchvision.__version__, timm=timm.__version__)
    if args.note:
        meta.setdefault("notes", []).append(args.note)
    args.out.write_text(dump_results(meta, summary, rows))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
