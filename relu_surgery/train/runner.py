"""``run_training``: train a model on a dataset into a run directory, resumable after a kill.

A run directory holds ``config.json`` (the resolved settings, model description, environment),
``checkpoint.pt`` (rewritten atomically every epoch, and every ``save_every_steps`` steps),
``metrics.jsonl`` / ``metrics.csv`` (one row per epoch), and at the end ``curves.png`` (when
matplotlib is installed), ``model.safetensors`` and ``result.json``.

Exact resume: the data order and augmentation are functions of (seed, epoch, step), and the
checkpoint restores model, optimiser, schedule, RNG states, position and the partial sums of an
unfinished epoch, so a run killed and resumed ends with the same metrics as one never stopped.
On SIGTERM/SIGINT (single process) a checkpoint is saved after the current step before stopping.
A non-finite training loss stops the run at once (:class:`TrainingDiverged`, naming the epoch and
step); nothing after the last good epoch is written. Rank 0 holds the run directory's lock
(:func:`relu_surgery.locks.output_lock`) while it trains: a second writer fails at once.
For tests, ``RELU_SURGERY_TRAIN_KILL_AFTER_STEPS=N`` kills the process with SIGKILL right after
global step N (``N:TERM`` sends SIGTERM instead, taking the graceful path).

Example:
    >>> import tempfile
    >>> import relu_surgery.train as rt
    >>> from relu_surgery.train.tiny import smoke_config, tiny_cnn
    >>> cfg = smoke_config(epochs=2, lr=0.05)
    >>> result = rt.run_training(tiny_cnn(num_classes=10, in_chans=1), cfg, tempfile.mkdtemp() + "/demo")
    >>> [row["epoch"] for row in result.history], sorted(p.name for p in result.run_dir.iterdir())[:3]
    ([1, 2], ['checkpoint.pt', 'config.json', 'curves.png'])
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..atomic import atomic_write, atomic_write_json, ensure_directory
from ..locks import output_lock
from .checkpoint import CHECKPOINT_NAME, FORMAT, atomic_save, capture_rng, load_checkpoint, restore_rng
from .config import TrainConfig
from .ddp import DistEnv, all_reduce_sum, barrier, gather_objects, init_distributed, shutdown
from .engine import Engine
from .errors import CheckpointError, TrainingInterrupted
from .guards import LossGuard, StopFlag
from .hooks import collect_hooks, hook_epoch_end, hook_loss, hook_states, load_hook_states
from .metrics import write_metrics
from .progress import Reporter, make_reporter
from .schedule import LRSchedule
from .sources import BatchSource, make_source

__all__ = ["RunResult", "run_training", "RUN_FILES", "KILL_ENV"]

KILL_ENV = "RELU_SURGERY_TRAIN_KILL_AFTER_STEPS"
RUN_FILES = ("config.json", CHECKPOINT_NAME, "metrics.jsonl", "metrics.csv", "result.json",
             "curves.png", "model.safetensors")


@dataclass(frozen=True)
class RunResult:
    """What a finished run produced: its directory, metrics history, final row and trained model.

    Example:
        >>> import torch.nn as nn
        >>> result = RunResult(Path("runs/x"), [{"epoch": 1, "epoch_seconds": 2.0}, {"epoch": 2, "epoch_seconds": 3.0}], 10, nn.ReLU())
        >>> result.final["epoch"], result.train_seconds
        (2, 5.0)
    """

    run_dir: Path
    history: list[dict[str, Any]]
    num_params: int
    model: nn.Module = field(repr=False, compare=False)

    @property
    def final(self) -> dict[str, Any]:
        """The last epoch's metrics row."""
        return self.history[-1]

    @property
    def train_seconds(self) -> float:
        """Wall time of all epochs (training and evaluation), summed."""
        return float(sum(r["epoch_seconds"] for r in self.history))


