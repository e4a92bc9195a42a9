"""Build a model from a source name: the papers' zoo, timm, torchvision or ``module:callable``.

Sources, in order for a bare name: the papers' zoo, timm, torchvision. Prefixes force one:
``zoo:``, ``timm:``, ``tv:``; ``package.module:callable`` imports user code (only when asked:
:func:`is_user_code` tells which names would). Saved directories are
:mod:`relu_surgery.models.resolve`'s business.

Example:
    >>> from relu_surgery.graph.provenance import provenance_of
    >>> m = build_from_source("tv:resnet18", num_classes=10)
    >>> provenance_of(m).source["source"], m.fc.out_features
    ('torchvision', 10)
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys

import torch.nn as nn

from ..errors import ModelNotFoundError, SurgeryError
from ..graph.provenance import Provenance, set_provenance

__all__ = ["build_from_source", "build_source", "resolve_name", "list_models", "all_model_names", "is_user_code",
           "TRUSTED_MODULES"]

_PREFIXES = {"zoo": "zoo", "timm": "timm", "tv": "torchvision", "torchvision": "torchvision"}

#: relu_surgery's own modules whose model builders a recipe may name without ``trust_code``.
TRUSTED_MODULES = ("relu_surgery.train.tiny", "relu_surgery.models.zoo.")


def is_user_code(name: str) -> bool:
    """Whether building ``name`` would import and call code outside relu_surgery, timm and torchvision.

    ``module:callable`` names are user code, except the builders defined in relu_surgery's own
    zoo and tiny-model modules.

    Example:
        >>> is_user_code("os:system"), is_user_code("timm:resnet18"), is_user_code("cifar_resnet20")
        (True, False, False)
        >>> is_user_code("relu_surgery.train.tiny:tiny_cnn"), is_user_code("relu_surgery.train.tiny:nn.Module")
        (False, True)
    """
    prefix, sep, attr = name.partition(":")
    if not sep or prefix in _PREFIXES:
        return False
    own = any(prefix == m or (m.endswith(".") and prefix.startswith(m)) for m in TRUSTED_MODULES)
    return not (own and attr.isidentifier())


def _zoo_names() -> list[str]:
    from .zoo import list_zoo_models  # noqa: PLC0415

    return list_zoo_models()


def _timm_names() -> list[str]:
    import timm  # noqa: PLC0415

    return timm.list_models()


def _tv_names() -> list[str]:
    import torchvision  # noqa: PLC0415

    return torchvision.models.list_models()


def all_model_names() -> dict[str, list[str]]:
    """Every name each source knows: {"zoo": [...], "timm": [...], "torchvision": [...]}.

    Example:
        >>> names = all_model_names()
        >>> sorted(names), "resnet50" in names["timm"], "cifar_resnet20" in names["zoo"]
        (['timm', 'torchvision', 'zoo'], True, True)
    """
    return {"zoo": _zoo_names(), "timm": _timm_names(), "torchvision": _tv_names()}


def list_models(source: str | None = None) -> list[tuple[str, str]]:
    """(name, source) pairs, zoo first; ``source`` limits to one of zoo / timm / torchvision.

    Example:
        >>> ("cifar_resnet20", "zoo") in list_models("zoo")
        True
    """
    names = all_model_names()
    return [(n, s) for s in ("zoo", "timm", "torchvision") if source in (None, s) for n in names[s]]


def resolve_name(name: str) -> tuple[str, str]:
    """(source, name within it) for a user's model name; :class:`ModelNotFoundError` with close matches.

    Example:
        >>> resolve_name("timm:resnet50"), resolve_name("tv:resnet50")
        (('timm', 'resnet50'), ('torchvision', 'resnet50'))
    """
    if os.path.isdir(name):
        return "directory", name
    prefix, sep, rest = name.partition(":")
    if sep and prefix in _PREFIXES:
        source = _PREFIXES[prefix]
        known = {"zoo": _zoo_names, "timm": _timm_names, "torchvision": _tv_names}[source]()
        if rest not in known:
            _not_found(rest, known, f"{source} has no model")
        return source, rest
    if sep:
        return "module", name
    for source, names in (("zoo", _zoo_names), ("timm", _timm_names), ("torchvision", _tv_names)):
        if name in names():
            return source, name
    everything = _zoo_names() + _timm_names() + _tv_names()
    _not_found(name, everything, "unknown model")


def _not_found(name: str, known: list[str], what: str):
    close = difflib.get_close_matches(name, list(dict.fromkeys(known)), n=5, cutoff=0.6)
    hint = f"; did you mean: {', '.join(close)}?" if close else "; `relu-surgery models` lists the known names"
    raise ModelNotFoundError(f"{what} {name!r}{hint}")


def _import_callable(spec: str, search_cwd: bool = True):
    module_name, _, attr = spec.partition(":")
    if search_cwd and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelNotFoundError(f"cannot import {module_name!r} for {spec!r}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelNotFoundError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelNotFoundError(f"{spec!r} is not callable")
    if not is_user_code(spec) and getattr(obj, "__module__", None) != module_name:
        raise ModelNotFoundError(f"{spec!r} is not a model builder of {module_name}")
    return obj


def _torchvision_weights(name: str, pretrained: bool) -> dict:
    """weights= (and weights_backbone= for detection/segmentation builders) for torchvision.

    Without ``pretrained`` nothing is downloaded: those builders otherwise fetch a pretrained
    backbone by default.
    """
    import inspect  # noqa: PLC0415

    import torchvision  # noqa: PLC0415

    out = {"weights": "DEFAULT" if pretrained else None}
    params = inspect.signature(torchvision.models.get_model_builder(name)).parameters
    if "weights_backbone" in params and not pretrained:
        out["weights_backbone"] = None
    return out


def build_from_source(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build model ``name`` from the zoo, timm, torchvision or user code (not a saved directory).

    The model remembers where it came from (its :class:`~relu_surgery.graph.provenance.Provenance`)
    so a rewrite of it can be saved and rebuilt. ``pretrained`` passes through to timm /
    torchvision (needs network).

    Example:
        >>> from relu_surgery.graph.provenance import provenance_of
        >>> provenance_of(build_from_source("resnet18")).source["source"]
        'timm'
    """
    return build_source(name, kwargs, pretrained)


