"""The examples in the core modules' docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

CORE = ["activations", "analysis", "blocks", "costs", "errors", "example_inputs", "graph_ops", "models", "plan",
        "report", "saving", "selection", "tracing", "weights", "rewrites.base", "rewrites.erase",
        "rewrites.registry", "zoo._registry"]


@pytest.mark.parametrize("name", CORE)
def test_docstring_examples(name):
    module = importlib.import_module(f"relu_surgery.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0 or name in ("errors",)
