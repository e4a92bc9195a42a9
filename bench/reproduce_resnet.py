"""Seed 000 (EraseReLU) Fig. 3(d) / Table 1 trend at small scale: residual nets on Fashion-MNIST.

Models (1-channel input, 10 classes, 28x28 Fashion-MNIST images):

- ``residual_style31``: the 31-layer residual-style net of seed 000 Sec. 3.2 (30 one-conv modules,
  ReLU after the addition);
- ``cifar_resnet20`` / ``cifar_resnet56`` (and ``cifar_resnet110`` in the ``gpu`` size): the CIFAR
  ResNets of Table 1 (basic blocks conv-BN-ReLU-conv-BN, + shortcut, ReLU).

Variants, each trained from the same initial weights for a given seed:

- ``original``;
- ``erase``: ``relu_surgery.erase(model, proportion=P, location="last")`` (Table 1's "ER": the
  ReLU after the addition). P = 1.0 for the ResNets (as in Table 1). For ``residual_style31`` the
  default P is 0.5 (``--stacked-proportion``): its modules hold a single ReLU, so P = 1.0 would
  leave no nonlinearity after the stem, which the paper says "significantly reduce[s] the
  performance" and leaves out of Fig. 3 (its Fig. 3(b) sweeps P < 1 on this net);
- ``prelu_sum``: ``relu_surgery.swap(model, to="prelu", location="last")`` (Table 1's "PReLUsum":
  channel-wise PReLU, init 0.25, replacing only the ReLUs right after the shortcut addition).
  Left out, and said so in the output, when this ``relu_surgery`` has no ``swap``.

Sizes (all SGD m=0.9, wd 1e-4, lr /10 at 50% and 75% of the iterations):

    size   models                       seeds  train images      test    epochs  batch  lr   warm-up      augment
    smoke      r31, R-20, R-56          1      first 512         500     1       64     0.1  none         none
    cpu        r31, R-20, R-56          3      first 6,000       2,000   1       64     0.1  none         none
    converged  R-20, R-56               3      first 20,000      10,000  15      128    0.1  none         none
    gpu    r31, R-20, R-56, R-110       3      all 60,000        10,000  164     128    0.1  400 it @0.01 crop+flip

``converged`` trains to a flat test error on the CPU (lr /10 after epochs 7 and 11 of 15; 18 runs;
measured with 1 thread on a 2-core AMD EPYC: about 10 minutes per ResNet-20 run and 29 per ResNet-56
run alone on a core, 40-47 for ResNet-56 with three runs on the 2 cores, 24 and 85-145 on a more
crowded machine): the largest sizes that fit a few hours of the 2 cores. ``smoke`` only proves the
pipeline works (its numbers are not a reproduction). ``cpu`` is sized to finish in under an hour
on 2 cores (27 runs, about 45 min at the throughput measured on a loaded 2-core AMD EPYC with 1 thread; 1 epoch on 6k images is far from converged, so it shows early
training, where the paper says EraseReLU converges faster, more than final accuracy). ``gpu`` is the
paper's CIFAR recipe (seed 003 appendix, which seed 000 follows: 164 epochs, warm-up for the deep
nets) on Fashion-MNIST: many GPU hours for 36 runs, so it is resumable and can be split with
``--models`` / ``--seeds`` (or shortened with ``--epochs``).

Usage:
    python bench/reproduce_resnet.py --size smoke
    python bench/reproduce_resnet.py --size cpu --data-dir /work/shared/data
    python bench/reproduce_resnet.py --size gpu --device cuda --data-dir shared/data/fashion-mnist
    python bench/reproduce_resnet.py --size gpu --device cuda --models cifar_resnet110 --seeds 0 --epochs 40

Writes bench/results/reproduce_resnet_SIZE.json and .png (or ``--out``). Every run lives in
``--work-dir`` (default under the system temp dir); finished runs there are reused (marked
``"reused": true``), interrupted ones resumed. ``--merge EARLIER.json`` adds the runs of other
seeds from an earlier result of the same settings, for the models trained now (a seed trained on
another machine, after its run directories were gone; each merged run is marked ``merged_from``). A
variant that this invocation does not train keeps all its earlier runs, so one result can hold
variants with different seed counts (the table says "1 seed" where a variant has one).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reproduce_mlp import (RESULTS, command_line, default_work_dir, earlier_result, find_data_dir,  # noqa: E402
                           machine_info, markdown, mean_std, merged, plot_curves, resolve_device, rs, train_run,
                           write_result)
from relu_surgery.train import TrainConfig  # noqa: E402

SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"models": ["residual_style31", "cifar_resnet20", "cifar_resnet56"], "seeds": [0],
              "train_limit": 512, "test_limit": 500, "epochs": 1, "batch_size": 64, "warmup_iters": 0,
              "augment": False},
    "cpu": {"models": ["residual_style31", "cifar_resnet20", "cifar_resnet56"], "seeds": [0, 1, 2],
            "train_limit": 6000, "test_limit": 2000, "epochs": 1, "batch_size": 64, "warmup_iters": 0,
            "augment": False},
    "converged": {"models": ["cifar_resnet20", "cifar_resnet56"], "seeds": [0, 1, 2], "train_limit": 20000,
                  "test_limit": 0, "epochs": 15, "batch_size": 128, "warmup_iters": 0, "augment": False},
    "gpu": {"models": ["residual_style31", "cifar_resnet20", "cifar_resnet56", "cifar_resnet110"],
            "seeds": [0, 1, 2], "train_limit": 0, "test_limit": 0, "epochs": 164, "batch_size": 128,
            "warmup_iters": 400, "augment": True},
}
TITLES = {"residual_style31": "residual-style 31", "cifar_resnet20": "ResNet-20", "cifar_resnet56": "ResNet-56",
          "cifar_resnet110": "ResNet-110"}
VARIANTS = ["original", "erase", "prelu_sum"]
VARIANT_TITLES = {"original": "original", "erase": "EraseReLU", "prelu_sum": "PReLU-sum"}
EXAMPLE = torch.zeros(2, 1, 28, 28)


def rewrite(model: torch.nn.Module, variant: str, proportion: float) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The variant of ``model`` and what the surgery did (sites changed)."""
    if variant == "original":
        return model, {"sites_changed": 0}
    if variant == "erase":
        new, report = rs.erase(model, proportion=proportion, location="last", example_input=EXAMPLE)
    else:
        new, report = rs.swap(model, to="prelu", location="last", example_input=EXAMPLE)
    return new, {"sites_changed": len(report.changes), "blocks": sorted({c.block for c in report.changes})}


