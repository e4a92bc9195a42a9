"""The probe: the papers' measurements on an original and a rewritten model, side by side.

For each model: Delta per block (seed 002, Fig. 2), the last activation before the classifier
(seed 002, Table 1), filter coherence per conv layer (seed 002, supplement); once: the
gradient-correlation study of seed 000 (Sec. 3.3, Fig. 4), which does not depend on the model.
With ``out``, writes ``probe.json`` and one PNG per measurement.

Example:
    >>> import relu_surgery as rs
    >>> model = rs.create_model("cifar_resnet20")
    >>> new, _ = rs.erase(model, check=False)
    >>> result = rs.probe(model, new, gradient_study=False, samples=2)
    >>> [m.label for m in result.models], len(result.models[0].deltas)
    (['cifar_resnet20', 'cifar_resnet20 + erase'], 9)
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..graph.analysis import model_label
from ..graph.provenance import provenance_of
from ..graph.blocks import BlockSpec
from ..graph.records import Block
from ..graph.example_inputs import example_input_for
from .capture import prepare
from .coherence import LayerCoherence, conv_coherence
from .delta import BlockDelta, block_deltas
from .gradients import DEFAULT_DEPTHS, GradientStudy, gradient_study as run_gradient_study
from .inputs import ProbeError, check_fits
from .last_activation import LastActivation, last_activation

__all__ = ["ModelProbe", "ProbeResult", "probe", "probe_model", "models_from_directory"]


@dataclass
class ModelProbe:
    """The measurements of one model.

    Example:
        >>> import relu_surgery as rs
        >>> p = probe_model(rs.create_model("cifar_resnet20"), torch.randn(2, 3, 32, 32))
        >>> sorted(p.to_dict())
        ['coherence', 'deltas', 'label', 'last_activation']
    """

    label: str
    deltas: list[BlockDelta]
    last: LastActivation | None
    coherence: list[LayerCoherence]
    blocks: list[Block] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        """A JSON-ready dict of the measurements."""
        return {"label": self.label, "deltas": [d.to_dict() for d in self.deltas],
                "last_activation": self.last.to_dict() if self.last else None,
                "coherence": [c.to_dict() for c in self.coherence]}


@dataclass
class ProbeResult:
    """What :func:`probe` measured: one :class:`ModelProbe` per model (original first), the inputs,
    the gradient study (or None) and the PNGs written (name -> path).

    Example:
        >>> import json, relu_surgery as rs
        >>> result = rs.probe(rs.create_model("cifar_resnet20"), samples=2, gradient_study=False)
        >>> len(result.delta_rows()), json.loads(result.to_json())["inputs"]["source"]
        (9, 'random N(0, 1)')
    """

    models: list[ModelProbe]
    inputs: dict
    gradient_study: GradientStudy | None = None
    plots: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def delta_rows(self) -> list[tuple]:
        """(index, name, type, reference, Delta per model...) joined on block name, original order first."""
        names = list(dict.fromkeys(d.name for m in self.models for d in m.deltas))
        by_model = [{d.name: d for d in m.deltas} for m in self.models]
        rows = []
        for name in names:
            first = next(b[name] for b in by_model if name in b)
            rows.append((first.index, name, first.type, first.reference,
                         *[b[name].delta if name in b else None for b in by_model]))
        return rows

    def coherence_rows(self) -> list[tuple]:
        """(name, filters, mu per model...) joined on layer name."""
        names = list(dict.fromkeys(c.name for m in self.models for c in m.coherence))
        by_model = [{c.name: c for c in m.coherence} for m in self.models]
        return [(n, next(b[n] for b in by_model if n in b).filters, *[b[n].mu if n in b else None for b in by_model])
                for n in names]

    def to_dict(self) -> dict:
        """A JSON-ready dict (covariance matrices and raw values are only in the plots)."""
        return {"inputs": self.inputs, "models": [m.to_dict() for m in self.models],
                "gradient_study": self.gradient_study.to_dict() if self.gradient_study else None,
                "plots": dict(self.plots), "notes": list(self.notes)}

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON string (what ``probe.json`` holds)."""
        return json.dumps(self.to_dict(), indent=2)

    def write(self, out) -> Path:
        """Write ``probe.json`` and the PNGs into ``out`` (each file atomically); returns ``out``."""
        from . import plots  # noqa: PLC0415 (matplotlib only when plotting)

        from ..atomic import atomic_write_text, ensure_directory  # noqa: PLC0415

        out = ensure_directory(out)
        models = {m.label: m for m in self.models}
        if any(m.deltas for m in self.models):
            self.plots["delta"] = str(plots.plot_deltas({k: m.deltas for k, m in models.items()}, out / "delta.png"))
        if any(m.last for m in self.models):
            self.plots["last_activation"] = str(plots.plot_last_activation(
                {k: m.last for k, m in models.items()}, out / "last_activation.png"))
        if any(m.coherence for m in self.models):
            self.plots["coherence"] = str(plots.plot_coherence(
                {k: m.coherence for k, m in models.items()}, out / "coherence.png"))
        if self.gradient_study is not None:
            self.plots["gradient_study"] = str(plots.plot_gradient_study(self.gradient_study, out / "gradient_study.png"))
        atomic_write_text(self.to_json() + "\n", out / "probe.json")
        return out


