"""CReLU (seed 002): placement, consumer shapes, grouped/depthwise layouts, function preservation, save/load."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torch.nn as nn
import torchvision

import relu_surgery as rs
from relu_surgery.cli import main
from relu_surgery.errors import SelectionError
from relu_surgery.surgery.layers import CReLU

from .roundtrip import check_reload_and_compile, sgd_step

from .test_blocks import SpellingNet


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so eval mode is not the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()


def test_crelu_layer_values_and_group_layout():
    x = torch.tensor([[1.0, -2.0, 3.0, -4.0]])
    assert CReLU()(x).tolist() == [[1, 0, 3, 0, 0, 2, 0, 4]]
    assert CReLU(groups=2)(x).tolist() == [[1, 0, 0, 2, 3, 0, 0, 4]]
    assert CReLU(groups=4)(x).tolist() == [[1, 0, 0, 2, 3, 0, 0, 4]]
    assert CReLU()(torch.randn(2, 3, 5, 5)).shape == (2, 6, 5, 5)


def test_placement_basic_block_and_bottleneck():
    with torch.device("meta"):
        r18, r50 = torchvision.models.resnet18(), torchvision.models.resnet50()
    _, basic = rs.crelu(r18, dry_run=True)
    names18 = [b.name for b in basic.blocks]
    assert [c.site for c in basic.changes] == [f"{n}.relu" for n in names18]  # after conv1 only
    assert basic.changes[0].after == "CReLU (64 -> 128 channels; widened: layer1.0.conv2 in 64->128)"
    assert basic.warnings == [] and basic.sites_after == {"relu": 9, "crelu": 8}
    _, bottleneck = rs.crelu(r50, dry_run=True)
    assert [c.site for c in bottleneck.changes] == [
        f"{b.name}.{r}" for b in bottleneck.blocks for r in ("relu", "relu_1")]  # after conv1 and conv2
    assert [c.after.split("widened: ")[1] for c in bottleneck.changes[:2]] == [
        "layer1.0.conv2 in 64->128)", "layer1.0.conv3 in 64->128)"]
    assert len(bottleneck.changes) == 32 and bottleneck.warnings == []


def test_sites_not_eligible_are_listed_with_the_reason():
    with torch.device("meta"):
        r18 = torchvision.models.resnet18()
    _, report = rs.crelu(r18, location="all", blocks="1,2", dry_run=True)
    assert [c.site for c in report.changes] == ["layer1.0.relu", "layer1.1.relu"]
    assert report.warnings == [
        "not eligible for CReLU: layer1.0.relu_1 (block 1): its output reaches an add (layer1.1.add) "
        "before any weight layer",
        "not eligible for CReLU: layer1.1.relu_1 (block 2): it feeds the projection shortcut "
        "layer2.0.downsample.0 (the identity path stays unchanged)",
    ]
    _, stem = rs.crelu(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4),
                                     nn.Conv2d(4, 4, 3), nn.ReLU()), location="all", dry_run=True)
    assert stem.changes == () and "its output reaches a norm layer (3) before any weight layer" in stem.warnings[0]


@pytest.mark.parametrize("name", ["tv:resnet50", "tv:resnext50_32x4d", "timm:resnet50", "timm:resnext50_32x4d"])
def test_preserve_init_computes_the_same_function(name):
    torch.manual_seed(0)
    source, arch = name.split(":")
    model = randomize_bn(torchvision.models.get_model(arch) if source == "tv" else timm.create_model(arch))
    x = torch.randn(2, 3, 32, 32)
    new, report = rs.crelu(model, example_input=x[:1])
    assert len(report.changes) == 32 and report.warnings == []
    act = "relu" if source == "tv" else "act1"
    grouped = "resnext" in arch
    conv2_in = 8 if grouped else 128  # resnext: 32 groups of 4 channels -> 8 inputs per group
    assert tuple(new.get_submodule("layer1.0.conv2").weight.shape) == (128 if grouped else 64, conv2_in, 3, 3)
    assert tuple(new.get_submodule("layer1.0.conv3").weight.shape) == (256, 256 if grouped else 128, 1, 1)
    first = new.get_submodule(f"layer1.0.{act}_crelu" if source == "tv" else "layer1.0.act1")
    assert isinstance(first, CReLU) and first.groups == (32 if grouped else 1)
    assert report.state_dict["added"] == report.state_dict["removed"] == []
    assert len(report.state_dict["reshaped"]) == 32
    growth = {"resnet50": (25_557_032, 41_904_168), "resnext50_32x4d": (25_028_904, 36_503_336)}[arch]
    assert (report.params_before, report.params_after) == growth
    assert report.macs_after > report.macs_before
    new.eval()
    with torch.no_grad():
        diff = (new(x) - model(x)).abs().max().item()
    assert diff <= 1e-4
    # the caller's model is untouched: its shared relu is still a ReLU, conv2 still 64/128 wide
    assert isinstance(model.get_submodule(f"layer1.0.{act}"), nn.ReLU)


class GroupedBlock(nn.Module):
    """conv -> BN -> ReLU -> maxpool -> {depthwise conv, grouped conv}: two consumers, groups 8 and 2."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.dw = nn.Conv2d(8, 16, 3, padding=1, groups=8)
        self.gc = nn.Conv2d(8, 4, 1, groups=2)

    def forward(self, x):
        y = self.pool(self.relu(self.bn(self.conv(x))))
        return torch.cat([self.dw(y), self.gc(y)], 1)


