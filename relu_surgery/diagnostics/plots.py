"""PNG plots of the probe's measurements, readable without the code (titles, axes, legends).

Every function takes the measurements of one or more models (``{label: measurement}``, original
first) and a path, writes the PNG atomically with matplotlib's Agg backend and returns the path.

Example:
    >>> from relu_surgery.diagnostics.coherence import LayerCoherence
    >>> path = plot_coherence({"net": [LayerCoherence("conv", 8, 9, 1, 0.4)]}, "/tmp/mu.png")
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..report.mpl import new_figure

__all__ = ["plot_deltas", "plot_last_activation", "plot_coherence", "plot_gradient_study", "save_figure"]

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def save_figure(fig, path) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) atomically (:func:`relu_surgery.atomic.atomic_write`).

    Example:
        >>> import tempfile
        >>> from relu_surgery.report.mpl import new_figure
        >>> save_figure(new_figure(figsize=(1, 1)), tempfile.mkdtemp() + "/f.png").suffix
        '.png'
    """
    from ..atomic import atomic_write  # noqa: PLC0415

    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110,
                                               bbox_inches="tight"))
    return path


def _subplots(*grid, figsize, **kwargs):
    """(figure, axes) on a figure of its own (no pyplot state)."""
    fig = new_figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kwargs)


def _stage_lines(ax, deltas) -> None:
    """Dotted vertical lines where the stage changes, labelled with the new stage."""
    prev = None
    for d in deltas:
        if prev is not None and d.stage != prev:
            ax.axvline(d.index - 0.5, color="grey", linestyle=":", linewidth=1)
            ax.text(d.index - 0.4, 1.0, str(d.stage), transform=ax.get_xaxis_transform(), fontsize=7,
                    color="grey", va="top")
        prev = d.stage


