"""One command for a GPU machine: runner throughput, inference cost of the rewrites, a short ResNet-56 study.

The steps run in this order; each writes its own JSON under ``--out`` before the next starts, so a
run cut off keeps what it finished:

1. ``gpu_suite_throughput.json``: the zoo's CIFAR-shaped ``cifar_resnet110`` (1-channel input) on
   Fashion-MNIST images held on the device, batch 128 and 512, trained by the runner
   (``run_training``) and by a minimal hand-written loop at the same settings
   (``train_throughput.hand_epochs``), in four settings: fp32 (``amp="none"``), bf16 autocast,
   bf16 + channels_last, bf16 + channels_last + torch.compile. Each run trains 3 epochs of the
   first 10,240 images; samples/s is the median over the epochs after the first (warm-up, compile),
   with the ratio runner/hand. Targets, reported and not asserted: runner >= 0.95x
   the hand loop at equal settings; the runner's best setting >= 3x its fp32 setting.
2. ``gpu_suite_inference.json``: ``inference_cost.measure_case`` rows (eval-mode latency, MACs,
   peak memory, time in CReLU's own ops) of ``tv:resnet50`` original / erase / crelu at batch 64
   and 256 on the device.
3. ``gpu_suite_resnet56.json``: Fashion-MNIST ``cifar_resnet56`` original vs EraseReLU
   (proportion 1.0, location last) vs PReLU-sum (``swap(to="prelu", location="last")``), all
   60,000 training images, 2 seeds, the recipe of ``reproduce_resnet.py --size gpu`` (batch 128,
   SGD lr 0.1, warm-up 400 iterations, crop+flip, lr /10 at 50% and 75%) for as many epochs as
   the budget left allows: a short timed probe (2 epochs of a few steps) measures the epoch time
   and the per-run overhead, and the epochs are chosen so the 6 runs fit.

Budget: the whole script keeps inside ``--budget-s`` seconds of wall-clock time. Step 1 must end by
45% of it, step 2 by 60%, step 3 by the end (less a few seconds for the summary); time a step leaves
unused goes to the next. Before each measurement a step compares its estimated cost (measured on
the previous one, or a first guess) with the time it has left and skips it if it would not fit;
training stops after the step that crosses the step's deadline. Whatever was skipped or cut is
marked in the JSON (``status``, ``reason``, ``cut_short``). ``fp32`` on CUDA means float32 tensors
with TF32 convolutions and matmuls, as the runner sets them (cuDNN benchmark on, matmul precision
"high"); the flags are recorded.

Usage:
    python bench/gpu_suite.py --smoke              # CPU, tiny: every step's code path, well under a minute
    python bench/gpu_suite.py                      # on a GPU machine: --device cuda, --budget-s 540
    python bench/gpu_suite.py --budget-s 300 --out /tmp/results --data-dir /path/to/data

``--smoke`` (device cpu unless ``--device`` is given) uses cifar_resnet20 in every step, batch sizes
of a few samples, 1 epoch and torch.compile with the "eager" backend; its files are named
``gpu_suite_smoke_*.json``. With ``--device cuda`` and no CUDA device the script says so on one
line and exits with status 2.

On the device machine: the Fashion-MNIST files do not travel there, so first copy them into the
ignored folder ``.gpu_data`` of this checkout (run from the repository root)::

    mkdir -p .gpu_data/fashion-mnist
    cp /work/shared/data/fashion-mnist/*-ubyte.gz .gpu_data/fashion-mnist/

then run, with ``carry=[".gpu_data"]`` (about 30 MB) so the folder goes along::

    PYTHONUNBUFFERED=1 python bench/gpu_suite.py --data-dir .gpu_data --out $OUT/results

No thread or other settings are needed there (torch's default threads; ``PYTHONUNBUFFERED=1`` only
makes the progress lines stream); give the command ``timeout_s=600``: the 540 s budget counts from
the script's start, and torch's import and the summary fit in the rest.

``--data-dir`` is the folder with the IDX files or its parent; without it the first of
``$RELU_SURGERY_DATA``, ``../shared/data``, ``shared/data`` and ``./.gpu_data`` that holds a
``fashion-mnist`` folder. Needs torch, torchvision (for ``tv:resnet50``) and safetensors (the runner
saves weights; timm depends on it); matplotlib is optional (without it runs draw no ``curves.png``).
The JSON records which of them import (``machine.modules``).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

_STARTED = time.perf_counter()  # run as a script, the budget counts from here (torch's import included)
os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # fewer profiler log lines from step 2
ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT, Path(__file__).resolve().parent):  # ROOT / "src" until the package moves
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import torch  # noqa: E402

import inference_cost  # noqa: E402
import reproduce_resnet  # noqa: E402
import train_throughput  # noqa: E402
from reproduce_mlp import find_data_dir, machine_info, mean_std, train_run  # noqa: E402
from relu_surgery.train import TrainConfig, run_training  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GPU_RECIPE = reproduce_resnet.SIZES["gpu"]  # batch 128, warm-up 400 it, crop+flip, 164 epochs at most
STEP_ENDS = {"throughput": 0.45, "inference": 0.60, "resnet56": 1.0}  # fraction of the budget each step ends by
SUMMARY_RESERVE_S = 3.0  # kept back at the end for the summary
SAFETY = 1.1  # step 3 plans with epoch times 10% longer than measured
TARGET_RUNNER_VS_HAND = 0.95
TARGET_BEST_VS_FP32 = 3.0
SETTINGS = {  # TrainConfig fields of the four throughput settings (compile last: it is the slowest to start)
    "fp32": {"amp": "none", "channels_last": False, "compile": False},
    "bf16": {"amp": "bf16", "channels_last": False, "compile": False},
    "bf16_cl": {"amp": "bf16", "channels_last": True, "compile": False},
    "bf16_cl_compile": {"amp": "bf16", "channels_last": True, "compile": True},
}
INFERENCE_REWRITES = ["original", "erase", "crelu"]
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "throughput": {"model": "cifar_resnet110", "batches": [128, 512], "samples": 10240, "epochs": 3,
                       "test_samples": 512, "compile_backend": "inductor", "first_guess_s": 15.0,
                       "compile_guess_s": 90.0},
        "inference": {"model": "tv:resnet50", "input": (3, 224, 224), "batches": [64, 256], "repeats": 20,
                      "first_guess_s": 30.0},
        "resnet56": {"model": "cifar_resnet56", "seeds": [0, 1], "train_limit": None, "test_limit": None,
                     "batch_size": GPU_RECIPE["batch_size"], "warmup_iters": GPU_RECIPE["warmup_iters"],
                     "augment": GPU_RECIPE["augment"], "max_epochs": GPU_RECIPE["epochs"], "probe_steps": 40,
                     "first_guess_s": 20.0},
    },
    "smoke": {
        "throughput": {"model": "cifar_resnet20", "batches": [4, 8], "samples": 16, "epochs": 2,
                       "test_samples": 8, "compile_backend": "eager", "first_guess_s": 1.0,
                       "compile_guess_s": 2.0},
        "inference": {"model": "cifar_resnet20", "input": (3, 32, 32), "batches": [2], "repeats": 1,
                      "first_guess_s": 1.0},
        "resnet56": {"model": "cifar_resnet20", "seeds": [0, 1], "train_limit": 16, "test_limit": 16,
                     "batch_size": 8, "warmup_iters": 0, "augment": True, "max_epochs": 1, "probe_steps": 1,
                     "first_guess_s": 1.0},
    },
}


class OutOfBudget(Exception):
    """A step's deadline passed during a measurement."""