def test_grouped_and_depthwise_consumers_share_one_layout():
    torch.manual_seed(0)
    net = randomize_bn(nn.Sequential(GroupedBlock(), nn.Conv2d(20, 8, 1), GroupedBlock()))
    x = torch.randn(2, 8, 8, 8)
    new, report = rs.crelu(net, example_input=x[:1])
    assert [c.site for c in report.changes] == ["0.relu", "2.relu"]
    assert new.get_submodule("0.relu").groups == 8  # lcm(8, 2): each group sees its own +/- copies
    dw, gc = new.get_submodule("0.dw"), new.get_submodule("0.gc")
    assert (tuple(dw.weight.shape), dw.in_channels, dw.groups) == ((16, 2, 3, 3), 16, 8)
    assert (tuple(gc.weight.shape), gc.in_channels, gc.groups) == ((4, 8, 1, 1), 16, 2)
    # [W, 0] per group: positive copies carry the old weights, negative copies zeros
    torch.testing.assert_close(dw.weight[:, 0], net[0].dw.weight[:, 0], atol=0, rtol=0)
    assert dw.weight[:, 1].abs().sum() == 0
    torch.testing.assert_close(gc.weight[:, [0, 2, 4, 6]], net[0].gc.weight, atol=0, rtol=0)
    new.eval()
    torch.testing.assert_close(new(x), net(x), atol=1e-5, rtol=1e-5)
    rand, _ = rs.crelu(net, example_input=x[:1], init="random")
    assert rand.get_submodule("0.dw").weight.shape == (16, 2, 3, 3)
    assert not torch.allclose(rand.eval()(x), net(x))


def test_every_spelling_and_linear_consumers():
    torch.manual_seed(0)
    for spelling in ("F.relu", "Tensor.relu_", "nn.ReLU", "inplace", "shared"):
        model = SpellingNet(spelling).eval()
        new, report = rs.crelu(model)
        assert len(report.changes) == 3 and report.sites_after.get("crelu") == 3, spelling
        x = torch.randn(2, 3, 8, 8)
        torch.testing.assert_close(new.eval()(x), model(x), atol=1e-5, rtol=1e-5)
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    _, inner = rs.crelu(mlp, dry_run=True)  # MLP units have only "last" sites
    assert inner.changes == () and "has no relu site before its last activation" in inner.warnings[0]
    new, report = rs.crelu(mlp, location="all")
    assert [c.site for c in report.changes] == ["1", "3"]
    assert report.state_dict["reshaped"] == ["2.weight: (8, 8) -> (8, 16)", "4.weight: (2, 8) -> (2, 16)"]
    x = torch.randn(5, 4)
    torch.testing.assert_close(new(x), mlp(x), atol=1e-6, rtol=1e-6)


