"""Rich terminal views of reports and block lists (only the CLI imports this module).

Example:
    >>> import io
    >>> from rich.console import Console
    >>> import relu_surgery as rs, torchvision
    >>> console = Console(width=120, file=io.StringIO())
    >>> render_blocks(console, rs.find_blocks(torchvision.models.resnet18()), "resnet18")
    >>> "resnet18: 8 blocks" in console.file.getvalue()
    True
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..graph.records import Block
from ..graph.relu_count import ReluCount
from .report import Report

__all__ = ["render_report", "render_blocks", "render_relu_count"]


def render_blocks(console: Console, blocks: list[Block], title: str, selected=None) -> None:
    """A table of blocks (index, name, type, stage) with each block's sites and their locations.

    Example:
        >>> from rich.console import Console
        >>> import relu_surgery as rs
        >>> import io
        >>> console = Console(width=120, file=io.StringIO())
        >>> render_blocks(console, rs.find_blocks(rs.create_model("cifar_resnet20")), "cifar_resnet20")
        >>> "cifar_resnet20: 9 blocks" in console.file.getvalue()
        True
    """
    table = Table(title=f"{title}: {len(blocks)} blocks", show_lines=False)
    for col in ("#", "block", "type", "stage", "site", "kind", "spelling", "location"):
        table.add_column(col, no_wrap=col in ("#", "location"))
    chosen = set(selected or ())
    for b in blocks:
        style = "bold green" if b.index in chosen else None
        sites = b.sites or ()
        first = True
        for s in sites or [None]:
            row = [str(b.index), b.name, b.type, b.stage or ""] if first else ["", "", "", ""]
            row += [s.name, s.kind, s.spelling, s.location] if s else ["(no activation)", "", "", ""]
            table.add_row(*row, style=style)
            first = False
    console.print(table)


def render_relu_count(console: Console, count: ReluCount) -> None:
    """ReLUs per sample: one row per stage, then the total (the input size they are counted at).

    Example:
        >>> import io
        >>> from relu_surgery.graph.relu_count import SiteRelus
        >>> stem = SiteRelus("relu", "relu", "relu", (4, 8, 8), 256, stage="stem")
        >>> blocks = [SiteRelus(f"layer1.{i}.relu", "relu", f"n{i}", (4, 8, 8), 256, i + 1, f"layer1.{i}", "layer1")
        ...           for i in range(2)]
        >>> console = Console(width=80, file=io.StringIO())
        >>> render_relu_count(console, ReluCount((stem, *blocks), (1, 3, 8, 8)))
        >>> print(console.file.getvalue())
           ReLUs per sample at input 1x3x8x8: 768
        ┏━━━━━━━━┳━━━━━━━┳━━━━━━━┳━━━━━━━┓
        ┃ stage  ┃ sites ┃ ReLUs ┃ share ┃
        ┡━━━━━━━━╇━━━━━━━╇━━━━━━━╇━━━━━━━┩
        │ stem   │     1 │   256 │ 33.3% │
        │ layer1 │     2 │   512 │ 66.7% │
        └────────┴───────┴───────┴───────┘
        <BLANKLINE>
    """
    where = "x".join(str(d) for d in count.input_shape)
    table = Table(title=f"ReLUs per sample at input {where}: {count.total:,}")
    for col in ("stage", "sites", "ReLUs", "share"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    sites: dict[str, int] = {}
    for s in count.sites:
        sites[s.stage or "(no stage)"] = sites.get(s.stage or "(no stage)", 0) + 1
    for stage, relus in count.per_stage().items():
        share = f"{100 * relus / count.total:.1f}%" if count.total else "-"
        table.add_row(stage, str(sites[stage]), f"{relus:,}", share)
    console.print(table)


def _render_block_summary(console: Console, report: Report) -> None:
    chosen = set(report.selected)
    table = Table(title=f"Blocks ({len(report.blocks)}; * = selected)")
    for col in ("#", "sel", "block", "type", "sites", "last activation(s)"):
        table.add_column(col)
    for b in report.blocks:
        last = ", ".join(s.name for s in b.last_sites) or "(none: block output is linear)"
        table.add_row(str(b.index), "*" if b.index in chosen else "", b.name, b.type, str(len(b.sites)), last,
                      style="green" if b.index in chosen else None)
    console.print(table)


def render_report(console: Console, report: Report, show_blocks: bool = True) -> None:
    """The diff report: summary, selected blocks, every change, warnings.

    Example:
        >>> from rich.console import Console
        >>> import relu_surgery as rs
        >>> import io
        >>> console = Console(width=160, file=io.StringIO())
        >>> render_report(console, rs.erase(rs.create_model("cifar_resnet20"), check=False)[1], show_blocks=False)
        >>> "Changes (9)" in console.file.getvalue()
        True
    """
    steps = " + ".join(s.rewrite for s in report.steps)
    head = Table(title=f"relu_surgery {steps}: {report.model}" + (" (dry run: plan only)" if report.dry_run else ""),
                 show_header=False)
    head.add_column(style="bold")
    head.add_column()
    for key, value in report.summary_lines():
        head.add_row(key, value)
    console.print(head)
    if show_blocks:
        _render_block_summary(console, report)
    changes = Table(title=f"Changes ({len(report.changes)})")
    for col in ("block", "site", "before", "after"):
        changes.add_column(col)
    for c in report.changes:
        changes.add_row(str(c.block), c.site, c.before, c.after)
    console.print(changes)
    tally = report.relu_count
    if tally is not None and tally.after is not None:
        relus = Table(title=f"ReLUs per sample: {tally.summary()} (changed sites)")
        for col in ("site", "kind", "shape", "before", "after"):
            relus.add_column(col, justify="right" if col in ("before", "after") else "left")
        for r in tally.site_rows():
            if r["after"] != r["before"]:
                relus.add_row(r["site"], r["kind_after"] or r["kind"], "x".join(map(str, r["shape"])),
                              f"{r['before']:,}", f"{r['after']:,}")
        console.print(relus)
    if report.warnings:
        for w in report.warnings:
            console.print(f"[yellow]warning:[/yellow] {w}")
    else:
        console.print("warnings: none")
