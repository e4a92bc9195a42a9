"""Block discovery across timm and torchvision families: exact counts, plus real rewrites of small models."""

from __future__ import annotations

import warnings

import pytest
import torch

import relu_surgery as rs

# (model, blocks, block types, last sites) — structure only, built on the meta device.
FAMILIES = [
    ("timm:resnet18", 8, ["BasicBlock"], 8),
    ("timm:resnet50", 16, ["Bottleneck"], 16),
    ("timm:resnet50d", 16, ["Bottleneck"], 16),
    ("timm:seresnet50", 16, ["Bottleneck"], 16),
    ("timm:resnext50_32x4d", 16, ["Bottleneck"], 16),
    ("timm:wide_resnet50_2", 16, ["Bottleneck"], 16),
    ("timm:res2net50_26w_4s", 16, ["Bottle2neck"], 16),
    ("timm:regnetx_002", 13, ["Bottleneck"], 13),
    ("timm:regnety_002", 13, ["Bottleneck"], 13),
    ("timm:dla34", 12, ["DlaBasic"], 12),
    ("timm:dpn68", 22, ["DualPathBlock"], 0),
    ("timm:inception_v3", 11, ["InceptionA", "InceptionB", "InceptionC", "InceptionD", "InceptionE"], 44),
    ("timm:vgg16", 13, ["unit(Conv2d, ReLU)"], 13),
    ("timm:vgg16_bn", 13, ["unit(Conv2d, BatchNorm2d, ReLU)"], 13),
    ("timm:densenet121", 58, ["DenseLayer"], 0),
    ("timm:mobilenetv2_100", 17, ["DepthwiseSeparableConv", "InvertedResidual"], 0),
    ("timm:efficientnet_b0", 16, ["DepthwiseSeparableConv", "InvertedResidual"], 0),
    ("timm:convnext_tiny", 18, ["ConvNeXtBlock"], 0),
    ("timm:vit_tiny_patch16_224", 12, ["Block"], 0),
    ("timm:xception41", 13, ["XceptionModule"], 1),
    ("timm:cspresnet50", 13, ["BottleneckBlock"], 13),
    ("timm:cspdarknet53", 23, ["DarkBlock"], 23),
    ("timm:hrnet_w18_small", 23, ["BasicBlock", "Bottleneck"], 23),
    ("timm:nasnetalarge", 22, ["CellStem0", "CellStem1", "FirstCell", "NormalCell", "ReductionCell0",
                               "ReductionCell1"], 0),
    ("timm:pnasnet5large", 14, ["Cell", "CellStem0"], 0),
    ("timm:resnetv2_50", 16, ["PreActBottleneck"], 0),
    ("timm:nf_resnet50", 16, ["NormFreeBlock"], 0),
    ("tv:resnet18", 8, ["BasicBlock"], 8),
    ("tv:resnet50", 16, ["Bottleneck"], 16),
    ("tv:resnext50_32x4d", 16, ["Bottleneck"], 16),
    ("tv:wide_resnet50_2", 16, ["Bottleneck"], 16),
    ("tv:inception_v3", 11, ["InceptionA", "InceptionB", "InceptionC", "InceptionD", "InceptionE"], 44),
    ("tv:googlenet", 9, ["Inception"], 36),
    ("tv:vgg11", 10, ["unit(Conv2d, ReLU)", "unit(Linear, ReLU)"], 10),
    ("tv:vgg11_bn", 10, ["unit(Conv2d, BatchNorm2d, ReLU)", "unit(Linear, ReLU)"], 10),
    ("tv:densenet121", 58, ["_DenseLayer"], 0),
    ("tv:mobilenet_v2", 17, ["InvertedResidual"], 0),
    ("tv:mobilenet_v3_small", 11, ["InvertedResidual"], 0),
    ("tv:efficientnet_b0", 16, ["MBConv"], 0),
    ("tv:convnext_tiny", 18, ["CNBlock"], 0),
    ("tv:vit_b_16", 12, ["EncoderBlock"], 0),
    ("tv:swin_t", 12, ["SwinTransformerBlock"], 0),
    ("tv:squeezenet1_0", 8, ["Fire"], 16),
    ("tv:shufflenet_v2_x0_5", 16, ["InvertedResidual"], 19),
    ("tv:mnasnet0_5", 16, ["_InvertedResidual"], 0),
    ("tv:alexnet", 7, ["unit(Conv2d, ReLU)", "unit(Linear, ReLU)"], 7),
]


@pytest.mark.parametrize("name,n_blocks,types,n_last", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_family_structure(name, n_blocks, types, n_last):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta"):
            model = rs.create_model(name)
    blocks = rs.find_blocks(model)
    assert len(blocks) == n_blocks
    assert sorted({b.type for b in blocks}) == types
    assert sum(len(b.last_sites) for b in blocks) == n_last
    assert [b.index for b in blocks] == list(range(1, n_blocks + 1))


def test_forms_are_named():
    with torch.device("meta"):
        forms = {n: {b.form for b in rs.find_blocks(rs.create_model(n))} for n in
                 ("tv:resnet18", "tv:densenet121", "tv:mobilenet_v2", "timm:resnetv2_50", "timm:nf_resnet50")}
    assert forms == {"tv:resnet18": {"after-activation"}, "tv:densenet121": {"pre-activation"},
                     "tv:mobilenet_v2": {"linear-output"}, "timm:resnetv2_50": {"pre-activation"},
                     "timm:nf_resnet50": {"opaque"}}


# Real rewrites on small inputs: (model, input side, erased sites at proportion 1.0, any activation kind)
REAL = [
    ("tv:resnet18", 64, 8), ("timm:resnet18", 64, 8), ("tv:squeezenet1_0", 64, 16),
    ("tv:shufflenet_v2_x0_5", 64, 19), ("timm:regnetx_002", 64, 13), ("tv:googlenet", 64, 36),
    ("tv:alexnet", 64, 7), ("tv:mobilenet_v3_small", 64, 0), ("timm:efficientnet_b0", 64, 0),
    ("tv:densenet121", 64, 0), ("timm:dla34", 64, 12), ("timm:cspresnet50", 64, 13),
]


@pytest.mark.parametrize("name,side,n_changes", REAL, ids=[r[0] for r in REAL])
def test_family_erase_runs(name, side, n_changes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = rs.create_model(name)
    new, report = rs.erase(model, proportion=1.0, activations="all", example_input=torch.randn(1, 3, side, side),
                           check="full")  # real passes: the rewritten model runs and its output is finite
    assert len(report.changes) == n_changes
    assert report.forward_check["finite"] and report.state_dict["unchanged"]
    assert report.target_sites(after=True) == report.target_sites() - n_changes
    if n_changes == 0:
        assert len(report.warnings) == len(report.blocks)
        assert "has no last activation" in report.warnings[0]
