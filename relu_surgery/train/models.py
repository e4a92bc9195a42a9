"""Which model to train: a name, ``module:callable`` or saved rewrite directory, plus rewrites to apply.

Models come from :func:`relu_surgery.create_model` / :func:`relu_surgery.load`, rewrites from the
one registry of rewrites by name (:func:`relu_surgery.surgery.registry.get_rewrite`). A
:class:`ModelSpec` is stored in a run's ``config.json`` so ``--resume`` can rebuild the model.

Example:
    >>> spec = ModelSpec("relu_surgery.train.tiny:tiny_cnn", args={"width": 8})
    >>> model = build_model(spec, num_classes=10, in_chans=1, image_size=28, seed=0)
    >>> sum(p.numel() for p in model.parameters())
    1442
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import SurgeryError
from ..models import create_model, load
from ..models.weights import load_weights
from ..surgery.registry import get_rewrite
from .errors import TrainConfigError

__all__ = ["RewriteSpec", "ModelSpec", "parse_value", "parse_pairs", "resolve_model", "apply_rewrites",
           "build_model"]


def parse_value(text: str) -> Any:
    """A JSON value if ``text`` is one (``0.5``, ``3``, ``true``, ``[1, 2]``), ``None`` for none/null,
    ``True``/``False`` for any spelling of true/false, otherwise the text itself (as the core CLI's -a).

    Example:
        >>> [parse_value(t) for t in ("0.5", "3", "True", "none", "last")]
        [0.5, 3, True, None, 'last']
    """
    import json

    try:
        return json.loads(text)
    except ValueError:
        pass
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return None if lowered in ("none", "null") else text.strip()


def parse_pairs(text: str) -> dict[str, Any]:
    """``"proportion=0.5,location=last"`` -> ``{"proportion": 0.5, "location": "last"}``.

    Example:
        >>> parse_pairs("proportion=0.5,location=last")
        {'proportion': 0.5, 'location': 'last'}
    """
    out: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TrainConfigError(f"expected key=value, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


@dataclass(frozen=True)
class RewriteSpec:
    """One rewrite by its ``relu_surgery`` function name and keyword arguments.

    Example:
        >>> RewriteSpec.parse("erase:proportion=0.5,location=first")
        RewriteSpec(name='erase', kwargs={'proportion': 0.5, 'location': 'first'})
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "RewriteSpec":
        """``"erase:proportion=0.5,location=first"`` or just ``"crelu"``."""
        name, _, args = text.partition(":")
        return cls(name.strip(), parse_pairs(args))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "kwargs": dict(self.kwargs)}


@dataclass(frozen=True)
class ModelSpec:
    """How to build a model: its source, constructor arguments, and the rewrites applied on top.

    Example:
        >>> spec = ModelSpec("cifar_resnet20", rewrites=(RewriteSpec("erase"),))
        >>> ModelSpec.from_dict(spec.to_dict()) == spec
        True
    """

    source: str
    args: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False
    rewrites: tuple[RewriteSpec, ...] = ()
    weights: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in ``config.json``)."""
        return {"source": self.source, "args": dict(self.args), "pretrained": self.pretrained,
                "weights": self.weights, "rewrites": [r.to_dict() for r in self.rewrites]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        """Inverse of :meth:`to_dict`."""
        rewrites = tuple(RewriteSpec(r["name"], dict(r.get("kwargs", {}))) for r in data.get("rewrites", []))
        return cls(data["source"], dict(data.get("args", {})), bool(data.get("pretrained", False)), rewrites,
                   data.get("weights"))

    def with_rewrites(self, rewrites: tuple[RewriteSpec, ...]) -> "ModelSpec":
        """The same source with ``rewrites`` instead of this spec's."""
        return ModelSpec(self.source, self.args, self.pretrained, tuple(rewrites), self.weights)


