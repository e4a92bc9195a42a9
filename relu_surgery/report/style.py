"""Colours and line styles shared by the graph drawings (matplotlib figure and HTML page).

Example:
    >>> sorted(MARKS)
    ['added', 'changed', 'removed']
"""

from __future__ import annotations

__all__ = ["ROLE_COLORS", "MARKS"]

ROLE_COLORS = {"weight": "#aec7e8", "norm": "#ffe08a", "activation": "#ffb3a7", "merge": "#c5b0d5",
               "transparent": "#e5e5e5", "other": "#f2f2f2", "input": "#ffffff", "output": "#ffffff"}
MARKS = {"removed": ("#d62728", "--"), "added": ("#2ca02c", "-"), "changed": ("#ff7f0e", "-")}