def build_source(name: str, kwargs: dict, pretrained: bool = False, search_cwd: bool = True) -> nn.Module:
    """:func:`build_from_source` with the builder's arguments as a dict.

    ``search_cwd=False`` keeps the current directory off ``sys.path`` (a saved directory's recipe
    must not make a module shipped beside it importable).

    Example:
        >>> build_source("cifar_resnet20", {"num_classes": 10}).head.fc.out_features
        10
    """
    source, target = resolve_name(name)
    if source == "directory":
        raise ModelNotFoundError(f"{name!r} is a directory, not a model source name")
    input_size = None
    try:
        if source == "zoo":
            from .zoo import create_zoo_model, get_zoo_entry  # noqa: PLC0415

            model = create_zoo_model(target, **kwargs)
            input_size = get_zoo_entry(target).example_input_size(kwargs.get("in_chans"))
        elif source == "timm":
            import timm  # noqa: PLC0415

            model = timm.create_model(target, pretrained=pretrained, **kwargs)
        elif source == "torchvision":
            import torchvision  # noqa: PLC0415

            model = torchvision.models.get_model(target, **_torchvision_weights(target, pretrained), **kwargs)
        else:
            model = _import_callable(target, search_cwd)(**kwargs)
    except (TypeError, ValueError) as exc:
        raise SurgeryError(f"cannot build {name!r} with {kwargs}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise SurgeryError(f"{name!r} did not return an nn.Module (got {type(model).__name__})")
    record = Provenance(source={"name": name, "source": source, "kwargs": dict(kwargs)}, input_size=input_size)
    return set_provenance(model, record)