@dataclass
class Deadline:
    """The ``time.perf_counter()`` instant by which a step has to be done."""

    at: float

    def left(self) -> float:
        return self.at - time.perf_counter()

    def check(self) -> None:
        """Raise :class:`OutOfBudget` once the deadline has passed (called after every training step)."""
        if self.left() <= 0:
            raise OutOfBudget("the step's share of the budget ran out during this measurement")

    def fits(self, need_s: float) -> str | None:
        """None if ``need_s`` seconds fit in what is left, else the reason to skip."""
        left = self.left()
        if need_s <= left:
            return None
        return f"skipped for the budget: needs about {need_s:.0f}s, {max(left, 0):.0f}s left"


def failure(exc: BaseException) -> dict[str, str]:
    """A failed measurement: status, reason (``Type: first line``) and the innermost frames (call in ``except``)."""
    lines = str(exc).strip().splitlines()
    return {"status": "error", "reason": f"{type(exc).__name__}: {lines[0] if lines else ''}",
            "traceback": traceback.format_exc(limit=-6)}


class DeadlineClock(train_throughput.EpochClock):
    """The runner's reporter: the throughput clock that also stops a run at the deadline."""

    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def step(self, step, loss):
        super().step(step, loss)
        self.deadline.check()


@dataclass
class Suite:
    """What every step needs: the options, the device, the sizes, the budget, the JSON envelope."""

    args: argparse.Namespace
    device: torch.device
    profile: dict[str, dict[str, Any]]
    data_dir: Path
    out: Path
    command: str
    t0: float = field(default_factory=time.perf_counter)
    machine: dict[str, Any] = field(default_factory=dict)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def deadline(self, step: str) -> Deadline:
        end = self.t0 + STEP_ENDS[step] * self.args.budget_s
        return Deadline(min(end, self.t0 + self.args.budget_s - SUMMARY_RESERVE_S))

    def path(self, step: str) -> Path:
        return self.out / f"gpu_suite_{'smoke_' if self.args.smoke else ''}{step}.json"

    def base_config(self, **fields: Any) -> TrainConfig:
        return TrainConfig(dataset="fashion-mnist", data_dir=str(self.data_dir), device=str(self.device),
                           progress=False, num_workers=0, **fields)


