"""Ship a model (rewritten or not) as ONNX or ``torch.export`` ``.pt2``, checked against PyTorch.

:func:`export` writes the file atomically, then loads it back and runs it on the example input:
ONNX with onnxruntime (the ``export`` extra: ``pip install relu-surgery[export]``), ``.pt2``
with ``torch.export.load``. The largest output difference is returned in an :class:`Exported`;
above ``tolerance`` (relative to the output's magnitude) it is an :class:`ExportError`. When the
exporter fails on a traced model, each node is exported alone to find the one that cannot be,
and the error names it and gives the exporter's reason in one line.

ONNX uses torch's TorchScript-based exporter (``dynamo=False``), which needs no extra package;
the batch dimension is dynamic.

Example:
    >>> import tempfile, torch, relu_surgery as rs
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    >>> new, _ = rs.erase(net, example_input=torch.zeros(1, 3, 8, 8))
    >>> done = export(new, tempfile.mkdtemp() + "/er.pt2", "pt2")
    >>> done.format, done.input_shape, done.max_abs_diff
    ('pt2', (1, 3, 8, 8), 0.0)
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.fx as fx
import torch.nn as nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from ..errors import SurgeryError
from ..graph.example_inputs import example_input_for
from ..graph.running import eval_mode, first_tensor
from ..graph.tracing import trace

__all__ = ["export", "Exported", "ExportError", "FORMATS"]

FORMATS = ("onnx", "pt2")


class ExportError(SurgeryError):
    """A model that cannot be exported (which node and why), or whose export computes something else.

    Example:
        >>> export(nn.Linear(2, 2), "net.tflite", "tflite")
        Traceback (most recent call last):
        ...
        relu_surgery.models.export.ExportError: format must be one of onnx, pt2, got 'tflite'
        >>> issubclass(ExportError, SurgeryError)
        True
    """


@dataclass(frozen=True)
class Exported:
    """A written export and its check: the output difference of the reloaded file against PyTorch.

    Example:
        >>> done = Exported("net.pt2", "pt2", "torch.export.load", (1, 3, 8, 8), (1, 4, 6, 6), 2e-07, 1e-07)
        >>> print(done)
        exported to net.pt2 (pt2); torch.export.load on input (1, 3, 8, 8): output (1, 4, 6, 6), \
max |difference| 2e-07 (relative 1e-07)
        >>> done.to_dict()["output_shape"]
        (1, 4, 6, 6)
    """

    path: str
    format: str
    checked_with: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    max_abs_diff: float
    relative: float

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"exported to {self.path} ({self.format}); {self.checked_with} on input {self.input_shape}: "
                f"output {self.output_shape}, max |difference| {self.max_abs_diff:.3g} (relative {self.relative:.3g})")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


@contextmanager
def _quiet_stdout():
    """Send file descriptor 1 to /dev/null for the block: the TorchScript exporter logs the whole graph
    there (from C++) when it fails."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _onnx_bytes(model: nn.Module, x: torch.Tensor, opset: int) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), _quiet_stdout():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return buffer.getvalue()


def _run_onnx(data: bytes, x: torch.Tensor) -> tuple[torch.Tensor, str]:
    try:
        import onnxruntime  # noqa: PLC0415
    except ImportError:
        raise ExportError("checking an ONNX export needs onnxruntime: pip install 'relu-surgery[export]'") from None
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x.detach().cpu().numpy()})[0]
    return torch.from_numpy(out), f"onnxruntime {onnxruntime.__version__}"


def _pt2_program(model: nn.Module, x: torch.Tensor):
    return torch.export.export(model, (x,))


def _export_once(model: nn.Module, x: torch.Tensor, fmt: str, opset: int):
    """The exported artefact in memory (ONNX bytes or an ExportedProgram)."""
    return _onnx_bytes(model, x, opset) if fmt == "onnx" else _pt2_program(model, x)


class _OneNode(nn.Module):
    """One graph node as a module of its tensor inputs (the other arguments fixed): for finding a failing node."""

    def __init__(self, gm: fx.GraphModule, node: fx.Node, args, kwargs):
        super().__init__()
        self.node = node
        self.call = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
        self.leaves, self.spec = tree_flatten((args, kwargs))
        self.slots = [i for i, leaf in enumerate(self.leaves) if isinstance(leaf, torch.Tensor)]

    def forward(self, *tensors):
        leaves = list(self.leaves)
        for slot, tensor in zip(self.slots, tensors):
            leaves[slot] = tensor
        args, kwargs = tree_unflatten(leaves, self.spec)
        if self.call is not None:
            return self.call(*args, **kwargs)
        if self.node.op == "call_method":
            return getattr(args[0], self.node.target)(*args[1:], **kwargs)
        return self.node.target(*args, **kwargs)


