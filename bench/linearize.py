"""ReLU budgets on real data: uniform erasure vs DeepReDuce-style stages vs SNL masks at equal budget.

Fashion-MNIST (real IDX files, 1-channel 28x28), CIFAR-style ResNet-20 (``cifar_resnet20``,
``in_chans=1``: 144,256 ReLUs per sample at 28x28). For each seed the original is trained first
(``base``); every method then starts from those weights and gets the same number of epochs after it
(``post``), and so does the original itself (``original (base + post)``, the fair reference):

* ``uniform``: ``rs.linearize(model, B, "uniform")``, fine-tuned ``post`` epochs;
* ``stage``: the stage order measured once per seed (DeepReDuce's criticality: a copy keeping only
  one stage's ReLUs trained ``crit`` epochs per stage, shared by every budget), then
  ``rs.linearize(model, B, "stage", order=...)``, fine-tuned ``post`` epochs;
* ``snl``: per-channel masks trained ``post // 2`` epochs with the L1 penalty (coefficient from
  ``l1``, doubled every ``check_every`` steps while too many ReLUs are alive), thresholded to
  exactly B and frozen, fine-tuned ``post - post // 2`` epochs.

Budgets B are fractions of the original count (``--budgets 0.5,0.2,0.05``). ``uniform`` and
``stage`` are site-granular and end at or under B; ``snl`` ends exactly on B.

Sizes (SGD m=0.9, wd 1e-4, batch 128; base: lr 0.1, step /10 at 50%/75%; after: lr 0.02, cosine):

    size   seeds  train images   test    base  post  crit  check_every
    smoke  1      first 512      256     1     2     1     2
    cpu    2      first 10,000   2,000   3     4     1     10
    gpu    2      all 60,000     10,000  30    20    3     50

``cpu`` is sized for about an hour on 2 cores (at ~350 samples/s per thread for ResNet-20 at 28x28:
per seed 3 + 4 + 3 x 3 x 4 = 43 epochs of 10k images); it measures short fine-tuning, not converged
accuracies. ``gpu`` (``--device cuda``) is the full size. Runs live in ``--work-dir``: finished
runs are reused, interrupted ones resumed (``relu_surgery.train.linearize.train_or_reuse``).

    python bench/linearize.py --size cpu
    python bench/linearize.py --size gpu --device cuda

Writes bench/results/linearize.json and linearize.png (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reproduce_mlp import (RESULTS, LineReporter, command_line, find_data_dir, machine_info,  # noqa: E402
                           markdown, mean_std, resolve_device, rs)
from relu_surgery.train import TrainConfig  # noqa: E402
from relu_surgery.train.linearize import stage_order, train_or_reuse  # noqa: E402

SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"seeds": [0], "train_limit": 512, "test_limit": 256, "base": 1, "post": 2, "crit": 1,
              "check_every": 2},
    "cpu": {"seeds": [0, 1], "train_limit": 10000, "test_limit": 2000, "base": 3, "post": 4, "crit": 1,
            "check_every": 10},
    "gpu": {"seeds": [0, 1], "train_limit": 0, "test_limit": 0, "base": 30, "post": 20, "crit": 3,
            "check_every": 50},
}
METHODS = ("uniform", "stage", "snl")
MODEL = "cifar_resnet20"
EXAMPLE = torch.zeros(1, 1, 28, 28)


def configs(size: dict[str, Any], data_dir: Path, device: str, seed: int) -> tuple[TrainConfig, TrainConfig]:
    """(base training, training after the rewrite) for one seed."""
    common = dict(dataset="fashion-mnist", data_dir=str(data_dir), batch_size=128, seed=seed, device=device,
                  limit_train=size["train_limit"] or None, limit_test=size["test_limit"] or None,
                  progress=False, augment=False)
    base = TrainConfig(epochs=size["base"], lr=0.1, schedule="step", **common)
    post = TrainConfig(epochs=size["post"], lr=0.02, schedule="cosine", **common)
    return base, post


def base_model(seed: int, base: TrainConfig, work: Path) -> tuple[torch.nn.Module, dict]:
    """The seed's original, trained (or reused); its result row."""
    torch.manual_seed(seed)
    model = rs.create_model(MODEL, in_chans=1, num_classes=10)
    result = train_or_reuse(model, base, work / f"seed{seed}" / "base", reporter=LineReporter(f"s{seed} base"))
    return model.cpu(), result


