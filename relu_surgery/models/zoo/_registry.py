"""Registry of the papers' models: ``@register_zoo_model`` + lookup by name.

Example:
    >>> from relu_surgery.models.zoo import create_zoo_model, list_zoo_models
    >>> "cifar_resnet20" in list_zoo_models()
    True
    >>> model = create_zoo_model("cifar_resnet20", num_classes=100)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

__all__ = ["ZooEntry", "register_zoo_model", "list_zoo_models", "get_zoo_entry", "create_zoo_model"]


@dataclass(frozen=True)
class ZooEntry:
    """One registered builder with what the CLI and the tracer need to know about it.

    Example:
        >>> entry = get_zoo_entry("mlp12")
        >>> entry.family, entry.input_size, entry.example_input_size(in_chans=3)
        ('mlp', (1, 28, 28), (3, 28, 28))
    """

    name: str
    fn: Callable[..., nn.Module]
    family: str
    input_size: tuple[int, ...]
    paper: str = ""
    description: str = ""
    default_kwargs: dict = field(default_factory=dict)

    def example_input_size(self, in_chans: int | None = None) -> tuple[int, ...]:
        """Input size (without batch) for a model built with ``in_chans`` input channels."""
        if in_chans is None or len(self.input_size) != 3:
            return self.input_size
        return (in_chans, *self.input_size[1:])


_ZOO: dict[str, ZooEntry] = {}


def register_zoo_model(family: str, input_size: tuple[int, ...] = (3, 32, 32), paper: str = ""):
    """Decorator registering a builder ``fn(num_classes=10, in_chans=3, **kwargs) -> nn.Module``.

    Example (in a zoo family file)::

        @register_zoo_model("demo", input_size=(3, 32, 32))
        def tiny_demo(num_classes=10, in_chans=3):
            return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * 32 * 32, num_classes))

    >>> get_zoo_entry("cifar_resnet20").input_size
    (3, 32, 32)
    """

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = (fn.__doc__ or "").strip().splitlines()
        _ZOO[fn.__name__] = ZooEntry(
            name=fn.__name__, fn=fn, family=family, input_size=tuple(input_size),
            paper=paper, description=doc[0] if doc else "",
        )
        return fn

    return decorate


def list_zoo_models() -> list[str]:
    """Names of every registered zoo model, sorted.

    Example:
        >>> list_zoo_models()[:3]
        ['cifar_resnet1001', 'cifar_resnet110', 'cifar_resnet1202']
    """
    return sorted(_ZOO)


def get_zoo_entry(name: str) -> ZooEntry:
    """The registry entry for ``name``; ``KeyError`` if unknown.

    Example:
        >>> get_zoo_entry("wrn_28_10").family
        'wide_resnet'
    """
    return _ZOO[name]


def create_zoo_model(name: str, **kwargs) -> nn.Module:
    """Build zoo model ``name`` with random weights (``num_classes``, ``in_chans``, family options).

    Example:
        >>> import torch
        >>> with torch.device("meta"):
        ...     model = create_zoo_model("cifar_resnet20", num_classes=100)
        >>> model.head.fc.out_features
        100
    """
    return _ZOO[name].fn(**kwargs)
