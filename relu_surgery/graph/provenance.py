"""Where a model came from and what relu_surgery did to it: one record, kept in one place.

:func:`relu_surgery.create_model` gives each model it builds a :class:`Provenance` (the source
name, the builder's arguments, the zoo's input size), so a rewrite of it can be saved and rebuilt.
A rewrite's output, a ``torch.fx.GraphModule``, carries its record in
``graph_module.meta["relu_surgery"]``: the source, the rewrites applied (the recipe) and the
submodules tracing kept as leaves. Any other module keeps its record in the one attribute
``relu_surgery_provenance``. Read and write records only through :func:`provenance_of` and
:func:`set_provenance`.

Example:
    >>> import torch.nn as nn
    >>> model = set_provenance(nn.Linear(2, 2), Provenance(source={"name": "lin", "source": "module", "kwargs": {}}))
    >>> provenance_of(model).label(model), recipe_of(model)["source"]["name"]
    ('lin', 'lin')
    >>> provenance_of(nn.ReLU()) == Provenance()
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.fx as fx
import torch.nn as nn

__all__ = ["Provenance", "provenance_of", "set_provenance", "recipe_of", "META_KEY", "ATTRIBUTE"]

META_KEY = "relu_surgery"  # the key in GraphModule.meta
ATTRIBUTE = "relu_surgery_provenance"  # the attribute of any other module


@dataclass(frozen=True)
class Provenance:
    """A model's origin and history.

    ``source`` is ``{"name", "source", "kwargs"}`` for a model :func:`relu_surgery.create_model`
    built (None otherwise); ``rewrites`` are the recipe's entries (``{"rewrite": name, **settings}``)
    in order; ``input_size`` is the example input size (no batch) the model declares;
    ``leaves`` maps each submodule tracing kept opaque to the reason.

    Example:
        >>> Provenance(rewrites=({"rewrite": "erase"},)).recipe(nn.ReLU())
        {'source': {'name': 'ReLU', 'kwargs': None}, 'rewrites': [{'rewrite': 'erase'}]}
    """

    source: dict | None = None
    rewrites: tuple[dict, ...] = ()
    input_size: tuple[int, ...] | None = None
    leaves: dict[str, str] = field(default_factory=dict)

    def label(self, model: nn.Module) -> str:
        """The name a report shows: the source name, else the model's class.

        Example:
            >>> Provenance().label(nn.ReLU())
            'ReLU'
        """
        return self.source["name"] if self.source else type(model).__name__

    def recipe(self, model: nn.Module) -> dict:
        """``{"source": ..., "rewrites": [...]}``: how to rebuild ``model`` (``kwargs`` None: unknown source).

        Example:
            >>> Provenance(source={"name": "m", "source": "zoo", "kwargs": {}}).recipe(nn.ReLU())["rewrites"]
            []
        """
        source = dict(self.source) if self.source else {"name": type(model).__name__, "kwargs": None}
        return {"source": source, "rewrites": [dict(r) for r in self.rewrites]}


def provenance_of(model: nn.Module) -> Provenance:
    """The record of ``model`` (an empty :class:`Provenance` when it has none).

    Example:
        >>> provenance_of(nn.ReLU()).source is None
        True
    """
    if isinstance(model, fx.GraphModule):
        found = getattr(model, "meta", {}).get(META_KEY)
    else:
        found = model.__dict__.get(ATTRIBUTE)
    return found if isinstance(found, Provenance) else Provenance()


def set_provenance(model: nn.Module, record: Provenance) -> nn.Module:
    """Attach ``record`` to ``model`` (replacing any earlier one); returns ``model``.

    Example:
        >>> m = set_provenance(nn.ReLU(), Provenance(input_size=(3, 32, 32)))
        >>> provenance_of(m).input_size
        (3, 32, 32)
    """
    if isinstance(model, fx.GraphModule):
        model.meta[META_KEY] = record
    else:
        object.__setattr__(model, ATTRIBUTE, record)
    return model


def recipe_of(model: nn.Module) -> dict:
    """How to rebuild ``model``: its source and the rewrites applied (see :meth:`Provenance.recipe`).

    Example:
        >>> recipe_of(nn.ReLU())
        {'source': {'name': 'ReLU', 'kwargs': None}, 'rewrites': []}
    """
    return provenance_of(model).recipe(model)
