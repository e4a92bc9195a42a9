"""Right blocks, not just some blocks: exact block lists where nested merges used to win (issue 14)."""

from __future__ import annotations

import warnings

import pytest
import torch

import relu_surgery as rs
from tests import dataflow_models as user


def _meta_blocks(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta"):
            model = rs.create_model(name)
    return rs.find_blocks(model)


def _staged(prefix, depths, inner=""):
    return [f"{prefix}{s}{inner}.{i}" for s, d in enumerate(depths) for i in range(d)]


RESNET18 = [f"layer{s}.{i}" for s in range(1, 5) for i in range(2)]
BYOB26 = _staged("stages.", [2, 2, 2, 2])
GHOST = ["blocks.0.0", "blocks.1.0", "blocks.2.0", "blocks.3.0", "blocks.4.0", "blocks.5.0",
         *[f"blocks.6.{i}" for i in range(5)], "blocks.7.0", *[f"blocks.8.{i}" for i in range(4)]]

# (model, block names, {name: type} for the named ones, last sites)
EXACT = [
    ("timm:skresnet18", RESNET18, {n: "SelectiveKernelBasic" for n in RESNET18}, [f"{n}.act" for n in RESNET18]),
    ("timm:gcresnet50t", _staged("stages.", [3, 4, 6, 3]), {"stages.0.0": "BottleneckBlock"}, None),
    ("timm:ghostnet_100", GHOST, {n: "GhostBottleneck" for n in GHOST}, []),
    ("timm:botnet26t_256", BYOB26, {"stages.2.1": "SelfAttnBlock", "stages.3.0": "SelfAttnBlock",
                                    "stages.3.1": "SelfAttnBlock", "stages.2.0": "BottleneckBlock"}, None),
    ("timm:halonet26t", BYOB26, {"stages.2.1": "SelfAttnBlock", "stages.1.1": "BottleneckBlock"}, None),
    ("timm:lambda_resnet26t", BYOB26, {"stages.3.0": "SelfAttnBlock", "stages.0.0": "BottleneckBlock"}, None),
    ("timm:coat_tiny", [*[f"serial_blocks{s}.{i}" for s in range(1, 5) for i in range(2)],
                        *[f"parallel_blocks.{i}" for i in range(6)]],
     {"serial_blocks1.0": "SerialBlock", "parallel_blocks.0": "ParallelBlock"}, []),
    ("timm:davit_base", [f"stages.{s}.blocks.{i}.{j}" for s, d in enumerate([1, 1, 9, 1]) for i in range(d)
                         for j in range(2)], {"stages.0.blocks.0.0": "SpatialBlock",
                                              "stages.0.blocks.0.1": "ChannelBlock"}, []),
    ("timm:csatv2", [*[f"stages.0.{i}" for i in range(2)], *[f"stages.1.{i}" for i in range(1, 3)],
                     *[f"stages.2.{i}" for i in range(1, 9)], *[f"stages.3.{i}" for i in range(1, 7)]],
     {"stages.0.0": "Block"}, []),
    ("timm:efficientvim_m1", ["stages.0.blocks.0", "stages.0.blocks.1", "stages.0.downsample",
                              "stages.1.blocks.0", "stages.1.blocks.1", "stages.1.downsample",
                              "stages.2.blocks.0", "stages.2.blocks.1"],
     {"stages.0.blocks.0": "EfficientViMBlock", "stages.0.downsample": "PatchMerging"}, []),
    ("timm:crossvit_9_240", [f"blocks.{s}.blocks.{b}.{i}" for s in range(3) for b, d in enumerate([1, 3])
                             for i in range(d)], {"blocks.0.blocks.0.0": "Block"}, []),
    ("timm:repvit_m1", ["stages.0.blocks.0", "stages.0.blocks.1",
                        "stages.1.downsample", "stages.1.blocks.0", "stages.1.blocks.1", "stages.2.downsample",
                        *[f"stages.2.blocks.{i}" for i in range(14)], "stages.3.downsample",
                        "stages.3.blocks.0", "stages.3.blocks.1"],
     {"stages.0.blocks.0": "RepViTBlock", "stages.1.downsample": "RepVitDownsample"}, []),
]


@pytest.mark.parametrize("name,names,types,last", EXACT, ids=[e[0] for e in EXACT])
def test_the_real_block_wins_over_merges_nested_inside_it(name, names, types, last):
    blocks = _meta_blocks(name)
    assert [b.name for b in blocks] == names
    assert {b.name: b.type for b in blocks if b.name in types} == types
    if last is not None:
        assert [s.name for b in blocks for s in b.last_sites] == last


def test_efficientformerv2_head_average_is_no_block():
    blocks = _meta_blocks("timm:efficientformerv2_s0")
    assert len(blocks) == 17 and all(b.name.startswith("stages.") for b in blocks)


def test_csp_stage_wrapper_yields_its_inner_blocks():
    blocks = _meta_blocks("timm:cspresnet50")
    assert [b.name for b in blocks] == [f"stages.{s}.blocks.{i}" for s, d in enumerate([3, 3, 5, 2]) for i in range(d)]


X = torch.randn(1, 3, 16, 16)


def test_nested_attention_merge_belongs_to_its_residual_block():
    blocks = rs.find_blocks(user.AttnNet(), X)
    assert [(b.name, b.type, b.rule) for b in blocks] == [("stage.0", "AttnBlock", "residual"),
                                                          ("stage.1", "AttnBlock", "residual")]
    assert [[(s.name, s.location) for s in b.sites] for b in blocks][0] == [
        ("stage.0.relu", "first"), ("stage.0.attn.sigmoid", "middle"), ("stage.0.relu_1", "last")]
    _, report = rs.erase(user.AttnNet(), proportion=1.0, example_input=X)
    assert [c.site for c in report.changes] == ["stage.0.relu_1", "stage.1.relu_1"]


def test_an_untraceable_leaf_sits_inside_its_block():
    blocks = rs.find_blocks(user.Shuffle(), X)
    assert [(b.name, b.type) for b in blocks] == [(f"layers.{i}", "BasicBlock") for i in range(3)]
    assert blocks[0].rule == "holds opaque leaf layers.0.split"
    assert [(s.name, s.location) for s in blocks[0].sites] == [("layers.0.relu", "first"), ("layers.0.relu_1", "last")]
    _, report = rs.erase(user.Shuffle(), proportion=1.0, example_input=X)
    assert [c.site for c in report.changes] == [f"layers.{i}.relu_1" for i in range(3)]


def test_residual_sums_in_the_top_level_forward_are_virtual_blocks():
    blocks = rs.find_blocks(user.Loop(), X)
    assert [(b.name, b.rule, [s.name for s in b.last_sites]) for b in blocks] == [
        ("add", "virtual residual", ["relu_1"]), ("add_1", "virtual residual", ["relu_2"]),
        ("add_2", "virtual residual", ["relu_3"])]
    assert blocks[0].type == "residual(Conv2d, BatchNorm2d, add, relu_1)"
    new, report = rs.erase(user.Loop(), proportion=1.0, example_input=X)
    assert [c.site for c in report.changes] == ["relu_1", "relu_2", "relu_3"]  # the stem's relu stays
    assert sum(isinstance(m, torch.nn.ReLU) for m in new.modules()) + str(new.code).count("relu(") == 1


def test_last_must_hold_on_every_path_preact_shortcut():
    blocks = rs.find_blocks(rs.create_model("preact_resnet110"))
    first = blocks[0]
    assert first.form == "pre-activation" and first.last_sites == ()
    assert [(s.name, s.location) for s in first.sites] == [("layer1.0.relu", "first"), ("layer1.0.relu_1", "middle")]
    assert {b.form for b in blocks} == {"pre-activation"}
