"""Block and site discovery: exact expectations for named models and every spelling of ReLU."""

from __future__ import annotations

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import relu_surgery as rs
from relu_surgery.surgery.selection import uniform_indices


def meta(builder, *args, **kwargs):
    with torch.device("meta"):
        return builder(*args, **kwargs)


def test_timm_resnet152_blocks_and_last_sites():
    blocks = rs.find_blocks(meta(timm.create_model, "resnet152"))
    assert len(blocks) == 50
    assert [sum(b.stage == f"layer{i}" for b in blocks) for i in range(1, 5)] == [3, 8, 36, 3]
    assert {b.type for b in blocks} == {"Bottleneck"}
    assert [b.name for b in blocks[:4]] == ["layer1.0", "layer1.1", "layer1.2", "layer2.0"]
    assert [(s.name, s.location) for s in blocks[0].sites] == [
        ("layer1.0.act1", "first"), ("layer1.0.act2", "middle"), ("layer1.0.act3", "last")]
    assert all([s.name for s in b.last_sites] == [f"{b.name}.act3"] for b in blocks)


def test_torchvision_shared_relu_module_is_three_sites():
    blocks = rs.find_blocks(meta(torchvision.models.resnet152))
    assert len(blocks) == 50
    first = blocks[0]
    assert [(s.name, s.spelling, s.location) for s in first.sites] == [
        ("layer1.0.relu", "nn.ReLU", "first"),
        ("layer1.0.relu_1", "nn.ReLU", "middle"),
        ("layer1.0.relu_2", "nn.ReLU", "last"),
    ]


def test_basic_block_resnet18():
    blocks = rs.find_blocks(meta(torchvision.models.resnet18))
    assert [b.name for b in blocks] == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert all(b.type == "BasicBlock" and len(b.sites) == 2 for b in blocks)


def test_vgg_units_of_a_sequential():
    blocks = rs.find_blocks(meta(torchvision.models.vgg11))
    # 8 conv units in `features` + 2 Linear->ReLU->Dropout units in `classifier`
    assert len(blocks) == 10
    assert [b.name for b in blocks[:3]] == ["features.0", "features.3", "features.6"]
    assert blocks[0].type == "unit(Conv2d, ReLU)"
    assert blocks[-1].name == "classifier.3" and blocks[-1].stage == "classifier"
    assert all([s.location for s in b.sites] == ["last"] for b in blocks)


def test_mlp_units():
    layers = []
    for _ in range(3):
        layers += [nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1)]
    mlp = nn.Sequential(nn.Flatten(), *layers, nn.Linear(16, 10))
    blocks = rs.find_blocks(mlp)
    assert [(b.name, b.type) for b in blocks] == [
        ("1", "unit(Linear, BatchNorm1d, ReLU)"), ("5", "unit(Linear, BatchNorm1d, ReLU)"),
        ("9", "unit(Linear, BatchNorm1d, ReLU)")]
    assert [s.name for b in blocks for s in b.sites] == ["3", "7", "11"]


class SpellingBlock(nn.Module):
    """A residual block using one spelling of ReLU for its inner and post-addition activation."""

    def __init__(self, spelling: str, shared: nn.Module | None = None):
        super().__init__()
        self.spelling = spelling
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.act = shared if shared is not None else nn.ReLU(inplace=(spelling == "inplace"))

    def relu(self, x):
        s = self.spelling
        if s == "F.relu":
            return F.relu(x)
        if s == "torch.relu":
            return torch.relu(x)
        if s == "Tensor.relu":
            return x.relu()
        if s == "Tensor.relu_":
            return x.relu_()
        return self.act(x)  # nn.ReLU, inplace, shared

    def forward(self, x):
        out = self.relu(self.conv1(x))
        return self.relu(self.conv2(out) + x)


class SpellingNet(nn.Module):
    def __init__(self, spelling: str, n: int = 3):
        super().__init__()
        shared = nn.ReLU() if spelling == "shared" else None
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.blocks = nn.Sequential(*[SpellingBlock(spelling, shared) for _ in range(n)])
        self.head = nn.Linear(4, 5)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(x.mean((2, 3)))


EXPECTED_SPELLING = {
    "F.relu": ("F.relu", "blocks.0.relu"), "torch.relu": ("torch.relu", "blocks.0.relu"),
    "Tensor.relu": ("Tensor.relu", "blocks.0.relu"), "Tensor.relu_": ("Tensor.relu_", "blocks.0.relu_"),
    "nn.ReLU": ("nn.ReLU", "blocks.0.act"), "inplace": ("nn.ReLU", "blocks.0.act"),
}