def build(name: str, seed: int, variant: str, proportion: float) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = rs.create_model(name, num_classes=10, in_chans=1)
    return rewrite(model, variant, proportion)[0]


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = doc["settings"]
    models = [m for m in s["models"] if m in doc["results"]]
    variants = s["variants"]
    colors = {"original": "tab:gray", "erase": "tab:blue", "prelu_sum": "tab:orange"}
    width = 0.8 / len(variants)
    fig, axes = plt.subplots(1, 1 + len(models), figsize=(max(7.5, 1.9 * len(models) + 2.5) + 4.6 * len(models), 4.8),
                             squeeze=False)
    ax = axes[0][0]
    for curve_ax, m in zip(axes[0][1:], models):
        plot_curves(curve_ax, {VARIANT_TITLES[v]: [[h["test_top1_err"] for h in r["history"]]
                                                   for r in doc["results"][m][v]["runs"]]
                                for v in variants if v in doc["results"][m]},
                    "test top-1 error (%, log scale)", [colors.get(v) for v in variants if v in doc["results"][m]])
        curve_ax.set_title(f"{TITLES.get(m, m)}: test error per epoch\n(mean over seeds; band: min-max)", fontsize=9)
    for j, v in enumerate(variants):
        xs = [i + (j - (len(variants) - 1) / 2) * width for i, m in enumerate(models) if v in doc["results"][m]]
        cells = [doc["results"][m][v] for m in models if v in doc["results"][m]]
        ax.bar(xs, [c["test_err_mean"] for c in cells], width * 0.9, yerr=[c["test_err_std"] for c in cells],
               capsize=3, color=colors.get(v), alpha=0.85, label=VARIANT_TITLES[v] + (
                   f" (p={s['stacked_proportion']:g} on r31, 1.0 on ResNets)" if v == "erase" else ""))
        for x, c in zip(xs, cells):
            ax.scatter([x] * len(c["runs"]), [r["test_top1_err"] for r in c["runs"]], s=10, color="black",
                       zorder=3, alpha=0.6)
    errs = [r["test_top1_err"] for m in models for c in doc["results"][m].values() for r in c["runs"]]
    lo, hi = min(errs), max(errs)
    pad = max(0.5, 0.15 * (hi - lo))
    ax.set_ylim(max(0.0, lo - 2 * pad), hi + 2 * pad)
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels([TITLES.get(m, m) for m in models])
    ax.set_ylabel("Fashion-MNIST test top-1 error (%)")
    train = "all 60k" if not s["train_limit"] else f"first {s['train_limit']:,}"
    kind = "SMOKE RUN, not a reproduction" if doc["size"] == "smoke" else "seed 000 Fig. 3(d) / Table 1 trend"
    ax.set_title(f"Original vs EraseReLU vs PReLU-sum on Fashion-MNIST\n({kind})\n"
                 f"{train} train images, {s['epochs']} epoch(s), test {s['test_images']:,}, "
                 f"mean ± std over {len(s['seeds'])} seed(s) (dots: single seeds), {doc['machine']['device']}",
                 fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--models", nargs="+", help="override the size's models (zoo names)")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the size's seeds")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--train-limit", type=int, help="first N training images (0 = all 60,000)")
    parser.add_argument("--test-limit", type=int, help="first N test images (0 = all 10,000)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--warmup-iters", type=int)
    parser.add_argument("--stacked-proportion", type=float, default=0.5,
                        help="EraseReLU proportion for residual_style31 (ResNets always use 1.0)")
    parser.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files (or its parent); "
                                           "default: $RELU_SURGERY_DATA or ../shared/data")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--out", help="result JSON (default bench/results/reproduce_resnet_SIZE.json)")
    parser.add_argument("--work-dir", help="run directories (default: under the system temp dir)")
    parser.add_argument("--fresh", action="store_true", help="discard earlier runs in the work dir first")
    parser.add_argument("--keep-weights", action="store_true")
    parser.add_argument("--merge", help="an earlier result JSON of the same settings: its runs of other seeds join "
                                        "this one's for the models trained here, and a variant not trained here keeps all "
                                        "its runs (each marked merged_from)")
    args = parser.parse_args()

    t_start = time.perf_counter()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = dict(SIZES[args.size])
    for key in ("models", "seeds", "epochs", "train_limit", "test_limit", "batch_size", "warmup_iters"):
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    variants = list(args.variants)
    notes = []
    if "prelu_sum" in variants and not hasattr(rs, "swap"):
        variants.remove("prelu_sum")
        notes.append("PReLU-sum left out: this relu_surgery has no swap()")
    out = Path(args.out) if args.out else RESULTS / f"reproduce_resnet_{args.size}.json"
    work = Path(args.work_dir) if args.work_dir else default_work_dir(out)
    if args.fresh and work.exists():
        shutil.rmtree(work)
    data_dir = find_data_dir(args.data_dir, "fashion-mnist")
    info = machine_info(device)

    config = TrainConfig(
        dataset="fashion-mnist", data_dir=str(data_dir), epochs=size["epochs"], batch_size=size["batch_size"],
        lr=args.lr, momentum=0.9, weight_decay=1e-4, schedule="step", milestones=(0.5, 0.75),
        warmup_iters=size["warmup_iters"], warmup_lr=0.01, augment=size["augment"],
        limit_train=size["train_limit"] or None, limit_test=size["test_limit"] or None,
        device=str(device), amp="auto", progress=False,
    )
    earlier: dict[tuple[str, str], list[dict[str, Any]]] = {}
    if args.merge:
        doc = earlier_result(args.merge, config, {"stacked_proportion": args.stacked_proportion})
        earlier = {(name, v): merged(c["runs"], args.merge, size["seeds"] if v in variants else [])
                   for name, cells in doc["results"].items() if name in size["models"] for v, c in cells.items()}
    shown = {name: [v for v in VARIANTS if v in variants or earlier.get((name, v))] for name in size["models"]}
    seeds = sorted(set(size["seeds"]) | {r["seed"] for runs in earlier.values() for r in runs})
    n_train = size["train_limit"] or 60000
    n_test = size["test_limit"] or 10000
    warm = f", warm-up {size['warmup_iters']} it at lr 0.01" if size["warmup_iters"] else ""
    desc = (f"{'SMOKE RUN (pipeline check, not a reproduction): ' if args.size == 'smoke' else ''}"
            f"Fashion-MNIST, train on {'all 60,000' if n_train == 60000 else f'the first {n_train:,} of 60,000'} "
            f"images, {size['epochs']} epoch(s), batch {size['batch_size']}, SGD m=0.9 lr {args.lr} wd 1e-4 "
            f"(/10 at 50%,75%{warm}), "
            f"augmentation {'crop+flip' if size['augment'] else 'none'}; test on {n_test:,} images; "
            f"{len(seeds)} seed(s); device {device}, {torch.get_num_threads()} thread(s)")
    print(desc, flush=True)
    for note in notes:
        print("NOTE:", note, flush=True)
    print(f"work dir: {work}", flush=True)

    results: dict[str, dict[str, Any]] = {}
    for name in size["models"]:
        results[name] = {}
        proportion = args.stacked_proportion if name in ("residual_style31", "vgg_style31") else 1.0
        for variant in shown[name]:
            _, surgery = rewrite(rs.create_model(name, num_classes=10, in_chans=1), variant, proportion)
            runs = []
            for seed in size["seeds"] if variant in variants else []:  # else: only the merged runs
                label = f"{name} {variant} seed={seed}"
                runs.append(train_run(lambda: build(name, seed, variant, proportion), config.replace(seed=seed),
                                      work / name / variant / f"seed{seed}", label,
                                      {"name": name, "in_chans": 1, "variant": variant,
                                       "erase_proportion": proportion if variant == "erase" else None},
                                      args.keep_weights))
                print(f"[{label}] final test error {runs[-1]['test_top1_err']:.2f}%", flush=True)
            runs = sorted(earlier.get((name, variant), []) + runs, key=lambda r: r["seed"])
            m, s = mean_std([r["test_top1_err"] for r in runs])
            tm, ts = mean_std([r["train_top1_err"] for r in runs])
            results[name][variant] = {
                "variant": variant, "erase_proportion": proportion if variant == "erase" else None,
                "surgery": surgery, "params": runs[0]["num_params"], "test_err_mean": m, "test_err_std": s,
                "train_err_mean": tm, "train_err_std": ts,
                "time_mean_s": statistics.fmean(r["train_seconds"] for r in runs), "runs": runs}

    header = ["model", "variant", "params", "test error (%)", "Δ vs original", "per seed", "train error (%)",
              "time/run"]
    rows = []
    for name, cells in results.items():
        base = cells.get("original")
        for v, c in cells.items():
            label = VARIANT_TITLES[v] + (f" p={c['erase_proportion']:g}" if v == "erase" else "")
            rows.append([TITLES.get(name, name), label, f"{c['params']:,}",
                         f"{c['test_err_mean']:.2f} ± {c['test_err_std']:.2f}" if len(c["runs"]) > 1
                         else f"{c['test_err_mean']:.2f} (1 seed)",
                         "" if base is None or c is base else f"{c['test_err_mean'] - base['test_err_mean']:+.2f}",
                         ", ".join(f"{r['test_top1_err']:.2f}" for r in c["runs"]),
                         f"{c['train_err_mean']:.2f} ± {c['train_err_std']:.2f}", f"{c['time_mean_s']:.0f}s"])
    table = markdown(header, rows)
    wall = time.perf_counter() - t_start
    info["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    info["date_end"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    all_runs = [r for cells in results.values() for c in cells.values() for r in c["runs"]]
    doc = {
        "benchmark": "reproduce_resnet",
        "smoke_run": args.size == "smoke",
        "label": ("SMOKE RUN: proves the pipeline works; tiny subset, 1 epoch, 1 seed; NOT a reproduction"
                  if args.size == "smoke" else "small-scale reproduction of the trend of seed 000 Fig. 3(d) / Table 1"),
        "paper": "seed 000 (Dong et al. 2017, EraseReLU), Fig. 3(d) and Table 1 (CIFAR-100; here Fashion-MNIST)",
        "command": command_line(),
        "size": args.size,
        "description": desc,
        "notes": notes,
        "settings": {
            "models": size["models"], "variants": [v for v in VARIANTS if any(v in vs for vs in shown.values())],
            "seeds": seeds, "dataset": "fashion-mnist",
            "data_dir": str(data_dir), "train_limit": size["train_limit"] or None, "train_images": n_train,
            "test_images": n_test, "epochs": size["epochs"], "stacked_proportion": args.stacked_proportion,
            "resnet_erase_proportion": 1.0, "location": "last",
            "error_std": "sample standard deviation over seeds (n-1)",
            "train_error_note": "running training error over the last epoch (training mode)",
            "train_config": config.to_dict(),
        },
        "machine": info,
        "wall_seconds": wall,
        "wall_note": "wall time of this invocation; runs marked reused were trained by an earlier one",
        "runs_seconds_total": sum(r["train_seconds"] for r in all_runs),
        "runs_reused": sum(r["reused"] for r in all_runs),
        "runs_merged": sum("merged_from" in r for r in all_runs),
        "work_dir": str(work),
        "results": results,
        "table_markdown": table,
    }
    write_result(doc, out, plot, [desc, *(f"NOTE: {note}" for note in notes), table])


if __name__ == "__main__":
    main()