@dataclass
class _Accum:
    """Partial sums of the epoch in progress (this rank's share), on the device."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int = 0
    seconds: float = 0.0

    @classmethod
    def zero(cls, device: torch.device) -> "_Accum":
        return cls(torch.zeros((), dtype=torch.float64, device=device), torch.zeros((), dtype=torch.int64, device=device))

    def state(self) -> dict[str, Any]:
        return {"loss_sum": float(self.loss_sum), "correct": int(self.correct), "seen": self.seen, "seconds": self.seconds}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> "_Accum":
        acc = cls.zero(device)
        acc.loss_sum.fill_(state["loss_sum"])
        acc.correct.fill_(state["correct"])
        acc.seen, acc.seconds = int(state["seen"]), float(state["seconds"])
        return acc


@dataclass
class _Run:
    config: TrainConfig
    env: DistEnv
    run_dir: Path
    source: BatchSource
    engine: Engine
    schedule: LRSchedule
    reporter: Reporter
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0
    step: int = 0
    accum: _Accum | None = None
    stop: StopFlag | None = None
    kill_after: tuple[int, int] | None = None
    hooks: list[Any] = field(default_factory=list)


def _kill_switch() -> tuple[int, int] | None:
    value = os.environ.get(KILL_ENV, "").strip()
    if not value:
        return None
    steps, _, kind = value.partition(":")
    return int(steps), (signal.SIGTERM if kind.upper() == "TERM" else signal.SIGKILL)


def _seed_everything(config: TrainConfig, env: DistEnv) -> None:
    import random

    import numpy as np

    from .augment import mix_seed

    seed = mix_seed(config.seed, env.rank, 0x5EED)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    from relu_surgery.errors import OutputExistsError

    if resume:
        if not (run_dir / CHECKPOINT_NAME).is_file():
            raise CheckpointError(f"cannot resume: {run_dir} holds no {CHECKPOINT_NAME}")
        return
    taken = [name for name in RUN_FILES if (run_dir / name).exists()]
    if taken:
        raise OutputExistsError(
            f"{run_dir} already holds a training run ({', '.join(taken)}); "
            f"continue it with --resume {run_dir} or choose another --out"
        )


def _write_config(run: _Run, model_info: dict[str, Any] | None, num_params: int) -> None:
    if not run.env.is_main:
        return
    env, source, engine = run.env, run.source, run.engine
    path = run.run_dir / "config.json"
    if model_info is None and path.is_file():  # a resume from Python keeps what the CLI recorded
        model_info = {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).get("model", {}).items()
                      if k != "num_params"}
    doc = {
        "format": FORMAT,
        "train": run.config.to_dict(),
        "model": {**(model_info or {"class": type(engine.model).__name__}), "num_params": num_params},
        "data": {"dataset": source.name, "num_classes": source.num_classes, "in_chans": source.in_chans,
                 "image_size": source.image_size, "steps_per_epoch": source.steps_per_epoch,
                 "test_samples": source.num_test},
        "schedule": {"total_iters": run.schedule.total_iters, "milestone_iters": list(run.schedule.milestone_iters)},
        "environment": {"torch": torch.__version__, "device": str(env.device), "world_size": env.world_size,
                        "amp": str(engine.dtype).replace("torch.", "") if engine.dtype else "float32",
                        "channels_last": engine.channels_last, "compile": run.config.compile},
    }
    atomic_write_json(doc, path)


def _save_checkpoint(run: _Run) -> None:
    """Checkpoint the current position (every rank's RNG and partial sums gathered to rank 0)."""
    rng = gather_objects(capture_rng({"source": run.source.state()}), run.env)
    accum = gather_objects(run.accum.state() if run.accum is not None else None, run.env)
    if run.env.is_main:
        state = {
            "format": FORMAT, "model": run.engine.model.state_dict(),
            "optimizer": run.engine.optimizer.state_dict(), "schedule": run.schedule.state_dict(),
            "position": {"epoch": run.epoch, "step": run.step,
                         "global_step": run.epoch * run.source.steps_per_epoch + run.step},
            "accum": accum, "rng": rng, "history": run.history, "world_size": run.env.world_size,
            "config": run.config.to_dict(), "hooks": hook_states(run.hooks),
        }
        atomic_save(state, run.run_dir / CHECKPOINT_NAME)
    barrier(run.env)


def _restore(run: _Run) -> None:
    path = run.run_dir / CHECKPOINT_NAME
    state = load_checkpoint(path)
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a relu_surgery training checkpoint (format {state.get('format')!r})")
    changed = run.config.numeric_changes(TrainConfig.from_dict(state["config"]))
    if changed:
        raise CheckpointError(f"cannot resume {run.run_dir}: settings differ from the run's ({', '.join(changed)})")
    try:
        run.engine.model.load_state_dict(state["model"])
        run.engine.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path} does not fit this model: {str(exc).splitlines()[0]}") from None
    run.schedule.load_state_dict(state["schedule"])
    load_hook_states(run.hooks, state.get("hooks"))
    pos = state["position"]
    run.epoch, run.step, run.history = int(pos["epoch"]), int(pos["step"]), list(state["history"])
    same_world = state["world_size"] == run.env.world_size
    rank = run.env.rank if same_world else 0
    restore_rng(state["rng"][rank])
    run.source.load_state(state["rng"][rank].get("source", {}))
    accum = state["accum"][rank] if same_world else None
    if run.step and not same_world:
        raise CheckpointError(f"{path} was saved mid-epoch by {state['world_size']} processes; resume with as many")
    run.accum = _Accum.from_state(accum, run.env.device) if accum else None
    run.reporter.message(f"resumed {run.run_dir} at epoch {run.epoch + 1}, step {run.step}")


