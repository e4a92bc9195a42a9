"""PNG figures of a run (train/test curves) and of a sweep (error against the swept setting).

Figures are drawn on their own Agg canvas (no pyplot, no global backend); nothing needs a display.

Example:
    >>> rows = [{"epoch": 1, "train_loss": 1.0, "test_loss": 0.9, "train_acc": 60.0,
    ...          "test_top1_err": 35.0, "test_top5_err": 5.0, "lr": 0.1}]
    >>> import tempfile
    >>> plot_curves(rows, tempfile.mkdtemp() + "/curves.png", title="demo").name
    'curves.png'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

__all__ = ["plot_curves", "plot_sweep"]


def _subplots(*grid, figsize):
    """(figure, axes) on a figure of its own (no pyplot state, the caller's backend untouched)."""
    from ..report.mpl import new_figure

    fig = new_figure(figsize=figsize)
    return fig, fig.subplots(*grid)


def _save(fig, path: str | Path) -> None:
    from ..atomic import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))


def plot_curves(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Loss, error and learning rate against epoch, train and test, in one PNG; returns the path.

    Example:
        >>> import tempfile
        >>> rows = [{"epoch": e, "train_loss": 1 / e, "test_loss": 1 / e, "train_acc": 50 + e, "test_top1_err": 40 - e,
        ...          "test_top5_err": 5.0, "lr": 0.1} for e in (1, 2)]
        >>> plot_curves(rows, tempfile.mkdtemp() + "/c.png").suffix
        '.png'
    """
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_err, ax_lr) = _subplots(1, 3, figsize=(15, 4.2))
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    ax_loss.plot(epochs, [r["test_loss"] for r in rows], "s-", label="test")
    ax_loss.set(title="Cross-entropy loss", xlabel="epoch", ylabel="loss")
    ax_err.plot(epochs, [100.0 - r["train_acc"] for r in rows], "o-", label="train top-1")
    ax_err.plot(epochs, [r["test_top1_err"] for r in rows], "s-", label="test top-1")
    ax_err.plot(epochs, [r["test_top5_err"] for r in rows], "^--", label="test top-5")
    ax_err.set(title="Classification error", xlabel="epoch", ylabel="error (%)")
    ax_lr.plot(epochs, [r["lr"] for r in rows], "o-", label="lr at epoch end")
    ax_lr.set(title="Learning rate", xlabel="epoch", ylabel="learning rate", yscale="log")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_err, ax_lr):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "Training curves")
    fig.tight_layout()
    _save(fig, path)
    return Path(path)


def plot_sweep(points: Sequence[dict[str, Any]], path: str | Path, baseline: dict[str, Any] | None = None,
               title: str = "") -> Path:
    """Test error (mean with std bars) against proportion, one line per location; returns the path.

    Each point is ``{"settings": {...}, "err_mean": float, "err_std": float}``; settings without a
    ``proportion`` are placed by their order.

    Example:
        >>> import tempfile
        >>> points = [{"settings": {"proportion": p}, "err_mean": 8 - p, "err_std": 0.1} for p in (0.5, 1.0)]
        >>> plot_sweep(points, tempfile.mkdtemp() + "/s.png").name
        's.png'
    """
    fig, ax = _subplots(figsize=(6.5, 4.5))
    groups: dict[str, list[tuple[float, float, float]]] = {}
    for i, point in enumerate(points):
        settings = point["settings"]
        x = float(settings.get("proportion", i))
        label = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "proportion") or "rewritten"
        groups.setdefault(label, []).append((x, point["err_mean"], point["err_std"]))
    for label, values in groups.items():
        values.sort()
        ax.errorbar([v[0] for v in values], [v[1] for v in values], yerr=[v[2] for v in values],
                    marker="o", capsize=3, label=label)
    if baseline is not None:
        ax.axhline(baseline["err_mean"], color="grey", linestyle="--", label="original")
    uses_proportion = any("proportion" in p["settings"] for p in points)
    ax.set(title=title or "Sweep", ylabel="test top-1 error (%)",
           xlabel="proportion of blocks rewritten" if uses_proportion else "setting")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    return Path(path)
