"""Cost of the rewritten model: eval-mode forward latency and peak memory, original vs rewritten.

Targets: EraseReLU latency <= 1.0x the original; CReLU latency within 5% of its MAC ratio.
Latency is the minimum (and, for the spread, the median) of repeated eval-mode forward passes after
warm-up, the models timed in turns in a shuffled order each round; profiled passes give the time
spent in the ops CReLU adds (``cat``, ``neg``) and in the multiply-add kernels;
peak memory is the most memory allocated during one forward pass above what was held before it
(the running sum of torch.profiler's per-op self memory on the CPU, torch.cuda.max_memory_allocated on a GPU).

    python bench/inference_cost.py [--device cpu|cuda] [--repeats 20]

Writes bench/results/inference_cost[_cuda].json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
CASES = [  # (model, input size (C, H, W), batch)
    ("tv:resnet50", (3, 224, 224), 1),
    ("tv:resnet50", (3, 224, 224), 8),
    ("tv:resnet50", (3, 224, 224), 16),
    ("cifar_resnet110", (3, 32, 32), 64),
]
# kernels that do the multiply-adds, and the ops a CReLU site adds (concatenation, negation)
MAC_OPS = ("convolution", "conv2d", "addmm", "aten::mm", "aten::bmm", "matmul", "linear", "cudnn", "gemm")
CRELU_OPS = ("aten::cat", "aten::neg")
# "traced": the model traced by relu_surgery with no change (separates tracing effects from the rewrite)
REWRITES = ["original", "traced", "erase", "crelu"]


def build(name: str, rewrite: str, size):
    """(eval-mode model, MACs per sample) for the original or a rewrite of ``name``."""
    import relu_surgery as rs
    from relu_surgery.report.costs import measure

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    model = rs.create_model(name)
    x = torch.randn(1, *size)
    if rewrite == "traced":
        from relu_surgery.graph.tracing import trace

        model = trace(model).graph_module
    elif rewrite == "erase":
        model, _ = rs.erase(model, proportion=1.0, example_input=x)
    elif rewrite == "crelu":
        model, _ = rs.crelu(model, example_input=x)
    return model.eval(), measure(model, x).macs


def interleaved_latency(models: list, x, repeats: int) -> list[tuple[float, float]]:
    """(minimum, median) eval-mode forward time of each model, timed in turns (shuffled each round).

    Noise on a shared machine only ever adds time, so the minimum is the least disturbed estimate;
    the median shows the spread.
    """
    rng = random.Random(0)
    times = [[] for _ in models]
    with torch.no_grad():
        for model in models:
            for _ in range(3):
                model(x)
        for _ in range(repeats):
            order = list(range(len(models)))
            rng.shuffle(order)
            for i in order:
                if x.is_cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                models[i](x)
                if x.is_cuda:
                    torch.cuda.synchronize()
                times[i].append(time.perf_counter() - start)
    return [(min(t), statistics.median(t)) for t in times]


def peak_memory(model, x) -> float:
    """Peak memory (MiB) allocated during one eval forward pass, above what was held before it.

    CPU: the running sum, in time order, of each profiled op's self memory (allocations minus frees);
    GPU: torch.cuda.max_memory_allocated.
    """
    if x.is_cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.no_grad():
            model(x)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(x)
    held = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        held += e.self_cpu_memory_usage  # allocations minus frees attributed to the op itself
        peak = max(peak, held)
    return peak / 2**20


def op_breakdown(model, x) -> dict[str, float]:
    """Milliseconds of one profiled forward pass in MAC kernels, in ops CReLU adds, and in the rest."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.is_cuda else [])
    with torch.no_grad(), profile(activities=activities) as prof:
        model(x)
    split = {"mac_ms": 0.0, "crelu_ops_ms": 0.0, "other_ms": 0.0}
    for event in prof.key_averages():
        us = event.self_device_time_total if x.is_cuda else event.self_cpu_time_total
        key = event.key.lower()
        part = ("mac_ms" if any(op in key for op in MAC_OPS)
                else "crelu_ops_ms" if event.key in CRELU_OPS else "other_ms")
        split[part] += us / 1e3
    return split


def interleaved_breakdown(models: list, x, rounds: int) -> list[dict[str, float]]:
    """Per model, the median over ``rounds`` (models profiled in turns) of :func:`op_breakdown`."""
    runs = [[] for _ in models]
    for _ in range(rounds):
        for i, model in enumerate(models):
            runs[i].append(op_breakdown(model, x))
    return [{k: round(statistics.median(r[k] for r in rs), 2) for k in rs[0]} for rs in runs]


def measure_case(name, size, batch, device, repeats, rewrites=REWRITES) -> list[dict]:
    """One row per rewrite (``rewrites[0]`` is the baseline of the ratios) of ``name`` at ``batch``."""
    built = [build(name, rewrite, size) for rewrite in rewrites]
    models = [m.to(device) for m, _ in built]
    x = torch.randn(batch, *size, device=device)
    lat = interleaved_latency(models, x, repeats)
    splits = interleaved_breakdown(models, x, rounds=max(3, repeats // 3))
    (base_min, base_median), base_macs = lat[0], built[0][1]
    return [{"model": name, "rewrite": rewrite, "batch": batch, "input": list(size),
             "latency_ms": round(fastest * 1e3, 3), "latency_ratio": round(fastest / base_min, 3),
             "median_ms": round(median * 1e3, 3), "median_ratio": round(median / base_median, 3),
             "macs": macs, "mac_ratio": round(macs / base_macs, 3), **split,
             "params": sum(p.numel() for p in model.parameters()),
             "peak_mem_mib": round(peak_memory(model, x), 1)}
            for rewrite, (model, macs), (fastest, median), split in zip(rewrites, built, lat, splits)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    rows = [r for name, size, batch in CASES for r in measure_case(name, size, batch, args.device, args.repeats)]
    print(f"{'model':<18}{'rewrite':<10}{'batch':>6}{'min ms':>10}{'x':>7}{'median ms':>11}{'x':>7}{'MACs x':>8}"
          f"{'cat/neg ms':>11}{'params':>12}{'peak MiB':>10}")
    for r in rows:
        print(f"{r['model']:<18}{r['rewrite']:<10}{r['batch']:>6}{r['latency_ms']:>10.2f}{r['latency_ratio']:>7.3f}"
              f"{r['median_ms']:>11.2f}{r['median_ratio']:>7.3f}{r['mac_ratio']:>8.3f}{r['crelu_ops_ms']:>11.2f}"
              f"{r['params']:>12,}{r['peak_mem_mib']:>10.1f}")
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.machine()} CPU, {os.cpu_count()} cores"
    meta = {"device": device_name, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "repeats": args.repeats, "command": "python bench/inference_cost.py " + " ".join(argv or sys.argv[1:])}
    out = RESULTS / ("inference_cost.json" if args.device == "cpu" else "inference_cost_cuda.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
