"""Fold: exact small cases against hand-written references (plain torch ops), refusals with their
reasons, save -> load of a folded model, and the fold command's exit codes."""

from __future__ import annotations

import doctest
import importlib
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import relu_surgery as rs
from relu_surgery.cli import main
from relu_surgery.surgery.fold import fold
from relu_surgery.surgery.fold.modules import BorderConv

from .shared_data import one_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")  # one intra-op thread: steady on shared CPUs


def _randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm statistics and an affine map that are not the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=gen) * 0.5)
    return model.eval()


@torch.no_grad()
def _calibrate_norms(model: nn.Module, shape, batches: int = 2) -> nn.Module:
    """Set every BatchNorm's statistics from random batches (train mode, cumulative average), so that
    activations keep their scale through an erased (linear) stack."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(batches):
        model(torch.randn((8, *shape), generator=gen))
    return model.eval()


def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _scale_shift(bn):
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return s, bn.bias - bn.running_mean * s


def _only_conv(model):
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, BorderConv))]
    assert len(convs) == 1, convs
    return convs[0]


def _close(a, b, rel=1e-5):
    assert (a - b).abs().max() <= rel * b.abs().max() + 1e-7, (a - b).abs().max()


class ConvBNConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn, self.conv2 = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.conv2(self.bn(self.conv1(x)))


@torch.no_grad()
def test_conv_bn_conv_folds_into_the_hand_composed_kernel():
    net = _randomize_norms(ConvBNConv())
    x = torch.randn(2, 3, 10, 10)
    folded, report = fold(net, example_input=x[:1])
    c1, c2 = net.conv1, net.conv2
    s, t = _scale_shift(net.bn)
    w1, b1 = c1.weight * s[:, None, None, None], (c1.bias * s + t)
    weight = torch.einsum("oc,cikl->oikl", c2.weight[:, :, 0, 0], w1)
    bias = c2.weight[:, :, 0, 0] @ b1 + c2.bias
    conv = _only_conv(folded)
    assert type(conv) is nn.Conv2d and conv.kernel_size == (3, 3)
    _close(conv.weight, weight)
    _close(conv.bias, bias)
    reference = F.conv2d(_bn(F.conv2d(x, c1.weight, c1.bias), net.bn), c2.weight, c2.bias)
    _close(folded(x), reference)
    step = report.steps[0]
    assert (step.layers_before, step.layers_after, len(step.norms_folded), len(step.layer_merges)) == (3, 1, 1, 1)
    assert step.layer_merges[0].macs_before == 64 * (8 * 27 + 4 * 8) and step.layer_merges[0].macs_after == 64 * 4 * 27
    assert report.macs_after < report.macs_before and step.check["relative"] < 1e-5


def _fold_pair(net: nn.Sequential, shape, with_report: bool = False):
    """Fold a two-layer net on a random input: (folded, x, (w1, b1), (w2, b2)[, report])."""
    x = torch.randn(shape)
    folded, report = fold(net.eval(), example_input=x)
    out = (folded, x, *[(m.weight, m.bias) for m in net])
    return (*out, report) if with_report else out


def _compose_by_hand(w1, w2, size: int, step: int) -> torch.Tensor:
    """The kernel of conv2(conv1(x)) when tap (a, b) of conv2 reads conv1's kernel ``step*a, step*b`` on."""
    weight = torch.zeros(w2.shape[0], w1.shape[1], size, size)
    k = w1.shape[2]
    for a in range(w2.shape[2]):
        for b in range(w2.shape[3]):
            weight[:, :, step * a:step * a + k, step * b:step * b + k] += torch.einsum("oc,cikl->oikl",
                                                                                      w2[:, :, a, b], w1)
    return weight


@torch.no_grad()
def test_strided_pair_composes_to_kernel_7_stride_4():
    net = nn.Sequential(nn.Conv2d(2, 16, 3, stride=2), nn.Conv2d(16, 2, 3, stride=2))
    folded, x, (w1, b1), (w2, b2) = _fold_pair(net, (1, 2, 21, 21))
    weight = _compose_by_hand(w1, w2, 7, step=2)  # tap (a, b) of the second reads the first's output 2a, 2b on
    bias = b2 + w2.sum((2, 3)) @ b1
    conv = _only_conv(folded)
    assert (conv.kernel_size, conv.stride, conv.padding) == ((7, 7), (4, 4), (0, 0))
    _close(conv.weight, weight)
    _close(conv.bias, bias)
    _close(folded(x), F.conv2d(F.conv2d(x, w1, b1, stride=2), w2, b2, stride=2))