def test_crelu_model_trains_saves_reloads_and_compiles(tmp_path):
    torch.manual_seed(0)
    model = rs.create_model("cifar_resnet20", num_classes=10)
    new, report = rs.crelu(model, proportion=0.5, init="random")
    assert [c.site for c in report.changes] == [f"{b}.relu1" for b in
                                                ("layer1.0", "layer1.2", "layer2.1", "layer3.0", "layer3.2")]
    out = rs.save(new, tmp_path / "crelu20", report)
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["rewrites"] == [{"rewrite": "crelu", "proportion": 0.5, "location": "inner", "blocks": None,
                                   "stage": None, "random": False, "seed": 0, "activations": ["relu"],
                                   "init": "random"}]
    x = torch.randn(4, 3, 32, 32)
    check_reload_and_compile(new, out, x)
    w0 = new.get_submodule("layer1.0.conv2").weight.detach().clone()
    loss = sgd_step(new, x, torch.tensor([0, 1, 2, 3]))
    assert torch.isfinite(loss) and not torch.equal(w0, new.get_submodule("layer1.0.conv2").weight)


def test_bad_init_and_cli(capsys):
    with pytest.raises(SelectionError, match="init must be one of preserve, random"):
        rs.crelu(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), init="zeros")
    code = main(["crelu", "cifar_resnet20", "--json", "--dry-run", "--blocks", "1-2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert [c["site"] for c in data["changes"]] == ["layer1.0.relu1", "layer1.1.relu1"]
    assert data["changes"][0]["after"] == "CReLU (16 -> 32 channels; widened: layer1.0.conv2 in 16->32)"
    code = main(["crelu", "cifar_resnet20", "--init", "zeros"])
    assert code == 2 and "Invalid value for '--init'" in capsys.readouterr().err


@pytest.mark.parametrize("name, inner", [("preact_resnet110", ("relu_1",)), ("preact_resnet164", ("relu_1", "relu_2")),
                                         ("wrn_52_1", ("relu_1",))])
def test_preactivation_leading_relu_is_never_a_crelu_site(name, inner):
    with torch.device("meta"):
        model = rs.create_model(name)
    _, report = rs.crelu(model, dry_run=True)
    assert [c.site for c in report.changes] == [f"{b.name}.{r}" for b in report.blocks for r in inner]
    assert report.warnings == []  # the leading relu (before conv1, also feeding projections) is not a site
    _, chosen = rs.crelu(model, location="all", blocks="1-2", dry_run=True)
    assert [c.site for c in chosen.changes] == [f"layer1.{i}.{r}" for i in range(2) for r in inner]
    assert chosen.warnings == [
        f"not eligible for CReLU: layer1.{i}.relu (block {i + 1}): it leads a pre-activation block (before its "
        "first weight layer); seed 002 places CReLU after the first conv (basic block) or the first two convs "
        "(bottleneck)" for i in range(2)]


def test_timm_resnetv2_crelu_after_the_first_two_convs_only():
    with torch.device("meta"):
        model = timm.create_model("resnetv2_50")
    _, report = rs.crelu(model, dry_run=True)
    assert [c.site for c in report.changes] == [f"{b.name}.{n}.act" for b in report.blocks for n in ("norm2", "norm3")]
    assert len(report.changes) == 32 and report.warnings == []


def test_preactivation_crelu_preserves_the_function():
    from relu_surgery.models.zoo.preact_resnet import PreActBottleneck, PreActResNet
    torch.manual_seed(0)
    model = randomize_bn(PreActResNet(PreActBottleneck, (2, 1), (16, 32), (4, 8), stem_chs=4))
    x = torch.randn(2, 3, 16, 16)
    new, report = rs.crelu(model, example_input=x[:1])
    assert [c.site for c in report.changes] == [
        "layer1.0.relu_1", "layer1.0.relu_2", "layer1.1.relu_1", "layer1.1.relu_2", "layer2.0.relu_1", "layer2.0.relu_2"]
    assert tuple(new.get_submodule("layer1.0.conv1").weight.shape) == (4, 4, 1, 1)  # its input was not doubled
    torch.testing.assert_close(new.eval()(x), model(x), atol=1e-5, rtol=1e-5)
