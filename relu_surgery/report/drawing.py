"""A picture of a rewrite: the changed blocks before and after, side by side, changed nodes highlighted.

One representative block is drawn per distinct change (same block structure, same sites changed
the same way), so a 50-block network gives a few panels, not fifty; an overview strip above shows
every block, the selected ones coloured and the drawn ones lettered. Changes outside every block
(a stem norm moved, a head norm removed) get a panel of their own. Nodes are coloured by role
(weight, norm, activation, merge, ...); a removed node has a red dashed border on the left, an added
node a green border on the right, a node changed in place an orange border on both sides.

Formats by suffix: ``.svg`` / ``.png`` (matplotlib, text kept as text in SVG) or ``.html`` (a
self-contained page: summary, the inline SVG, the table of changes; no network, no graphviz).

Example:
    >>> import relu_surgery as rs
    >>> new, report = rs.erase(rs.create_model("cifar_resnet20"), proportion=0.5, check=False)
    >>> path = draw_report(report, "/tmp/er20.svg")
    >>> "relu2" in path.read_text()
    True
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import SurgeryError
from .tables import changes_table, summary_table
from .report import Report

__all__ = ["DrawingError", "Pattern", "change_patterns", "draw_report", "FORMATS"]

FORMATS = (".svg", ".png", ".html")
MAX_PANELS = 6


class DrawingError(SurgeryError):
    """A graph drawing that cannot be made (unknown file suffix).

    Example:
        >>> import relu_surgery as rs
        >>> _, report = rs.erase(rs.create_model("cifar_resnet20"), check=False)
        >>> draw_report(report, "/tmp/er20.pdf")
        Traceback (most recent call last):
        ...
        relu_surgery.report.drawing.DrawingError: --graph must name a .svg, .png or .html file, got 'er20.pdf'
    """


@dataclass
class Pattern:
    """Blocks that changed the same way; ``blocks`` are 1-based indices (0: outside every block).

    Example:
        >>> import relu_surgery as rs
        >>> _, report = rs.erase(rs.create_model("cifar_resnet20"), proportion=1.0, check=False)
        >>> [(p.blocks[:2], len(p.changes)) for p in change_patterns(report)]
        [([1, 2], 7), ([4, 7], 2)]
    """

    key: tuple
    blocks: list[int]
    changes: list


def _scope_nodes(records: list[dict], block) -> list[dict]:
    if block is None:
        return []
    if block.rule != "unit":
        return [r for r in records if block.name in r["scope"] and r["op"] != "get_attr"]
    out, started = [], False
    for r in records:
        if r["name"] == block.name:
            started = True
        elif started and r["role"] in ("weight", "output"):
            break
        if started:
            out.append(r)
    return out


def _short(text: str, block_name: str, numbers: bool = False) -> str:
    """``text`` with the block's name and (unless ``numbers``) channel counts generalised, up to " (" ."""
    text = text.replace(block_name + ".", "<b>.") if block_name else text
    text = text.split(" (")[0]
    return text if numbers else re.sub(r"\d+", "#", text)


def change_patterns(report: Report) -> list[Pattern]:
    """Group the report's changed blocks by (structure, changes); one :class:`Pattern` per group.

    Example:
        >>> import relu_surgery as rs
        >>> _, report = rs.erase(rs.create_model("cifar_resnet20"), proportion=1.0, check=False)
        >>> [(p.blocks, p.key[0]) for p in change_patterns(report)]
        [([1, 2, 3, 5, 6, 8, 9], 'BasicBlock'), ([4, 7], 'BasicBlock')]
    """
    blocks = {b.index: b for b in report.blocks}
    groups: dict[tuple, Pattern] = {}
    by_block: dict[int, list] = {}
    for c in report.changes:
        by_block.setdefault(c.block if c.block in blocks else 0, []).append(c)
    for index, changes in by_block.items():
        block = blocks.get(index)
        name = block.name if block else ""
        structure = tuple(r["role"] for r in _scope_nodes(report.graph_before, block))
        edits = tuple((_short(c.site, name, numbers=True), _short(c.before, name), _short(c.after, name))
                      for c in changes)
        key = (block.type if block else "(outside blocks)", structure, edits)
        groups.setdefault(key, Pattern(key, [], [])).blocks.append(index)
        groups[key].changes.extend(changes)
    return list(groups.values())