def _train_epoch(run: _Run) -> None:
    """Train from ``run.step`` to the end of ``run.epoch``, checkpointing on request."""
    cfg, engine, steps = run.config, run.engine, run.source.steps_per_epoch
    run.accum = run.accum or _Accum.zero(run.env.device)
    run.reporter.epoch_start(run.epoch, run.step)
    start = time.perf_counter()
    guard = LossGuard(lambda epoch, step: run.schedule.lr_at((epoch - 1) * steps + step - 1))
    for x, y in run.source.train_batches(run.epoch, run.step):
        global_step = run.epoch * steps + run.step
        run.schedule.apply(engine.optimizer, global_step)
        extra = (lambda step=global_step: hook_loss(run.hooks, engine.model, step)) if run.hooks else None
        loss, logits = engine.train_step(x, y, extra)
        guard.check(loss, run.epoch + 1, run.step + 1)
        with torch.no_grad():
            run.accum.loss_sum += loss.detach().double() * len(y)
            run.accum.correct += (logits.argmax(dim=1) == y).sum()
        run.accum.seen += len(y)
        run.step += 1
        run.reporter.step(run.step - 1, loss.item)
        if run.kill_after and global_step + 1 == run.kill_after[0]:
            os.kill(os.getpid(), run.kill_after[1])  # test hook; SIGTERM lands in the check below
        stop = run.stop is not None and run.stop.requested
        if stop or (cfg.save_every_steps and run.step % cfg.save_every_steps == 0 and run.step < steps):
            _sync(run.env.device)
            run.accum.seconds += time.perf_counter() - start
            start = time.perf_counter()
            guard.flush()
            _save_checkpoint(run)
            if stop:
                raise TrainingInterrupted(str(run.run_dir), run.epoch + 1, run.step)
    guard.flush()
    _sync(run.env.device)
    run.accum.seconds += time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _finish_epoch(run: _Run) -> dict[str, Any]:
    """Evaluate, build the metrics row, append it, write metrics and the epoch-end checkpoint."""
    start = time.perf_counter()
    test = run.engine.evaluate(run.source.eval_batches())
    eval_seconds = time.perf_counter() - start
    acc = run.accum
    sums = torch.stack([acc.loss_sum, acc.correct.double(), acc.loss_sum.new_tensor(acc.seen)])
    loss_sum, correct, seen = all_reduce_sum(sums, run.env).tolist()
    steps_done = run.source.steps_per_epoch
    row = {"epoch": run.epoch + 1, "step": (run.epoch + 1) * steps_done,
           "lr": run.schedule.lr_at((run.epoch + 1) * steps_done - 1),
           "train_loss": loss_sum / seen, "train_acc": 100.0 * correct / seen, **test,
           "samples_per_s": steps_done * run.config.batch_size / max(acc.seconds, 1e-9),
           "train_seconds": acc.seconds, "eval_seconds": eval_seconds,
           "epoch_seconds": acc.seconds + eval_seconds}
    row.update(hook_epoch_end(run.hooks, run.engine.model, run.epoch, row))
    run.history.append(row)
    run.epoch, run.step, run.accum = run.epoch + 1, 0, None
    if run.env.is_main:
        write_metrics(run.history, run.run_dir)
    _save_checkpoint(run)
    run.reporter.epoch_end(row)
    return row


