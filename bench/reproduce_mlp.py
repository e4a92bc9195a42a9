"""Seed 000 (EraseReLU) Fig. 3(c): the 12-layer MLP on real MNIST, erasing a proportion of its ReLUs.

The model is the zoo's ``mlp12`` (11 x Linear(1000)-BN-ReLU-Dropout(0.5) + Linear(1000, 10)).
For each proportion p in {0, 0.25, 0.5, 0.75} (the paper leaves out 100%: with one ReLU per
module that would remove every nonlinearity) ``relu_surgery.erase(model, proportion=p,
location="last")`` removes the ReLU of a proportion of the 11 units with the paper's uniform rule
(p=0.5 -> units 1, 3, 5, ...; the JSON lists the units actually erased), and the result is trained
with ``relu_surgery.train.run_training`` for every seed. A seed fixes the initial weights (the
same for every proportion: erasing keeps the weights), the data order and the dropout masks.
Reported: the final test top-1 error (%) on the 10,000 MNIST test images, mean +/- sample std over
seeds, plus every run's numbers.

The paper trains to convergence (its schedule is in the supplement, which we do not have); the
``cpu`` size is cut down to fit a shared 2-core machine and says so in its output:

    size  train images            epochs  batch  optimiser
    cpu   first 20,000 of 60,000  2       128    SGD m=0.9 lr 0.1 wd 1e-4, lr /10 at 50% and 75%
    full  all 60,000              12      128    same (converged on the CPU: see below)
    gpu   all 60,000              30      128    same

``full`` is the converged CPU run (about 1 min per epoch with 1 thread, 144 epochs for 4
proportions x 3 seeds): 12 epochs with the learning rate cut tenfold after epochs 6 and 9, which
leaves the test error flat over the last three to four epochs (each run's curve is in the JSON and
the plot's left panel).

Usage:
    python bench/reproduce_mlp.py                                   # cpu size -> bench/results/reproduce_mlp.{json,png}
    python bench/reproduce_mlp.py --size full                       # -> reproduce_mlp_full.{json,png}
    python bench/reproduce_mlp.py --size gpu --device cuda          # -> reproduce_mlp_gpu.{json,png}
    python bench/reproduce_mlp.py --epochs 10 --train-limit 0 --data-dir /path/to/mnist

Every run lives in ``--work-dir`` (default: a folder under the system temp dir named after the
output); a finished run there is reused (marked ``"reused": true``) and an interrupted one
resumed, so a killed benchmark continues where it stopped. ``--fresh`` discards them first.
``--merge EARLIER.json`` adds the runs of other seeds from an earlier result of the same settings
(a seed trained on another day, after its run directories were gone).
Weights and checkpoints are deleted after each finished run unless ``--keep-weights``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

import relu_surgery as rs  # noqa: E402
from relu_surgery.train import TrainConfig, run_training  # noqa: E402
from relu_surgery.train.config import RUNTIME_FIELDS  # noqa: E402
from relu_surgery.train.progress import Reporter, format_row  # noqa: E402

SIZES: dict[str, dict[str, Any]] = {
    "cpu": {"epochs": 2, "train_limit": 20000, "test_limit": 0},
    "full": {"epochs": 12, "train_limit": 0, "test_limit": 0},
    "gpu": {"epochs": 30, "train_limit": 0, "test_limit": 0},
}
MNIST_TRAIN = 60000


# ----------------------------------------------------------------------------- shared helpers
# (reproduce_resnet.py imports these)

def find_data_dir(given: str | None, folder: str, fallbacks: tuple[Path, ...] = ()) -> Path:
    """The folder holding the IDX files of ``folder`` (``mnist`` / ``fashion-mnist``).

    ``given`` may be the folder or its parent; without it the first of ``$RELU_SURGERY_DATA``,
    ``../shared/data``, ``shared/data`` and then ``fallbacks`` that holds a ``folder`` subfolder."""
    if given:
        path = Path(given).expanduser()
        if (path / folder).is_dir():
            path = path / folder
        if not path.is_dir():
            sys.exit(f"data directory {path} does not exist")
        return path
    env = os.environ.get("RELU_SURGERY_DATA")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data", ROOT / "shared" / "data",
                                               *fallbacks]:
        if (cand / folder).is_dir():
            return cand / folder
    sys.exit(f"{folder} not found: pass --data-dir or set RELU_SURGERY_DATA to the shared data folder")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def machine_info(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "relu_surgery": getattr(rs, "__version__", "?"), "platform": platform.platform(),
            "hostname": platform.node(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "device": str(device),
            "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "date_start": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def command_line() -> str:
    return " ".join([sys.executable, os.path.relpath(sys.argv[0], Path.cwd()) if sys.argv[0] else "?", *sys.argv[1:]])


class LineReporter(Reporter):
    """One printed line per epoch, prefixed with the run's label (works in logs, no bars)."""

    def __init__(self, label: str) -> None:
        self.label, self.epochs = label, 0

    def start(self, title, epochs, steps_per_epoch, start_epoch, start_step):
        self.epochs = epochs
        where = f" (resuming at epoch {start_epoch + 1}, step {start_step})" if start_epoch or start_step else ""
        print(f"[{self.label}] {epochs} epoch(s) x {steps_per_epoch} steps{where}", flush=True)

    def epoch_end(self, row):
        print(f"[{self.label}] {format_row(row, self.epochs)}", flush=True)

    def message(self, text):
        print(f"[{self.label}] {text}", flush=True)


