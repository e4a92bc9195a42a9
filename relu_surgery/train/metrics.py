"""Per-epoch metrics: the row schema, top-k counting, and the JSONL/CSV files beside a run.

Errors are percentages (100 - accuracy), as the papers report them.

Example:
    >>> import torch
    >>> from relu_surgery.train.metrics import topk_correct
    >>> logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    >>> topk_correct(logits, torch.tensor([1, 2]), k=2)
    (tensor(1), tensor(1))
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterable

import torch

from ..atomic import atomic_write_text, json_safe

__all__ = ["COLUMNS", "TIMING_COLUMNS", "topk_correct", "write_metrics", "read_metrics", "numeric_view"]

#: Columns of metrics.jsonl / metrics.csv, in order.
COLUMNS = (
    "epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
    "test_top1_err", "test_top5_err", "samples_per_s", "train_seconds", "eval_seconds", "epoch_seconds",
)
#: Columns that depend on the machine's speed rather than on what was computed.
TIMING_COLUMNS = ("samples_per_s", "train_seconds", "eval_seconds", "epoch_seconds")


def topk_correct(logits: torch.Tensor, target: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Number of samples whose label is the top-1 and among the top-``k`` predictions (device tensors).

    Example:
        >>> logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
        >>> [t.item() for t in topk_correct(logits, torch.tensor([1, 2]), k=2)]
        [1, 1]
    """
    k = min(k, logits.shape[1])
    hits = logits.topk(k, dim=1).indices == target[:, None]
    return hits[:, 0].sum(), hits.any(dim=1).sum()


def write_metrics(rows: Iterable[dict[str, Any]], run_dir: str | Path) -> None:
    """(Re)write ``metrics.jsonl`` and ``metrics.csv`` in ``run_dir`` from the full history, atomically.

    Rewriting the whole history keeps the files consistent with the checkpoint after a resume.
    Non-finite numbers are written as ``null`` (JSON) and empty cells (CSV), so both stay valid.

    Example:
        >>> import tempfile
        >>> run = tempfile.mkdtemp()
        >>> write_metrics([{"epoch": 1, "test_top1_err": 9.5}], run)
        >>> sorted(p.name for p in Path(run).iterdir())
        ['metrics.csv', 'metrics.jsonl']
    """
    rows = [json_safe(r) for r in rows]
    run_dir = Path(run_dir)
    atomic_write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in rows), run_dir / "metrics.jsonl")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(buffer.getvalue(), run_dir / "metrics.csv")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``run_dir/metrics.jsonl`` (empty list if none).

    Example:
        >>> import tempfile
        >>> run = tempfile.mkdtemp()
        >>> write_metrics([{"epoch": 1}, {"epoch": 2}], run)
        >>> [r["epoch"] for r in read_metrics(run)], read_metrics(tempfile.mkdtemp())
        ([1, 2], [])
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def numeric_view(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the timing columns: what two runs of the same seed must agree on.

    Example:
        >>> numeric_view([{"epoch": 1, "test_loss": 0.5, "epoch_seconds": 3.2}])
        [{'epoch': 1, 'test_loss': 0.5}]
    """
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]