def _finalize(run: _Run, num_params: int, title: str) -> None:
    if not run.env.is_main:
        return
    from .plots import plot_curves

    try:
        plot_curves(run.history, run.run_dir / "curves.png", title=title)
    except ImportError as exc:  # matplotlib is optional for a run: the metrics files hold the curves
        run.reporter.message(f"curves.png not drawn ({exc})")
    _save_weights(run.engine.model, run.run_dir / "model.safetensors")
    final = run.history[-1]
    atomic_write_json({"final": final, "best_test_top1_err": min(r["test_top1_err"] for r in run.history),
                       "epochs": len(run.history), "num_params": num_params,
                       "train_seconds": sum(r["epoch_seconds"] for r in run.history)},
                      run.run_dir / "result.json")


def _title(model: nn.Module, dataset: str, model_info: dict[str, Any] | None) -> str:
    spec = (model_info or {}).get("spec")
    if not spec:
        return f"{type(model).__name__} on {dataset}"
    name = Path(spec["source"]).name if Path(spec["source"]).is_dir() else spec["source"]
    rewrites = " + ".join(f"{r['name']}({', '.join(f'{k}={v}' for k, v in r['kwargs'].items())})"
                          for r in spec.get("rewrites", []))
    return f"{name}{' + ' + rewrites if rewrites else ''} on {dataset}"


def _save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_model

    atomic_write(path, lambda tmp: save_model(model, str(tmp)))


def run_training(model: nn.Module, config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
                 model_info: dict[str, Any] | None = None, reporter: Reporter | None = None,
                 hooks=None) -> RunResult:
    """Train ``model`` (in place) as ``config`` says, writing the run into ``run_dir``.

    ``resume=True`` continues the run saved in ``run_dir`` (``model`` must be the same architecture;
    its weights are replaced by the checkpoint's). ``model_info`` is recorded in ``config.json``
    (the CLI stores how to rebuild the model there). ``hooks`` add loss terms and per-epoch work
    (:mod:`relu_surgery.train.hooks`). Under
    ``torchrun`` every rank calls this.

    Example (the paper's CIFAR recipe is ``TrainConfig(dataset="cifar10", data_dir="~/data",
    epochs=164, warmup_iters=400)``; here a tiny synthetic dataset):
        >>> import tempfile
        >>> from relu_surgery.train.tiny import smoke_config, tiny_mlp
        >>> run = run_training(tiny_mlp(), smoke_config("mnist", batch_size=16), tempfile.mkdtemp() + "/mlp")
        >>> run.final["epoch"], 0 <= run.final["test_top1_err"] <= 100
        (1, True)
    """
    run_dir = Path(run_dir)
    env = init_distributed(config.device)
    try:
        with _run_lock(run_dir, env):
            return _run_locked(model, config, run_dir, env, resume, model_info, reporter, hooks)
    finally:
        shutdown(env)


def _run_lock(run_dir: Path, env: DistEnv):
    """Rank 0 holds the run directory's lock; the other ranks write nothing."""
    import contextlib

    if not env.is_main:
        return contextlib.nullcontext()
    ensure_directory(run_dir.absolute().parent)
    return output_lock(run_dir)


def _run_locked(model, config, run_dir, env, resume, model_info, reporter, hooks) -> RunResult:
    """:func:`run_training`'s body, with the run directory locked."""
    _check_run_dir(run_dir, resume)
    barrier(env)  # every rank has looked before rank 0 writes
    _seed_everything(config, env)
    engine = Engine(model, config, env)
    source = make_source(config, env, engine.memory_format)
    engine.check_output(source.in_chans, source.image_size, source.num_classes)
    run = _Run(config, env, run_dir, source, engine, LRSchedule(config, source.steps_per_epoch),
               reporter or make_reporter(config.progress, env.is_main), kill_after=_kill_switch(),
               hooks=collect_hooks(model, hooks))
    if resume:
        _restore(run)
    num_params = sum(p.numel() for p in engine.model.parameters())
    _write_config(run, model_info, num_params)
    _loop(run)
    _finalize(run, num_params, title=_title(engine.model, source.name, model_info))
    return RunResult(run_dir, list(run.history), num_params, engine.model)


def _loop(run: _Run) -> None:
    run.reporter.start(run.run_dir.name, run.config.epochs, run.source.steps_per_epoch, run.epoch, run.step)
    try:
        with StopFlag(enabled=not run.env.distributed) as stop:
            run.stop = stop
            run.engine.model.train()
            while run.epoch < run.config.epochs:
                _train_epoch(run)
                _finish_epoch(run)
    finally:
        run.reporter.close()
