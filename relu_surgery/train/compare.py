"""Paper-style comparisons: original vs rewritten over seeds, and sweeps over rewrite settings.

Every (model, seed) run gets its own run directory under ``out_dir`` (``original/seed0``,
``rewritten/seed0``, ``proportion=0.5,location=last/seed0``, ...), trained with the same seed and
therefore the same data order and augmentation. A finished run (``result.json``) is reused and an
interrupted one resumed, so re-running a comparison continues where it stopped.

Example:
    >>> from relu_surgery.train.compare import parse_sweep
    >>> parse_sweep(["proportion=0.5,1.0", "location=last,first"])[:2]
    [{'proportion': 0.5, 'location': 'last'}, {'proportion': 0.5, 'location': 'first'}]
"""

from __future__ import annotations

import itertools
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch.nn as nn

from ..atomic import atomic_write_json, atomic_write_text
from .checkpoint import CHECKPOINT_NAME
from .config import TrainConfig
from .errors import TrainConfigError
from .models import parse_value

__all__ = ["Summary", "CompareResult", "SweepResult", "run_compare", "run_sweep", "parse_sweep", "point_label"]


@dataclass(frozen=True)
class Summary:
    """One model variant over several seeds: final test top-1 errors (%) and training times (s).

    Example:
        >>> s = Summary("rewritten", 1_700_000, (7.0, 8.0), (60.0, 62.0))
        >>> s.err_mean, round(s.err_std, 3), s.time_mean
        (7.5, 0.707, 61.0)
    """

    label: str
    params: int
    errors: tuple[float, ...]
    seconds: tuple[float, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    run_dirs: tuple[str, ...] = ()

    @property
    def err_mean(self) -> float:
        """Mean final error over seeds."""
        return statistics.fmean(self.errors)

    @property
    def err_std(self) -> float:
        """Sample standard deviation of the final error (0 for one seed)."""
        return statistics.stdev(self.errors) if len(self.errors) > 1 else 0.0

    @property
    def time_mean(self) -> float:
        """Mean training time per run, seconds."""
        return statistics.fmean(self.seconds)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form including mean and std."""
        return {"label": self.label, "settings": self.settings, "params": self.params, "errors": list(self.errors),
                "err_mean": self.err_mean, "err_std": self.err_std, "seconds": list(self.seconds),
                "time_mean": self.time_mean, "run_dirs": list(self.run_dirs)}


def _row(summary: Summary, baseline: Summary | None) -> list[str]:
    diff = "" if baseline is None or summary is baseline else f"{summary.err_mean - baseline.err_mean:+.2f}"
    params = f"{summary.params / 1e6:.2f}M" if summary.params >= 100_000 else f"{summary.params:,}"
    return [summary.label, params, f"{summary.err_mean:.2f} ± {summary.err_std:.2f}",
            diff, ", ".join(f"{e:.2f}" for e in summary.errors), f"{summary.time_mean:.1f}s"]


TABLE_HEADER = ["model", "params", "error (%)", "Δ error", "per seed", "time/run"]


def _markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + " --- |" * len(TABLE_HEADER)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


@dataclass(frozen=True)
class CompareResult:
    """Original vs rewritten: the paper's table (error mean ± std over seeds, difference, params, time).

    Example:
        >>> result = CompareResult(Summary("original", 10, (8.0,), (1.0,)), Summary("rewritten", 10, (7.5,), (1.0,)))
        >>> result.difference, result.rows()[1][3]
        (-0.5, '-0.50')
    """

    original: Summary
    rewritten: Summary

    @property
    def difference(self) -> float:
        """Rewritten minus original mean error, in percentage points (negative = rewrite helps)."""
        return self.rewritten.err_mean - self.original.err_mean

    def rows(self) -> list[list[str]]:
        """Table rows as text, in :data:`TABLE_HEADER` order."""
        return [_row(self.original, None), _row(self.rewritten, self.original)]

    def to_markdown(self) -> str:
        """The table as Markdown."""
        return _markdown(self.rows())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"original": self.original.to_dict(), "rewritten": self.rewritten.to_dict(),
                "difference": self.difference}


@dataclass(frozen=True)
class SweepResult:
    """One row per swept setting (and the original as baseline), plus the plot's path.

    Example:
        >>> base = Summary("original", 10, (8.0,), (1.0,))
        >>> sweep = SweepResult((Summary("proportion=0.5", 10, (7.0,), (1.0,)),), base)
        >>> [row[0] for row in sweep.rows()], sweep.rows()[1][3]
        (['original', 'proportion=0.5'], '-1.00')
    """

    points: tuple[Summary, ...]
    baseline: Summary | None = None
    plot: str | None = None

    def rows(self) -> list[list[str]]:
        """Table rows as text, in :data:`TABLE_HEADER` order."""
        head = [_row(self.baseline, None)] if self.baseline else []
        return head + [_row(p, self.baseline) for p in self.points]

    def to_markdown(self) -> str:
        """The table as Markdown."""
        return _markdown(self.rows())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"baseline": self.baseline.to_dict() if self.baseline else None,
                "points": [p.to_dict() for p in self.points], "plot": self.plot}


def parse_sweep(items: Sequence[str]) -> list[dict[str, Any]]:
    """``["proportion=0.25,0.5", "location=last,first"]`` -> the cartesian product as dicts.

    Example:
        >>> parse_sweep(["proportion=0.5,1.0", "location=last,first"])[:2]
        [{'proportion': 0.5, 'location': 'last'}, {'proportion': 0.5, 'location': 'first'}]
    """
    axes: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise TrainConfigError(f"--sweep expects KEY=V1,V2,..., got {item!r}")
        axes[key.strip()] = [parse_value(v) for v in values.split(",") if v.strip()]
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def point_label(settings: dict[str, Any]) -> str:
    """``{"proportion": 0.5, "location": "last"}`` -> ``"proportion=0.5,location=last"``.

    Example:
        >>> point_label({"proportion": 0.5, "location": "last"})
        'proportion=0.5,location=last'
    """
    return ",".join(f"{k}={v}" for k, v in settings.items())


ModelFactory = Callable[[int], nn.Module]


def _train_or_reuse(make: ModelFactory, config: TrainConfig, run_dir: Path, model_info: dict | None):
    """(final error, seconds, params) of ``run_dir``: read if finished, resumed if started, else trained."""
    from .runner import run_training

    result_file = run_dir / "result.json"
    if result_file.is_file():
        done = json.loads(result_file.read_text(encoding="utf-8"))
        return done["final"]["test_top1_err"], done["train_seconds"], done["num_params"]
    resume = (run_dir / CHECKPOINT_NAME).is_file()
    result = run_training(make(config.seed), config, run_dir, resume=resume, model_info=model_info)
    return result.final["test_top1_err"], result.train_seconds, result.num_params


def _is_main() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _summarize(label: str, make: ModelFactory, config: TrainConfig, out_dir: Path, seeds: Sequence[int],
               settings: dict[str, Any], info: Callable[[int], dict] | None) -> Summary:
    errors, seconds, dirs, params = [], [], [], 0
    for seed in seeds:
        run_dir = out_dir / label / f"seed{seed}"
        err, secs, params = _train_or_reuse(make, config.replace(seed=seed), run_dir, info(seed) if info else None)
        errors.append(err)
        seconds.append(secs)
        dirs.append(str(run_dir))
    return Summary(label, params, tuple(errors), tuple(seconds), settings, tuple(dirs))


def run_compare(make_original: ModelFactory, make_rewritten: ModelFactory, config: TrainConfig,
                out_dir: str | Path, seeds: Sequence[int] = (0, 1, 2),
                model_info: Callable[[str, int], dict] | None = None) -> CompareResult:
    """Train original and rewritten models on each seed; summarise as the papers' table.

    ``make_*(seed)`` must build the model deterministically from ``seed`` (same seed, same initial
    weights where the rewrite keeps them). Writes ``compare.json`` and ``compare.md`` in ``out_dir``.

    Example:
        >>> import tempfile, relu_surgery as rs
        >>> from relu_surgery.train.tiny import smoke_config, tiny_cnn
        >>> cfg, build = smoke_config(), lambda seed: tiny_cnn(in_chans=1, width=4)
        >>> rewrite = lambda seed: rs.swap(build(seed), to="gelu", check=False)[0]
        >>> result = run_compare(build, rewrite, cfg, tempfile.mkdtemp(), seeds=(0,))
        >>> [r[0] for r in result.rows()], result.to_markdown().splitlines()[0]
        (['original', 'rewritten'], '| model | params | error (%) | Δ error | per seed | time/run |')
    """
    out_dir = Path(out_dir)
    info = (lambda label: (lambda seed: model_info(label, seed))) if model_info else (lambda label: None)
    original = _summarize("original", make_original, config, out_dir, seeds, {}, info("original"))
    rewritten = _summarize("rewritten", make_rewritten, config, out_dir, seeds, {}, info("rewritten"))
    result = CompareResult(original, rewritten)
    if _is_main():
        atomic_write_json(result.to_dict(), out_dir / "compare.json")
        atomic_write_text(result.to_markdown(), out_dir / "compare.md")
    return result


def run_sweep(make_original: ModelFactory | None, make_point: Callable[[dict, int], nn.Module],
              points: Sequence[dict[str, Any]], config: TrainConfig, out_dir: str | Path,
              seeds: Sequence[int] = (0,), model_info: Callable[[str, int], dict] | None = None,
              title: str = "") -> SweepResult:
    """Train one model per setting in ``points`` (and the original, if given) on each seed.

    Writes ``sweep.json``, ``sweep.md`` and ``sweep.png`` (error against proportion, one line per
    other setting, the original as a dashed line) in ``out_dir``.

    Example:
        >>> import tempfile, relu_surgery as rs
        >>> from relu_surgery.train.tiny import smoke_config, tiny_mlp
        >>> make = lambda p, seed: rs.swap(tiny_mlp(hidden=8), **p, check=False)[0]
        >>> result = run_sweep(None, make, parse_sweep(["to=gelu,silu"]), smoke_config("mnist"), tempfile.mkdtemp())
        >>> [p.label for p in result.points], result.plot.endswith("sweep.png")
        (['to=gelu', 'to=silu'], True)
    """
    from .plots import plot_sweep

    out_dir = Path(out_dir)
    info = (lambda label: (lambda seed: model_info(label, seed))) if model_info else (lambda label: None)
    baseline = None
    if make_original is not None:
        baseline = _summarize("original", make_original, config, out_dir, seeds, {}, info("original"))
    summaries = []
    for settings in points:
        label = point_label(settings)
        make = (lambda s, settings=settings: make_point(settings, s))
        summaries.append(_summarize(label, make, config, out_dir, seeds, settings, info(label)))
    result = SweepResult(tuple(summaries), baseline, str(out_dir / "sweep.png"))
    if _is_main():
        plot_sweep([s.to_dict() for s in summaries], out_dir / "sweep.png",
                   baseline.to_dict() if baseline else None, title=title)
        atomic_write_json(result.to_dict(), out_dir / "sweep.json")
        atomic_write_text(result.to_markdown(), out_dir / "sweep.md")
    return result