def _failing_node(gm: fx.GraphModule, x: torch.Tensor, fmt: str, opset: int) -> str | None:
    """``"node NAME (what): reason"`` for the first node of ``gm`` that cannot be exported alone, or None."""
    env: dict = {}

    class Recorder(fx.Interpreter):
        def run_node(self, node):
            env[node] = super().run_node(node)
            return env[node]

    with torch.no_grad():
        Recorder(gm).run(x)
    for node in gm.graph.nodes:
        if node.op not in ("call_module", "call_function", "call_method"):
            continue
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), env.__getitem__)
        single = _OneNode(gm, node, args, kwargs)
        tensors = [single.leaves[i] for i in single.slots]
        if len(tensors) != 1 or not isinstance(env[node], torch.Tensor):
            continue  # the checked exporters take one tensor in and give one out
        try:
            _export_once(single, tensors[0], fmt, opset)
        except Exception as exc:  # the exporter's own error is the reason
            what = type(single.call).__name__ if single.call is not None else getattr(node.target, "__name__",
                                                                                      str(node.target))
            return f"node {node.meta.get('rs_name', node.name)} ({what}): {_one_line(exc)}"
    return None


def _locate(model: nn.Module, x: torch.Tensor, fmt: str, opset: int) -> str | None:
    """The failing node of ``model`` (traced first when it is not a GraphModule), or None."""
    try:
        gm = model if isinstance(model, fx.GraphModule) else trace(model).graph_module
        return _failing_node(gm, x, fmt, opset)
    except Exception:  # noqa: BLE001 (a model that cannot be traced: the exporter's own reason is given)
        return None


def _write(path: Path, fmt: str, artefact) -> None:
    """Write atomically: a temporary file next to ``path``, then one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")  # torch.export.save wants the suffix
    try:
        if fmt == "onnx":
            tmp.write_bytes(artefact)
        else:
            torch.export.save(artefact, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _reload(path: Path, fmt: str, x: torch.Tensor) -> tuple[torch.Tensor, str]:
    if fmt == "onnx":
        return _run_onnx(path.read_bytes(), x)
    with torch.no_grad():
        return first_tensor(torch.export.load(str(path)).module()(x)), "torch.export.load"


def export(model: nn.Module, path, format: str = "onnx", example_input=None, tolerance: float = 1e-4,
           opset: int = 17, force: bool = True) -> Exported:
    """Export ``model`` (eval mode) to ``path`` as ``format`` ("onnx" or "pt2") and check the file.

    Raises :class:`ExportError` naming the node that cannot be exported and why, or when the
    reloaded file's output differs from PyTorch's by more than ``tolerance`` (relative).
    ``force=False`` refuses to replace an existing file.

    Example:
        >>> import tempfile, torch.nn as nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        >>> export(net, tempfile.mkdtemp() + "/net.onnx", example_input=torch.zeros(1, 3, 8, 8)).checked_with[:11]
        'onnxruntime'
    """
    if format not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    path = Path(path)
    if path.exists() and not force:
        raise ExportError(f"{path} exists (use --force to replace it)")
    x = example_input if example_input is not None else example_input_for(model)
    with eval_mode(model), torch.no_grad():
        expected = first_tensor(model(x))
        try:
            artefact = _export_once(model, x, format, opset)
        except Exception as exc:  # any exporter failure becomes one line naming the node
            where = _locate(model, x, format, opset) or _one_line(exc)
            raise ExportError(f"cannot export to {format}: {where}") from exc
    _write(path, format, artefact)
    got, checked_with = _reload(path, format, x)
    diff = float((got.double() - expected.double()).abs().max())
    scale = float(expected.double().abs().max())
    relative = diff / scale if scale > 0 else diff
    if not relative <= tolerance:
        raise ExportError(f"the {format} file {path} computes something else: max |output difference| {diff:.3g} "
                          f"(relative {relative:.3g}) above the tolerance {tolerance:g} ({checked_with})")
    return Exported(str(path), format, checked_with, tuple(x.shape), tuple(got.shape), diff, relative)