def resolve_model(source: str, *, num_classes: int, in_chans: int = 3, args: dict[str, Any] | None = None,
                  pretrained: bool = False, trust_code: bool = False) -> nn.Module:
    """Build the model named ``source``: a saved rewrite directory (``relu_surgery.load``, whose
    recipe's user code runs only with ``trust_code``), or a zoo / timm / torchvision name or
    ``module:callable`` (``relu_surgery.create_model``).

    ``num_classes`` is always passed to the builder, ``in_chans`` only when it is not 3.

    Example:
        >>> resolve_model("cifar_resnet20", num_classes=100, in_chans=1).head.fc.out_features
        100
    """
    if Path(source).expanduser().is_dir():
        return load(str(Path(source).expanduser()), trust_code=trust_code)
    kwargs = dict(args or {})
    kwargs.setdefault("num_classes", num_classes)
    if in_chans != 3:
        kwargs.setdefault("in_chans", in_chans)
    if pretrained:
        kwargs["pretrained"] = True
    return create_model(source, **kwargs)


def apply_rewrites(model: nn.Module, rewrites: tuple[RewriteSpec, ...] | list[RewriteSpec],
                   example_input: torch.Tensor | None = None) -> tuple[nn.Module, list[Any]]:
    """Apply each rewrite (``relu_surgery.<name>(model, **kwargs) -> (new_model, report)``) in turn.

    A rewrite that changes nothing (no site selected, no eligible site) is a :class:`TrainConfigError`.

    Example:
        >>> from relu_surgery.train.tiny import tiny_cnn
        >>> new_model, reports = apply_rewrites(tiny_cnn(), [RewriteSpec.parse("swap:to=gelu")])
        >>> reports[0].sites_after
        {'gelu': 2}
    """
    reports = []
    for spec in rewrites:
        try:
            fn = get_rewrite(spec.name)
        except SurgeryError as exc:
            raise TrainConfigError(str(exc)) from None
        kwargs = dict(spec.kwargs)
        if example_input is not None and "example_input" in inspect.signature(fn).parameters:
            kwargs.setdefault("example_input", example_input)
        try:
            result = fn(model, **kwargs)
        except TypeError as exc:
            raise TrainConfigError(f"bad arguments for rewrite {spec.name!r}: {exc}") from None
        model, report = result if isinstance(result, tuple) else (result, None)
        empty = report.nothing_changed() if report is not None else None
        if empty:
            settings = ", ".join(f"{k}={v}" for k, v in spec.kwargs.items())
            raise TrainConfigError(f"rewrite {spec.name}({settings}): {empty}; nothing would be trained differently")
        reports.append(report)
    return model, reports


def build_model(spec: ModelSpec, *, num_classes: int, in_chans: int, image_size: int, seed: int,
                trust_code: bool = False) -> nn.Module:
    """Seed torch with ``seed``, build ``spec.source``, load ``spec.weights``, apply ``spec.rewrites``.

    The same seed gives the same initial weights, so an original and a rewritten model built from
    one seed start from the same point wherever the rewrite keeps a parameter. ``trust_code`` lets a
    saved directory's recipe run the user code it names.

    Example:
        >>> spec = ModelSpec("relu_surgery.train.tiny:tiny_cnn", rewrites=(RewriteSpec("erase"),))
        >>> model = build_model(spec, num_classes=10, in_chans=1, image_size=28, seed=0)
        >>> from relu_surgery.graph.provenance import recipe_of
        >>> isinstance(model, torch.fx.GraphModule), [r["rewrite"] for r in recipe_of(model)["rewrites"]]
        (True, ['erase'])
    """
    torch.manual_seed(seed)
    try:
        model = resolve_model(spec.source, num_classes=num_classes, in_chans=in_chans, args=spec.args,
                              pretrained=spec.pretrained, trust_code=trust_code)
    except SurgeryError:
        raise
    except TypeError as exc:
        raise TrainConfigError(f"cannot build {spec.source!r} with {spec.args}: {exc}") from None
    if spec.weights:
        load_weights(model, spec.weights)
    if spec.rewrites:
        example = torch.zeros(2, in_chans, image_size, image_size)
        model, _ = apply_rewrites(model, spec.rewrites, example)
    return model