def _differing_fields(saved: dict[str, Any], config: TrainConfig, ignore: frozenset[str] = frozenset()) -> list[str]:
    """The fields of ``config`` (runtime fields and ``ignore`` aside) that a saved train config sets otherwise.

    A setting the saved config does not record (a field added to TrainConfig after it was trained)
    counts as the same when ``config`` leaves it at its default, which is what the run used.
    """
    mine, default = config.to_dict(), TrainConfig(dataset=config.dataset).to_dict()
    return sorted(k for k, v in mine.items() if k not in RUNTIME_FIELDS and k not in ignore
                  and (saved[k] != v if k in saved else v != default.get(k)))


def _same_settings(run_dir: Path, config: TrainConfig) -> bool:
    """Whether the run in ``run_dir`` was trained with ``config`` (runtime fields aside)."""
    path = run_dir / "config.json"
    if not path.is_file():
        return False
    return not _differing_fields(json.loads(path.read_text(encoding="utf-8")).get("train", {}), config)


def train_run(make_model: Callable[[], torch.nn.Module], config: TrainConfig, run_dir: Path, label: str,
              model_info: dict[str, Any], keep_weights: bool = False,
              reporter: Reporter | None = None) -> dict[str, Any]:
    """Train (or reuse / resume) one run; its numbers as a dict (all read from the runner's output).

    ``reporter`` replaces the one-line-per-epoch :class:`LineReporter`."""
    result_file = run_dir / "result.json"
    reused = False
    if run_dir.exists() and not _same_settings(run_dir, config):
        kept = run_dir.with_name(f"{run_dir.name}.other-settings-{time.strftime('%Y%m%d-%H%M%S')}")
        print(f"[{label}] {run_dir} holds a run with other settings: moved aside to {kept.name}", flush=True)
        run_dir.rename(kept)
    if result_file.is_file():
        reused = True
        print(f"[{label}] reusing the finished run in {run_dir}", flush=True)
    else:
        resume = (run_dir / "checkpoint.pt").is_file()
        run_dir.mkdir(parents=True, exist_ok=True)
        run_training(make_model(), config, run_dir, resume=resume, model_info=model_info,
                     reporter=reporter or LineReporter(label))
        if not keep_weights:
            for name in ("checkpoint.pt", "model.safetensors"):
                (run_dir / name).unlink(missing_ok=True)
    done = json.loads(result_file.read_text(encoding="utf-8"))
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
               if line.strip()]
    final = done["final"]
    return {
        "seed": config.seed,
        "test_top1_err": final["test_top1_err"],
        "best_test_top1_err": done["best_test_top1_err"],
        "test_loss": final["test_loss"],
        "train_top1_err": 100.0 - final["train_acc"],
        "train_loss": final["train_loss"],
        "num_params": done["num_params"],
        "train_seconds": done["train_seconds"],
        "samples_per_s_last_epoch": final["samples_per_s"],
        "epochs": done["epochs"],
        "reused": reused,
        "run_dir": str(run_dir),
        "history": [{k: row[k] for k in ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_top1_err",
                                          "epoch_seconds") if k in row} for row in history],
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def default_work_dir(out: Path) -> Path:
    return Path(tempfile.gettempdir()) / "relu_surgery_bench" / out.stem


