"""Coverage sweep: every timm and torchvision model -> trace, blocks, sites, EraseReLU plan.

Each model is built on ``torch.device("meta")`` (no weight memory), traced (untraceable parts become
leaves), its blocks and sites are found, and EraseReLU at proportion 1.0 is planned (dry run: no
forward pass). Outcomes: ``traced`` (fully), ``leaves`` (traced with untraceable parts as leaves),
``partial`` (the root cannot be traced, or every block sits inside untraceable leaves: traced in
parts, with the traced and the Python parts and their reasons), ``no-blocks`` / ``failed`` with a
one-line reason.

    python bench/coverage.py                       # everything, 2 worker processes
    python bench/coverage.py --filter 'resnet*' --limit 50

Writes bench/results/coverage.json and prints a summary table (counts per outcome, per family,
slowest models).
"""

from __future__ import annotations

import argparse
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

RESULTS = Path(__file__).resolve().parent / "results" / "coverage.json"
TIMEOUT_S = 120


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _build(source: str, name: str):
    """The model on the meta device; on the CPU when its builder computes with tensors (torchvision RegNet)."""
    import torch

    from relu_surgery.models.resolve import create_model

    prefix = "timm:" if source == "timm" else "tv:"
    try:
        with torch.device("meta"):
            return create_model(prefix + name), "meta"
    except NotImplementedError:  # "Cannot copy out of meta tensor": build for real
        return create_model(prefix + name), "cpu"


def sweep_one(task: tuple[str, str]) -> dict:
    """Build, trace, discover and plan one model; never raises."""
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    from relu_surgery.graph.analysis import analyze
    from relu_surgery.errors import SurgeryError, TraceError
    from relu_surgery.surgery.erase import erase_step

    torch.set_num_threads(1)
    source, name = task
    row = {"model": name, "source": source}
    start = time.perf_counter()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT_S)
    try:
        model, row["device"] = _build(source, name)
        row["build_s"] = round(time.perf_counter() - start, 3)
        try:
            analysis = analyze(model, example_input=torch.zeros(1, device=row["device"]), require_blocks=False)
        except TraceError:  # the root cannot be traced: traced in parts
            analysis = None
        if (analysis is None or (not analysis.blocks and analysis.traced.leaves)) and _partial_row(model, row):
            return _done(row, start)
        plan = erase_step(proportion=1.0).plan(analysis) if analysis.blocks else None
        blocks = analysis.blocks
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
    return _done(row, start)


def _done(row: dict, start: float) -> dict:
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def _partial_row(model, row: dict) -> dict | None:
    """Trace ``model`` in parts and fill ``row`` (outcome ``partial``, or ``no-blocks`` with the parts as reason)."""
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
        tasks = [t for t in tasks if fnmatch.fnmatchcase(t[1], pattern)]
    return tasks[:limit] if limit else tasks


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
        "families": {k: dict(v) for k, v in sorted(per_family.items())},
        "slowest": sorted(({"model": r["model"], "seconds": r["seconds"]} for r in rows),
                          key=lambda r: -r["seconds"])[:15],
    }


def print_summary(summary: dict) -> None:
    print(f"\nmodels: {summary['models']}  wall: {summary['wall_seconds']} s")
    print(f"{'outcome':<12}{'count':>8}")
    for k, v in sorted(summary["outcomes"].items()):
        print(f"{k:<12}{v:>8}")
    print(f"with a plan: {summary['with_plan_pct']}%   with a plan or a reason: {summary['with_plan_or_reason_pct']}%")
    bad = {f: c for f, c in summary["families"].items() if set(c) - {"traced", "leaves", "partial"}}
    print("\nfamilies with models lacking a plan:")
    for fam, counts in bad.items():
        print(f"  {fam:<32} {dict(counts)}")
    print("\nslowest:")
    for r in summary["slowest"]:
        print(f"  {r['model']:<48}{r['seconds']:>8.2f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filter", default=None, help="glob over model names")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    tasks = all_tasks(args.filter, args.limit)
    start = time.perf_counter()
    ctx = mp.get_context("fork")
    rows = []
    with ctx.Pool(args.workers, maxtasksperchild=50) as pool:
        for i, row in enumerate(pool.imap_unordered(sweep_one, tasks, chunksize=4), 1):
            rows.append(row)
            if i % 100 == 0:
                print(f"{i}/{len(tasks)} models, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    rows.sort(key=lambda r: (r["source"], r["model"]))
    summary = summarize(rows, wall)
    print_summary(summary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
            "python": platform.python_version(), "command": "python bench/coverage.py " + " ".join(argv or sys.argv[1:])}
    import timm
    import torch
    import torchvision

    meta.update(torch=torch.__version__, torchvision=torchvision.__version__, timm=timm.__version__)
    args.out.write_text(json.dumps({"meta": meta, "summary": summary, "models": rows}, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