def probe_model(model: nn.Module, inputs: torch.Tensor, label: str | None = None, spec: BlockSpec | None = None,
                norm_stats: str = "running", blocks: list[Block] | None = None) -> ModelProbe:
    """Delta per block, last activation and conv coherence of one model (a private copy is traced).

    ``blocks`` (another model's, matched by name) replace block discovery.

    Example:
        >>> import torch, relu_surgery as rs
        >>> p = probe_model(rs.create_model("cifar_resnet20"), torch.randn(2, 3, 32, 32))
        >>> len(p.deltas), p.last.node, len(p.coherence)
        (9, 'layer3.2.relu2', 19)
    """
    check_fits(model, inputs)
    traced, found = prepare(model, spec if blocks is None else None, norm_stats)
    blocks = found if blocks is None else blocks
    gm = traced.graph_module
    try:
        deltas = block_deltas(gm, blocks, inputs)
        last = last_activation(gm, inputs)
    except RuntimeError as exc:  # shapes the model does not take
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProbeError(f"the probe inputs {tuple(inputs.shape)} do not fit {label or model_label(model)}: "
                         f"{first}") from None
    return ModelProbe(label or model_label(model), deltas, last, conv_coherence(model), blocks)


def _rewritten_label(base: str, rewritten: nn.Module) -> str:
    names = [r.get("rewrite", "?") for r in provenance_of(rewritten).rewrites]
    return f"{base} + {' + '.join(names)}" if names else f"{base} (rewritten)"


def probe(model: nn.Module, rewritten: nn.Module | None = None, inputs: torch.Tensor | None = None, *,
          out=None, samples: int = 16, seed: int = 0, norm_stats: str = "running", block_types=(),
          block_names=(), gradient_study: bool = True, depths=DEFAULT_DEPTHS, points: int = 1000,
          width: int = 200, initialisations: int = 1, labels: tuple[str, str] | None = None,
          input_source: str | None = None) -> ProbeResult:
    """Measure ``model`` (and ``rewritten``, side by side) as the papers do; see the module docstring.

    ``inputs`` default to ``samples`` seeded random inputs of the model's example size (pass real
    images from :func:`relu_surgery.diagnostics.inputs.probe_inputs` for trained models).
    ``norm_stats="batch"`` normalises BatchNorm with the batch's statistics (useful for untrained
    models, whose running statistics are the identity). The gradient study uses the paper's
    settings by default (``depths``, 1000 ``points`` on [-2, 2], ``width`` 200). ``input_source``
    describes ``inputs`` in the result (a dataset name). With ``out``,
    writes ``probe.json`` and the PNGs there. Neither model is modified.

    Example:
        >>> import relu_surgery as rs
        >>> m = rs.create_model("cifar_resnet20")
        >>> r = rs.probe(m, rs.erase(m, check=False)[0], samples=2, gradient_study=False)
        >>> r.models[1].last.kind  # the add that feeds the head after EraseReLU
        'merge'
    """
    spec = BlockSpec(tuple(block_types), tuple(block_names))
    x = inputs if inputs is not None else example_input_for(model, batch=samples, seed=seed)
    device = next((p.device for p in model.parameters()), None)
    x = x.to(device) if device is not None else x
    base = labels[0] if labels else model_label(model)
    probes = [probe_model(model, x, base, spec, norm_stats)]
    if rewritten is not None:
        other = labels[1] if labels else _rewritten_label(base, rewritten)
        # the same blocks, found by name in the rewritten graph (EraseReLU can leave a unit with no
        # activation, which discovery would no longer call a block)
        probes.append(probe_model(rewritten, x, other if other != base else f"{other} (rewritten)", spec,
                                  norm_stats, blocks=probes[0].blocks))
    source = input_source or ("random N(0, 1)" if inputs is None else "given")
    result = ProbeResult(probes, {"source": source, "shape": list(x.shape), "norm_stats": norm_stats, "seed": seed,
                                  "device": str(x.device)})
    if gradient_study:
        result.gradient_study = run_gradient_study(depths, points, width, initialisations, seed)
    if out is not None:
        result.write(out)
    return result


def models_from_directory(path, trust_code: bool = False) -> tuple[nn.Module, nn.Module, str]:
    """(original, rewritten, note) for a saved rewrite directory (its user code runs only with ``trust_code``).

    The original is the recipe's source model; it takes every tensor of the saved weights whose
    name and shape it shares (all of them after EraseReLU), so both models carry the same training.

    Example:
        >>> import tempfile, relu_surgery as rs
        >>> new, report = rs.erase(rs.create_model("cifar_resnet20"), check=False)
        >>> original, rewritten, note = models_from_directory(rs.save(new, tempfile.mkdtemp() + "/er20"))
        >>> note.split(":")[1].strip()
        '116 of 116 tensors taken from ...'
    """
    from ..models.resolve import create_model  # noqa: PLC0415
    from ..models.saving import load, read_recipe  # noqa: PLC0415

    rewritten = load(path, trust_code=trust_code)
    source = read_recipe(path, trust_code=trust_code)["source"]
    original = create_model(source["name"], **(source.get("kwargs") or {}))
    own = original.state_dict()
    saved = rewritten.state_dict()
    shared = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
    original.load_state_dict({**own, **copy.deepcopy(shared)}, strict=True)
    note = (f"original {source['name']}: {len(shared)} of {len(own)} tensors taken from {path}"
            + ("" if len(shared) == len(own) else "; the rest are freshly initialised"))
    return original, rewritten, note
