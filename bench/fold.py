"""Fold after EraseReLU: layers, MACs, output difference and CPU latency, original vs erased vs folded.

Targets: folding never changes the function beyond float noise, never raises MACs, and on the
erased MobileNetV2 cuts latency measurably (the ratio is reported whatever it is).

Cases (random weights; every BatchNorm of the erased model gets statistics from 2 random batches of
8 in train mode, so the norms and the function check are not trivial):

* ``tv:mobilenet_v2``, every activation of its 17 inverted residuals erased (``location="all"``,
  ``activations=("relu6",)``: the expand and depthwise ReLU6 of blocks 2-17 and the depthwise ReLU6
  of block 1, 33 sites; the stem's and the last 1x1 conv's ReLU6 stay), which makes each block's
  1x1-expand / 3x3-depthwise / 1x1-project chain linear;
* zoo ``vgg_style31`` with EraseReLU at proportion 0.2 (seed 000's best VGG-style proportion:
  blocks 1, 6, 11, 16, 21, 26 of 30 lose their ReLU), 32x32 inputs;
* ``tv:resnet50`` with EraseReLU at proportion 1.0 (the ReLU after each of the 16 additions).

Latency: eval mode, batch 1, one intra-op thread, the models (original, erased, erased with only its
norms folded, erased and folded) timed in turns in a shuffled order each round
(``interleaved_latency`` of bench/inference_cost.py); min and median, and their ratios to erased.

    python bench/fold.py [--repeats 21] [--cost macs|latency]

Writes bench/results/fold.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_cost import interleaved_latency  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CASES = {  # name: (model, erase settings, input size)
    "mobilenet_v2": ("tv:mobilenet_v2", {"location": "all", "activations": ("relu6",)}, (3, 224, 224)),
    "vgg_style31": ("vgg_style31", {"proportion": 0.2}, (3, 32, 32)),
    "resnet50": ("tv:resnet50", {"proportion": 1.0}, (3, 224, 224)),
}


@torch.no_grad()
def calibrate_norms(model: nn.Module, size, batches: int = 2, batch: int = 8) -> nn.Module:
    """BatchNorm statistics from random batches (train mode, cumulative average); then eval mode."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    gen = torch.Generator().manual_seed(1)
    for _ in range(batches):
        model(torch.randn((batch, *size), generator=gen))
    return model.eval()


def layer_count(model: nn.Module, size) -> int:
    """Weight (conv, linear) and BatchNorm layers called in a forward pass."""
    from relu_surgery.graph.tracing import annotate_shapes, trace
    from relu_surgery.surgery.fold.candidates import count_layers

    traced = trace(model)
    annotate_shapes(traced, torch.zeros(1, *size))
    return count_layers(traced.graph_module)


def measure_case(key: str, repeats: int, cost: str) -> dict:
    import relu_surgery as rs
    from relu_surgery.report.costs import measure
    from relu_surgery.surgery.fold.api import fold_step
    from relu_surgery.surgery.pipeline import run_rewrite

    name, erase_settings, size = CASES[key]
    torch.manual_seed(0)
    original = rs.create_model(name).eval()
    x = torch.randn(1, *size, generator=torch.Generator().manual_seed(0))
    erased, erase_report = rs.erase(original, example_input=x, **erase_settings)
    calibrate_norms(erased, size)
    start = time.perf_counter()
    folded, report = rs.fold(erased, cost=cost, example_input=x)
    fold_s = time.perf_counter() - start
    step = report.steps[-1]
    norms_only, _ = run_rewrite(erased, [fold_step(choices=[])], x)  # no merge chosen: the norms fold only
    models = {"original": original, "erased": erased.eval(), "norms folded": norms_only.eval(),
              "folded": folded.eval()}
    latency = interleaved_latency(list(models.values()), x, repeats)
    rows = {}
    for (label, model), (fastest, median) in zip(models.items(), latency):
        rows[label] = {"layers": layer_count(model, size),
            "macs": measure(model, x).macs, "params": sum(p.numel() for p in model.parameters()),
            "min_ms": round(fastest * 1e3, 2), "median_ms": round(median * 1e3, 2)}
    for row in rows.values():
        row["min_x"] = round(row["min_ms"] / rows["erased"]["min_ms"], 3)
        row["median_x"] = round(row["median_ms"] / rows["erased"]["median_ms"], 3)
    kept = {}
    for r in step.refusals:
        why = r.after.split(":")[0]
        kept[why] = kept.get(why, 0) + 1
    return {"case": key, "model": name, "input": list(size), "erase": {k: list(v) if isinstance(v, tuple) else v
                                                                       for k, v in erase_settings.items()},
            "sites_erased": len(erase_report.changes), "rows": rows, "fold_seconds": round(fold_s, 2),
            "norms_folded": len(step.norms_folded), "merges": [m.to_dict() for m in step.layer_merges],
            "kept": kept, "check": step.check}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--cost", choices=["macs", "latency"], default="macs")
    parser.add_argument("--cases", default=",".join(CASES), help="Comma-separated subset of " + ", ".join(CASES))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    results = [measure_case(key, args.repeats, args.cost) for key in args.cases.split(",")]
    print(f"{'case':<14}{'model':<14}{'layers':>7}{'MACs':>15}{'min ms':>9}{'x':>7}{'median ms':>11}{'x':>7}")
    for res in results:
        for label, r in res["rows"].items():
            print(f"{res['case']:<14}{label:<14}{r['layers']:>7}{r['macs']:>15,}{r['min_ms']:>9.2f}{r['min_x']:>7.3f}"
                  f"{r['median_ms']:>11.2f}{r['median_x']:>7.3f}")
        c = res["check"]
        print(f"{'':<14}fold: {res['norms_folded']} norms, {len(res['merges'])} merges, kept {res['kept']}, "
              f"max |diff| {c.get('max_abs_diff', float('nan')):.3g} (relative {c.get('relative', float('nan')):.3g})")
    meta = {"device": f"{platform.machine()} CPU, {os.cpu_count()} cores", "torch": torch.__version__,
            "threads": torch.get_num_threads(), "repeats": args.repeats, "cost": args.cost,
            "load_average": os.getloadavg(),
            "command": "python bench/fold.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    out = RESULTS / "fold.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "cases": results}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
