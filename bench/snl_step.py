"""Cost of an SNL training step: masked ResNet (trainable masks + L1 penalty hook) vs the plain model.

Both models are trained by the runner's own :class:`relu_surgery.train.engine.Engine` (SGD,
float32, CPU) on the same random Fashion-MNIST-shaped batches; the SNL step is the same model
after ``rs.linearize``'s mask rewrite (every ReLU a ``MaskedReLU`` with a per-channel, or
per-pixel, trainable mask) with :class:`~relu_surgery.surgery.linearize.snl.MaskPenalty`'s extra
loss term added, as the runner adds it. Steps are timed in interleaved rounds (plain, masked,
plain, ...) so load changes hit both; the median per-step time of each is compared (target:
masked <= 1.3x plain).

    python bench/snl_step.py [--threads 1] [--rounds 5] [--steps 10] [--batch 128]

Writes bench/results/snl_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import relu_surgery as rs  # noqa: E402
from relu_surgery.surgery.linearize import linearize_step  # noqa: E402
from relu_surgery.surgery.linearize.snl import MaskPenalty  # noqa: E402
from relu_surgery.surgery.pipeline import run_rewrite  # noqa: E402
from relu_surgery.train.config import TrainConfig  # noqa: E402
from relu_surgery.train.ddp import DistEnv  # noqa: E402
from relu_surgery.train.engine import Engine  # noqa: E402
from relu_surgery.train.hooks import hook_loss  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "snl_step.json"


def engines(model_name: str, granularity: str):
    """(plain engine, masked engine, the masked model's hooks) from one seeded model."""
    torch.manual_seed(0)
    plain = rs.create_model(model_name, in_chans=1)
    x = torch.zeros(1, 1, 28, 28)
    masked, _ = run_rewrite(plain, [linearize_step("snl", 0.1, granularity=granularity, trainable=True)], x)
    cfg = TrainConfig(dataset="fashion-mnist", lr=0.02, device="cpu")
    env = DistEnv(0, 1, 0, torch.device("cpu"))
    hooks = [MaskPenalty(budget=14425, l1=1e-3, every=10)]
    return Engine(plain, cfg, env), Engine(masked, cfg, env), hooks


def time_steps(engine: Engine, batches, hooks=None, start: int = 0) -> list[float]:
    """Seconds per step over ``batches`` (the hooks' extra loss added as the runner adds it)."""
    times = []
    for i, (x, y) in enumerate(batches):
        extra = (lambda step=start + i: hook_loss(hooks, engine.model, step)) if hooks else None
        t0 = time.perf_counter()
        engine.train_step(x, y, extra)
        times.append(time.perf_counter() - t0)
    return times


def measure(model_name: str, granularity: str, rounds: int, steps: int, batch: int) -> dict:
    plain, masked, hooks = engines(model_name, granularity)
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(batch, 1, 28, 28, generator=gen), torch.randint(0, 10, (batch,), generator=gen))
               for _ in range(steps)]
    time_steps(plain, batches[:2])
    time_steps(masked, batches[:2], hooks)  # warm-up
    p_times, m_times = [], []
    for r in range(rounds):
        p_times += time_steps(plain, batches)
        m_times += time_steps(masked, batches, hooks, start=r * steps)
    p, m = statistics.median(p_times), statistics.median(m_times)
    return {"model": model_name, "granularity": granularity, "batch": batch, "steps_timed": len(p_times),
            "plain_step_s": round(p, 4), "snl_step_s": round(m, 4), "ratio": round(m / p, 3),
            "plain_samples_per_s": round(batch / p, 1), "snl_samples_per_s": round(batch / m, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--models", default="cifar_resnet20")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [measure(m, g, args.rounds, args.steps, args.batch) for m in args.models.split(",")
            for g in ("channel", "pixel")]
    print(f"{'model':<18}{'mask':>9}{'plain s/step':>14}{'snl s/step':>12}{'x':>7}")
    for r in rows:
        print(f"{r['model']:<18}{r['granularity']:>9}{r['plain_step_s']:>14.4f}{r['snl_step_s']:>12.4f}{r['ratio']:>7.3f}")
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
            "threads": args.threads, "loadavg": list(os.getloadavg()),
            "command": "python bench/snl_step.py " + " ".join(argv or sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
