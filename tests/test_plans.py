"""Typed plans: every rewrite plans its edits as data, refuses while planning, and applying reads no display text."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
import torch.nn as nn
import torchvision
from timm.layers import BatchNormAct2d, ConvNormAct

import relu_surgery as rs
from relu_surgery.cli import main
from relu_surgery.errors import InternalError, SelectionError
from relu_surgery.graph.analysis import analyze
from relu_surgery.graph.provenance import recipe_of
from relu_surgery.surgery.actions import InsertModule, RemoveNode, ReplaceCall, SetModule, execute
from relu_surgery.surgery.convert.api import convert_step
from relu_surgery.surgery.crelu import crelu_step
from relu_surgery.surgery.erase import erase_step
from relu_surgery.surgery.normprop import normprop_step
from relu_surgery.surgery.swap import swap_step


class Twice(nn.Module):
    """One norm+act layer called by two units: its activation cannot change at one call only."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(8, 8, 3, padding=1) for _ in range(2)])
        self.bn = BatchNormAct2d(8)

    def forward(self, x):
        for conv in self.convs:
            x = self.bn(conv(x))
        return x


def test_erase_plan_is_a_list_of_node_removals():
    analysis = analyze(rs.create_model("cifar_resnet20"))
    plan = erase_step(proportion=0.5).plan(analysis)
    assert plan.actions == tuple(RemoveNode(f"layer{s}_{i}_relu2") for s, i in
                                 [(1, 0), (1, 2), (2, 1), (3, 0), (3, 2)])
    assert plan.nodes_removed == ("layer1.0.relu2", "layer1.2.relu2", "layer2.1.relu2", "layer3.0.relu2",
                                  "layer3.2.relu2")


def test_composite_erase_plans_a_new_layer_without_touching_the_callers():
    net = nn.Sequential(ConvNormAct(3, 8, 3), ConvNormAct(8, 8, 3), nn.AdaptiveAvgPool2d(1))
    plan = erase_step().plan(analyze(net, torch.randn(1, 3, 16, 16)))
    assert [(type(a).__name__, a.path) for a in plan.actions] == [("SetModule", "0.bn"), ("SetModule", "1.bn")]
    assert isinstance(plan.actions[0].module.act, nn.Identity) and isinstance(net[0].bn.act, nn.ReLU)
    assert plan.actions[0].module.weight is not net[0].bn.weight  # planned on the private copy
    assert plan.nodes_removed == ()


def test_applying_reads_the_actions_not_the_display_text():
    model = torchvision.models.resnet18()
    expected, _ = rs.erase(model, proportion=0.5, check=False)
    analysis = analyze(model)
    plan = erase_step(proportion=0.5).plan(analysis)
    garbled = tuple(dataclasses.replace(c, after="removed", before="?") for c in plan.changes)
    execute(analysis.graph_module, dataclasses.replace(plan, changes=garbled).actions)
    analysis.graph_module.recompile()
    assert analysis.graph_module.code == expected.code


def test_swap_crelu_normprop_and_convert_plan_their_new_modules():
    analysis = analyze(torchvision.models.resnet18(), torch.randn(1, 3, 32, 32))
    swap = swap_step("prelu", location="last", blocks="1").plan(analysis)
    assert [(type(a).__name__, a.node, a.path, a.label) for a in swap.actions] == [
        ("ReplaceCall", "layer1_0_relu_1", "layer1.0.relu_1_prelu", "layer1.0.relu_1 (layer1.0.relu_1_prelu)")]
    assert isinstance(swap.actions[0].module, nn.PReLU) and swap.actions[0].module.num_parameters == 64
    crelu = crelu_step(blocks="1").plan(analysis)
    assert [(type(a).__name__, a.path) for a in crelu.actions] == [
        ("ReplaceCall", "layer1.0.relu_crelu"), ("SetModule", "layer1.0.conv2")]
    assert crelu.actions[1].module.in_channels == 128
    normprop = normprop_step("normprop").plan(analysis)
    assert [type(a).__name__ for a in normprop.actions[:3]] == ["SetModule", "RemoveNode", "InsertModule"]
    assert normprop.actions[2] == InsertModule("relu", "relu_normprop", normprop.actions[2].module, "relu_normprop")
    convert = convert_step("pre-activation").plan(analysis)
    assert {type(a).__name__ for a in convert.actions} == {
        "InsertModule", "RemoveNode", "Redirect", "ReplaceInput", "MoveAfter", "Rehome"}
    assert isinstance(swap.actions[0], ReplaceCall) and isinstance(crelu.actions[1], SetModule)


def test_a_refusal_comes_while_planning_so_a_dry_run_shows_it(capsys):
    message = "bn is a norm+activation layer called 2 times; its activation cannot be erased at one call only"
    with pytest.raises(SelectionError, match=re.escape(message)):
        rs.erase(Twice(), example_input=torch.randn(1, 8, 8, 8), dry_run=True)
    code = main(["erase", "tests.test_plans:Twice", "--dry-run", "--input-size", "8,8,8"])
    assert (code, capsys.readouterr().err) == (2, f"error: {message}\n")
    with pytest.raises(SelectionError, match="its activation cannot be changed at one call only"):
        rs.swap(Twice(), to="gelu", example_input=torch.randn(1, 8, 8, 8), dry_run=True)


def test_a_plan_that_does_not_fit_its_graph_is_an_internal_error():
    gm = torch.fx.symbolic_trace(nn.Sequential(nn.ReLU()))
    with pytest.raises(InternalError, match="the plan names node 'relu_9', which the graph"):
        execute(gm, [RemoveNode("relu_9")])
    assert not issubclass(InternalError, rs.SurgeryError)


def test_settings_are_built_once_for_the_report_and_the_recipe():
    model = rs.create_model("cifar_resnet20")
    new, report = rs.erase(model, proportion=0.5, block_names=("layer1.*",))
    recorded = recipe_of(new)["rewrites"][0]
    assert report.steps[0].settings == {k: v for k, v in recorded.items() if k != "rewrite"}
    assert report.steps[0].settings["discovery"] == {"block_types": [], "block_names": ["layer1.*"]}
    _, converted = rs.convert(model, "pre-activation", block_types=("BasicBlock",), dry_run=True)
    assert converted.steps[0].settings == {"to": "pre-activation",
                                           "discovery": {"block_types": ["BasicBlock"], "block_names": []}}
