"""EraseReLU: exact changes on named models, function checks, state dict, save/load, compile/export."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import relu_surgery as rs
from relu_surgery.errors import SelectionError
from relu_surgery.graph.provenance import recipe_of

from .test_blocks import SpellingNet


def test_torchvision_resnet152_half_erase():
    model = torchvision.models.resnet152()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    new, report = rs.erase(model, proportion=0.5)
    assert len(report.blocks) == 50
    assert report.selected == tuple(range(1, 50, 2))
    assert [c.site for c in report.changes] == [f"{report.blocks[i - 1].name}.relu_2" for i in range(1, 50, 2)]
    assert (report.target_sites(), report.target_sites(after=True)) == (151, 126)
    assert report.params_before == report.params_after == 60_192_808
    assert report.macs_before == report.macs_after > 11e9
    assert report.state_dict["unchanged"] is True
    assert report.forward_check["output_shape"] == (1, 1000)
    # the shared relu module stays: its first two calls in every block still run
    assert "layer1_0_relu_1 = self.layer1.0.relu" in new.code.replace("getattr(self.layer1, \"0\")", "self.layer1.0")
    new.load_state_dict(before, strict=True)  # the original checkpoint loads strictly
    # the caller's model is untouched
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.layer1[0].relu is not None and isinstance(model, torchvision.models.ResNet)


def test_erased_block_computes_block_without_last_relu():
    torch.manual_seed(0)
    model = SpellingNet("F.relu").eval()
    new, report = rs.erase(model, proportion=1.0)
    assert [c.site for c in report.changes] == ["blocks.0.relu_1", "blocks.1.relu_1", "blocks.2.relu_1"]
    x = torch.randn(2, 3, 8, 8)

    def reference(x):
        x = model.stem(x)
        for b in model.blocks:
            x = b.conv2(F.relu(b.conv1(x))) + x  # no ReLU after the addition
        return model.head(x.mean((2, 3)))

    new.eval()
    torch.testing.assert_close(new(x), reference(x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("spelling", ["F.relu", "torch.relu", "Tensor.relu", "Tensor.relu_", "nn.ReLU", "inplace",
                                      "shared"])
def test_every_spelling_erases_the_post_addition_relu(spelling):
    model = SpellingNet(spelling)
    new, report = rs.erase(model, proportion=1.0)
    assert len(report.changes) == 3
    assert report.target_sites() == 6 and report.target_sites(after=True) == 3
    assert all(c.after == "Identity (erased)" for c in report.changes)
    assert rs.find_blocks(new)[0].sites[0].location == "first"


def test_location_first_all_and_index():
    model = torchvision.models.resnet50()
    _, first = rs.erase(model, location="first", blocks="1-2", dry_run=True)
    assert [c.site for c in first.changes] == ["layer1.0.relu", "layer1.1.relu"]
    _, all_ = rs.erase(model, location="all", blocks="1", dry_run=True)
    assert [c.site for c in all_.changes] == ["layer1.0.relu", "layer1.0.relu_1", "layer1.0.relu_2"]
    _, second = rs.erase(model, location=2, blocks="layer4.*", dry_run=True)
    assert [c.site for c in second.changes] == ["layer4.0.relu_1", "layer4.1.relu_1", "layer4.2.relu_1"]
    _, staged = rs.erase(model, stage="layer2", proportion=0.5, dry_run=True)
    assert [c.block for c in staged.changes] == [4, 6]
    _, rand = rs.erase(model, proportion=0.25, random=True, seed=3, dry_run=True)
    _, rand2 = rs.erase(model, proportion=0.25, random=True, seed=3, dry_run=True)
    assert len(rand.changes) == 4 and rand.selected == rand2.selected


def test_dry_run_changes_nothing_and_predicts_counts():
    new, report = rs.erase(torchvision.models.resnet18(), proportion=0.5, dry_run=True)
    assert new is None and report.dry_run
    assert (report.target_sites(), report.target_sites(after=True)) == (17, 13)
    assert report.macs_before is None


def test_bad_selection_errors():
    model = torchvision.models.resnet18()
    for p in (0, 1.5, -0.5, float("nan")):
        with pytest.raises(SelectionError, match=r"proportion must be in \(0, 1\]"):
            rs.erase(model, proportion=p)
    with pytest.raises(SelectionError, match="block 99 does not exist"):
        rs.erase(model, blocks="99")
    with pytest.raises(SelectionError, match="location must be"):
        rs.erase(model, location="middle-ish")
    with pytest.raises(SelectionError, match="unknown activation"):
        rs.erase(model, activations=("relu", "sparkle"))


def test_composite_norm_act_keeps_state_dict():
    from timm.layers import ConvNormAct

    torch.manual_seed(0)
    net = nn.Sequential(ConvNormAct(3, 8, 3), ConvNormAct(8, 8, 3), nn.AdaptiveAvgPool2d(1)).eval()
    new, report = rs.erase(net, proportion=1.0, example_input=torch.randn(1, 3, 16, 16))
    assert [c.after for c in report.changes] == ["0.bn without activation", "1.bn without activation"]
    assert report.state_dict["unchanged"]
    assert isinstance(net[0].bn.act, nn.ReLU)  # the caller's layer keeps its activation
    x = torch.randn(2, 3, 16, 16)
    y0 = F.batch_norm(net[0].conv(x), net[0].bn.running_mean, net[0].bn.running_var, net[0].bn.weight, net[0].bn.bias)
    y1 = F.batch_norm(net[1].conv(y0), net[1].bn.running_mean, net[1].bn.running_var, net[1].bn.weight, net[1].bn.bias)
    new.eval()
    torch.testing.assert_close(new(x), y1.mean((2, 3), keepdim=True), atol=1e-5, rtol=1e-5)


def test_timm_model_report_json_schema():
    _, report = rs.erase(timm.create_model("resnet18"), proportion=0.5)
    data = json.loads(report.to_json())
    for key in ("model", "blocks", "changes", "params_before", "params_after", "macs_before", "macs_after",
                "warnings"):
        assert key in data
    assert set(data["blocks"][0]) >= {"index", "name", "type", "selected", "sites"}
    assert set(data["blocks"][0]["sites"][0]) >= {"name", "kind", "location"}
    assert data["changes"][0] == {"block": 1, "site": "layer1.0.act2", "before": "nn.ReLU",
                                  "after": "Identity (erased)"}
    assert [b["selected"] for b in data["blocks"]] == [True, False] * 4
    md = report.to_markdown()
    assert "| 1 | `layer1.0.act2` | nn.ReLU | Identity (erased) |" in md
    diff = report.code_diff()
    removed = [ln for ln in diff.splitlines() if ln.startswith("-") and ".act2(" in ln]
    added = [ln for ln in diff.splitlines() if ln.startswith("+") and ".act2(" in ln]
    assert len(removed) == 4 and added == []
    assert "Selected (erase)" in str(report)


def test_warning_for_blocks_without_last_activation():
    _, report = rs.erase(torchvision.models.mobilenet_v3_small(), proportion=1.0, activations="relu,hardswish",
                         dry_run=True)
    assert report.changes == ()
    assert len(report.warnings) == len(report.blocks) and "has no last activation" in report.warnings[0]


def test_save_load_round_trip(tmp_path):
    model = rs.create_model("tv:resnet18", num_classes=10)
    new, report = rs.erase(model, proportion=0.5)
    out = rs.save(new, tmp_path / "er18", report)
    assert sorted(p.name for p in out.iterdir()) == [
        "recipe.json", "report.json", "report.md", "report.txt", "weights.safetensors"]
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["source"] == {"name": "tv:resnet18", "source": "torchvision", "kwargs": {"num_classes": 10}}
    assert recipe["rewrites"][0]["rewrite"] == "erase" and recipe["rewrites"][0]["proportion"] == 0.5
    loaded = rs.load(out)
    assert loaded.code == new.code
    x = torch.randn(2, 3, 64, 64)
    new.eval(), loaded.eval()
    torch.testing.assert_close(loaded(x), new(x), atol=0, rtol=0)
    assert all(torch.equal(v, new.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_rewritten_model_trains_saves_compiles_exports(tmp_path):
    torch.manual_seed(0)
    new, _ = rs.erase(SpellingNet("nn.ReLU"), proportion=1.0)
    new.train()
    opt = torch.optim.SGD(new.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    w0 = new.head.weight.detach().clone()
    loss = F.cross_entropy(new(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(w0, new.head.weight)
    torch.save(new.state_dict(), tmp_path / "sd.pt")
    assert set(torch.load(tmp_path / "sd.pt", weights_only=True)) == set(new.state_dict())
    new.eval()
    with torch.no_grad():
        expected = new(x)
        compiled = torch.compile(new, backend="eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), expected)
        exported = torch.export.export(new, (x,))
        torch.testing.assert_close(exported.module()(x), expected)


def test_rewrite_of_a_rewritten_model_keeps_blocks():
    first, _ = rs.erase(torchvision.models.resnet18(), proportion=0.5)
    second, report = rs.erase(first, proportion=1.0, location="first")
    assert len(report.blocks) == 8 and [c.site for c in report.changes][0] == "layer1.0.relu"
    assert [r["rewrite"] for r in recipe_of(second)["rewrites"]] == ["erase", "erase"]


def test_named_blocks_on_a_rewritten_model():
    first, _ = rs.erase(rs.create_model("cifar_resnet20"), proportion=0.5)
    _, report = rs.erase(first, block_names=("layer1.*",), location="first", dry_run=True)
    assert [b.name for b in report.blocks] == ["layer1.0", "layer1.1", "layer1.2"]
    assert [c.site for c in report.changes] == ["layer1.0.relu1", "layer1.1.relu1", "layer1.2.relu1"]


class _CappedBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        nn.init.normal_(self.conv.weight, std=1.0)  # gain ~ 8.5 per block without normalisation
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU6()

    def forward(self, x):
        return self.act(x + self.bn(self.conv(x)))


def test_eval_overflow_with_untrained_statistics_is_a_warning_not_an_error():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), *[_CappedBlock() for _ in range(48)])
    # finiteness needs values: check="full" (the default check propagates shapes only)
    new, report = rs.erase(net, activations="relu6", example_input=torch.randn(1, 3, 8, 8), check="full")
    assert len(report.changes) == 48
    assert report.forward_check["mode"] == "train" and report.forward_check["finite"]
    assert "eval-mode output overflows" in report.warnings[-1]


def test_check_false_skips_the_forward_passes_but_not_the_rewrite():
    model = torchvision.models.resnet18()
    checked, full = rs.erase(model, proportion=0.5)
    quick, report = rs.erase(model, proportion=0.5, check=False)
    assert quick.code == checked.code
    assert [c.site for c in report.changes] == [c.site for c in full.changes]
    assert report.macs_before is None and report.macs_after is None
    assert report.forward_check == {"input_shape": (1, 3, 224, 224), "skipped": "check=False"}
    lines = dict(report.summary_lines())
    assert lines["MACs"] == "not measured (check=False)"
    assert lines["Forward pass"] == "not run (check=False)"
    assert json.loads(report.to_json())["forward_check"]["skipped"] == "check=False"
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(quick.eval()(x), checked.eval()(x))
