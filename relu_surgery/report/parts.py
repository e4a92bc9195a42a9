"""How a report shows a model traced in parts: which parts were traced, which stayed Python, and why.

Example:
    >>> rows = part_rows({"parts": [{"path": "", "type": "Net", "traced": False, "reason": "control flow"},
    ...                            {"path": "body", "type": "Seq", "traced": True, "blocks": 2}],
    ...                  "order": "execution order: forward hooks", "input": "tensor (1, 3, 8, 8)"})
    >>> [label for label, _ in rows]
    ['Traced parts', 'Stayed Python', 'Block order', 'Example input']
    >>> rows[0][1], rows[1][1]
    ('1: body (Seq, 2 blocks)', '1: (root) Net (control flow)')
"""

from __future__ import annotations

__all__ = ["part_rows"]


def _name(row: dict) -> str:
    return row["path"] or f"(root) {row['type']}"


def part_rows(partial: dict) -> list[tuple[str, str]]:
    """(label, value) rows for :meth:`relu_surgery.Report.summary_lines` from ``Report.partial``.

    Traced parts holding blocks come first, with their block counts; Python parts are grouped by reason.

    Example:
        >>> part_rows({})                               # a model traced whole: no rows
        []
        >>> part_rows({"parts": [{"path": "", "type": "Net", "traced": False, "reason": "control flow"},
        ...                      {"path": "a", "type": "Seq", "traced": True, "blocks": 1},
        ...                      {"path": "b", "type": "Seq", "traced": True, "blocks": 3}]})[:2]
        [('Traced parts', '2: b (Seq, 3 blocks), a (Seq, 1 block)'), ('Stayed Python', '1: (root) Net (control flow)')]
    """
    if not partial:
        return []
    parts = partial.get("parts", [])
    traced = sorted((p for p in parts if p["traced"]), key=lambda p: -p.get("blocks", 0))
    python = [p for p in parts if not p["traced"]]
    reasons: dict[str, list[str]] = {}
    for p in python:
        reasons.setdefault(p["reason"], []).append(_name(p))

    def traced_text(p: dict) -> str:
        n = p.get("blocks", 0)
        return f"{_name(p)} ({p['type']}" + (f", {n} block{'s' if n != 1 else ''})" if n else ")")

    return [
        ("Traced parts", f"{len(traced)}: " + ", ".join(traced_text(p) for p in traced)),
        ("Stayed Python", f"{len(python)}: " + "; ".join(f"{', '.join(names)} ({why})" for why, names in reasons.items())),
        ("Block order", partial.get("order", "")),
        ("Example input", partial.get("input", "")),
    ]