# ----------------------------------------------------------------------------- this benchmark

def erased_units(model: torch.nn.Module, proportion: float) -> tuple[torch.nn.Module, list[int], int]:
    """(model with the ReLUs of ``proportion`` of its units erased, erased unit numbers, ReLUs left)."""
    example = torch.zeros(2, 1, 28, 28)
    if proportion == 0:
        new, blocks = model, []
    else:
        new, report = rs.erase(model, proportion=proportion, location="last", example_input=example)
        blocks = sorted(c.block for c in report.changes)
    left = sum(isinstance(m, torch.nn.ReLU) for m in new.modules())
    return new, blocks, left


def earlier_result(path: str, config: TrainConfig, settings: dict[str, Any]) -> dict[str, Any]:
    """An earlier result JSON whose runs of other seeds join this invocation's (``--merge``).

    Exits with status 2 and one line when the file cannot be read as a result, or was trained with
    other settings: another train-config field (the seed and runtime fields aside) or another
    value of one of ``settings`` (keys of the result's ``settings``).

    Example:
        doc = earlier_result("old.json", config, {"dropout": 0.5})  # then merged(runs, "old.json", [2])
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        saved = doc["settings"]
        differ = _differing_fields(saved["train_config"], config, frozenset({"seed"}))
        differ += sorted(k for k, v in settings.items() if saved.get(k) != v)
        doc["results"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        fail(f"cannot merge {path}: not a result JSON of this benchmark ({type(exc).__name__}: {exc})")
    if differ:
        fail(f"{path} was trained with other settings ({', '.join(differ)}); not merged")
    return doc


def merged(runs: list[dict[str, Any]], path: str, seeds: list[int]) -> list[dict[str, Any]]:
    """The ``runs`` of an earlier result whose seed is not in ``seeds``, each marked ``merged_from``.

    Example:
        merged([{"seed": 0}, {"seed": 2}], "old.json", [2])  # [{"seed": 0, "merged_from": "old.json", "reused": True}]
    """
    return [{**run, "merged_from": path, "reused": True} for run in runs if run["seed"] not in seeds]


def fail(message: str) -> None:
    """Exit with status 2 after one ``error:`` line on stderr (a user error, no traceback)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def build(seed: int, proportion: float, dropout: float) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = rs.create_model("mlp12", num_classes=10, in_chans=1, input_size=(28, 28), dropout=dropout)
    return erased_units(model, proportion)[0]


