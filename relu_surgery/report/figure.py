"""The matplotlib figure behind :func:`relu_surgery.report.drawing.draw_report` (overview strip + panels).

Nodes of a panel are laid out top to bottom by their longest path from the block input; nodes of one
level sit side by side, so a residual block shows its two paths next to each other.

Example:
    >>> levels = node_levels([{"name": "a", "inputs": ["x"]}, {"name": "b", "inputs": ["a", "x"]}])
    >>> levels
    {'a': 1, 'b': 2}
"""

from __future__ import annotations

from matplotlib.patches import FancyBboxPatch, Patch, Rectangle

from .mpl import new_figure
from .style import MARKS, ROLE_COLORS

__all__ = ["render_figure", "node_levels"]

BOX_W, BOX_H, X_GAP, Y_GAP = 2.3, 0.78, 2.6, 1.2
IN, OUT = "(block input)", "(block output)"


def node_levels(records: list[dict]) -> dict[str, int]:
    """Level of each node: 1 + the highest level among its inputs inside ``records`` (outside ones: 0).

    Example:
        >>> node_levels([{"name": "conv", "inputs": ["x"]}, {"name": "relu", "inputs": ["conv"]}])
        {'conv': 1, 'relu': 2}
    """
    names = {r["name"] for r in records}
    level: dict[str, int] = {}
    for r in records:
        level[r["name"]] = 1 + max((level.get(i, 0) for i in r["inputs"] if i in names), default=0)
    return level


def _positions(records: list[dict], outputs: set[str]) -> dict[str, tuple[float, float]]:
    level = node_levels(records)
    level[IN] = 0
    level[OUT] = max(level.values(), default=0) + 1
    rows: dict[int, list[str]] = {}
    for name in [IN, *[r["name"] for r in records], OUT]:
        rows.setdefault(level[name], []).append(name)
    pos = {}
    for lv, names in rows.items():
        for k, name in enumerate(names):
            pos[name] = ((k - (len(names) - 1) / 2) * X_GAP, -lv * Y_GAP)
    if not outputs:
        pos.pop(OUT)
    return pos


def _label(record: dict, prefix: str, mark: str | None) -> str:
    name = record["name"]
    short = name[len(prefix) + 1:] if prefix and name.startswith(prefix + ".") else name
    kind = record["target"] if record["op"] in ("call_function", "call_method") else record["role"]
    return f"{short}\n[{kind}]" + (f" {mark.upper()}" if mark else "")


def _box(ax, xy, text, color, mark=None) -> None:
    edge, style = MARKS.get(mark, ("#555555", "-"))
    ax.add_patch(FancyBboxPatch((xy[0] - BOX_W / 2, xy[1] - BOX_H / 2), BOX_W, BOX_H,
                                boxstyle="round,pad=0.02,rounding_size=0.12", facecolor=color, edgecolor=edge,
                                linewidth=2.6 if mark else 0.8, linestyle=style))
    ax.text(xy[0], xy[1], text, ha="center", va="center", fontsize=6.5, fontweight="bold" if mark else "normal")


def _edge(ax, a, b, lane: float | None = None) -> float:
    """An arrow from box ``a`` to box ``b``; an edge skipping levels runs down a lane right of the
    boxes it passes (returns the rightmost x it used)."""
    style = dict(arrowstyle="->", color="#666666", lw=0.8)
    if lane is None:
        ax.annotate("", xy=(b[0], b[1] + BOX_H / 2), xytext=(a[0], a[1] - BOX_H / 2), arrowprops=style)
        return max(a[0], b[0])
    top, bottom = a[1] - Y_GAP / 2, b[1] + Y_GAP / 2
    ax.plot([a[0], a[0], lane, lane, b[0]], [a[1] - BOX_H / 2, top, top, bottom, bottom], color="#666666", lw=0.8)
    ax.annotate("", xy=(b[0], b[1] + BOX_H / 2), xytext=(b[0], bottom), arrowprops=style)
    return lane


def _lane(pos: dict, a, b) -> float | None:
    """x of a free lane right of every box strictly between the levels of ``a`` and ``b`` (None if adjacent)."""
    between = [p[0] for p in pos.values() if b[1] + Y_GAP / 2 < p[1] < a[1] - Y_GAP / 2]
    if not between:
        return None
    return max(max(between), a[0], b[0]) + BOX_W / 2 + 0.35


def _caption(ax, marks: dict) -> None:
    """Full names of the marked nodes under the panel (``removed: layer1.0.relu_2``)."""
    lines = []
    for kind in MARKS:
        names = sorted(n for n, m in marks.items() if m == kind)
        if names:
            shown = ", ".join(names[:6]) + (f", ... ({len(names) - 6} more)" if len(names) > 6 else "")
            lines.append(f"{kind}: {shown}")
    if lines:
        ax.text(0.5, 0.0, "\n".join(lines), transform=ax.transAxes, ha="center", va="top", fontsize=7,
                color="#333333")


