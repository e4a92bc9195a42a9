"""HTML tables of a report, one builder each: the notebook view (``Report._repr_html_``) and the
HTML page of :func:`relu_surgery.report.drawing.draw_report` show the same tables.

Example:
    >>> import relu_surgery as rs
    >>> _, report = rs.erase(rs.create_model("cifar_resnet20"), proportion=0.5, check=False)
    >>> summary_table(report).startswith("<table><tr><th>Blocks found</th><td>9 (BasicBlock x9)")
    True
    >>> changes_table(report).count("<tr>")
    6
"""

from __future__ import annotations

import html

__all__ = ["summary_table", "changes_table", "report_html"]


def summary_table(report) -> str:
    """The summary (:meth:`Report.summary_lines`) as an HTML table, one row per line.

    Example:
        >>> class Stub:
        ...     def summary_lines(self):
        ...         return [("Parameters", "10 -> 10 (unchanged)")]
        >>> summary_table(Stub())
        '<table><tr><th>Parameters</th><td>10 -&gt; 10 (unchanged)</td></tr></table>'
    """
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in report.summary_lines())
    return f"<table>{rows}</table>"


def changes_table(report) -> str:
    """Every site change (block, site, before, after) as an HTML table with a header row.

    Example:
        >>> class Stub:
        ...     changes = ()
        >>> changes_table(Stub())
        '<table><tr><th>block</th><th>site</th><th>before</th><th>after</th></tr></table>'
    """
    rows = "".join(
        f"<tr><td>{c.block}</td><td><code>{html.escape(c.site)}</code></td><td>{html.escape(c.before)}</td>"
        f"<td>{html.escape(c.after)}</td></tr>" for c in report.changes)
    return f"<table><tr><th>block</th><th>site</th><th>before</th><th>after</th></tr>{rows}</table>"


def report_html(report) -> str:
    """A title, the summary table and the table of changes: what a notebook shows for a report.

    Example:
        >>> import relu_surgery as rs
        >>> _, report = rs.erase(rs.create_model("cifar_resnet20"), proportion=1.0, check=False)
        >>> report_html(report).startswith("<h3>relu_surgery erase: <code>cifar_resnet20</code></h3><table>")
        True
    """
    steps = " + ".join(s.rewrite for s in report.steps)
    dry = " (dry run: plan only)" if report.dry_run else ""
    return (f"<h3>relu_surgery {html.escape(steps)}: <code>{html.escape(report.model)}</code>{dry}</h3>"
            f"{summary_table(report)}<h4>Changes ({len(report.changes)})</h4>{changes_table(report)}")
