"""NormProp (seed 002): constants, output statistics, BN folding, kept shortcut BN, variants, save/load."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import relu_surgery as rs
from relu_surgery.cli import main
from relu_surgery.errors import SelectionError
from relu_surgery.surgery.layers import NORMPROP3_GAMMA, NORMPROP_SCALE, RELU_MEAN, NormPropConv2d, NormPropCorrection

from .test_crelu import randomize_bn


def test_constants_are_those_of_the_original_normprop():
    assert RELU_MEAN == 1 / math.sqrt(2 * math.pi)  # not 1/(2 pi) as seed 002's Proposition 2 prints
    assert NORMPROP_SCALE == (0.5 - 1 / (2 * math.pi)) ** -0.5
    assert NORMPROP3_GAMMA == 1 / 1.21


def test_normprop_output_is_standard_after_the_corrected_relu():
    gen = torch.Generator().manual_seed(0)
    conv = NormPropConv2d(64, 64, 1, bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(64, 64, 1, 1, generator=gen) * 3.0)  # any scale: rows are normalised
    x = torch.randn(64, 64, 16, 16, generator=gen)  # 4M standard normal inputs
    with torch.no_grad():
        z = conv(x)
        relu = F.relu(z)
        y = NormPropCorrection()(relu)
    assert abs(z.mean().item()) < 0.01 and abs(z.var().item() - 1) < 0.01
    assert abs(relu.mean().item() - 1 / math.sqrt(2 * math.pi)) < 0.005  # E[ReLU(z)] = 1/sqrt(2 pi)
    assert abs(relu.var().item() - (0.5 - 1 / (2 * math.pi))) < 0.005
    assert abs(y.mean().item()) < 0.01 and abs(y.var().item() - 1) < 0.01


def test_rewritten_normprop_unit_standardises_a_standard_normal_input():
    gen = torch.Generator().manual_seed(1)
    net = nn.Sequential(nn.Conv2d(32, 32, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 8, 1))
    new, report = rs.normprop(net, variant="normprop", example_input=torch.randn(1, 32, 4, 4))
    assert [c.after for c in report.changes] == [
        "NormPropConv2d (normprop: gamma learnable, beta) + correction after 2"]
    assert isinstance(new.get_submodule("2_normprop"), NormPropCorrection)
    conv = new.get_submodule("0")
    with torch.no_grad():
        conv.gamma.fill_(1.0)
        conv.beta.zero_()
    x = torch.randn(32, 32, 32, 32, generator=gen)
    out = {}
    new.get_submodule("2_normprop").register_forward_hook(lambda m, i, o: out.setdefault("y", o))
    with torch.no_grad():
        new.eval()(x)
    y = out["y"]
    assert y.shape == (32, 32, 32, 32)
    assert abs(y.mean().item()) < 0.01 and abs(y.var().item() - 1) < 0.02


@pytest.mark.parametrize("arch, variants", [("resnet18", ("normprop2", "plain")), ("resnet50", ("normprop2",))])
def test_normprop2_and_plain_reproduce_the_eval_function(arch, variants):
    torch.manual_seed(0)
    model = randomize_bn(torchvision.models.get_model(arch))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    scale = expected.abs().max().item()
    for variant in variants:
        new, report = rs.normprop(model, variant=variant, example_input=x[:1])
        assert not any("changes the model's function" in w for w in report.warnings)
        with torch.no_grad():
            assert (new.eval()(x) - expected).abs().max().item() <= 1e-4 * scale, variant
        # normprop2 keeps the parameter count (BN weight/bias -> gamma/beta); plain folds BN away
        assert (report.params_after == report.params_before) == (variant == "normprop2")
    assert isinstance(model.get_submodule("layer1.0.bn1"), nn.BatchNorm2d)  # the caller's model is untouched


def test_units_converted_and_shortcut_bn_kept():
    with torch.device("meta"):
        r50 = torchvision.models.resnet50()
    _, report = rs.normprop(r50, variant="normprop", dry_run=True)
    assert len(report.changes) == 50  # 53 BNs: stem + 16 x 3 + 4 shortcuts, 3 of them reduce the size
    assert [w for w in report.warnings if "kept" in w] == [
        f"layer{i}.0.downsample.1: BatchNorm kept (on the shortcut where the spatial size is reduced, "
        "as seed 002 does)" for i in (2, 3, 4)]
    sites = [c.site for c in report.changes]
    assert sites[:5] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3", "layer1.0.downsample.0"]
    assert [c.after for c in report.changes[:4]] == [
        "NormPropConv2d (normprop: gamma learnable, beta) + correction after relu",
        "NormPropConv2d (normprop: gamma learnable, beta) + correction after layer1.0.relu",
        "NormPropConv2d (normprop: gamma learnable, beta) + correction after layer1.0.relu_1",
        "NormPropConv2d (normprop: gamma learnable, beta)",  # conv3 -> BN -> add: no ReLU to correct
    ]
    assert report.changes[1].before == "Conv2d + BatchNorm2d (layer1.0.bn1)"


def test_normprop3_gamma_is_a_fixed_buffer_and_the_model_trains():
    torch.manual_seed(0)
    model = rs.create_model("cifar_resnet20", num_classes=10)
    new, report = rs.normprop(model, variant="normprop3")
    assert len(report.changes) == 19 and len(report.steps[0].nodes_removed) == 19
    assert report.warnings[0].startswith("normprop3 changes the model's function (gamma fixed at 1/1.21)")
    convs = {n: m for n, m in new.named_modules() if isinstance(m, NormPropConv2d)}
    assert len(convs) == 19 and not any(isinstance(m, nn.BatchNorm2d) for m in new.modules())
    params, buffers = dict(new.named_parameters()), dict(new.named_buffers())
    assert "layer1.0.conv1.gamma" not in params and "layer1.0.conv1.gamma" in buffers
    assert {"layer1.0.conv1.weight", "layer1.0.conv1.beta"} <= set(params)
    assert all(torch.equal(m.gamma, torch.full_like(m.gamma, 1 / 1.21)) for m in convs.values())
    sd = report.state_dict
    assert "layer1.0.conv1.gamma" in sd["added"] and "layer1.0.bn1.running_var" in sd["removed"]
    new.train()
    opt = torch.optim.SGD(new.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    conv = new.get_submodule("layer1.0.conv1")
    w0, b0 = conv.weight.detach().clone(), conv.beta.detach().clone()
    loss = F.cross_entropy(new(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(w0, conv.weight) and not torch.equal(b0, conv.beta)
    assert torch.equal(conv.gamma, torch.full_like(conv.gamma, 1 / 1.21))


def test_normprop_saves_reloads_and_compiles(tmp_path):
    torch.manual_seed(0)
    model = rs.create_model("cifar_resnet20", num_classes=10)
    new, report = rs.normprop(model, variant="normprop")
    code = new.code
    assert code.count("_normprop(") == 10  # stem ReLU + the inner ReLU of 9 blocks; not after the additions
    out = rs.save(new, tmp_path / "np20", report)
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["rewrites"] == [{"rewrite": "normprop", "variant": "normprop", "bias": True, "init": "bn"}]
    loaded = rs.load(out)
    x = torch.randn(2, 3, 32, 32)
    new.eval(), loaded.eval()
    with torch.no_grad():
        expected = new(x)
        torch.testing.assert_close(loaded(x), expected, atol=0, rtol=0)
        torch.testing.assert_close(torch.compile(new, backend="eager", fullgraph=True)(x), expected)


def test_bad_variant_and_cli(capsys):
    with pytest.raises(SelectionError, match="variant must be one of normprop, normprop2, normprop3, plain"):
        rs.normprop(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), nn.ReLU()), variant="normprop4")
    code = main(["normprop", "cifar_resnet20", "--variant", "plain", "--no-bias", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["changes"][0] == {"block": 0, "site": "stem.conv", "before": "Conv2d + BatchNorm2d (stem.bn)",
                                  "after": "Conv2d (no bias, BN removed)"}
    assert data["warnings"][0].startswith("plain changes the model's function (no bias/beta)")
    assert data["params_after"] < data["params_before"]
