"""The package layout's contract: layers import only downwards, and no module imports itself back."""

from __future__ import annotations

import os
from pathlib import Path

import grimp
import networkx as nx
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_layer_contract_holds():
    cwd = os.getcwd()
    os.chdir(ROOT)  # import-linter reads the contract from pyproject.toml here
    try:
        assert lint_imports() == 0
    finally:
        os.chdir(cwd)


def test_no_import_cycles_between_modules():
    graph = grimp.build_graph("relu_surgery")  # imports inside functions count too
    edges = nx.DiGraph((m, d) for m in graph.modules for d in graph.find_modules_directly_imported_by(m))
    assert list(nx.simple_cycles(edges)) == []


def test_layers_are_the_documented_packages():
    packages = sorted(p.name for p in (ROOT / "relu_surgery").iterdir() if (p / "__init__.py").is_file())
    assert packages == ["cli", "data", "diagnostics", "graph", "models", "report", "surgery", "train"]
