"""Training throughput of ``relu_surgery.train.run_training`` vs a minimal hand-written PyTorch loop.

Both train the same model with the same batch size on the same device and real data (the first
N Fashion-MNIST training images, held on the device), with SGD (momentum 0.9, wd 1e-4). The hand
loop is what one would write by hand: a random permutation per epoch, index, forward,
cross-entropy, zero_grad, backward, step, at the runner's settings read from the same
``TrainConfig`` (autocast dtype, channels_last, torch.compile, the runner's optimiser: fused SGD
on CUDA; by default bf16 autocast and channels_last on CUDA, float32 on CPU). The runner's number
is its own ``samples_per_s`` column (training phase of an epoch: batches,
augmentation/normalisation, steps, metric sums, schedule). Runs alternate
runner/hand for several rounds; the first epoch of every run is warm-up and not counted; the table
gives medians over the remaining epochs. On CPU it also gives the ratio of process CPU time per
epoch (runner measured through its reporter hook), which is what to read on a machine shared
with other jobs: wall-clock rates there swing by 2x from epoch to epoch.

Usage:
    python bench/train_throughput.py                       # CPU here, CUDA where available
    python bench/train_throughput.py --rounds 5 --epochs 4 --models tiny_cnn

Writes bench/results/train_throughput.json (or --out) with the machine's description.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from relu_surgery.train import TrainConfig, load_arrays, run_training  # noqa: E402
from relu_surgery.train.engine import amp_dtype, build_optimizer  # noqa: E402
from relu_surgery.train.progress import Reporter  # noqa: E402
from relu_surgery.train.tiny import tiny_cnn  # noqa: E402


def data_dir() -> Path:
    env = os.environ.get("RELU_SURGERY_DATA")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data", ROOT / "shared" / "data"]:
        if (cand / "fashion-mnist").is_dir():
            return cand / "fashion-mnist"
    sys.exit("Fashion-MNIST not found: set RELU_SURGERY_DATA to the shared data folder")


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "tiny_cnn":
        return tiny_cnn(num_classes=10, in_chans=1, width=16)
    import relu_surgery

    return relu_surgery.create_model(name, num_classes=10, in_chans=1)


class EpochClock(Reporter):
    """Process CPU time of each epoch's training phase (first batch to last step), via the runner's hook."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.t0 = self.last = 0.0

    def epoch_start(self, epoch, start_step):
        self.t0 = time.process_time()

    def step(self, step, loss):
        self.last = time.process_time()

    def epoch_end(self, row):
        self.seconds.append(self.last - self.t0)


