"""ReLU counts before and after a rewrite: per site, per block, per stage and in total.

A :class:`ReluTally` pairs the :class:`~relu_surgery.graph.relu_count.ReluCount` of the model before
a rewrite with the one after (sites matched by qualified name; an erased site counts 0 after, a
site a rewrite added counts 0 before). Its JSON is the report's ``relu_count`` entry:
``{"before", "after", "input_shape", "sites": [...], "blocks": [...], "stages": [...]}``.

Example:
    >>> from relu_surgery.graph.relu_count import ReluCount, SiteRelus
    >>> a = SiteRelus("stem.relu", "relu", "n0", (4, 2, 2), 16)
    >>> b = SiteRelus("layer1.0.relu", "relu", "n1", (4, 2, 2), 16, 1, "layer1.0", "layer1")
    >>> tally = ReluTally(ReluCount((a, b), (1, 3, 2, 2)), ReluCount((a,), (1, 3, 2, 2)))
    >>> tally.summary()
    '32 -> 16 (-50.00%) per sample at input 1x3x2x2'
    >>> [(s["site"], s["before"], s["after"]) for s in tally.to_dict()["sites"]]
    [('stem.relu', 16, 16), ('layer1.0.relu', 16, 0)]
"""

from __future__ import annotations

from dataclasses import dataclass

from ..graph.relu_count import ReluCount, SiteRelus

__all__ = ["ReluTally"]

_OUTSIDE = "(outside blocks)"


@dataclass(frozen=True)
class ReluTally:
    """ReLUs per sample before and (unless a dry run or ``check=False``) after a rewrite.

    Example:
        >>> site = SiteRelus("layer1.0.relu", "relu", "n1", (4, 8, 8), 256, 1, "layer1.0", "layer1")
        >>> ReluTally(ReluCount((site,), (1, 3, 8, 8))).summary()      # no after: a dry run
        '256 per sample at input 1x3x8x8 (after: not measured)'
        >>> tally = ReluTally(ReluCount((site,), (1, 3, 8, 8)), ReluCount((), (1, 3, 8, 8)))
        >>> tally.total_after, tally.stage_line(), tally.to_dict()["blocks"]
        (0, 'layer1 256->0', [{'block_name': 'layer1.0', 'before': 256, 'after': 0}])
    """

    before: ReluCount
    after: ReluCount | None = None

    @property
    def total_before(self) -> int:
        return self.before.total

    @property
    def total_after(self) -> int | None:
        return None if self.after is None else self.after.total

    def site_rows(self) -> list[dict]:
        """One row per site (union of before and after, in execution order): before/after ReLUs."""
        after = {s.site: s for s in self.after.sites} if self.after is not None else {}
        rows, seen = [], set()
        for s in self.before.sites:
            new = after.get(s.site)
            rows.append(_row(s, s.relus, None if self.after is None else (new.relus if new else 0), new))
            seen.add(s.site)
        for s in (self.after.sites if self.after is not None else ()):
            if s.site not in seen:
                rows.append(_row(s, 0, s.relus, s))
        return rows

    def _grouped(self, key: str) -> list[dict]:
        groups: dict[str, dict] = {}
        for row in self.site_rows():
            name = row[key] or _OUTSIDE
            group = groups.setdefault(name, {key: name, "before": 0, "after": None if self.after is None else 0})
            group["before"] += row["before"]
            if self.after is not None:
                group["after"] += row["after"]
        return list(groups.values())

    def to_dict(self) -> dict:
        """The report's ``relu_count``: totals, input shape, sites, blocks and stages."""
        return {"before": self.total_before, "after": self.total_after, "input_shape": list(self.before.input_shape),
                "sites": self.site_rows(), "blocks": self._grouped("block_name"), "stages": self._grouped("stage")}

    def summary(self) -> str:
        """``"557,056 -> 278,528 (-50.00%) per sample at input 1x3x32x32"`` (or the before count alone)."""
        where = "x".join(str(d) for d in self.before.input_shape)
        if self.after is None:
            return f"{self.total_before:,} per sample at input {where} (after: not measured)"
        pct = (self.total_after - self.total_before) / self.total_before * 100 if self.total_before else 0.0
        return f"{self.total_before:,} -> {self.total_after:,} ({pct:+.2f}%) per sample at input {where}"

    def stage_line(self) -> str:
        """Per stage, ``name before->after`` (or ``name before``), joined by commas."""
        parts = []
        for g in self._grouped("stage"):
            after = "" if g["after"] is None or g["after"] == g["before"] else f"->{g['after']:,}"
            parts.append(f"{g['stage']} {g['before']:,}{after}")
        return ", ".join(parts)

    def text_lines(self, changed_only: bool = True) -> list[str]:
        """One line per site (only the changed ones by default): name, kind, shape, before -> after."""
        lines = []
        for r in self.site_rows():
            if changed_only and r["after"] == r["before"]:
                continue
            after = "" if r["after"] is None else f" -> {r['after']:,}"
            shape = "x".join(str(d) for d in r["shape"])
            lines.append(f"  {r['site']:<40} {r['kind']:<12} {shape:<14} {r['before']:>10,}{after}")
        return lines


def _row(site: SiteRelus, before: int, after: int | None, new: SiteRelus | None) -> dict:
    return {"site": site.site, "kind": site.kind, "kind_after": new.kind if new else None, "block": site.block,
            "block_name": site.block_name, "stage": site.stage, "shape": list(site.shape),
            "before": before, "after": after}