def _draw_panel(ax, records: list[dict], all_records: list[dict], prefix: str, marks: dict, title: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    if not records:
        ax.text(0.5, 0.5, "(no graph recorded: a dry run records the plan only)", ha="center", va="center",
                transform=ax.transAxes, fontsize=9)
        return
    names = {r["name"] for r in records}
    outputs = {r["name"] for r in records if any(r["name"] in o["inputs"] for o in all_records if o["name"] not in names)}
    pos = _positions(records, outputs)
    right = 0.0
    for r in records:
        for i in r["inputs"] or [IN]:
            a, b = pos[i if i in names else IN], pos[r["name"]]
            right = max(right, _edge(ax, a, b, _lane(pos, a, b)))
        if r["name"] in outputs:
            a, b = pos[r["name"]], pos[OUT]
            right = max(right, _edge(ax, a, b, _lane(pos, a, b)))
    _box(ax, pos[IN], IN, "#ffffff")
    if OUT in pos:
        _box(ax, pos[OUT], OUT, "#ffffff")
    for r in records:
        mark = marks.get(r["name"])
        _box(ax, pos[r["name"]], _label(r, prefix, mark), ROLE_COLORS.get(r["role"], "#f2f2f2"), mark)
    _caption(ax, marks)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - BOX_W, max(max(xs) + BOX_W, right + 0.5))
    ax.set_ylim(min(ys) - BOX_H, max(ys) + BOX_H)


def _overview(ax, report, panels) -> None:
    chosen = set(report.selected) | {c.block for c in report.changes}
    letters = {p[1].blocks[0]: p[0] for p in panels}
    n = len(report.blocks)
    for b in report.blocks:
        ax.add_patch(Rectangle((b.index - 0.45, 0), 0.9, 1, facecolor="#ff7f0e" if b.index in chosen else "#d9d9d9",
                               edgecolor="black" if b.index in letters else "none", linewidth=1.5))
        if b.index in letters:
            ax.text(b.index, 1.15, letters[b.index], ha="center", va="bottom", fontsize=9, fontweight="bold")
    prev = None
    for b in report.blocks:
        if prev is not None and b.stage != prev:
            ax.axvline(b.index - 0.5, color="black", linewidth=0.8, linestyle=":")
        prev = b.stage
    ax.set_xlim(0.4, n + 0.6)
    ax.set_ylim(0, 1.6)
    ax.set_yticks([])
    step = 1 if n <= 30 else 5 if n <= 150 else 10
    ax.set_xticks([i for i in range(1, n + 1) if i == 1 or i % step == 0])
    ax.set_xlabel("block (execution order, 1-based); dotted lines: stage boundaries", fontsize=8)
    where = "lettered blocks are drawn below" if panels else "planned changes below"
    ax.set_title(f"All {n} blocks: {len(chosen & {b.index for b in report.blocks})} changed (orange); {where}",
                 fontsize=10)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def _legend(ax) -> None:
    handles = [Patch(facecolor=c, edgecolor="#555555", label=role) for role, c in ROLE_COLORS.items()
               if role not in ("input", "output")]
    handles += [Patch(facecolor="white", edgecolor=c, linestyle=s, linewidth=2.4, label=f"{m} node")
                for m, (c, s) in MARKS.items()]
    ax.axis("off")
    ax.legend(handles=handles, loc="center", ncol=len(handles), fontsize=8, frameon=False)


def _change_list(ax, report) -> None:
    """Without a recorded graph (dry run): the planned changes as text."""
    ax.axis("off")
    lines = [f"block {c.block}: {c.site}: {c.before} -> {c.after}" for c in report.changes[:12]]
    if len(report.changes) > 12:
        lines.append(f"... and {len(report.changes) - 12} more")
    head = "Planned changes (dry run: the graph is drawn when the rewrite is applied)"
    ax.text(0.0, 1.0, "\n".join([head, *lines]), va="top", ha="left", fontsize=8, family="monospace")


def render_figure(report, panels: list[tuple], hidden: int):
    """The figure: legend, overview strip, then per panel (letter, pattern, before, after, marks...) two axes.

    Example:
        >>> import relu_surgery as rs
        >>> _, report = rs.erase(rs.create_model("cifar_resnet20"), dry_run=True)
        >>> fig = render_figure(report, [], 0)  # a dry run: no panels, the planned changes as text
        >>> len(fig.axes)
        3
    """
    heights = [0.3, 1.0, 0.35] + ([] if panels else [0.2 * min(len(report.changes), 12) + 0.6]) + [0.5 * (max(len(set(node_levels(p[2]).values())), len(set(node_levels(p[3]).values()))) + 2)
                       for p in panels]
    inches = sum(heights) + 0.8
    fig = new_figure(figsize=(13, inches))
    grid = fig.add_gridspec(len(heights), 2, height_ratios=heights, hspace=0.25, top=1 - 0.5 / inches,
                            bottom=0.2 / inches)
    _legend(fig.add_subplot(grid[0, :]))
    _overview(fig.add_subplot(grid[1, :]), report, panels)
    blocks = {b.index: b for b in report.blocks}
    for row, (letter, pattern, before, after, left, right) in enumerate(panels, start=3):
        block = blocks.get(pattern.blocks[0])
        prefix = block.name if block else ""
        what = f"block {block.index} {block.name} ({block.type})" if block else "outside the blocks"
        shared = f", same change in {len(pattern.blocks)} blocks" if len(pattern.blocks) > 1 else ""
        _draw_panel(fig.add_subplot(grid[row, 0]), before, report.graph_before, prefix, left,
                    f"{letter}: {what}{shared} - BEFORE")
        _draw_panel(fig.add_subplot(grid[row, 1]), after, report.graph_after, prefix, right,
                    f"{letter}: {what} - AFTER" + (" (dry run: not applied)" if report.dry_run else ""))
    if not panels:
        _change_list(fig.add_subplot(grid[3, :]), report)
    steps = " + ".join(s.rewrite for s in report.steps)
    more = f"; {hidden} more change patterns not drawn" if hidden > 0 else ""
    fig.suptitle(f"relu_surgery {steps}: {report.model} ({len(report.changes)} site changes{more})", fontsize=12,
                 y=1 - 0.12 / inches, va="top")
    return fig
