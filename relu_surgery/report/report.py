"""The diff report of a rewrite: one object, rendered as text, JSON, Markdown, HTML or a code diff.

Example:
    >>> import json, torchvision, relu_surgery as rs
    >>> new, report = rs.erase(torchvision.models.resnet18(), proportion=0.5, check=False)
    >>> [c.site for c in report.changes]
    ['layer1.0.relu_1', 'layer2.0.relu_1', 'layer3.0.relu_1', 'layer4.0.relu_1']
    >>> report.to_dict()["params_before"] == json.loads(report.to_json())["params_after"]
    True
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import dataclass, field

from ..graph.records import Block
from .parts import part_rows
from .records import SiteChange
from .tables import report_html
from .relu_counts import ReluTally

__all__ = ["StepReport", "Report"]


@dataclass(frozen=True)
class StepReport:
    """One rewrite step: its settings, which blocks it chose and why, and every site it changed.

    Example:
        >>> step = StepReport("erase", {"proportion": 1.0}, (1,), "all", (), norms_added=("conv1_norm",))
        >>> step.norm_lines()
        [('New norms, untrained (erase)', '1: conv1_norm')]
    """

    rewrite: str
    settings: dict
    selected: tuple[int, ...]
    selection_reason: str
    changes: tuple[SiteChange, ...]
    nodes_removed: tuple[str, ...] = ()
    nodes_added: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # Norm layers a structural rewrite (pre-/after-activation conversion) added, moved or removed:
    # module paths; a moved norm is (from path, to path, where it now sits).
    norms_added: tuple[str, ...] = ()
    norms_moved: tuple[tuple[str, str, str], ...] = ()
    norms_removed: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "rewrite": self.rewrite, "settings": self.settings, "selected": list(self.selected),
            "selection": self.selection_reason, "changes": [c.to_dict() for c in self.changes],
            "nodes_removed": list(self.nodes_removed), "nodes_added": list(self.nodes_added),
            "warnings": list(self.warnings), "norms_added": list(self.norms_added),
            "norms_moved": [{"from": a, "to": b, "where": w} for a, b, w in self.norms_moved],
            "norms_removed": list(self.norms_removed),
        }

    @property
    def changed_something(self) -> bool:
        """Whether this step changed any site, node or norm."""
        return bool(self.changes or self.nodes_removed or self.nodes_added or self.norms_added
                    or self.norms_moved or self.norms_removed)

    def norm_lines(self) -> list[tuple[str, str]]:
        """(label, value) rows for the norms this step added (untrained), moved and removed."""
        rows = []
        if self.norms_added:
            rows.append((f"New norms, untrained ({self.rewrite})",
                         f"{len(self.norms_added)}: " + ", ".join(self.norms_added)))
        if self.norms_moved:
            rows.append((f"Moved norms ({self.rewrite})", "; ".join(
                f"{a} -> {b} ({w})" if a != b else f"{a} ({w})" for a, b, w in self.norms_moved)))
        if self.norms_removed:
            rows.append((f"Removed norms ({self.rewrite})",
                         f"{len(self.norms_removed)}: " + ", ".join(self.norms_removed)))
        return rows


@dataclass
class Report:
    """Everything a rewrite changed, measured before and after.

    ``sites_before`` / ``sites_after`` count activation sites per kind over the whole model;
    ``targets`` are the kinds the rewrite aimed at. ``state_dict`` says which keys were added,
    removed or reshaped. ``forward_check`` records the eval-mode forward pass run after the rewrite
    (``{"skipped": ...}`` when none ran: a dry run or ``check=False``, which also leave MACs None).
    ``relu_count`` holds the ReLUs per sample before and after, per site, block and stage.

    Example:
        >>> import relu_surgery as rs
        >>> _, report = rs.erase(rs.create_model("cifar_resnet20"), proportion=1.0, check=False)
        >>> report.target_sites(), report.target_sites(after=True), report.selected[:3]
        (19, 10, (1, 2, 3))
        >>> print(str(report).splitlines()[0])
        relu_surgery erase: cifar_resnet20
    """

    model: str
    blocks: tuple[Block, ...]
    steps: list[StepReport]
    params_before: int
    params_after: int
    macs_before: int | None
    macs_after: int | None
    sites_before: dict[str, int]
    sites_after: dict[str, int]
    targets: tuple[str, ...]
    state_dict: dict
    forward_check: dict
    leaves: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    code_before: str = ""
    code_after: str = ""
    dry_run: bool = False
    relu_count: ReluTally | None = None
    graph_before: list[dict] = field(default_factory=list, repr=False)
    graph_after: list[dict] = field(default_factory=list, repr=False)
    # A model traced in parts (its root could not be traced): the parts, the block order, the input.
    partial: dict = field(default_factory=dict)

    # ----------------------------------------------------------------- derived views
    @property
    def changes(self) -> tuple[SiteChange, ...]:
        """Every site change of every step, in order."""
        return tuple(c for s in self.steps for c in s.changes)

    @property
    def norms_added(self) -> tuple[str, ...]:
        """Module paths of every norm a step added (no pretrained values: trained from scratch)."""
        return tuple(n for s in self.steps for n in s.norms_added)

    @property
    def selected(self) -> tuple[int, ...]:
        """1-based indices of the blocks any step selected."""
        return tuple(sorted({i for s in self.steps for i in s.selected}))

    def nothing_changed(self) -> str | None:
        """Why the rewrite changed nothing (one sentence), or None when it changed something.

        Example:
            >>> import torchvision, relu_surgery as rs
            >>> _, report = rs.erase(torchvision.models.resnet18(), location=9, dry_run=True)
            >>> report.nothing_changed()[:64]
            'the erase plan changes nothing: block 1 (layer1.0, BasicBlock) h'
        """
        if any(s.changed_something for s in self.steps):
            return None
        reasons = [w for s in self.steps for w in s.warnings]
        more = f" (and {len(reasons) - 1} more like it)" if len(reasons) > 1 else ""
        detail = reasons[0] + more if reasons else (self.steps[-1].selection_reason if self.steps else "no step")
        return f"the {' + '.join(s.rewrite for s in self.steps)} plan changes nothing: {detail}"

    def target_sites(self, after: bool = False) -> int:
        """Number of sites of the targeted kinds before (or after) the rewrite."""
        counts = self.sites_after if after else self.sites_before
        return sum(n for k, n in counts.items() if k in self.targets or "all" in self.targets)

    # ----------------------------------------------------------------- renderings
    def to_dict(self) -> dict:
        """A JSON-ready dict (``json.dumps(report.to_dict())`` works; :meth:`to_json` does it).

        Keys: model, blocks (index, name, type, stage, selected, sites), changes (block, site,
        before, after), params/macs before and after, sites, state_dict, forward_check, steps,
        leaves, warnings, relu_count (before, after, input_shape, sites, blocks, stages; None when not
        measured).
        """
        chosen = set(self.selected)
        return {
            "model": self.model,
            "blocks": [b.to_dict(selected=b.index in chosen) for b in self.blocks],
            "changes": [c.to_dict() for c in self.changes],
            "params_before": self.params_before, "params_after": self.params_after,
            "macs_before": self.macs_before, "macs_after": self.macs_after,
            "sites_before": dict(self.sites_before), "sites_after": dict(self.sites_after),
            "targets": list(self.targets),
            "state_dict": self.state_dict, "forward_check": self.forward_check,
            "steps": [s.to_dict() for s in self.steps],
            "leaves": dict(self.leaves), "warnings": list(self.warnings),
            "norms": {"added": list(self.norms_added),
                      "moved": [m for s in self.steps for m in s.to_dict()["norms_moved"]],
                      "removed": [n for s in self.steps for n in s.norms_removed]},
            **({"partial": self.partial} if self.partial else {}),
            "relu_count": self.relu_count.to_dict() if self.relu_count is not None else None,
        }

    def to_json(self) -> str:
        """The report as a JSON string (:meth:`to_dict`, indented): what ``--json`` prints."""
        return json.dumps(self.to_dict(), indent=2)

    def _repr_html_(self) -> str:
        """The report in a notebook: the summary and changes tables of the HTML drawing."""
        return report_html(self)

    def code_diff(self) -> str:
        """Unified diff of the generated forward code, before -> after."""
        return "".join(difflib.unified_diff(
            self.code_before.splitlines(keepends=True), self.code_after.splitlines(keepends=True),
            fromfile=f"{self.model} (before)", tofile=f"{self.model} (after)",
        ))

    def summary_lines(self) -> list[tuple[str, str]]:
        """(label, value) pairs shared by the text, Markdown and rich renderings."""
        kinds = "/".join(self.targets) or "activation"
        types = Counter(b.type for b in self.blocks)
        stages = Counter(b.stage for b in self.blocks)
        sd = self.state_dict
        fc = self.forward_check
        rows = [
            ("Blocks found", f"{len(self.blocks)} (" + ", ".join(f"{t} x{n}" for t, n in types.items()) + ")"
             + ("; per stage " + " + ".join(str(n) for n in stages.values()) if len(stages) > 1 else "")),
        ]
        for step in self.steps:
            rows.append((f"Selected ({step.rewrite})", step.selection_reason))
            rows.append((f"Sites changed ({step.rewrite})", str(len(step.changes))))
            rows += step.norm_lines()
        rows += [
            (f"{kinds} sites", f"{self.target_sites()} -> {self.target_sites(after=True)}"),
            ("Parameters", _before_after(self.params_before, self.params_after, "{:,}")),
            ("MACs", f"not measured ({'dry run' if self.dry_run else fc.get('skipped', 'check=False')})"
             if self.macs_before is None
             else _before_after(self.macs_before, self.macs_after, "{:,}")),
            ("State dict", "unchanged (strict load of the original checkpoint works)" if sd.get("unchanged")
             else f"added {len(sd['added'])}, removed {len(sd['removed'])}, reshaped {len(sd['reshaped'])}, "
                  f"values changed {len(sd.get('values_changed', []))}"),
            ("Graph nodes", f"removed {sum(len(s.nodes_removed) for s in self.steps)}, "
                            f"added {sum(len(s.nodes_added) for s in self.steps)}"),
            ("Forward pass", _forward_line(fc, self.dry_run)),
        ]
        if self.relu_count is not None:
            rows.insert(len(rows) - 4, ("ReLUs", self.relu_count.summary()))
            rows.insert(len(rows) - 4, ("ReLUs per stage", self.relu_count.stage_line()))
        if self.leaves:
            rows.append(("Leaves (untraceable)", ", ".join(self.leaves)))
        return rows + part_rows(self.partial)

    def __str__(self) -> str:
        chosen = set(self.selected)
        lines = [f"relu_surgery {' + '.join(s.rewrite for s in self.steps)}: {self.model}", ""]
        width = max(len(k) for k, _ in self.summary_lines())
        lines += [f"{k:<{width}}  {v}" for k, v in self.summary_lines()]
        lines += ["", "Blocks:"]
        for b in self.blocks:
            mark = "*" if b.index in chosen else " "
            last = ", ".join(s.name for s in b.last_sites) or "(no last activation)"
            lines.append(f" {mark}{b.index:>4}  {b.name:<32} {b.type:<22} sites {len(b.sites):>2}  last: {last}")
        lines += ["", "Changes:"] + [
            f"  block {c.block:>4}  {c.site:<40} {c.before} -> {c.after}" for c in self.changes
        ] or ["  (none)"]
        if self.relu_count is not None and self.relu_count.after is not None:
            lines += ["", "ReLUs per sample of the changed sites (before -> after):"]
            lines += self.relu_count.text_lines() or ["  (none changed)"]
        lines += ["", "Warnings:"] + ([f"  - {w}" for w in self.warnings] or ["  (none)"])
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The report as Markdown: a summary table, the blocks and the changes."""
        chosen = set(self.selected)
        out = [f"# relu_surgery {' + '.join(s.rewrite for s in self.steps)}: `{self.model}`", "",
               "| | |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in self.summary_lines()]
        out += ["", "## Changes", "", "| block | site | before | after |", "|---:|---|---|---|"]
        out += [f"| {c.block} | `{c.site}` | {c.before} | {c.after} |" for c in self.changes]
        out += ["", "## Blocks", "", "| # | name | type | selected | sites (location) |", "|---:|---|---|:---:|---|"]
        for b in self.blocks:
            sites = "<br>".join(f"`{s.name}` {s.kind} ({s.location})" for s in b.sites) or "-"
            out.append(f"| {b.index} | `{b.name}` | {b.type} | {'yes' if b.index in chosen else ''} | {sites} |")
        out += _relu_markdown(self.relu_count)
        out += ["", "## Warnings", ""] + ([f"- {w}" for w in self.warnings] or ["- none"])
        return "\n".join(out) + "\n"


def _before_after(a: int, b: int, fmt: str) -> str:
    if a == b:
        return f"{fmt.format(a)} -> {fmt.format(b)} (unchanged)"
    pct = (b - a) / a * 100 if a else float("inf")
    return f"{fmt.format(a)} -> {fmt.format(b)} ({pct:+.2f}%)"


def _forward_line(fc: dict, dry_run: bool) -> str:
    if dry_run:
        return "not run (dry run: plan only)"
    if fc.get("skipped"):
        return f"not run ({fc['skipped']})"
    shapes = f"input {fc.get('input_shape')} -> output {fc.get('output_shape')} (before {fc.get('output_shape_before')})"
    if fc.get("pass") == "meta":
        return f"shapes checked without computing values: {shapes}; finiteness not checked (check='full' does)"
    line = f"checked: {shapes}, finite: {'yes' if fc.get('finite') else 'NO'}"
    if fc.get("max_abs_diff") is not None:
        line += f", max |after - before| {fc['max_abs_diff']:.3g}"
    return line


def _relu_markdown(tally: ReluTally | None) -> list[str]:
    if tally is None:
        return []
    out = ["", "## ReLU count", "", tally.summary(), "", "| site | kind | block | stage | shape | before | after |",
           "|---|---|---:|---|---|---:|---:|"]
    for r in tally.site_rows():
        after = "" if r["after"] is None else f"{r['after']:,}"
        shape = "x".join(str(d) for d in r["shape"])
        out.append(f"| `{r['site']}` | {r['kind_after'] or r['kind']} | {r['block'] or ''} | {r['stage'] or ''} | "
                   f"{shape} | {r['before']:,} | {after} |")
    return out