def runner_epochs(name: str, cfg: TrainConfig, clock: EpochClock | None = None) -> tuple[list[float], list[float]]:
    """(wall samples/s from the runner's metrics, CPU-time samples/s) per epoch, warm-up dropped.

    ``clock`` (an :class:`EpochClock`, maybe a subclass that also watches a deadline) is the
    runner's reporter."""
    clock = clock or EpochClock()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_training(build(name), cfg, Path(tmp) / "run", reporter=clock)
    samples = (cfg.limit_train // cfg.batch_size) * cfg.batch_size
    return [row["samples_per_s"] for row in result.history[1:]], [samples / s for s in clock.seconds[1:]]


def hand_epochs(name: str, cfg: TrainConfig, device: torch.device,
                on_step: Callable[[], None] | None = None) -> tuple[list[float], list[float]]:
    """The minimal loop at ``cfg``'s settings: normalised data on the device, permutation, index, step.

    Autocast, channels_last, torch.compile (with ``cfg.compile_backend``) and the optimiser are the
    runner's (``amp_dtype``, ``build_optimizer``, cuDNN benchmark and TF32 matmuls on CUDA).
    ``on_step`` is called after every step (a deadline check may raise there).
    Returns (wall, CPU-time) samples/s per epoch, the first (warm-up) epoch dropped.
    """
    data = load_arrays("fashion-mnist", cfg.data_dir, limit_train=cfg.limit_train, limit_test=cfg.limit_test)
    mean, std = data.spec.mean[0], data.spec.std[0]
    x_all = ((data.train_x.float() / 255 - mean) / std).to(device)
    y_all = data.train_y.to(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    channels_last = cfg.channels_last if cfg.channels_last is not None else cuda
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    dtype = amp_dtype(cfg, device)
    model = build(name).to(device, memory_format=fmt).train()
    opt = build_optimizer(model, cfg, device)
    forward = torch.compile(model, backend=cfg.compile_backend) if cfg.compile else model
    steps, wall, cpu = len(x_all) // cfg.batch_size, [], []
    for epoch in range(cfg.epochs):
        if cuda:
            torch.cuda.synchronize()
        start, start_cpu = time.perf_counter(), time.process_time()
        perm = torch.randperm(len(x_all), device=device)
        for step in range(steps):
            idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x = x_all[idx].contiguous(memory_format=fmt)
            with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                loss = F.cross_entropy(forward(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if on_step is not None:
                on_step()
        if cuda:
            torch.cuda.synchronize()
        wall.append(steps * cfg.batch_size / (time.perf_counter() - start))
        cpu.append(steps * cfg.batch_size / (time.process_time() - start_cpu))
    return wall[1:], cpu[1:]


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": str(device), "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny_cnn", "cifar_resnet20"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--samples", type=int, default=2048, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is warm-up")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runner/hand runs")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads on CPU (0: torch's default)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_throughput.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info(device)
    cfg = TrainConfig(dataset="fashion-mnist", data_dir=str(data_dir()), epochs=args.epochs,
                      batch_size=args.batch_size, lr=0.05, limit_train=args.samples, limit_test=256,
                      progress=False, device=args.device, schedule="constant")
    results = []
    for name in args.models:
        runs = {"runner_wall": [], "runner_cpu": [], "hand_wall": [], "hand_cpu": []}
        for _ in range(args.rounds):
            wall, cpu = runner_epochs(name, cfg)
            runs["runner_wall"] += wall
            runs["runner_cpu"] += cpu
            wall, cpu = hand_epochs(name, cfg, device)
            runs["hand_wall"] += wall
            runs["hand_cpu"] += cpu
        med = {k: statistics.median(v) for k, v in runs.items()}
        row = {"model": name, "batch_size": args.batch_size, "device": str(device),
               "runner_samples_per_s": round(med["runner_wall"], 1), "hand_samples_per_s": round(med["hand_wall"], 1),
               "ratio": round(med["runner_wall"] / med["hand_wall"], 3)}
        if device.type == "cpu":
            row.update({"runner_cpu_samples_per_s": round(med["runner_cpu"], 1),
                        "hand_cpu_samples_per_s": round(med["hand_cpu"], 1),
                        "ratio_cpu_time": round(med["runner_cpu"] / med["hand_cpu"], 3)})
        row["epochs"] = {k: [round(x, 1) for x in v] for k, v in runs.items()}
        results.append(row)
        print(f"{name}: runner {med['runner_wall']:.0f} samples/s, hand loop {med['hand_wall']:.0f} samples/s, "
              f"ratio {row['ratio']:.3f} (CPU-time ratio {row.get('ratio_cpu_time', float('nan')):.3f})", flush=True)
    info["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    doc = {"benchmark": "train_throughput", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
           "settings": {"dataset": "fashion-mnist", "samples_per_epoch": args.samples, "epochs_per_run": args.epochs,
                        "warmup_epochs_dropped": 1, "rounds": args.rounds, "optimizer": "SGD m=0.9 wd=1e-4",
                        "amp": "bf16" if device.type == "cuda" else "float32"},
           "machine": info, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print()
    print(f"{'model':<16}{'device':<8}{'batch':>6}{'runner/s':>11}{'hand/s':>10}{'ratio':>8}{'CPU-time ratio':>16}")
    for row in results:
        print(f"{row['model']:<16}{row['device']:<8}{row['batch_size']:>6}{row['runner_samples_per_s']:>11.0f}"
              f"{row['hand_samples_per_s']:>10.0f}{row['ratio']:>8.3f}{row.get('ratio_cpu_time', float('nan')):>16.3f}")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