@torch.no_grad()
def test_grouped_pair_keeps_its_groups():
    net = nn.Sequential(nn.Conv2d(8, 16, 1, groups=4), nn.Conv2d(16, 8, 3, groups=4))
    folded, x, (w1, b1), (w2, b2) = _fold_pair(net, (1, 8, 9, 9))
    conv = _only_conv(folded)
    assert conv.groups == 4 and conv.weight.shape == (8, 2, 3, 3)
    for g in range(4):  # group g: outputs 2g..2g+1 read inputs 2g..2g+1 through intermediates 4g..4g+3
        expected = torch.einsum("ockl,ci->oikl", w2[2 * g:2 * g + 2], w1[4 * g:4 * g + 4, :, 0, 0])
        _close(conv.weight[2 * g:2 * g + 2], expected)
    _close(folded(x), F.conv2d(F.conv2d(x, w1, b1, groups=4), w2, b2, groups=4))


@torch.no_grad()
def test_padded_pair_with_bias_is_exact_at_the_borders():
    net = nn.Sequential(nn.Conv2d(4, 8, 1), nn.Conv2d(8, 4, 3, padding=1))
    folded, x, (w1, b1), (w2, b2), report = _fold_pair(net, (1, 4, 6, 6), True)
    reference = F.conv2d(F.conv2d(x, w1, b1), w2, b2, padding=1)  # pads the biased output with zeros
    conv = _only_conv(folded)
    assert isinstance(conv, BorderConv) and report.steps[0].layer_merges[0].after == "conv 3x3 4->4 +border"
    _close(folded(x), reference)
    # a merge that ignored the border would treat the zero padding as the first layer's bias
    weight = torch.einsum("ockl,ci->oikl", w2, w1[:, :, 0, 0])
    naive = F.conv2d(x, weight, b2 + w2.sum((2, 3)) @ b1, padding=1)
    assert torch.allclose(naive[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1], atol=1e-5)
    assert (naive - reference)[..., 0, :].abs().max() > 1e-3


@torch.no_grad()
def test_dilated_pair_keeps_its_dilation():
    net = nn.Sequential(nn.Conv2d(2, 16, 3, dilation=2), nn.Conv2d(16, 2, 3, dilation=2))
    folded, x, (w1, b1), (w2, b2) = _fold_pair(net, (1, 2, 13, 13))
    weight = _compose_by_hand(w1, w2, 5, step=1)  # taps 2a + 2i: a 5x5 kernel on a grid of step 2
    conv = _only_conv(folded)
    assert (conv.kernel_size, conv.dilation) == ((5, 5), (2, 2))
    _close(conv.weight, weight)
    _close(folded(x), F.conv2d(F.conv2d(x, w1, b1, dilation=2), w2, b2, dilation=2))


@torch.no_grad()
def test_first_pads_second_does_not_merges_without_border():
    net = nn.Sequential(nn.Conv2d(2, 16, 3, padding=1), nn.Conv2d(16, 2, 1))
    folded, x, (w1, b1), (w2, b2) = _fold_pair(net, (1, 2, 7, 7))
    conv = _only_conv(folded)
    assert type(conv) is nn.Conv2d and conv.padding == (1, 1)
    _close(folded(x), F.conv2d(F.conv2d(x, w1, b1, padding=1), w2, b2))


class RepVGGBlock(nn.Module):
    def __init__(self, c=4):
        super().__init__()
        self.conv3, self.bn3 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv1, self.bn1 = nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c)
        self.bn_id, self.relu = nn.BatchNorm2d(c), nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn3(self.conv3(x)) + self.bn1(self.conv1(x)) + self.bn_id(x))


@torch.no_grad()
def test_repvgg_block_becomes_one_3x3_conv():
    net = _randomize_norms(RepVGGBlock())
    x = torch.randn(2, 4, 8, 8)
    folded, report = fold(net, example_input=x[:1])
    (s3, t3), (s1, t1), (si, ti) = (_scale_shift(b) for b in (net.bn3, net.bn1, net.bn_id))
    weight = net.conv3.weight * s3[:, None, None, None]
    weight[:, :, 1, 1] += net.conv1.weight[:, :, 0, 0] * s1[:, None] + torch.diag(si)
    bias = t3 + t1 + ti
    conv = _only_conv(folded)
    _close(conv.weight, weight)
    _close(conv.bias, bias)
    reference = F.relu(_bn(F.conv2d(x, net.conv3.weight, padding=1), net.bn3)
                       + _bn(F.conv2d(x, net.conv1.weight), net.bn1) + _bn(x, net.bn_id))
    _close(folded(x), reference)
    merges = report.steps[0].layer_merges
    assert [m.kind for m in merges] == ["branch"] and merges[0].names == ("conv3", "conv1", "bn_id")
    assert report.steps[0].refusals == ()  # the identity-path norm was merged, not kept