def _marks(report: Report, before: list[dict], after: list[dict]) -> tuple[dict, dict]:
    """name -> mark (removed / added / changed) for the before and the after panel.

    A node is removed when the after-graph lacks it, added when the before-graph lacks it, changed
    when it is a changed site present on both sides or a layer whose tensors changed shape.
    """
    sites = {c.site.removesuffix(".act") for c in report.changes}
    listed = {n for s in report.steps for n in (*s.nodes_removed, *s.nodes_added)}
    reshaped = {k.split(":")[0].rsplit(".", 1)[0] for k in report.state_dict.get("reshaped", ())}
    changed = sites | listed | reshaped
    all_before = {r["name"] for r in report.graph_before}
    all_after = {r["name"] for r in report.graph_after}
    removed = {n for s in report.steps for n in s.nodes_removed}
    left, right = {}, {}
    for r in before:
        n = r["name"]
        if (report.graph_after and n not in all_after) or (not report.graph_after and n in removed):
            left[n] = "removed"
        elif n in changed:
            left[n] = "changed"
    for r in after:
        n = r["name"]
        if n not in all_before:
            right[n] = "added"
        elif n in changed:
            right[n] = "changed"
    return left, right


def _region(report: Report, pattern: Pattern, records: list[dict]) -> list[dict]:
    blocks = {b.index: b for b in report.blocks}
    block = blocks.get(pattern.blocks[0])
    if block is not None:
        return _scope_nodes(records, block)
    names = {c.site.removesuffix(".act") for c in pattern.changes}
    names |= {n for s in report.steps for n in (*s.nodes_added, *s.nodes_removed)
              if not any(n.startswith(b.name + ".") for b in report.blocks)}
    block_names = {b.name for b in report.blocks}
    outside = [r for r in records if not block_names & set(r["scope"])
               and r["op"] not in ("placeholder", "output", "get_attr")]
    near = names | {i for r in outside if r["name"] in names for i in r["inputs"]}
    near |= {r["name"] for r in outside if set(r["inputs"]) & names}
    return [r for r in outside if r["name"] in near]


def draw_report(report: Report, path) -> Path:
    """Draw ``report`` (see the module docstring) to ``path`` (.svg, .png or .html); returns the path.

    Example:
        >>> import relu_surgery as rs
        >>> _, report = rs.crelu(rs.create_model("cifar_resnet20"), blocks="1", check=False)
        >>> draw_report(report, "/tmp/crelu.html").suffix
        '.html'
    """
    from .figure import render_figure  # noqa: PLC0415 (matplotlib only when drawing)
    from .mpl import save_figure  # noqa: PLC0415

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DrawingError(f"--graph must name a .svg, .png or .html file, got {path.name!r}")
    patterns = change_patterns(report) if report.graph_before else []  # a dry run records no graph
    panels = []
    for letter, pattern in zip("ABCDEFGHIJ", patterns[:MAX_PANELS]):
        before = _region(report, pattern, report.graph_before)
        after = _region(report, pattern, report.graph_after)
        panels.append((letter, pattern, before, after, *_marks(report, before, after)))
    fig = render_figure(report, panels, len(patterns) - len(panels))
    if suffix == ".html":
        return _write(path, _html_page(report, fig))
    buffer = io.BytesIO()
    save_figure(fig, buffer, format=suffix.lstrip("."), dpi=110, bbox_inches="tight")
    return _write(path, buffer.getvalue())


def _write(path: Path, data) -> Path:
    from ..atomic import atomic_write_bytes  # noqa: PLC0415

    atomic_write_bytes(data if isinstance(data, bytes) else data.encode(), path)
    return path


def _html_page(report: Report, fig) -> str:
    from .mpl import save_figure  # noqa: PLC0415
    buffer = io.StringIO()
    save_figure(fig, buffer, format="svg", bbox_inches="tight")
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    steps = " + ".join(s.rewrite for s in report.steps)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>relu_surgery {html.escape(steps)}: {html.escape(report.model)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}} svg{{max-width:100%;height:auto}}</style>
</head><body>
<h1>relu_surgery {html.escape(steps)}: <code>{html.escape(report.model)}</code></h1>
{summary_table(report)}
<h2>Changed blocks, before and after</h2>
{svg}
<h2>Changes ({len(report.changes)})</h2>
{changes_table(report)}
</body></html>
"""
