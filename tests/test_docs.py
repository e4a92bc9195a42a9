"""Every module's docstring examples run and give what they show; every public function and class has one."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import matplotlib
import pytest
import torch

import relu_surgery
from relu_surgery.graph.blocks import BLOCK_TYPE_PATTERNS

MODULES = sorted(m.name for m in pkgutil.walk_packages(relu_surgery.__path__, "relu_surgery."))


def _public(module):
    """The functions and classes a module exports (``__all__``) that relu_surgery defines."""
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__.startswith("relu_surgery"):
            yield name, obj


def _process_state():
    """What an example must leave as it found it."""
    return (tuple(BLOCK_TYPE_PATTERNS), torch.get_default_dtype(), torch.is_grad_enabled(),
            dict(matplotlib.rcParams), matplotlib.get_backend())


def test_the_walk_finds_every_package():
    packages = {name.split(".")[1] for name in MODULES}
    assert packages >= {"cli", "data", "diagnostics", "graph", "models", "report", "surgery", "train", "errors"}
    assert len(MODULES) > 90


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    before = _process_state()
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert _process_state() == before  # no example leaks process-wide state
    if any(obj.__module__ == name for _, obj in _public(module)):  # defines public names: shows them
        assert result.attempted > 0


def test_every_public_function_and_class_has_an_example():
    missing = [f"{name}.{attr}" for name in MODULES for attr, obj in _public(importlib.import_module(name))
               if ">>>" not in (obj.__doc__ or "")]
    assert missing == []