class Refusals(nn.Module):
    """One candidate of each refused kind."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)  # both pad
        self.c = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")
        self.d, self.e = nn.Conv2d(4, 4, 3, dilation=2), nn.Conv2d(4, 4, 3, dilation=3)
        self.dw, self.pw = nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 2, 1)  # merged would cost more
        self.bn_add, self.bn_free = nn.BatchNorm2d(4), nn.BatchNorm2d(2, track_running_stats=False)
        self.f, self.g = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)

    def forward(self, x):
        y = self.b(self.a(x))
        y = self.bn_add(y + self.c(y))
        z = self.f(y)
        y = self.e(self.d(self.g(z))) + z[:, :, 5:-5, 5:-5]
        return self.bn_free(self.pw(self.dw(y)))


def test_refused_candidates_say_why():
    folded, report = fold(Refusals().eval(), example_input=torch.randn(1, 3, 24, 24))
    kept = {(r.kind, r.names): r.after for r in report.steps[0].refusals}
    assert kept[("chain", ("a", "b"))].startswith("zero padding: the conv 3x3 4->4 pads its input with zeros, and "
                                                  "the conv 3x3 3->4 before it is not a 1x1 unpadded conv")
    assert kept[("chain", ("b", "c"))] == "b's output is also read by add (add)"
    assert kept[("branch", ("c", "add"))] == "padding mode is not zeros"  # c + its input y (RepVGG-like)
    assert kept[("norm", ("bn_add",))] == "its input comes from add (add), not a conv or linear layer"
    # g merged into d first (a 1x1 into its dilated neighbour); the link from f is then to that layer
    assert kept[("chain", ("f", "d"))] == "f's output is also read by getitem (getitem)"
    assert kept[("chain", ("d", "e"))] == "merged it costs more: 379,456 MACs vs 85,824 apart"  # 11x11 dense
    assert kept[("chain", ("dw", "pw"))] == "merged it costs more: 10,368 MACs vs 6,336 apart"
    assert kept[("norm", ("bn_free",))].startswith("it has no running statistics (track_running_stats=False)")
    assert kept[("branch", ("e", "add_1"))] == ("the branches read different inputs: e reads d (Conv2d), the other "
                                                "operand is getitem (getitem)")
    assert [m.names for m in report.steps[0].layer_merges] == [("g", "d")]  # 1x1 into its dilated neighbour
    assert any(w.startswith("fold kept chain a + b: zero padding") for w in report.warnings)


@torch.no_grad()
def test_linear_bn_dropout_linear_becomes_one_linear():
    net = _randomize_norms(nn.Sequential(nn.Linear(16, 64), nn.BatchNorm1d(64), nn.Dropout(0.5), nn.Linear(64, 8)))
    x = torch.randn(5, 16)
    folded, report = fold(net, example_input=x[:1])
    s, t = _scale_shift(net[1])
    weight = net[3].weight @ (net[0].weight * s[:, None])
    bias = net[3].weight @ (net[0].bias * s + t) + net[3].bias
    (layer,) = [m for m in folded.modules() if isinstance(m, nn.Linear)]
    _close(layer.weight, weight)
    _close(layer.bias, bias)
    _close(folded(x), F.linear(_bn(F.linear(x, net[0].weight, net[0].bias), net[1]), net[3].weight, net[3].bias))
    assert report.steps[0].merges[-1].names == ("0", "3")


def test_erased_mlp12_folds_into_one_linear():
    erased, _ = rs.erase(rs.create_model("mlp12", hidden=64), proportion=1.0)
    folded, report = fold(erased)
    step = report.steps[0]
    assert (step.layers_before, step.layers_after, len(step.norms_folded)) == (23, 1, 11)
    assert [m.after for m in step.layer_merges] == ["linear 784->10"]
    assert step.check["relative"] < 1e-5


def test_latency_fold_records_its_choices_for_the_replay(tmp_path):
    erased, _ = rs.erase(rs.create_model("mlp12", hidden=32), proportion=1.0, check=False)
    folded, report = fold(erased, cost="latency")
    settings = report.steps[0].settings
    assert settings["cost"] == "latency" and all(c[0] == "chain" for c in settings["choices"])
    assert len(settings["choices"]) == len(report.steps[0].layer_merges)  # measured once, replayed as recorded
    out = rs.save(folded, tmp_path / "lat", report)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(rs.load(out).eval()(x), folded.eval()(x), atol=0, rtol=0)


def test_fold_of_an_erased_mobilenet_saves_and_loads(tmp_path):
    # timm's MobileNetV2 (norm+act composites), 32x32 inputs so that the replay in rs.load stays quick
    model = rs.create_model("timm:mobilenetv2_035", pretrained_cfg_overlay={"input_size": (3, 32, 32)})
    erased, _ = rs.erase(model, location="all", activations=("relu6",), check=False)
    folded, report = fold(_calibrate_norms(erased, (3, 32, 32), batches=1))
    step = report.steps[0]
    # 16 inverted residuals: expand + depthwise + project -> one 3x3 conv (with a border term: the
    # expand's bias meets the depthwise conv's zero padding); the 10 with a shortcut then absorb it
    assert [m.kind for m in step.layer_merges] == ["chain"] * 16 + ["branch"] * 10
    assert sum(isinstance(m, BorderConv) for m in folded.modules()) == 16
    assert (step.layers_before, step.layers_after) == (105, 23)
    assert report.macs_after < report.macs_before and step.check["relative"] < 1e-5
    out = rs.save(folded, tmp_path / "folded", report)
    loaded, x = rs.load(out).eval(), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), folded.eval()(x), atol=0, rtol=0)
    recipe = json.loads((out / "recipe.json").read_text())
    assert [r["rewrite"] for r in recipe["rewrites"]] == ["erase", "fold"]


def test_float32_rounding_above_the_tolerance_is_judged_in_float64():
    net = _randomize_norms(ConvBNConv())
    folded, report = fold(net, example_input=torch.randn(1, 3, 10, 10), tolerance=1e-12)
    check = report.steps[0].check
    assert check["relative"] > 1e-12 and check["float64_relative"] < 1e-12
    assert check["note"].startswith("the float32 difference is rounding: in float64 the folded and unfolded")


def test_a_fold_that_changed_the_function_is_an_error(monkeypatch):
    from relu_surgery.surgery.fold import execute  # noqa: PLC0415

    real = execute.fold_norm
    monkeypatch.setattr(execute, "fold_norm", lambda p, scale, shift: real(p, scale, shift + 0.01))
    with pytest.raises(rs.SurgeryError, match="fold changed the model's function"):
        fold(_randomize_norms(ConvBNConv()), example_input=torch.randn(1, 3, 10, 10))


def test_dry_run_plans_and_changes_nothing():
    net = ConvBNConv().eval()
    new, report = fold(net, example_input=torch.randn(1, 3, 8, 8), dry_run=True)
    assert new is None and report.dry_run
    assert [c.site for c in report.changes] == ["conv1 + bn", "conv1 + conv2"]


def test_fold_command_exit_codes(capsys, tmp_path):
    code = main(["erase", "cifar_resnet20", "--no-check", "--out", str(tmp_path / "er")])
    assert code == 0
    capsys.readouterr()
    code = main(["fold", str(tmp_path / "er"), "--json", "--out", str(tmp_path / "folded")])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    fold_data = data["steps"][-1]["fold"]
    assert fold_data["layers_before"] == 39 and fold_data["layers_after"] == 20  # 19 convs + 19 norms + fc
    assert fold_data["check"]["relative"] < 1e-5
    assert (tmp_path / "folded" / "weights.safetensors").is_file()
    assert main(["fold", "cifar_resnet20", "--cost", "cheapest"]) == 2
    assert main(["fold", "no_such_model_xyz"]) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") >= 1 and "Traceback" not in err


def test_bench_fold_case_on_the_vgg_style_net():
    import sys  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import fold as bench_fold  # noqa: PLC0415

    res = bench_fold.measure_case("vgg_style31", repeats=1, cost="macs")
    rows = res["rows"]
    assert list(rows) == ["original", "erased", "norms folded", "folded"] and res["sites_erased"] == 6
    assert [rows[k]["layers"] for k in rows] == [63, 63, 32, 32] and len({r["macs"] for r in rows.values()}) == 1
    assert res["kept"] == {"zero padding": 6} and res["merges"] == [] and res["check"]["relative"] < 1e-4


@pytest.mark.parametrize("name", [*(f"surgery.fold.{n}" for n in ("geometry", "kernels", "modules", "plan",
                                                                   "candidates", "execute", "planner", "api")),
                                  "report.fold", "models.export"])
def test_fold_docstring_examples(name):
    module = importlib.import_module(f"relu_surgery.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