def plot_curves(ax, curves: dict[str, list[list[float]]], ylabel: str, colors=None) -> None:
    """Test error per epoch: one line per variant (mean over seeds), a band from the min to the max seed."""
    import matplotlib.ticker  # noqa: PLC0415

    colors = colors or ("tab:gray", "tab:blue", "tab:green", "tab:orange", "tab:red", "tab:purple")
    for (label, runs), color in zip(curves.items(), colors):
        n = min(len(r) for r in runs)
        epochs = list(range(1, n + 1))
        columns = [[r[i] for r in runs] for i in range(n)]
        ax.plot(epochs, [statistics.fmean(c) for c in columns], marker="o", ms=3, color=color, label=label)
        ax.fill_between(epochs, [min(c) for c in columns], [max(c) for c in columns], color=color, alpha=0.15)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = doc["settings"]
    pts = doc["results"]
    xs = [p["proportion"] for p in pts]
    fig, (left, ax) = plt.subplots(1, 2, figsize=(12.4, 4.6))
    plot_curves(left, {f"p={p['proportion']:g}": [[h["test_top1_err"] for h in r["history"]] for r in p["runs"]]
                       for p in pts}, "MNIST test top-1 error (%, log scale)")
    left.set_title("test error per epoch (mean over seeds; band: min-max)", fontsize=10)
    ax.errorbar(xs, [p["test_err_mean"] for p in pts], yerr=[p["test_err_std"] for p in pts], marker="o",
                capsize=4, color="tab:blue", label=f"final test error, mean ± std over {len(s['seeds'])} seeds")
    for p in pts:
        ax.scatter([p["proportion"]] * len(p["runs"]), [r["test_top1_err"] for r in p["runs"]], s=14,
                   color="tab:blue", alpha=0.35, zorder=3)
    ax.scatter([], [], s=14, color="tab:blue", alpha=0.35, label="single seeds")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x:g}\n({len(p['erased_units'])}/11 erased)" for x, p in zip(xs, pts)])
    ax.set_xlabel("EraseReLU proportion (uniform selection over the 11 hidden units)")
    ax.set_ylabel("MNIST test top-1 error (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    train = "all 60k" if not s["train_limit"] else f"first {s['train_limit']:,}"
    fig.suptitle(f"MLP-12 on MNIST, EraseReLU proportion (seed 000 Fig. 3(c)): "
                 f"{train} train images, {s['epochs']} epoch(s), {doc['machine']['device']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_result(doc: dict[str, Any], out: Path, draw: Callable[[dict[str, Any], Path], None],
                 summary: list[str]) -> None:
    """Write a benchmark's result JSON to ``out`` and its plot beside it (``.png``), then print ``summary``.

    Example:
        write_result(doc, Path("bench/results/reproduce_mlp.json"), plot, [description, table])
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    png = out.with_suffix(".png")
    draw(doc, png)
    print()
    print("\n".join(summary))
    print(f"\nwall time {doc['wall_seconds']:.0f}s; wrote {out} and {png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu",
                        help="preset for epochs / train subset (cpu: 20k images, 2 epochs; full: 60k, 12; gpu: 60k, 30)")
    parser.add_argument("--epochs", type=int, help="override the size's epochs")
    parser.add_argument("--train-limit", type=int,
                        help="train on the first N MNIST training images (0 = all 60,000); overrides the size")
    parser.add_argument("--test-limit", type=int, help="evaluate on the first N test images (0 = all 10,000)")
    parser.add_argument("--proportions", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--schedule", choices=["step", "cosine", "constant"], default="step",
                        help="step: lr /10 at 50%% and 75%% of the iterations")
    parser.add_argument("--dropout", type=float, default=0.5, help="dropout of every hidden unit (paper: not stated)")
    parser.add_argument("--data-dir", help="folder with the MNIST IDX files (or its parent); "
                                           "default: $RELU_SURGERY_DATA or ../shared/data")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: fastest on a loaded 2-core machine; 0 = torch default)")
    parser.add_argument("--out", help="result JSON (default bench/results/reproduce_mlp[_SIZE].json); "
                                      "the plot goes next to it as .png")
    parser.add_argument("--work-dir", help="run directories (default: under the system temp dir)")
    parser.add_argument("--fresh", action="store_true", help="discard earlier runs in the work dir first")
    parser.add_argument("--keep-weights", action="store_true", help="keep each run's weights and checkpoint")
    parser.add_argument("--merge", help="an earlier result JSON of the same settings: its runs of other seeds join "
                                        "this one's (each marked merged_from), e.g. to add a seed later")
    args = parser.parse_args()

    t_start = time.perf_counter()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = dict(SIZES[args.size])
    for key in ("epochs", "train_limit", "test_limit"):
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    out = Path(args.out) if args.out else RESULTS / ("reproduce_mlp.json" if args.size == "cpu"
                                                     else f"reproduce_mlp_{args.size}.json")
    work = Path(args.work_dir) if args.work_dir else default_work_dir(out)
    if args.fresh and work.exists():
        shutil.rmtree(work)
    data_dir = find_data_dir(args.data_dir, "mnist")
    info = machine_info(device)

    config = TrainConfig(
        dataset="mnist", data_dir=str(data_dir), epochs=size["epochs"], batch_size=args.batch_size,
        lr=args.lr, momentum=0.9, weight_decay=args.weight_decay, schedule=args.schedule,
        milestones=(0.5, 0.75), warmup_iters=0, augment=False,
        limit_train=size["train_limit"] or None, limit_test=size["test_limit"] or None,
        device=str(device), amp="auto", progress=False,
    )
    earlier = ({r["proportion"]: merged(r["runs"], args.merge, args.seeds)
                for r in earlier_result(args.merge, config, {"dropout": args.dropout})["results"]}
               if args.merge else {})
    n_seeds = len(set(args.seeds) | {r["seed"] for runs in earlier.values() for r in runs})
    n_train = size["train_limit"] or MNIST_TRAIN
    n_test = size["test_limit"] or 10000
    desc = (f"MLP-12 (mlp12, dropout {args.dropout}) on MNIST: train on "
            f"{'all 60,000' if n_train == MNIST_TRAIN else f'the first {n_train:,} of 60,000'} training images, "
            f"{size['epochs']} epoch(s), batch {args.batch_size}, SGD m=0.9 lr {args.lr} wd {args.weight_decay} "
            f"({args.schedule}{' /10 at 50%,75%' if args.schedule == 'step' else ''}), no augmentation; "
            f"test on {n_test:,} test images; {n_seeds} seed(s); device {device}, "
            f"{torch.get_num_threads()} thread(s)")
    print(desc, flush=True)
    print(f"work dir: {work}", flush=True)

    results = []
    for p in args.proportions:
        _, blocks, relus_left = erased_units(
            rs.create_model("mlp12", num_classes=10, in_chans=1, dropout=args.dropout), p)
        runs = []
        for seed in args.seeds:
            label = f"p={p:g} seed={seed}"
            runs.append(train_run(lambda: build(seed, p, args.dropout), config.replace(seed=seed),
                                  work / f"proportion={p:g}" / f"seed{seed}", label,
                                  {"name": "mlp12", "dropout": args.dropout, "erase_proportion": p,
                                   "erased_units": blocks}, args.keep_weights))
            print(f"[{label}] final test error {runs[-1]['test_top1_err']:.2f}%", flush=True)
        runs = sorted(earlier.get(p, []) + runs, key=lambda r: r["seed"])
        errs = [r["test_top1_err"] for r in runs]
        m, s = mean_std(errs)
        tm, ts = mean_std([r["train_top1_err"] for r in runs])
        results.append({"proportion": p, "erased_units": blocks, "relus_left": relus_left,
                        "test_err_mean": m, "test_err_std": s, "train_err_mean": tm, "train_err_std": ts,
                        "time_mean_s": statistics.fmean(r["train_seconds"] for r in runs), "runs": runs})

    base = results[0] if results and results[0]["proportion"] == 0 else None
    header = ["proportion", "units erased", "test error (%)", "Δ vs p=0", "per seed", "train error (%)",
              "time/run"]
    rows = [[f"{r['proportion']:g}", f"{len(r['erased_units'])}/11", f"{r['test_err_mean']:.2f} ± {r['test_err_std']:.2f}",
             "" if base is None or r is base else f"{r['test_err_mean'] - base['test_err_mean']:+.2f}",
             ", ".join(f"{x['test_top1_err']:.2f}" for x in r["runs"]),
             f"{r['train_err_mean']:.2f} ± {r['train_err_std']:.2f}", f"{r['time_mean_s']:.0f}s"] for r in results]
    table = markdown(header, rows)
    wall = time.perf_counter() - t_start
    info["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    info["date_end"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    doc = {
        "benchmark": "reproduce_mlp",
        "paper": "seed 000 (Dong et al. 2017, EraseReLU), Sec. 3.2, Fig. 3(c): MLP with 12 weighted layers on MNIST",
        "command": command_line(),
        "size": args.size,
        "description": desc,
        "settings": {
            "model": "mlp12", "dropout": args.dropout, "dataset": "mnist", "data_dir": str(data_dir),
            "train_limit": size["train_limit"] or None, "train_images": n_train, "test_images": n_test,
            "epochs": size["epochs"], "seeds": sorted({r["seed"] for p in results for r in p["runs"]}),
            "proportions": args.proportions,
            "selection": "uniform (paper's rule; relu_surgery.erase random=False)", "location": "last",
            "error_std": "sample standard deviation over seeds (n-1)",
            "train_error_note": "running training error of the last epoch, in training mode (dropout on)",
            "train_config": config.to_dict(),
        },
        "machine": info,
        "wall_seconds": wall,
        "wall_note": "wall time of this invocation (data loading, surgery, training, evaluation, plots); "
                     "runs marked reused were trained by an earlier invocation into the same work dir",
        "runs_seconds_total": sum(r["train_seconds"] for p in results for r in p["runs"]),
        "runs_reused": sum(r["reused"] for p in results for r in p["runs"]),
        "runs_merged": sum("merged_from" in r for p in results for r in p["runs"]),
        "work_dir": str(work),
        "results": results,
        "table_markdown": table,
    }
    write_result(doc, out, plot, [desc, table])


if __name__ == "__main__":
    main()
