"""What a fold did, as the report shows it: every merge with its MACs, every refusal with its reason,
the layer counts and the function check.

:class:`FoldStepReport` is a :class:`~.report.StepReport` with these records; its summary rows
join the report's (text, Markdown, terminal) and its ``to_dict`` adds a ``fold`` section to the
JSON.

Example:
    >>> r = FoldStepReport("fold", {}, (), "all layers", (),
    ...                    merges=(FoldRecord("chain", ("a", "b"), "conv 1x1 + conv 3x3", "conv 3x3", 90, 60),),
    ...                    check={"max_abs_diff": 1e-7, "relative": 1e-8, "tolerance": 1e-4},
    ...                    layers_before=3, layers_after=1)
    >>> dict(r.norm_lines())["Merged (fold)"]
    '1: a + b (MACs 90 -> 60)'
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .report import StepReport

__all__ = ["FoldRecord", "FoldStepReport"]


@dataclass(frozen=True)
class FoldRecord:
    """One fold, merge or refusal: its kind (norm, chain, branch), the module paths, before and after
    (for a refusal ``after`` is the reason) and the MACs where they were counted.

    Example:
        >>> FoldRecord("norm", ("conv", "bn"), "conv 3x3 3->4 + BatchNorm2d", "conv 3x3 3->4").to_dict()["names"]
        ['conv', 'bn']
    """

    kind: str
    names: tuple[str, ...]
    before: str
    after: str
    macs_before: int | None = None
    macs_after: int | None = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "names": list(self.names), "before": self.before, "after": self.after,
                "macs_before": self.macs_before, "macs_after": self.macs_after}


def _macs(record: FoldRecord) -> str:
    if record.macs_before is None:
        return ""
    return f" (MACs {record.macs_before:,} -> {record.macs_after:,})"


@dataclass(frozen=True)
class FoldStepReport(StepReport):
    """A fold step: norms folded, layers merged, candidates refused, and the function check.

    ``check`` holds ``max_abs_diff`` (largest absolute output difference against the unfolded model on
    the example input, eval mode), ``max_abs_reference``, ``relative`` (their ratio) and ``tolerance``;
    above the tolerance also ``float64_relative`` (the same comparison in float64),
    ``unfolded_float32_error`` and a ``note``.

    Example:
        >>> r = FoldStepReport("fold", {}, (), "every layer", (), layers_before=2, layers_after=1,
        ...                    merges=(FoldRecord("norm", ("conv", "bn"), "BatchNorm2d", "folded into conv"),))
        >>> len(r.norms_folded), r.layer_merges, r.to_dict()["fold"]["layers_after"]
        (1, (), 1)
    """

    merges: tuple[FoldRecord, ...] = ()
    refusals: tuple[FoldRecord, ...] = ()
    check: dict = field(default_factory=dict)
    layers_before: int = 0
    layers_after: int = 0

    @property
    def norms_folded(self) -> tuple[FoldRecord, ...]:
        return tuple(m for m in self.merges if m.kind == "norm")

    @property
    def layer_merges(self) -> tuple[FoldRecord, ...]:
        return tuple(m for m in self.merges if m.kind != "norm")

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["fold"] = {"merges": [m.to_dict() for m in self.merges], "refusals": [r.to_dict() for r in self.refusals],
                       "check": dict(self.check), "layers_before": self.layers_before,
                       "layers_after": self.layers_after}
        return out

    def norm_lines(self) -> list[tuple[str, str]]:
        """The report's rows for this step: layers, norms folded, merges, refusals, the function check."""
        rows = super().norm_lines()
        rows.append(("Weight and norm layers (fold)", f"{self.layers_before} -> {self.layers_after}"))
        rows.append(("Norms folded (fold)", str(len(self.norms_folded))))
        merges = self.layer_merges
        rows.append(("Merged (fold)", f"{len(merges)}" + "".join(
            f"{'; ' if i else ': '}{' + '.join(m.names)}{_macs(m)}" for i, m in enumerate(merges))))
        if self.refusals:
            kinds = Counter(r.kind for r in self.refusals)
            rows.append(("Kept (fold)", f"{len(self.refusals)} candidates (" + ", ".join(
                f"{kind} {n}" for kind, n in kinds.items()) + "), each with its reason under Warnings"))
        check = self.check
        if "max_abs_diff" in check:
            rows.append(("Function check (fold)", f"max |output difference| {check['max_abs_diff']:.3g} "
                         f"(relative {check['relative']:.3g}, tolerance {check['tolerance']:.0e}) on the example "
                         "input, eval mode" + (f"; {check['note']}" if "note" in check else "")))
        elif check.get("skipped"):
            rows.append(("Function check (fold)", f"not run ({check['skipped']})"))
        return rows
