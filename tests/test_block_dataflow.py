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
    # a container of one residual plus its pointwise layers; a wrapper only calling its residual
    ("timm:convmixer_768_32", [f"blocks.{i}" for i in range(32)], {"blocks.0": "Sequential"}, []),
    ("timm:iformer_t", [*_staged("stages.", [2, 2], ".blocks"), *[f"stages.2.blocks.{i}" for i in range(16)],
                        *[f"stages.3.blocks.{i}" for i in range(6)]],
     {"stages.0.blocks.0": "ConvBlock", "stages.2.blocks.6": "RepCPE", "stages.3.blocks.4": "SHMABlock",
      "stages.3.blocks.5": "FFN"}, []),
    # a residual block owns its Inception* token mixer
    ("timm:inception_next_atto", _staged("stages.", [2, 2, 6, 2], ".blocks"), {"stages.0.blocks.0": "MetaNeXtBlock"},
     []),
    # a repeated class wins over the squeeze-excitation inside some of its modules
    ("timm:lcnet_050", ["blocks.0.0", *_staged("blocks.", [0, 2, 2, 2, 4, 2])[0:]],
     {"blocks.5.0": "DepthwiseSeparableConv"}, ["blocks.0.0.bn2.act", *[f"{n}.bn2.act" for n in _staged(
         "blocks.", [0, 2, 2, 2, 4, 2])]]),
    ("timm:test_efficientnet", [f"blocks.{i}.0" for i in range(5)],
     {"blocks.0.0": "ConvBnAct", "blocks.1.0": "EdgeResidual", "blocks.3.0": "InvertedResidual"},
     ["blocks.0.0.bn1.act"]),
    # VoVNet's OSA block around its conv_mid's cat; its last ReLU is before the eSE gate
    ("timm:vovnet39a", ["stages.0.blocks.0", "stages.1.blocks.0", *_staged("stages.", [0, 0, 2, 2], ".blocks")],
     {"stages.0.blocks.0": "OsaBlock"}, None),
    ("timm:ese_vovnet19b_dw", [f"stages.{s}.blocks.0" for s in range(4)], {"stages.0.blocks.0": "OsaBlock"},
     [f"stages.{s}.blocks.0.conv_concat.bn.act" for s in range(4)]),
    # stage siblings first, then every module of a block's class (the downsampling ResidualBlocks)
    ("timm:lowformer_b0", ["stages.0.0", "stages.1.0", *_staged("stages.", [0, 0, 4, 5])],
     {"stages.2.0": "ResidualBlock", "stages.2.1": "LowFormerBlock"}, None),
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


def test_a_module_that_only_calls_its_residual_is_the_block():
    blocks = rs.find_blocks(user.WrapNet(), X)
    assert [(b.name, b.type, b.rule) for b in blocks] == [
        ("blocks.0", "Wrapped", "residual (wrapped in Wrapped)"), ("blocks.1", "Wrapped", "residual (wrapped in Wrapped)")]


def test_a_container_of_one_residual_and_its_pointwise_layers_is_the_block():
    blocks = rs.find_blocks(user.mixer_net(), X)
    assert [(b.name, b.type) for b in blocks] == [(f"3.{i}", "Sequential") for i in range(3)]
    assert [[(s.name, s.location) for s in b.sites] for b in blocks][0] == [("3.0.0.fn.1", "first"), ("3.0.2", "middle")]
    plain = nn_sequential_stage()
    assert [b.name for b in rs.find_blocks(plain, X)] == ["1.0", "1.1"]  # a stage of two blocks stays a stage


def nn_sequential_stage():
    ch = 8
    return torch.nn.Sequential(torch.nn.Conv2d(3, ch, 3, padding=1), torch.nn.Sequential(
        user.Residual(torch.nn.Sequential(torch.nn.Conv2d(ch, ch, 3, padding=1), torch.nn.ReLU())),
        user.Residual(torch.nn.Sequential(torch.nn.Conv2d(ch, ch, 3, padding=1), torch.nn.ReLU())),
        torch.nn.Conv2d(ch, ch, 1)))


def test_a_repeated_class_holding_one_squeeze_excitation_wins_over_it():
    blocks = rs.find_blocks(user.SepNet(), X)
    assert [(b.name, b.type) for b in blocks] == [(f"blocks.{s}.{i}", "SepConv") for s in range(2) for i in range(2)]
    assert [s.name for s in blocks[2].last_sites] == ["blocks.1.0.relu_1"]