def test_every_spelling_finds_the_same_blocks_and_sites():
    for spelling, (shown, first_name) in EXPECTED_SPELLING.items():
        blocks = rs.find_blocks(SpellingNet(spelling))
        assert [b.name for b in blocks] == ["blocks.0", "blocks.1", "blocks.2"], spelling
        sites = blocks[0].sites
        assert [s.location for s in sites] == ["first", "last"], spelling
        assert {s.spelling for s in sites} == {shown}, spelling
        assert sites[0].name == first_name, spelling


def test_shared_module_across_blocks():
    blocks = rs.find_blocks(SpellingNet("shared"))
    assert len(blocks) == 3
    # one nn.ReLU registered once (blocks.0.act), called twice in every block
    assert [s.name for s in blocks[2].sites] == ["blocks.0.act_4", "blocks.0.act_5"]
    assert [s.location for s in blocks[2].sites] == ["first", "last"]


def test_user_override_by_type_and_name():
    net = SpellingNet("nn.ReLU")
    by_type = rs.find_blocks(net, block_types=["SpellingBlock"])
    by_name = rs.find_blocks(net, block_names=["blocks.[02]"])
    by_pred = rs.find_blocks(net, predicate=lambda name, m: name == "blocks.1")
    assert [b.name for b in by_type] == ["blocks.0", "blocks.1", "blocks.2"]
    assert [b.name for b in by_name] == ["blocks.0", "blocks.2"]
    assert [(b.name, b.rule) for b in by_pred] == [("blocks.1", "user")]


def test_inception_branches_each_have_a_last_activation():
    blocks = rs.find_blocks(meta(torchvision.models.inception_v3, init_weights=False, aux_logits=False))
    assert [b.name for b in blocks] == ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
                                        "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]
    assert [s.name for s in blocks[0].last_sites] == [
        "Mixed_5b.branch1x1.relu", "Mixed_5b.branch5x5_2.relu", "Mixed_5b.branch3x3dbl_3.relu",
        "Mixed_5b.branch_pool.relu"]


def test_linear_output_blocks_have_no_last_activation():
    blocks = rs.find_blocks(meta(torchvision.models.mobilenet_v2))
    assert len(blocks) == 17 and {b.type for b in blocks} == {"InvertedResidual"}
    assert all(not b.last_sites for b in blocks)


def test_composite_norm_act_sites():
    from timm.layers import ConvNormAct

    net = nn.Sequential(ConvNormAct(3, 8, 3), ConvNormAct(8, 8, 3), nn.AdaptiveAvgPool2d(1))
    blocks = rs.find_blocks(net)
    assert [(b.name, b.rule) for b in blocks] == [("0", "repeated class"), ("1", "repeated class")]
    assert [(s.name, s.spelling, s.location) for s in blocks[0].sites] == [
        ("0.bn.act", "BatchNormAct2d.act (ReLU)", "last")]


def test_uniform_selection_formula():
    assert uniform_indices(50, 0.5) == list(range(0, 50, 2))
    assert uniform_indices(9, 0.25) == [0, 4, 8]
    assert uniform_indices(8, 0.75) == [0, 1, 2, 4, 5, 6]
    assert uniform_indices(5, 1.0) == [0, 1, 2, 3, 4]
    assert uniform_indices(10, 0.3) == [0, 3, 6]  # floor(j / 0.3): 0, 3.33, 6.67, 10


def test_sites_record_channels_with_an_example_input():
    blocks = rs.find_blocks(torchvision.models.resnet18(), torch.zeros(1, 3, 64, 64))
    assert [s.channels for s in blocks[0].sites] == [64, 64]
    assert [s.channels for s in blocks[-1].sites] == [512, 512]


def test_zoo_block_counts_are_exact():
    expected = {
        "cifar_resnet110": (54, "BasicBlock", 54), "cifar_resnet164": (54, "Bottleneck", 54),
        "cifar_resnet1001": (333, "Bottleneck", 333), "vgg_style31": (30, "VGGModule", 30),
        "residual_style31": (30, "ResidualModule", 30), "mlp12": (11, "MLPUnit", 11),
        "inception_v2_cifar": (30, "InceptionModule", 120), "resnext29_8x64d": (9, "Bottleneck", 9),
    }
    for name, (n_blocks, block_type, n_last) in expected.items():
        blocks = rs.find_blocks(meta(rs.create_model, name))
        assert len(blocks) == n_blocks, name
        assert {b.type for b in blocks} == {block_type}, name
        assert sum(len(b.last_sites) for b in blocks) == n_last, name
