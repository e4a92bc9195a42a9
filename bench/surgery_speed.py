"""Speed of surgery: EraseReLU end to end vs a bare torch.fx.symbolic_trace, and the CLI vs model creation.

For each model (random weights, CPU): the median over repeated runs of
  * bare    - ``torch.fx.symbolic_trace(model)``
  * analyze - copy + trace + block discovery (``relu_surgery.graph.analysis.analyze``)
  * surgery - ``rs.erase(model, proportion=1.0, check=False)``: copy, trace, discovery, plan, apply,
              lint, recompile and the report (the <= 3x target)
  * checked - ``rs.erase(model, proportion=1.0)``: the same plus the default check (shapes propagated
              before and after without computing values: output shape, MACs, ReLU counts)
  * count   - ``rs.relu_count(model)``: trace + shape propagation + blocks (the <= 2x target vs bare)
  * copy+trace - ``symbolic_trace(copy.deepcopy(model))``, the yardstick for the default rewrite:
  * default 0.5 - ``rs.erase(model, proportion=0.5)`` (the default check; <= 2x copy+trace)
  * full 0.5 - ``rs.erase(model, proportion=0.5, check="full")``: two real eval passes (batch of one)
              under torch's FLOP counter, also checking finiteness (what the default did before)
Ratios are taken within one process run. Then the CLI end to end
(``relu-surgery erase resnet152 --proportion 0.5``) against
``python -c "import torch, timm; timm.create_model('resnet152')"``.

    python bench/surgery_speed.py [--repeats 3] [--models resnet50,resnet152]

Writes bench/results/surgery_speed.json and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "surgery_speed.json"
MODELS = ["resnet50", "resnet152", "inception_v3", "efficientnet_b0", "vit_base_patch16_224", "cifar_resnet1001"]


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_model(name: str, repeats: int) -> dict:
    import relu_surgery as rs
    from relu_surgery.graph.analysis import analyze

    warnings.filterwarnings("ignore")
    model = rs.create_model(name)
    bare = _median_time(lambda: torch.fx.symbolic_trace(model), repeats)
    analysis = _median_time(lambda: analyze(model), repeats)
    surgery = _median_time(lambda: rs.erase(model, proportion=1.0, check=False), repeats)
    checked = _median_time(lambda: rs.erase(model, proportion=1.0), repeats)
    count = _median_time(lambda: rs.relu_count(model), repeats)
    copy_trace = _median_time(lambda: torch.fx.symbolic_trace(copy.deepcopy(model)), repeats)
    default_half = _median_time(lambda: rs.erase(model, proportion=0.5), repeats)
    full_half = _median_time(lambda: rs.erase(model, proportion=0.5, check="full"), repeats)
    _, report = rs.erase(model, proportion=1.0)
    return {"model": name, "blocks": len(report.blocks), "changes": len(report.changes),
            "input": list(report.forward_check["input_shape"]), "bare_trace_s": round(bare, 4),
            "analyze_s": round(analysis, 4), "surgery_s": round(surgery, 4), "checked_s": round(checked, 4),
            "analyze_ratio": round(analysis / bare, 2), "surgery_ratio": round(surgery / bare, 2),
            "checked_ratio": round(checked / bare, 2), "relus": report.relu_count.total_before,
            "count_s": round(count, 4), "count_ratio": round(count / bare, 2),
            "copy_trace_s": round(copy_trace, 4), "default_half_s": round(default_half, 4),
            "default_half_ratio": round(default_half / copy_trace, 2), "full_half_s": round(full_half, 4),
            "full_half_ratio": round(full_half / copy_trace, 2)}


def _wall(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_cli(repeats: int) -> dict:
    exe = Path(sys.executable).parent / "relu-surgery"
    cli = [str(exe), "erase", "resnet152", "--proportion", "0.5"]
    base = [sys.executable, "-c", "import torch, timm; timm.create_model('resnet152')"]
    cli_s, base_s = _wall(cli, repeats), _wall(base, repeats)
    return {"cli_command": " ".join(["relu-surgery"] + cli[1:]), "cli_s": round(cli_s, 3),
            "baseline_command": "python -c \"import torch, timm; timm.create_model('resnet152')\"",
            "baseline_s": round(base_s, 3), "ratio": round(cli_s / base_s, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-cli", action="store_true", help="Skip the CLI end-to-end timing.")
    args = parser.parse_args(argv)
    rows = [time_model(m, args.repeats) for m in args.models.split(",")]
    cli = None if args.no_cli else time_cli(args.repeats)
    print(f"{'model':<24}{'blocks':>7}{'bare trace s':>14}{'analyze s':>11}{'x':>6}{'surgery s':>11}{'x':>6}"
          f"{'checked s':>11}{'x':>6}")
    for r in rows:
        print(f"{r['model']:<24}{r['blocks']:>7}{r['bare_trace_s']:>14.3f}{r['analyze_s']:>11.3f}"
              f"{r['analyze_ratio']:>6.2f}{r['surgery_s']:>11.3f}{r['surgery_ratio']:>6.2f}"
              f"{r['checked_s']:>11.3f}{r['checked_ratio']:>6.2f}")
    print(f"\n{'model':<24}{'ReLUs':>12}{'count s':>10}{'x bare':>8}{'copy+trace s':>14}{'default 0.5 s':>15}"
          f"{'x':>6}{'full 0.5 s':>12}{'x':>6}")
    for r in rows:
        print(f"{r['model']:<24}{r['relus']:>12,}{r['count_s']:>10.3f}{r['count_ratio']:>8.2f}{r['copy_trace_s']:>14.3f}"
              f"{r['default_half_s']:>15.3f}{r['default_half_ratio']:>6.2f}{r['full_half_s']:>12.3f}"
              f"{r['full_half_ratio']:>6.2f}")
    if cli:
        print(f"\nCLI {cli['cli_command']}: {cli['cli_s']:.2f} s vs {cli['baseline_command']}: "
              f"{cli['baseline_s']:.2f} s -> {cli['ratio']:.2f}x")
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": args.repeats,
            "command": "python bench/surgery_speed.py " + " ".join(argv or sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "models": rows, "cli": cli}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
