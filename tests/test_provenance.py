"""Provenance: one record per model, in one place (GraphModule.meta for rewrites), no rs_* attributes."""

from __future__ import annotations

import torch.fx as fx
import torch.nn as nn

import relu_surgery as rs
from relu_surgery.graph.copying import private_copy
from relu_surgery.graph.example_inputs import declared_input_size
from relu_surgery.graph.provenance import META_KEY, Provenance, provenance_of, recipe_of


def _stamped(model: nn.Module) -> list[str]:
    return sorted(k for m in model.modules() for k in vars(m) if k.startswith("rs_"))


def test_create_model_records_source_and_input_size():
    model = rs.create_model("cifar_resnet20", in_chans=1, num_classes=10)
    assert provenance_of(model) == Provenance(
        source={"name": "cifar_resnet20", "source": "zoo", "kwargs": {"in_chans": 1, "num_classes": 10}},
        input_size=(1, 32, 32))
    assert declared_input_size(model) == (1, 32, 32) == declared_input_size(private_copy(model))
    assert _stamped(model) == []


def test_a_rewrite_records_its_recipe_in_the_graph_modules_meta():
    model = rs.create_model("cifar_resnet20")
    new, _ = rs.erase(model, proportion=0.5)
    record = new.meta[META_KEY]
    assert isinstance(new, fx.GraphModule) and record.source == provenance_of(model).source
    assert [r["rewrite"] for r in record.rewrites] == ["erase"] and record.leaves == {}
    assert provenance_of(model).rewrites == ()  # the caller's model is unchanged
    again, _ = rs.swap(new, to="gelu")
    assert [r["rewrite"] for r in recipe_of(again)["rewrites"]] == ["erase", "swap"]
    assert _stamped(new) == [] and _stamped(again) == []


def test_untraceable_leaves_travel_with_the_rewritten_model():
    class Opaque(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x  # data-dependent: becomes a leaf

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(2)])
            self.odd = Opaque()

        def forward(self, x):
            return self.odd(self.blocks(x))

    new, report = rs.erase(Net(), block_types=("Sequential",), block_names=("blocks.*",))
    assert list(report.leaves) == ["odd"] and list(provenance_of(new).leaves) == ["odd"]
    _, again = rs.erase(new, block_names=("blocks.*",), dry_run=True)
    assert list(again.leaves) == ["odd"]


def test_a_model_of_unknown_source_gets_a_recipe_that_cannot_be_saved():
    assert recipe_of(nn.ReLU()) == {"source": {"name": "ReLU", "kwargs": None}, "rewrites": []}
