"""The check every rewrite ends with: one pass before, one after, compared.

Three modes (``check=`` of every rewrite, ``--check`` / ``--no-check`` on the command line):

* ``"shapes"`` (the default, ``check=True``): shapes propagated without computing a value
  (:func:`relu_surgery.graph.shapes.propagate_shapes`). It verifies that the output shape is
  unchanged, counts MACs (torch's FLOP formulas) and ReLUs per site. It cannot say whether values
  are finite: nothing is computed. A graph whose shapes depend on values gets real passes instead.
* ``"full"``: real eval-mode passes (batch of one) under torch's FLOP counter: the same, plus the
  output's finiteness (in train mode when eval mode overflows on untrained statistics) and, for a
  rewrite that promises to keep the function (CReLU ``preserve``, NormProp2 from BN statistics),
  the largest difference between the outputs before and after. A rewrite with that promise gets
  this mode by default.
* ``False``: nothing runs; MACs and ReLU counts are not measured.

Example:
    >>> import torch, torch.nn as nn, torch.fx as fx
    >>> gm = fx.symbolic_trace(nn.Sequential(nn.Linear(3, 4), nn.ReLU()))
    >>> before = probe(gm, torch.zeros(1, 3), (), "shapes")
    >>> before.relus.total, before.shapes.macs
    (4, 12)
    >>> compare(before, before, gm, torch.zeros(1, 3))[0]["pass"]
    'meta'
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from ..errors import InternalError, SurgeryError
from ..graph.intake import non_finite_tensors
from ..graph.relu_count import ReluCount, count_relus, shape_pass
from ..graph.shapes import ShapePass

__all__ = ["CHECK_MODES", "Probe", "resolve_check", "probe", "compare"]

CHECK_MODES = ("shapes", "full")


@dataclass(frozen=True)
class Probe:
    """One pass over a model at the example input: shapes, MACs (and output) plus its ReLU count.

    Example:
        >>> gm = fx.symbolic_trace(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU()))
        >>> p = probe(gm, torch.zeros(1, 3), (), "shapes")
        >>> p.shapes.output_shape, p.shapes.macs, [(s.site, s.relus) for s in p.relus.sites]
        ((1, 4), 12, [('_1', 4)])
    """

    shapes: ShapePass
    relus: ReluCount


def resolve_check(check, preserves: bool = False) -> str | None:
    """The mode for ``check`` (True/"shapes", "full", False); "full" when a step preserves the function.

    Example:
        >>> resolve_check(True), resolve_check(True, preserves=True), resolve_check(False)
        ('shapes', 'full', None)
    """
    if check is False or check is None:
        return None
    if check is True or check == "shapes":
        return "full" if preserves else "shapes"
    if check == "full":
        return "full"
    raise SurgeryError(f"check must be True, False, 'shapes' or 'full', got {check!r}")


def probe(gm: fx.GraphModule, example_input, blocks, mode: str) -> Probe:
    """Shapes and ReLU counts of ``gm`` (``mode`` "shapes": no values; "full": a real eval pass).

    Example:
        >>> gm = fx.symbolic_trace(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU()))
        >>> full = probe(gm, torch.zeros(1, 3), (), "full")
        >>> full.shapes.mode, full.shapes.finite, full.relus.total
        ('real', True, 4)
        >>> probe(gm, torch.zeros(1, 5), (), "shapes")
        Traceback (most recent call last):
            ...
        relu_surgery.errors.SurgeryError: forward pass on an input of shape (1, 5) failed: RuntimeError: ...
    """
    try:
        shapes = shape_pass(gm, example_input, real=mode == "full")
    except Exception as exc:  # any failure of the user's model is reported as one line
        dims = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else "?"
        raise SurgeryError(f"forward pass on an input of shape {dims} failed: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    shape = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else (1,)
    return Probe(shapes, count_relus(gm, shapes, blocks, shape))


def compare(before: Probe, after: Probe, gm: fx.GraphModule, example_input) -> tuple[dict, list[str]]:
    """The report's ``forward_check`` and notes; raises when the output shape changed or overflows.

    Example:
        >>> gm = fx.symbolic_trace(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU()))
        >>> p = probe(gm, torch.zeros(1, 3), (), "full")
        >>> compare(p, p, gm, torch.zeros(1, 3))
        ({'input_shape': (1, 3), 'output_shape': (1, 4), 'output_shape_before': (1, 4), 'pass': 'real',
          'mode': 'eval', 'finite': True, 'max_abs_diff': 0.0}, [])
        >>> longer = fx.symbolic_trace(torch.nn.Sequential(*gm.children(), torch.nn.Linear(4, 2)))
        >>> compare(p, probe(longer, torch.zeros(1, 3), (), "full"), longer, torch.zeros(1, 3))
        Traceback (most recent call last):
            ...
        relu_surgery.errors.InternalError: the rewritten model's output changed shape (1, 4) -> (1, 2)
    """
    b, a = before.shapes, after.shapes
    if a.output_shape != b.output_shape:
        raise InternalError(f"the rewritten model's output changed shape {b.output_shape} -> {a.output_shape}")
    check = {"input_shape": tuple(example_input.shape), "output_shape": a.output_shape,
             "output_shape_before": b.output_shape, "pass": a.mode, "mode": "eval", "finite": a.finite}
    notes: list[str] = []
    if a.mode != "real":
        return check, notes
    if not a.finite:
        if not b.finite:
            bad = non_finite_tensors(gm)
            where = f" (non-finite values in {', '.join(bad)})" if bad else ""
            raise SurgeryError(f"the model's output is already non-finite before the rewrite{where}: "
                               "check its weights; the rewrite is not the cause")
        if not _finite_in_train_mode(gm, example_input):
            raise SurgeryError("the rewritten model produced non-finite values in eval and train mode")
        check.update(finite=True, mode="train")
        notes.append("the rewritten model's eval-mode output overflows on the example input with its current "
                     "normalisation statistics (untrained running statistics?); in train mode (batch statistics) "
                     "it is finite")
    if b.output is not None and a.output is not None and b.finite and a.finite:
        check["max_abs_diff"] = float((a.output.double() - b.output.double()).abs().max())
    return check, notes


def _finite_in_train_mode(gm: fx.GraphModule, example_input) -> bool:
    """Whether a copy of ``gm`` gives finite outputs in train mode (batch statistics; batch of 2)."""
    from ..graph.copying import private_copy  # noqa: PLC0415
    from ..graph.running import first_tensor  # noqa: PLC0415

    x = example_input
    gen = torch.Generator().manual_seed(1)
    batch = torch.cat([x, x + 0.1 * torch.randn(x.shape, generator=gen).to(x.device)]) if x.shape[0] == 1 else x
    copy = private_copy(gm).train()
    with torch.no_grad():
        out = first_tensor(copy(batch))
    return out is not None and bool(torch.isfinite(out).all())