# ----------------------------------------------------------------------------- step 1: throughput

def throughput_pair(suite: Suite, cfg: TrainConfig, deadline: Deadline) -> dict[str, Any]:
    """Runner then hand loop at one setting; samples/s medians (first epoch dropped) and the ratio."""
    name, row = suite.profile["throughput"]["model"], {}
    try:
        if cfg.compile:
            torch._dynamo.reset()  # a fresh compile per run: no shapes carried over from the last model
        runner = train_throughput.runner_epochs(name, cfg, DeadlineClock(deadline))[0]
        row["runner_epochs"] = [round(x, 1) for x in runner]
        if cfg.compile:
            torch._dynamo.reset()
        hand = train_throughput.hand_epochs(name, cfg, suite.device, deadline.check)[0]
        row["hand_epochs"] = [round(x, 1) for x in hand]
    except OutOfBudget as exc:
        return {**row, "status": "cut", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 (one failing setting, e.g. a compile error, must not end the suite)
        return {**row, **failure(exc)}
    by_runner, by_hand = statistics.median(row["runner_epochs"]), statistics.median(row["hand_epochs"])
    return {**row, "status": "done", "runner_samples_per_s": round(by_runner, 1),
            "hand_samples_per_s": round(by_hand, 1), "ratio": round(by_runner / by_hand, 3)}


def run_throughput(suite: Suite, deadline: Deadline, doc: dict[str, Any]) -> list[dict[str, Any]]:
    p = suite.profile["throughput"]
    base = suite.base_config(epochs=p["epochs"], lr=0.05, schedule="constant", limit_train=p["samples"],
                             limit_test=p["test_samples"], eval_batch_size=p["test_samples"],
                             compile_backend=p["compile_backend"])
    doc["settings"].update({
        "model": p["model"], "create_model": f"create_model({p['model']!r}, num_classes=10, in_chans=1)",
        "batches": p["batches"], "samples_per_epoch": p["samples"], "epochs_per_run": p["epochs"],
        "warmup_epochs_dropped": 1, "settings": SETTINGS, "compile_backend": p["compile_backend"],
        "optimizer": "the runner's build_optimizer: SGD m=0.9 wd=1e-4 (fused on CUDA), lr 0.05 constant",
        "train_config": base.to_dict()})
    last: dict[bool, float] = {}  # seconds of the last measured pair, without / with compile
    rows = []
    for setting, fields in SETTINGS.items():
        for batch in p["batches"]:
            cfg = base.replace(batch_size=batch, **fields)
            guess = p["compile_guess_s"] if cfg.compile else p["first_guess_s"]
            row = {"setting": setting, "batch_size": batch, **fields}
            reason = deadline.fits(last.get(cfg.compile, guess))
            if reason:
                rows.append({**row, "status": "skipped", "reason": reason})
                continue
            start = time.perf_counter()
            rows.append({**row, **throughput_pair(suite, cfg, deadline)})
            rows[-1]["seconds"] = last[cfg.compile] = round(time.perf_counter() - start, 1)
            print(f"  throughput {setting} batch {batch}: {rows[-1]['status']} in {rows[-1]['seconds']:.0f}s",
                  flush=True)
    doc["rows"], doc["targets"] = rows, throughput_targets(rows)
    return rows


def throughput_targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether the runner keeps up with the hand loop, and how far its best setting gets past fp32."""
    done = [r for r in rows if r["status"] == "done"]
    pairs = [{"setting": r["setting"], "batch_size": r["batch_size"], "ratio": r["ratio"],
              "met": r["ratio"] >= TARGET_RUNNER_VS_HAND} for r in done]
    speedups = {}
    for batch in sorted({r["batch_size"] for r in done}):
        at = {r["setting"]: r["runner_samples_per_s"] for r in done if r["batch_size"] == batch}
        if "fp32" in at and len(at) > 1:
            best = max(at, key=at.get)
            ratio = round(at[best] / at["fp32"], 2)
            speedups[str(batch)] = {"best_setting": best, "speedup": ratio, "met": ratio >= TARGET_BEST_VS_FP32}
    return {
        "runner_vs_hand": {"target": f"runner >= {TARGET_RUNNER_VS_HAND}x the hand loop at equal settings",
                           "pairs": pairs, "met": all(p["met"] for p in pairs) if pairs else None},
        "best_vs_fp32": {"target": f"runner's best setting >= {TARGET_BEST_VS_FP32:g}x its fp32 setting",
                         "per_batch": speedups, "met": all(s["met"] for s in speedups.values()) if speedups else None},
    }


def unit_note(unit: dict[str, Any]) -> str:
    """How a measurement that did not finish ended ("skipped for the budget: ...", "cut: ...", "error: ...")."""
    return unit["reason"] if unit["status"] == "skipped" else f"{unit['status']}: {unit['reason']}"


def print_throughput(doc: dict[str, Any]) -> None:
    print(f"{'setting':<17}{'batch':>6}{'runner/s':>11}{'hand/s':>10}{'ratio':>8}  {'>=0.95x':<8}status")
    for r in doc["rows"]:
        if r["status"] == "done":
            met = "met" if r["ratio"] >= TARGET_RUNNER_VS_HAND else "NOT met"
            print(f"{r['setting']:<17}{r['batch_size']:>6}{r['runner_samples_per_s']:>11.0f}"
                  f"{r['hand_samples_per_s']:>10.0f}{r['ratio']:>8.3f}  {met:<8}done")
        else:
            print(f"{r['setting']:<17}{r['batch_size']:>6}{'-':>11}{'-':>10}{'-':>8}  {'':<8}{unit_note(r)}")
    for batch, s in doc.get("targets", {}).get("best_vs_fp32", {}).get("per_batch", {}).items():
        print(f"batch {batch}: best {s['best_setting']} = {s['speedup']:.2f}x fp32 "
              f"(target {TARGET_BEST_VS_FP32:g}x: {'met' if s['met'] else 'NOT met'})")


# ----------------------------------------------------------------------------- step 2: inference

def run_inference(suite: Suite, deadline: Deadline, doc: dict[str, Any]) -> list[dict[str, Any]]:
    p = suite.profile["inference"]
    if suite.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    doc["settings"].update({"model": p["model"], "input": list(p["input"]), "batches": p["batches"],
                            "rewrites": INFERENCE_REWRITES, "repeats": p["repeats"], "device": str(suite.device),
                            "measure": "inference_cost.measure_case (eval mode, float32)",
                            "cudnn_benchmark": torch.backends.cudnn.benchmark,
                            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                            "float32_matmul_precision": torch.get_float32_matmul_precision()})
    need, doc["rows"], doc["cases"] = p["first_guess_s"], [], []
    for batch in p["batches"]:
        case = {"model": p["model"], "batch": batch}
        reason = deadline.fits(need)
        if reason:
            doc["cases"].append({**case, "status": "skipped", "reason": reason})
            continue
        start = time.perf_counter()
        try:
            found = inference_cost.measure_case(p["model"], p["input"], batch, str(suite.device), p["repeats"],
                                                rewrites=INFERENCE_REWRITES)
            case["status"] = "done"
            doc["rows"] += [{**r, "status": "done"} for r in found]
        except Exception as exc:  # noqa: BLE001 (the other batch may still work)
            case.update(failure(exc))
        case["seconds"] = round(time.perf_counter() - start, 1)
        need = 2 * case["seconds"]  # the next (larger) batch: at most about twice as long
        doc["cases"].append(case)
        print(f"  inference batch {batch}: {case['status']} in {case['seconds']:.0f}s", flush=True)
    return doc["cases"]


def print_inference(doc: dict[str, Any]) -> None:
    if doc["rows"]:
        print(f"{'model':<16}{'rewrite':<10}{'batch':>6}{'min ms':>10}{'x':>7}{'median ms':>11}{'MACs x':>8}"
              f"{'cat/neg ms':>11}{'params':>12}{'peak MiB':>10}")
    for r in doc["rows"]:
        print(f"{r['model']:<16}{r['rewrite']:<10}{r['batch']:>6}{r['latency_ms']:>10.2f}{r['latency_ratio']:>7.3f}"
              f"{r['median_ms']:>11.2f}{r['mac_ratio']:>8.3f}{r['crelu_ops_ms']:>11.2f}{r['params']:>12,}"
              f"{r['peak_mem_mib']:>10.1f}")
    for c in doc.get("cases", []):
        if c["status"] != "done":
            print(f"{c['model']} batch {c['batch']}: {unit_note(c)}")


# ----------------------------------------------------------------------------- step 3: ResNet-56 study

def probe_epoch(suite: Suite, cfg: TrainConfig, deadline: Deadline) -> dict[str, float]:
    """Two short epochs of the original model: seconds per step and per evaluation, and the per-run overhead.

    The second epoch gives the steady step time (the first pays cuDNN's autotuning); the overhead
    is the probe's wall time less two steady epochs (building, data loading, warm-up, saving).
    """
    p = suite.profile["resnet56"]
    steps = p["probe_steps"]
    probe_cfg = cfg.replace(epochs=2, limit_train=steps * cfg.batch_size, warmup_iters=0)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model = reproduce_resnet.build(p["model"], 0, "original", 1.0)
        result = run_training(model, probe_cfg, Path(tmp) / "probe", reporter=DeadlineClock(deadline))
    wall = time.perf_counter() - start
    second = result.history[1]
    step_s = second["train_seconds"] / steps
    epoch_s = step_s * ((cfg.limit_train or 60000) // cfg.batch_size) + second["eval_seconds"]
    return {"steps": steps, "wall_s": round(wall, 2), "step_s": step_s, "eval_s": second["eval_seconds"],
            "epoch_s": epoch_s, "overhead_s": max(wall - 2 * second["epoch_seconds"], 0.0)}


def plan_epochs(left_s: float, runs: int, epoch_s: float, overhead_s: float, max_epochs: int,
                safety: float = SAFETY) -> int:
    """The most epochs (at most ``max_epochs``) for which ``runs`` runs fit in ``left_s`` seconds (0: none)."""
    per_run = left_s / max(runs, 1) - overhead_s
    return max(0, min(max_epochs, math.floor(per_run / (epoch_s * safety))))


def plan_runs(left_s: float, seeds: list[int], variants: int, probe: dict[str, float],
              max_epochs: int) -> tuple[int, list[int], str | None]:
    """(epochs, seeds kept, why shortened): every seed if one epoch of all runs fits, else fewer seeds."""
    for keep in range(len(seeds), 0, -1):
        epochs = plan_epochs(left_s, keep * variants, probe["epoch_s"], probe["overhead_s"], max_epochs)
        if epochs >= 1:
            note = None if keep == len(seeds) else f"shortened for the budget: {keep} of {len(seeds)} seeds"
            return epochs, seeds[:keep], note
    need = variants * (probe["overhead_s"] + probe["epoch_s"] * SAFETY)
    return 0, [], f"skipped for the budget: one epoch of {variants} runs needs about {need:.0f}s, {left_s:.0f}s left"


def surgery_records(name: str) -> dict[str, dict[str, Any]]:
    """What each variant's surgery changes in ``name``, and how long it takes."""
    records = {}
    for variant in reproduce_resnet.VARIANTS:
        model = reproduce_resnet.build(name, 0, "original", 1.0)
        start = time.perf_counter()
        _, record = reproduce_resnet.rewrite(model, variant, 1.0)
        records[variant] = {**record, "seconds": round(time.perf_counter() - start, 3)}
    return records


def train_one(suite: Suite, cfg: TrainConfig, variant: str, seed: int, work: Path, deadline: Deadline,
              need_s: float) -> dict[str, Any]:
    """One run of the study (through ``reproduce_mlp.train_run``), or why it was skipped or cut."""
    name = suite.profile["resnet56"]["model"]
    row: dict[str, Any] = {"variant": variant, "seed": seed}
    reason = deadline.fits(need_s)
    if reason:
        return {**row, "status": "skipped", "reason": reason}
    info = {"name": name, "in_chans": 1, "variant": variant, "erase_proportion": 1.0 if variant == "erase" else None}
    try:
        run = train_run(lambda: reproduce_resnet.build(name, seed, variant, 1.0), cfg.replace(seed=seed),
                        work / variant / f"seed{seed}", f"{name} {variant} seed={seed}", info,
                        reporter=DeadlineClock(deadline))
    except OutOfBudget as exc:
        return {**row, "status": "cut", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001
        return {**row, **failure(exc)}
    run.pop("run_dir")  # a temporary folder, gone after the step
    print(f"  resnet56 {variant} seed {seed}: test error {run['test_top1_err']:.2f}% "
          f"({run['epochs']} epochs, {run['train_seconds']:.0f}s)", flush=True)
    return {**row, "status": "done", **run}


def resnet56_config(suite: Suite) -> TrainConfig:
    p = suite.profile["resnet56"]
    return suite.base_config(batch_size=p["batch_size"], lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="step",
                             milestones=(0.5, 0.75), warmup_iters=p["warmup_iters"], warmup_lr=0.01,
                             augment=p["augment"], limit_train=p["train_limit"], limit_test=p["test_limit"],
                             amp="auto")


def run_resnet56(suite: Suite, deadline: Deadline, doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = study_rows(suite, deadline, doc)
    doc["rows"], doc["results"] = rows, resnet56_results(rows, reproduce_resnet.VARIANTS)
    return rows


def study_rows(suite: Suite, deadline: Deadline, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Surgery records, the timed probe, the epoch plan, then the runs (seed-major), each a row."""
    p = suite.profile["resnet56"]
    cfg, variants = resnet56_config(suite), reproduce_resnet.VARIANTS
    doc["settings"].update({"model": p["model"], "variants": variants, "seeds": p["seeds"],
                            "erase": "proportion 1.0, location last", "prelu_sum": "swap(to='prelu', location='last')",
                            "train_images": p["train_limit"] or 60000, "test_images": p["test_limit"] or 10000,
                            "max_epochs": p["max_epochs"], "plan_safety": SAFETY})
    all_runs = [(seed, v) for seed in p["seeds"] for v in variants]  # seed-major: a cut keeps whole comparisons
    reason = deadline.fits(p["first_guess_s"])
    if reason:
        return [{"variant": v, "seed": s, "status": "skipped", "reason": reason} for s, v in all_runs]
    doc["surgery"] = surgery_records(p["model"])
    try:
        probe = probe_epoch(suite, cfg, deadline)
    except OutOfBudget as exc:
        return [{"variant": v, "seed": s, "status": "skipped", "reason": f"probe: {exc}"} for s, v in all_runs]
    probe["overhead_s"] += max(r["seconds"] for r in doc["surgery"].values())
    epochs, seeds, note = plan_runs(deadline.left(), p["seeds"], len(variants), probe, p["max_epochs"])
    doc["plan"] = {"probe": {k: round(v, 4) for k, v in probe.items()}, "epochs": epochs, "seeds": seeds,
                   "left_s": round(deadline.left(), 1), "note": note}
    print(f"  resnet56 plan: {epochs} epoch(s), seeds {seeds}, epoch ~{probe['epoch_s']:.1f}s, "
          f"overhead ~{probe['overhead_s']:.1f}s/run{'; ' + note if note else ''}", flush=True)
    if not epochs:
        return [{"variant": v, "seed": s, "status": "skipped", "reason": note} for s, v in all_runs]
    cfg = cfg.replace(epochs=epochs)
    doc["settings"]["epochs"], doc["settings"]["train_config"] = epochs, cfg.to_dict()
    need = probe["overhead_s"] + epochs * probe["epoch_s"] * SAFETY
    with tempfile.TemporaryDirectory() as work:
        return [train_one(suite, cfg, v, s, Path(work), deadline, need) if s in seeds
                else {"variant": v, "seed": s, "status": "skipped", "reason": note} for s, v in all_runs]


def resnet56_results(rows: list[dict[str, Any]], variants: list[str]) -> dict[str, dict[str, Any]]:
    """Per variant, over its finished runs: test / train error mean and sample std, parameters, time."""
    out = {}
    for variant in variants:
        runs = [r for r in rows if r["variant"] == variant and r["status"] == "done"]
        if not runs:
            continue
        m, s = mean_std([r["test_top1_err"] for r in runs])
        tm, ts = mean_std([r["train_top1_err"] for r in runs])
        out[variant] = {"seeds": [r["seed"] for r in runs], "test_err_mean": round(m, 3), "test_err_std": round(s, 3),
                        "per_seed": [r["test_top1_err"] for r in runs], "train_err_mean": round(tm, 3),
                        "train_err_std": round(ts, 3), "params": runs[0]["num_params"],
                        "time_mean_s": round(statistics.fmean(r["train_seconds"] for r in runs), 1)}
    base = out.get("original")
    for cell in out.values():
        cell["delta_vs_original"] = None if base is None else round(cell["test_err_mean"] - base["test_err_mean"], 3)
    return out


def print_resnet56(doc: dict[str, Any]) -> None:
    plan = doc.get("plan", {})
    if plan:
        print(f"{doc['settings']['model']}: {plan['epochs']} epoch(s) on {doc['settings']['train_images']:,} images, "
              f"seeds {plan['seeds']}{'; ' + plan['note'] if plan.get('note') else ''}")
    if doc.get("results"):
        print(f"{'variant':<11}{'params':>10}{'test err %':>16}{'vs orig':>9}  {'per seed':<16}{'train err %':>13}"
              f"{'time/run':>10}")
    for variant, c in doc.get("results", {}).items():
        delta = "" if variant == "original" or c["delta_vs_original"] is None else f"{c['delta_vs_original']:+.2f}"
        print(f"{variant:<11}{c['params']:>10,}{c['test_err_mean']:>10.2f} ± {c['test_err_std']:<4.2f}{delta:>9}  "
              f"{', '.join(f'{x:.2f}' for x in c['per_seed']):<16}{c['train_err_mean']:>13.2f}"
              f"{c['time_mean_s']:>9.0f}s")
    for r in doc["rows"]:
        if r["status"] != "done":
            print(f"{r['variant']} seed {r['seed']}: {unit_note(r)}")


# ----------------------------------------------------------------------------- the suite

STEPS: list[tuple[str, Callable, Callable]] = [
    ("throughput", run_throughput, print_throughput),
    ("inference", run_inference, print_inference),
    ("resnet56", run_resnet56, print_resnet56),
]


def step_status(units: list[dict[str, Any]], error: str | None) -> tuple[str, bool, str | None]:
    """(status, cut_short, reason) of a step from its units' statuses (done / skipped / cut / error).

    ``done``: every unit finished; ``skipped``: none started, for the budget; ``cut_short``: some
    were skipped or stopped for the budget; ``errors``: some failed; ``failed``: the step itself did.
    """
    budget = [u for u in units if u["status"] in ("skipped", "cut")]
    if error:
        return "failed", bool(budget), error
    if all(u["status"] == "done" for u in units):
        return "done", False, None
    if budget:
        started = any(u["status"] != "skipped" for u in units)
        return ("cut_short" if started else "skipped"), True, budget[0]["reason"]
    return "errors", False, next(u["reason"] for u in units if u["status"] == "error")


def run_step(suite: Suite, number: int, name: str, run: Callable, show: Callable) -> dict[str, Any]:
    """Run one step inside its deadline, write its JSON, print its table."""
    deadline = suite.deadline(name)
    print(f"\n== step {number}: {name} ({max(deadline.left(), 0):.0f}s of the budget left for it) ==", flush=True)
    start = time.perf_counter()
    doc = {"benchmark": f"gpu_suite_{name}", "step": number, "smoke": suite.args.smoke, "status": "running",
           "cut_short": None, "reason": None, "command": suite.command, "machine": suite.machine,
           "budget": {"total_s": suite.args.budget_s, "step_ends_at_s": round(deadline.at - suite.t0, 1),
                      "started_at_s": round(start - suite.t0, 1)},
           "settings": {"device": str(suite.device), "data_dir": str(suite.data_dir)}, "rows": []}
    error = None
    try:
        units = run(suite, deadline, doc)
    except Exception as exc:  # noqa: BLE001 (write what is known, go on with the next step)
        units, error, doc["traceback"] = [], failure(exc)["reason"], traceback.format_exc(limit=8)
    doc["status"], doc["cut_short"], doc["reason"] = step_status(units, error)
    doc["wall_seconds"] = round(time.perf_counter() - start, 1)
    doc["budget"]["ended_at_s"] = round(time.perf_counter() - suite.t0, 1)
    write_json(suite.path(name), doc)
    show(doc)
    print(f"step {number} {name}: {doc['status']} in {doc['wall_seconds']:.0f}s -> {suite.path(name)}", flush=True)
    free_memory(suite.device)
    return doc


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def free_memory(device: torch.device) -> None:
    torch._dynamo.reset()  # compiled graphs of step 1 hold on to their models
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def describe_machine(device: torch.device) -> dict[str, Any]:
    """``reproduce_mlp.machine_info`` plus CUDA, the precision flags and which optional modules import."""
    info = machine_info(device)
    info["description"] = (f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}" if device.type == "cuda"
                           else f"{info['cpu']} ({info['cpu_count']} cores), torch {torch.__version__}")
    info.update({"cuda": torch.version.cuda, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                 "modules": {m: importlib.util.find_spec(m) is not None
                             for m in ("torchvision", "timm", "safetensors", "matplotlib")}})
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    return info


def summary_line(name: str, doc: dict[str, Any]) -> str:
    if name == "throughput" and doc.get("targets", {}).get("runner_vs_hand", {}).get("pairs"):
        t = doc["targets"]
        worst = min(p["ratio"] for p in t["runner_vs_hand"]["pairs"])
        best = ", ".join(f"b{b}: {s['best_setting']} {s['speedup']:.2f}x"
                         for b, s in t["best_vs_fp32"]["per_batch"].items())
        return (f"runner/hand >= {worst:.3f} (>= {TARGET_RUNNER_VS_HAND}: {yes_no(t['runner_vs_hand']['met'])}); "
                f"best/fp32 {best or '-'} (>= {TARGET_BEST_VS_FP32:g}x: {yes_no(t['best_vs_fp32']['met'])})")
    if name == "inference" and doc["rows"]:
        crelu = [f"b{r['batch']} crelu {r['latency_ratio']:.2f}x (MACs {r['mac_ratio']:.2f}x)"
                 for r in doc["rows"] if r["rewrite"] == "crelu"]
        erase = [f"erase {r['latency_ratio']:.2f}x" for r in doc["rows"] if r["rewrite"] == "erase"]
        return "; ".join(f"{c}, {e}" for c, e in zip(crelu, erase))
    if name == "resnet56" and doc.get("results"):
        return (f"{doc['plan']['epochs']} epoch(s): " + ", ".join(
            f"{v} {c['test_err_mean']:.2f}±{c['test_err_std']:.2f}%" for v, c in doc["results"].items()))
    return doc.get("reason") or ""


def yes_no(met: bool | None) -> str:
    return "n/a" if met is None else "met" if met else "NOT met"


def print_summary(suite: Suite) -> None:
    wall = time.perf_counter() - suite.t0
    print(f"\n== summary: {wall:.0f}s of the {suite.args.budget_s:g}s budget, {suite.machine['description']} ==")
    for number, (name, _, _) in enumerate(STEPS, 1):
        doc = suite.docs[name]
        print(f"{number} {name:<11}{doc['status']:<10}{doc['wall_seconds']:>5.0f}s  {summary_line(name, doc)}")
    print(f"results in {suite.out}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=540.0, help="wall-clock budget of the whole script")
    parser.add_argument("--device", help="cuda (default), cuda:N or cpu (default with --smoke: cpu)")
    parser.add_argument("--out", default=str(RESULTS), help="folder of the JSON results (default bench/results)")
    parser.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX .gz files, or its parent "
                                           "(default: $RELU_SURGERY_DATA, ../shared/data or ./.gpu_data)")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU-sized run of every step's code path")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, t0: float | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    device = args.device or ("cpu" if args.smoke else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_suite: --device {device}, but torch {torch.__version__} sees no CUDA device "
              f"(use --device cpu, or --smoke, on a machine without one)", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir = find_data_dir(args.data_dir, "fashion-mnist", fallbacks=(ROOT / ".gpu_data", Path.cwd() / ".gpu_data"))
    suite = Suite(args, torch.device(device), PROFILES["smoke" if args.smoke else "full"], data_dir, Path(args.out),
                  shlex.join(["python", os.path.relpath(__file__), *argv]), t0=t0 or time.perf_counter())
    suite.machine = describe_machine(suite.device)
    print(f"gpu_suite{' (smoke)' if args.smoke else ''}: {suite.machine['description']}, budget {args.budget_s:g}s, "
          f"data {data_dir}, results in {suite.out}", flush=True)
    for number, (name, run, show) in enumerate(STEPS, 1):
        suite.docs[name] = run_step(suite, number, name, run, show)
    print_summary(suite)
    return 0


if __name__ == "__main__":
    sys.exit(main(t0=_STARTED))
