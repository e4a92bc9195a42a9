"""The examples in the core modules' docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

CORE = ["graph.activations", "graph.analysis", "graph.blocks", "report.costs", "errors", "graph.example_inputs",
        "graph.ops", "models.resolve", "graph.records", "report.report", "models.saving", "surgery.selection",
        "graph.tracing", "models.weights", "surgery.pipeline", "surgery.erase", "surgery.registry",
        "models.zoo._registry", "graph.running", "report.records", "surgery.plan", "atomic", "locks",
        "models.recipe", "graph.intake", "models.sources", "graph.parts", "graph.calls", "graph.part_analysis",
        "surgery.partial", "report.parts"]


@pytest.mark.parametrize("name", CORE)
def test_docstring_examples(name):
    module = importlib.import_module(f"relu_surgery.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0 or name in ("errors",)
