"""Terminal rendering of comparison and sweep tables (rich), used by the ``train`` command.

Example:
    >>> print_table("demo", ["model", "error (%)"], [["original", "7.61"]])
                  demo
    ┏━━━━━━━━━━┳━━━━━━━━━━━┓
    ┃ model    ┃ error (%) ┃
    ┡━━━━━━━━━━╇━━━━━━━━━━━┩
    │ original │      7.61 │
    └──────────┴───────────┘
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["print_table"]


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` under ``header`` as a rich table titled ``title`` on stdout.

    Example:
        >>> print_table("sweep", ["proportion"], [["0.5"]])
            sweep
        ┏━━━━━━━━━━━━┓
        ┃ proportion ┃
        ┡━━━━━━━━━━━━┩
        │        0.5 │
        └────────────┘
    """
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # logs and pipes: do not squeeze the table into 80 columns
        console = Console(width=200)
    console.print(table)