def test_a_relu_scaled_by_a_sigmoid_gate_is_last():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), user.GatedOut(8), user.GatedOut(8))
    blocks = rs.find_blocks(net, X)
    assert [(b.name, b.form) for b in blocks] == [("1", "after-activation"), ("2", "after-activation")]
    assert [(s.name, s.location) for s in blocks[0].sites] == [("1.relu", "last"), ("1.ese.sigmoid", "first")]
    _, report = rs.erase(net, proportion=1.0, example_input=X)
    assert [c.site for c in report.changes] == ["1.relu", "2.relu"]


def test_a_residual_block_owns_its_inception_token_mixer():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), user.MetaNeXt(8), user.MetaNeXt(8))
    assert [(b.name, b.type, b.rule) for b in rs.find_blocks(net, X)] == [
        ("1", "MetaNeXt", "residual"), ("2", "MetaNeXt", "residual")]


class DenseOnTensors(torch.nn.Module):
    """torchvision's _DenseLayer called on a tensor: under tracing its ``isinstance(x, Tensor)`` is False."""

    def __init__(self):
        super().__init__()
        from torchvision.models.densenet import _DenseLayer

        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.a, self.b = _DenseLayer(8, 4, 2, 0.0), _DenseLayer(8, 4, 2, 0.0)

    def forward(self, x):
        x = self.stem(x)
        return torch.cat([self.a(x), self.b(x)], 1)


def test_a_layer_whose_trace_takes_the_list_branch_becomes_a_leaf():
    from relu_surgery.graph.tracing import trace

    traced = trace(DenseOnTensors())
    assert sorted(traced.leaves) == ["a", "b"] and "cat() of a single tensor" in traced.leaves["a"]
    assert [(b.name, b.form) for b in rs.find_blocks(DenseOnTensors(), X)] == [("a", "opaque"), ("b", "opaque")]
    model = DenseOnTensors().eval()
    new, _ = rs.erase(model, proportion=1.0, example_input=X)
    assert torch.allclose(new(X), model(X))  # the traced model runs and computes the same


def test_a_table_built_from_the_input_shape_is_no_data_merge():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), user.RopeEncoder())
    blocks = rs.find_blocks(net, X)
    assert [(b.name, b.type) for b in blocks] == [("1.blocks.0", "Residual"), ("1.blocks.1", "Residual")]


def test_untraceable_blocks_side_by_side_in_a_stage_are_each_a_block():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), user.UntraceableStage(8), user.UntraceableStage(8))
    blocks = rs.find_blocks(net, X)
    assert [(b.name, b.type, b.form) for b in blocks] == [
        (f"{s}.blocks.{i}", "Untraceable", "opaque") for s in (1, 2) for i in range(2)]
    shuffle = rs.find_blocks(user.Shuffle(), X)  # one untraceable split per block: the block holds it
    assert [b.name for b in shuffle] == ["layers.0", "layers.1", "layers.2"]


def test_the_children_a_dense_stage_concatenates_are_its_blocks():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1),
                              user.DenseStage(user.DenseUnit(8, 4), user.DenseUnit(12, 4), user.DenseUnit(16, 4)))
    blocks = rs.find_blocks(net, X)
    assert [(b.name, b.type, b.rule) for b in blocks] == [(f"1.{i}", "DenseUnit", "dense unit of 1") for i in range(3)]


def test_a_shortcut_add_names_the_rule_over_an_earlier_concat():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), user.ParallelAttn(8), user.ParallelAttn(8))
    assert [(b.name, b.rule) for b in rs.find_blocks(net, X)] == [("1", "residual"), ("2", "residual")]


EXACT_MORE = [
    ("timm:tiny_vit_5m_224", [*_staged("stages.", [2, 2, 6, 2], ".blocks")],
     {"stages.0.blocks.0": "MBConv", "stages.1.blocks.0": "TinyVitBlock"}),
    ("timm:rdnet_tiny", None, {"dense_stages.0.0.dense_block0": "DenseBlock"}),
    ("timm:deepseek_vit_412m", [f"encoder.blocks.{i}" for i in range(32)], {"encoder.blocks.0": "DeepseekVitBlock"}),
]


@pytest.mark.parametrize("name,names,types", EXACT_MORE, ids=[e[0] for e in EXACT_MORE])
def test_stage_blocks_not_the_stage_or_encoder_around_them(name, names, types):
    blocks = _meta_blocks(name)
    if names is not None:
        assert [b.name for b in blocks] == names
    assert {b.name: b.type for b in blocks if b.name in types} == types
    assert all(b.type not in ("TinyVitStage", "DenseStage", "DeepseekVitEncoder") for b in blocks)