def plot_deltas(deltas_by_model: dict, path) -> Path:
    """Grouped bars of Delta per block (seed 002, Fig. 2), one colour per model; log scale for wide ranges.

    Example:
        >>> import tempfile
        >>> from relu_surgery.diagnostics.delta import BlockDelta
        >>> deltas = [BlockDelta(i, f"layer{i}", "BasicBlock", "s", 0.1 * i, "input", (16, 8, 8), (16, 8, 8))
        ...           for i in (1, 2, 3)]
        >>> plot_deltas({"original": deltas, "erased": deltas[::-1]}, tempfile.mkdtemp() + "/delta.png").name
        'delta.png'
    """
    fig, ax = _subplots(figsize=(max(8, 0.22 * max(len(v) for v in deltas_by_model.values())), 4.5))
    n = len(deltas_by_model)
    width = 0.8 / n
    values_all = []
    for k, (label, deltas) in enumerate(deltas_by_model.items()):
        xs = np.array([d.index for d in deltas], dtype=float) + (k - (n - 1) / 2) * width
        ys = np.array([d.delta for d in deltas], dtype=float)
        values_all += [v for v in ys if v > 0 and not math.isnan(v)]
        ax.bar(xs, np.nan_to_num(ys), width=width, color=COLORS[k % len(COLORS)], label=label)
    first = next(iter(deltas_by_model.values()))
    _stage_lines(ax, first)
    if values_all and max(values_all) / max(min(values_all), 1e-12) > 100:
        ax.set_yscale("log")
    ax.set_xlabel("residual block (execution order, 1-based)")
    ax.set_ylabel(r"$\Delta$ = mean over positions of $\|x_l - x_{l+1}\|_2$")
    ax.set_title(r"Per-block input/output difference $\Delta$ (seed 002, Fig. 2)")
    ax.legend(loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_last_activation(stats_by_model: dict, path) -> Path:
    """Histogram of the last activation's entries, its non-zero ratio and mean +- std (seed 002, Table 1).

    Example:
        >>> import tempfile, torch
        >>> from relu_surgery.diagnostics.last_activation import activation_stats
        >>> stats = {"original": activation_stats(torch.randn(8, 4).relu(), "relu", "relu"),
        ...          "erased": activation_stats(torch.randn(8, 4), "add", "merge")}
        >>> plot_last_activation(stats, tempfile.mkdtemp() + "/last.png").name
        'last.png'
    """
    stats_by_model = {k: v for k, v in stats_by_model.items() if v is not None}
    fig, (left, mid, right) = _subplots(1, 3, figsize=(14, 4.2), gridspec_kw={"width_ratios": [3, 1.4, 1.4]})
    samples = [s.values.numpy() if s.values is not None else np.zeros(1) for s in stats_by_model.values()]
    bins = np.linspace(min(v.min() for v in samples), max(v.max() for v in samples) + 1e-9, 61)
    for k, (label, values) in enumerate(zip(stats_by_model, samples)):
        node = stats_by_model[label].node
        left.hist(values, bins=bins, alpha=0.55, color=COLORS[k % len(COLORS)], label=f"{label}: {node}")
    left.set_yscale("log")
    left.set_xlabel("activation value (every entry of the feature map)")
    left.set_ylabel("count (log scale)")
    left.set_title("Distribution of the last activation before the classifier")
    left.legend(fontsize=8)
    labels = list(stats_by_model)
    xs = np.arange(len(labels))
    colors = [COLORS[k % len(COLORS)] for k in range(len(labels))]
    nzr = [s.nonzero_ratio for s in stats_by_model.values()]
    bars = mid.bar(xs, nzr, 0.6, color=colors)
    mid.bar_label(bars, [f"{v:.2f}" for v in nzr], fontsize=8)
    mid.set_ylim(0, 1.1)
    mid.set_ylabel("fraction of entries != 0")
    mid.set_title("Non-zero ratio (NZR)")
    right.errorbar(xs, [s.mean for s in stats_by_model.values()], yerr=[s.std for s in stats_by_model.values()],
                   fmt="none", ecolor="black", capsize=5)
    right.scatter(xs, [s.mean for s in stats_by_model.values()], c=colors, s=50, zorder=3)
    right.set_ylabel("mean activation (bar: +- std)")
    right.set_title("Mean +- std")
    for ax in (mid, right):
        ax.set_xticks(xs, [lbl.replace(" + ", "\n+ ") for lbl in labels], fontsize=8)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Last activation before the classifier (seed 002, Table 1)")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_coherence(coherence_by_model: dict, path) -> Path:
    """mu per conv layer (x: layer number in module order), one line per model (seed 002, supplement Fig. 3).

    Example:
        >>> import tempfile, torch.nn as nn
        >>> from relu_surgery.diagnostics.coherence import conv_coherence
        >>> mu = conv_coherence(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3)))
        >>> plot_coherence({"original": mu, "rewritten": mu}, tempfile.mkdtemp() + "/mu.png").name
        'mu.png'
    """
    longest = max((len(v) for v in coherence_by_model.values()), default=1)
    fig, ax = _subplots(figsize=(max(8, 0.15 * longest), 4.2))
    for k, (label, layers) in enumerate(coherence_by_model.items()):
        style = "-o" if k == 0 else "--s"
        ax.plot(range(1, len(layers) + 1), [c.mu for c in layers], style, markersize=3.5,
                color=COLORS[k % len(COLORS)], label=f"{label} ({len(layers)} conv layers)")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("conv layer (module order, 1-based)")
    ax.set_ylabel(r"coherence $\mu$ = max$_{i\neq j}$ |cos(W$_i$, W$_j$)|")
    ax.set_title(r"Filter coherence $\mu$ per conv layer (seed 002, supplement Fig. 3)")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def _gradient_triplet(axes, run, color: str) -> None:
    grad_ax, cov_ax, hist_ax = axes
    x = run.inputs.numpy()
    grad_ax.plot(x, run.gradients.numpy(), color=color, linewidth=0.8)
    grad_ax.set_xlabel("input x")
    grad_ax.set_ylabel("df/dx")
    grad_ax.set_title(f"{run.variant}, depth {run.depth}: gradient\n(neighbour corr {run.neighbour_correlation:.3f})",
                      fontsize=9)
    cov = run.covariance.numpy()
    scale = float(np.abs(cov).max()) or 1.0
    image = cov_ax.imshow(cov, cmap="RdBu_r", vmin=-scale, vmax=scale, extent=(x[0], x[-1], x[-1], x[0]))
    cov_ax.set_xlabel("input x_j")
    cov_ax.set_ylabel("input x_i")
    cov_ax.set_title(f"gradient covariance\n(corr. length {run.correlation_length:.3f})", fontsize=9)
    cov_ax.figure.colorbar(image, ax=cov_ax, fraction=0.046, pad=0.04)
    hist_ax.hist(run.levels.numpy(), bins=np.linspace(0, 1, 21), color=color)
    hist_ax.set_xlabel("fraction of inputs where unit > 0")
    hist_ax.set_ylabel("units")
    hist_ax.set_title(f"last hidden layer activation levels\n({run.bimodal_fraction:.0%} always on/off)",
                      fontsize=9)


def plot_gradient_study(study, path) -> Path:
    """One row per depth, two triplets (with ReLU | with EraseReLU) as in seed 000, Fig. 4.

    Example:
        >>> import tempfile
        >>> from relu_surgery.diagnostics.gradients import gradient_study
        >>> plot_gradient_study(gradient_study(depths=(2,), points=16, width=4), tempfile.mkdtemp() + "/g.png").name
        'g.png'
    """
    depths = list(study.depths)
    fig, axes = _subplots(len(depths), 6, figsize=(22, 3.6 * len(depths)), squeeze=False)
    for row, depth in enumerate(depths):
        for k, variant in enumerate(("ReLU", "EraseReLU")):
            run = next(r for r in study.runs if r.depth == depth and r.variant == variant)
            _gradient_triplet(axes[row, 3 * k:3 * k + 3], run, COLORS[k])
    fig.suptitle(
        f"Gradient correlation study (seed 000, Sec. 3.3, Fig. 4): f: R -> R, {study.width} units per layer, "
        f"{study.points} inputs on [-2, 2]; left triplet with ReLU, right triplet with EraseReLU", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return save_figure(fig, path)