def control(model, post: TrainConfig, work: Path, seed: int) -> dict:
    """The original trained ``post`` more epochs like every method (the fair reference)."""
    import copy

    twin = copy.deepcopy(model)
    return train_or_reuse(twin, post, work / f"seed{seed}" / "original-post", reporter=LineReporter(f"s{seed} control"))


def run_method(model, method: str, fraction: float, post: TrainConfig, size: dict, order, how,
               work: Path, seed: int) -> dict[str, Any]:
    """One (method, budget, seed) run from the trained base; its numbers."""
    out = work / f"seed{seed}" / f"{method}-{fraction:g}"
    label = f"s{seed} {method} {fraction:g}"
    start = time.perf_counter()
    if method == "snl":
        data = post.replace(epochs=size["post"] - size["post"] // 2)
        _, report = rs.linearize(model, fraction, "snl", data=data, out=out, mask_epochs=size["post"] // 2,
                                 l1=1e-3, l1_growth=2.0, check_every=size["check_every"], example_input=EXAMPLE,
                                 reporter=LineReporter(label))
    else:
        _, report = rs.linearize(model, fraction, method, data=post, out=out, order=order,
                                 order_source=how, example_input=EXAMPLE, reporter=LineReporter(label))
    final = json.loads((out / "finetune" / "result.json").read_text())["final"]
    tally = report.relu_count
    return {"method": method, "fraction": fraction, "seed": seed, "budget": math.floor(fraction * tally.total_before),
            "relus": tally.total_after, "relus_before": tally.total_before, "test_acc": final["test_acc"],
            "test_top1_err": final["test_top1_err"], "train_loss": final["train_loss"],
            "selection": report.steps[0].selection_reason, "seconds": round(time.perf_counter() - start, 1),
            "sites_kept": {r["site"]: r["after"] for r in tally.site_rows()}}


def summarize(runs: list[dict], bases: list[dict], controls: list[dict] | None = None) -> list[dict]:
    """One row per (method, budget): mean ± std of accuracy and ReLUs over seeds.

    ``bases`` are the originals as every method starts from them; ``controls`` the originals
    trained as long as the methods (base + post epochs).
    """
    rows = []
    for label, results in (("original (base)", bases), ("original (base + post)", controls or [])):
        if results:
            accs = [b["final"]["test_acc"] for b in results]
            mean, std = mean_std(accs)
            rows.append({"method": label, "fraction": 1.0, "relus": runs[0]["relus_before"] if runs else None,
                         "acc_mean": mean, "acc_std": std, "per_seed": accs})
    for fraction in sorted({r["fraction"] for r in runs}, reverse=True):
        for method in METHODS:
            group = [r for r in runs if r["method"] == method and r["fraction"] == fraction]
            if not group:
                continue
            mean, std = mean_std([r["test_acc"] for r in group])
            rows.append({"method": method, "fraction": fraction, "budget": group[0]["budget"],
                         "relus": round(sum(r["relus"] for r in group) / len(group)), "acc_mean": mean,
                         "acc_std": std, "per_seed": [r["test_acc"] for r in group]})
    return rows


def table(rows: list[dict]) -> str:
    body = [[r["method"], f"{r['fraction']:.0%}",
             f"{r['budget']:,}" if r.get("budget") else "-", f"{r['relus']:,}",
             f"{r['acc_mean']:.2f} ± {r['acc_std']:.2f}", ", ".join(f"{a:.2f}" for a in r["per_seed"])]
            for r in rows]
    return markdown(["method", "budget", "budget ReLUs", "ReLUs kept", "test accuracy (%)", "per seed"], body)


def plot(rows: list[dict], path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    styles = {"uniform": "o-", "stage": "s-", "snl": "^-"}
    for method in METHODS:
        pts = sorted((r["relus"], r["acc_mean"], r["acc_std"]) for r in rows if r["method"] == method)
        if pts:
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], fmt=styles[method],
                        capsize=3, label=method)
    for r, fmt in zip((r for r in rows if r["method"].startswith("original")), ("kx", "k*")):
        ax.errorbar([r["relus"]], [r["acc_mean"]], yerr=[r["acc_std"]], fmt=fmt, markersize=10, label=r["method"])
    ax.set_xscale("log")
    ax.set_xlabel("ReLUs per sample (log)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--budgets", default="0.05,0.2,0.5", help="Fractions, run in this order.")
    parser.add_argument("--seeds", default=None, help="Comma-separated seeds (default: the size's).")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "linearize.json")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steadiest on a shared CPU).")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = SIZES[args.size]
    device = resolve_device(args.device)
    data_dir = find_data_dir(args.data_dir, "fashion-mnist")
    work = args.work_dir or Path("/tmp") / f"relu-surgery-bench-linearize-{args.size}"
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else size["seeds"]
    fractions = [float(b) for b in args.budgets.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    info, start = machine_info(device), time.perf_counter()
    runs, bases, controls, orders = [], [], [], {}
    for seed in seeds:
        base_cfg, post = configs(size, data_dir, str(device), seed)
        model, result = base_model(seed, base_cfg, work)
        bases.append(result)
        controls.append(control(model, post, work, seed))
        order, how = (stage_order(model, post.replace(epochs=size["crit"]), work / f"seed{seed}",
                                  epochs=size["crit"], example_input=EXAMPLE, reporter=LineReporter(f"s{seed} crit"))
                      if "stage" in methods else (None, ""))
        orders[seed] = {"order": order, "how": how}
        for fraction in fractions:
            for method in methods:
                runs.append(run_method(model, method, fraction, post, size, order, how, work, seed))
                print(f"[s{seed} {method} {fraction:g}] {runs[-1]['relus']:,} ReLUs, test acc "
                      f"{runs[-1]['test_acc']:.2f}%", flush=True)
                write(args, info, size, len(seeds), start, runs, (bases, controls), orders, partial=True)
    print(write(args, info, size, len(seeds), start, runs, (bases, controls), orders, partial=False))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


def write(args, info, size, n_seeds, start, runs, originals, orders, partial: bool) -> str:
    """Write the results (after every run, marked ``partial`` until the last) and the plot; the table."""
    bases, controls = originals
    rows = summarize(runs, bases, controls)
    title = (f"{MODEL} (1 ch) on Fashion-MNIST, {size['train_limit'] or 60000} train images, base {size['base']} "
             f"+ {size['post']} epochs, {n_seeds} seed(s)" + (" (partial)" if partial else ""))
    text = table(rows)
    doc = {"meta": {**info, "command": command_line(), "size": args.size, "settings": size, "model": MODEL,
                    "seconds": round(time.perf_counter() - start, 1), "title": title, "partial": partial,
                    "loadavg_now": list(os.getloadavg()), "threads": torch.get_num_threads()},
           "rows": rows, "runs": runs, "stage_orders": orders,
           "bases": [{"final": b["final"], "train_seconds": b["train_seconds"]} for b in bases],
           "controls": [{"final": c["final"], "train_seconds": c["train_seconds"]} for c in controls], "table": text}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    plot(rows, args.out.with_suffix(".png"), title)
    return text


if __name__ == "__main__":
    sys.exit(main())
