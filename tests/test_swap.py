"""Activation swaps: PReLU-all / PReLU-sum (seed 000 Table 1) and any named activation."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import relu_surgery as rs
from relu_surgery.cli import main
from relu_surgery.errors import SelectionError

from .roundtrip import check_reload_and_compile, sgd_step

from .test_blocks import SpellingNet


def test_prelu_all_on_the_zoo_resnet():
    torch.manual_seed(0)
    model = rs.create_model("cifar_resnet20", num_classes=10).eval()
    new, report = rs.swap(model, to="prelu", location="all")
    assert len(report.changes) == 18 and report.sites_after == {"relu": 1, "prelu": 18}
    assert report.warnings == [
        "1 relu site(s) outside every block left unchanged (stem.relu); seed 000's PReLU-all swaps them too: "
        "pass outside_blocks=True / --outside-blocks"]
    new, report = rs.swap(model, to="prelu", location="all", outside_blocks=True)
    assert report.sites_after == {"prelu": 19} and report.changes[-1].site == "stem.relu"
    # each ReLU module was called once: the PReLU takes its place and name, channel-wise, init 0.25
    prelu = new.get_submodule("layer2.0.relu1")
    assert isinstance(prelu, nn.PReLU) and prelu.num_parameters == 32
    assert torch.equal(prelu.weight, torch.full((32,), 0.25))
    assert report.changes[0].after == "nn.PReLU(16, init=0.25)"
    assert report.params_after - report.params_before == 16 + 2 * (3 * 16 + 3 * 32 + 3 * 64)
    assert "layer3.2.relu2.weight" in report.state_dict["added"] and report.state_dict["removed"] == []
    # with slope 0 a PReLU is a ReLU: the rewritten graph then computes the original function
    with torch.no_grad():
        for m in new.modules():
            if isinstance(m, nn.PReLU):
                m.weight.zero_()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(new.eval()(x), model(x), atol=1e-6, rtol=1e-6)


def test_prelu_sum_swaps_only_the_post_addition_relu_of_a_shared_module():
    model = torchvision.models.resnet18().eval()
    new, report = rs.swap(model, to="prelu", location="last", example_input=torch.randn(1, 3, 32, 32))
    assert [c.site for c in report.changes] == [f"{b.name}.relu_1" for b in report.blocks]
    assert report.sites_after == {"relu": 9, "prelu": 8}
    assert report.steps[0].nodes_added[0] == "layer1.0.relu_1 (layer1.0.relu_1_prelu)"
    assert report.state_dict["added"][:2] == ["layer1.0.relu_1_prelu.weight", "layer1.1.relu_1_prelu.weight"]
    # the shared relu module still serves the first call of every block
    assert isinstance(new.get_submodule("layer1.0.relu"), nn.ReLU)
    assert "layer1_0_relu = getattr(self.layer1, \"0\").relu(" in new.code
    assert new.get_submodule("layer4.1.relu_1_prelu").num_parameters == 512


def test_swap_to_gelu_every_spelling_matches_a_reference():
    torch.manual_seed(0)
    for spelling in ("F.relu", "Tensor.relu_", "nn.ReLU", "inplace", "shared"):
        model = SpellingNet(spelling).eval()
        new, report = rs.swap(model, to="gelu")
        assert report.sites_after == {"gelu": 6}, spelling

        def reference(x, model=model):
            x = model.stem(x)
            for b in model.blocks:
                x = F.gelu(b.conv2(F.gelu(b.conv1(x))) + x)
            return model.head(x.mean((2, 3)))

        x = torch.randn(2, 3, 8, 8)
        torch.testing.assert_close(new.eval()(x), reference(x), atol=1e-6, rtol=1e-6)


def test_proportion_location_and_dry_run():
    with torch.device("meta"):
        r50 = torchvision.models.resnet50()
    _, report = rs.swap(r50, to="silu", location="first", proportion=0.5, dry_run=True)
    assert [c.site for c in report.changes] == [f"{report.blocks[i].name}.relu" for i in range(0, 16, 2)]
    assert [c.after for c in report.changes][:1] == ["nn.SiLU"]
    assert report.sites_after == {"relu": 41, "silu": 8}
    _, ident = rs.swap(r50, to="identity", location=2, blocks="layer4.*", dry_run=True)
    assert [c.site for c in ident.changes] == ["layer4.0.relu_1", "layer4.1.relu_1", "layer4.2.relu_1"]


def test_composite_norm_act_swaps_only_its_act():
    from timm.layers import ConvNormAct

    torch.manual_seed(0)
    net = nn.Sequential(ConvNormAct(3, 8, 3), ConvNormAct(8, 8, 3), nn.AdaptiveAvgPool2d(1)).eval()
    new, report = rs.swap(net, to="prelu", example_input=torch.randn(1, 3, 16, 16))
    assert [c.after for c in report.changes] == [
        "0.bn.act -> nn.PReLU(8, init=0.25)", "1.bn.act -> nn.PReLU(8, init=0.25)"]
    assert isinstance(new.get_submodule("0.bn").act, nn.PReLU) and isinstance(net[0].bn.act, nn.ReLU)
    assert report.state_dict["added"] == ["0.bn.act.weight", "1.bn.act.weight"]


def test_swapped_model_trains_saves_reloads_and_compiles(tmp_path):
    torch.manual_seed(0)
    model = rs.create_model("cifar_resnet20", num_classes=10)
    new, report = rs.swap(model, to="prelu", location="last")
    out = rs.save(new, tmp_path / "prelu_sum", report)
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["rewrites"][0] == {"rewrite": "swap", "to": "prelu", "proportion": 1.0, "location": "last",
                                     "blocks": None, "stage": None, "random": False, "seed": 0,
                                     "activations": ["relu"], "outside_blocks": False}
    x = torch.randn(4, 3, 32, 32)
    check_reload_and_compile(new, out, x)
    loss = sgd_step(new, x, torch.tensor([0, 1, 2, 3]))
    assert torch.isfinite(loss) and not torch.equal(new.get_submodule("layer1.0.relu2").weight, torch.full((16,), 0.25))


def test_bad_targets_and_cli(capsys):
    net = SpellingNet("nn.ReLU")
    with pytest.raises(SelectionError, match="CReLU changes channel counts"):
        rs.swap(net, to="crelu")
    with pytest.raises(SelectionError, match="unknown activation 'sparkle'"):
        rs.swap(net, to="sparkle")
    code = main(["swap", "cifar_resnet20", "--to", "prelu", "--location", "last", "--json", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["changes"][0] == {"block": 1, "site": "layer1.0.relu2", "before": "nn.ReLU",
                                  "after": "nn.PReLU(16, init=0.25)"}
    assert len(data["changes"]) == 9 and data["sites_after"] == {"relu": 10, "prelu": 9}
    code = main(["swap", "cifar_resnet20", "--to", "crelu"])
    assert code == 2 and "use rs.crelu" in capsys.readouterr().err
