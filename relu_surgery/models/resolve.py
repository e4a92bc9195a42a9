"""Resolve what a user names to a model: a saved rewrite directory, or a source name to build.

Example:
    >>> from relu_surgery.graph.provenance import provenance_of
    >>> m = create_model("tv:resnet18", num_classes=10)
    >>> provenance_of(m).source["source"], m.fc.out_features
    ('torchvision', 10)
"""

from __future__ import annotations

import os

import torch.nn as nn

from ..atomic import recover_directory
from .saving import load
from .sources import build_source, list_models

__all__ = ["create_model", "list_models"]


def create_model(name: str, pretrained: bool = False, *, trust_code: bool = False, **kwargs) -> nn.Module:
    """Build model ``name`` from the zoo, timm, torchvision, user code, or load a saved directory.

    A directory written by ``--out`` / :func:`relu_surgery.save` is loaded with its rewrites
    (:func:`relu_surgery.load`, which runs the user code its recipe names only with ``trust_code``);
    anything else is built by :func:`relu_surgery.models.sources.build_from_source` (random weights
    unless ``pretrained``).

    Example:
        >>> from relu_surgery.graph.provenance import provenance_of
        >>> provenance_of(create_model("resnet18")).source["source"]
        'timm'
    """
    if os.path.isdir(name) or recover_directory(name):
        return load(name, trust_code=trust_code)
    return build_source(name, kwargs, pretrained)
