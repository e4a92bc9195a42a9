"""Pre-activation <-> after-activation conversion and seed 003's unit variants: exact structure, norms, reports."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import relu_surgery as rs
from relu_surgery.graph.blocks import discover_blocks
from relu_surgery.cli import main
from relu_surgery.errors import NoBlocksError, SelectionError
from relu_surgery.graph.provenance import recipe_of
from relu_surgery.graph.ops import op_role
from relu_surgery.surgery.convert.anatomy import walk_back
from relu_surgery.surgery.convert.obstacles import DENSE_LAYER
from relu_surgery.graph.tracing import annotate_shapes, trace
from relu_surgery.models.zoo.preact_resnet import PreActBottleneck, PreActResNet
from relu_surgery.models.zoo.resnet import Bottleneck, CifarResNet
from relu_surgery.models.zoo.wide_resnet import wide_resnet

X16 = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
X64 = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def meta(builder, *args, **kwargs):
    with torch.device("meta"):
        return builder(*args, **kwargs)


def preact_bottleneck_net():
    """The zoo's pre-activation bottleneck ResNet, one unit per stage (seed 003's first unit + projections)."""
    torch.manual_seed(0)
    return PreActResNet(PreActBottleneck, (1, 1, 1), (16, 32, 64), (4, 8, 16), stem_chs=4)


def block_ops(model, name: str) -> list[str]:
    """What a block computes, in graph order: module paths, or qualified names of function calls."""
    return [str(n.target) if n.op == "call_module" else n.meta["rs_name"]
            for n in model.graph.nodes if name in n.meta.get("rs_scope", ())]


def outside_ops(model) -> list[str]:
    """Module calls outside every ``layer*`` block (stem and head), in graph order."""
    return [str(n.target) for n in model.graph.nodes if n.op == "call_module" and not str(n.target).startswith("layer")]


def structure(model, x) -> list[tuple]:
    """Name-free structure: per non-transparent node its block, role, class, channels and inputs."""
    traced = trace(model)
    annotate_shapes(traced, x)
    gm = traced.graph_module
    names = [b.name for b in discover_blocks(traced)]
    nodes = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output") and op_role(n, gm) != "transparent"]
    index = {n: i for i, n in enumerate(nodes)}
    out = []
    for n in nodes:
        scope = n.meta.get("rs_scope", ())
        block = next((i for i, b in enumerate(names) if b in scope), -1)
        what = type(gm.get_submodule(str(n.target))).__name__ if n.op == "call_module" else str(n.target)
        inputs = tuple(index.get(walk_back(a, gm), -1) for a in n.all_input_nodes)
        out.append((block, op_role(n, gm), what, tuple(n.meta["tensor_meta"].shape)[1], inputs))
    return out


def train_step(model, x) -> None:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = F.cross_entropy(model(x), torch.zeros(len(x), dtype=torch.long))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    new_norms = [p for n, p in model.named_parameters() if "_norm." in n]
    assert new_norms and all(p.grad is not None for p in new_norms)


# ----------------------------------------------------------------------------- pre -> after
def test_zoo_preact_bottleneck_to_after_activation_exact_order():
    model = preact_bottleneck_net()
    model.layer1[0].bn1.weight.data.fill_(0.5)
    new, report = rs.to_after_activation(model, example_input=X16)
    assert outside_ops(new) == ["conv1", "conv1_norm", "conv1_act", "head.pool", "head.flatten", "head.fc"]
    assert block_ops(new, "layer2.0") == [
        "layer2.0.conv1", "layer2.0.bn2", "layer2.0.relu", "layer2.0.conv2", "layer2.0.bn3", "layer2.0.relu",
        "layer2.0.conv3", "layer2.0.conv3_norm", "layer2.0.shortcut.0", "layer2.0.shortcut.0_norm",
        "layer2.0.add", "layer2.0.add_act"]
    # the first unit's shortcut already read the pre-activated input: both paths read the moved stem act
    assert [a.target for a in new.graph.find_nodes(op="call_module", target="layer1.0.shortcut.0")[0].args] == [
        "conv1_act"]
    assert report.norms_added == ("layer1.0.conv3_norm", "layer1.0.shortcut.0_norm", "layer2.0.conv3_norm",
                                  "layer2.0.shortcut.0_norm", "layer3.0.conv3_norm", "layer3.0.shortcut.0_norm")
    assert report.steps[0].norms_moved == (("layer1.0.bn1", "conv1_norm", "after the stem conv conv1"),)
    assert report.steps[0].norms_removed == ("layer2.0.bn1", "layer3.0.bn1", "bn_final")
    assert bool((new.conv1_norm.weight == 0.5).all())  # the moved norm keeps its values
    sd = report.state_dict
    assert [k for k in sd["added"] if k.endswith(".weight")] == [
        "conv1_norm.weight", *[f"{n}.weight" for n in report.norms_added]]
    assert sorted({k.rsplit(".", 1)[0] for k in sd["removed"]}) == ["bn_final", "layer1.0.bn1", "layer2.0.bn1",
                                                                     "layer3.0.bn1"]
    for path in report.norms_added:  # every new norm covers the output channels of the conv it follows
        assert new.get_submodule(path).num_features == new.get_submodule(path[: -len("_norm")]).out_channels
    assert report.target_sites() == report.target_sites(after=True) == 10
    assert isinstance(model.layer1[0].bn1, nn.BatchNorm2d) and not hasattr(model.layer1[0], "add_act")
    train_step(new, X16)


def test_wide_resnet_basic_block_with_dropout_exact_order():
    torch.manual_seed(0)
    new, report = rs.to_after_activation(wide_resnet(10, 1, dropout=0.3), example_input=X16)
    assert block_ops(new, "layer1.0") == [
        "layer1.0.conv1", "layer1.0.bn2", "layer1.0.relu", "layer1.0.dropout", "layer1.0.conv2",
        "layer1.0.conv2_norm", "layer1.0.add", "layer1.0.add_act"]
    assert report.norms_added == ("layer1.0.conv2_norm", "layer2.0.conv2_norm", "layer2.0.shortcut.0_norm",
                                  "layer3.0.conv2_norm", "layer3.0.shortcut.0_norm")
    assert [new.get_submodule(n).num_features for n in report.norms_added] == [16, 32, 32, 64, 64]
    assert [s.rewrite for s in report.steps] == ["convert"] and report.steps[0].settings == {"to": "after-activation"}
    assert "New norms, untrained (convert)  5: layer1.0.conv2_norm" in str(report)
    data = json.loads(report.to_json())
    assert data["norms"]["added"] == list(report.norms_added)
    assert data["norms"]["moved"] == [{"from": "layer1.0.bn1", "to": "conv1_norm", "where": "after the stem conv conv1"}]
    train_step(new, X16)


@pytest.mark.parametrize("name, blocks, projections", [
    ("preact_resnet110", 54, ("layer2.0", "layer3.0")),
    ("preact_resnet164", 54, ("layer1.0", "layer2.0", "layer3.0")),
    pytest.param("preact_resnet1001", 333, ("layer1.0", "layer2.0", "layer3.0"), marks=pytest.mark.slow),
    ("wrn_28_10", 12, ("layer1.0", "layer2.0", "layer3.0")),
    ("wrn_40_4", 18, ("layer1.0", "layer2.0", "layer3.0")),
    ("wrn_52_1", 24, ("layer2.0", "layer3.0")),
    ("wrn_52_10", 24, ("layer1.0", "layer2.0", "layer3.0")),
])
def test_zoo_new_norm_lists_are_exact(name, blocks, projections):
    _, report = rs.to_after_activation(meta(rs.create_model, name), dry_run=True)
    found = rs.find_blocks(meta(rs.create_model, name))
    last = "conv3" if "164" in name or "1001" in name else "conv2"
    expected = []
    for b in found:
        expected.append(f"{b.name}.{last}_norm")
        if b.name in projections:
            expected.append(f"{b.name}.shortcut.0_norm")
    assert len(found) == blocks and report.norms_added == tuple(expected)
    assert report.steps[0].norms_removed == tuple(f"{b.name}.bn1" for b in found[1:]) + ("bn_final",)
    assert report.target_sites() == report.target_sites(after=True)  # one activation removed per one added


@pytest.mark.parametrize("name, depths", [("resnetv2_50", (3, 4, 6, 3)), ("resnetv2_101", (3, 4, 23, 3))])
def test_timm_resnetv2_new_norm_lists_are_exact(name, depths):
    _, report = rs.to_after_activation(meta(timm.create_model, name), dry_run=True)
    expected = []
    for s, n in enumerate(depths):
        for i in range(n):
            expected.append(f"stages.{s}.blocks.{i}.conv3_norm")
            if i == 0:
                expected.append(f"stages.{s}.blocks.0.downsample.conv_norm")
    assert report.norms_added == tuple(expected)
    assert report.steps[0].norms_moved == (("stages.0.blocks.0.norm1", "stem.conv_norm", "after the stem conv stem.conv"),)
    assert report.steps[0].norms_removed[-1] == "norm" and len(report.steps[0].norms_removed) == sum(depths)


def test_timm_resnetv2_50_converted_structure_and_back():
    model = timm.create_model("resnetv2_50", layers=(1, 1, 1, 1))  # resnetv2_50's units, one per stage
    new, report = rs.to_after_activation(model, example_input=X64)
    b = "stages.1.blocks.0"
    assert block_ops(new, b) == [f"{b}.{m}" for m in (
        "downsample.conv", "downsample.conv_norm", "downsample.norm", "conv1", "norm2", "conv2", "norm3", "conv3",
        "conv3_norm", "drop_path", "add", "add_act")]
    assert [str(n.target) for n in list(new.graph.nodes)[1:5]] == [
        "stem.conv", "stem.conv_norm", "stem.pool", "stages.0.blocks.0.downsample.conv"]
    assert new.stem.conv_norm is not model.stages[0].blocks[0].norm1  # the caller's model keeps its layer
    assert torch.equal(new.stem.conv_norm.weight, model.stages[0].blocks[0].norm1.weight)  # moved with its values
    assert type(new.get_submodule(f"{b}.conv3_norm")).__name__ == "BatchNormAct2d"
    assert isinstance(new.get_submodule(f"{b}.conv3_norm").act, nn.Identity)  # a norm only: no second activation
    assert new.get_submodule(f"{b}.conv3_norm").num_features == 512
    assert new.get_submodule(f"{b}.downsample.conv_norm").num_features == 512
    assert "norm.weight" in report.state_dict["removed"] and "stem.conv_norm.weight" in report.state_dict["added"]
    assert not any(".norm1." in k for k in new.state_dict())
    back, _ = rs.to_pre_activation(new, example_input=X64)
    assert structure(back, X64) == structure(model, X64)
    composites = ("stages.0.blocks.0.pre_norm", "stages.1.blocks.0.pre_norm", "final_norm")
    assert [type(back.get_submodule(p)).__name__ for p in composites] == ["BatchNormAct2d"] * 3  # composite again


class UserUnit(nn.Module):
    """A user's own pre-activation block: plain BatchNorm2d + F.relu."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.proj = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = x if self.proj is None else self.proj(out)
        return self.conv2(F.relu(self.bn2(self.conv1(out)))) + shortcut


class UserNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.blocks = nn.Sequential(UserUnit(8, 8), UserUnit(8, 16, 2), UserUnit(16, 16))
        self.bn, self.fc = nn.BatchNorm2d(16), nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.blocks(self.stem(x)))).mean((2, 3)))


def test_user_block_with_functional_relu():
    torch.manual_seed(0)
    model = UserNet()
    new, report = rs.to_after_activation(model, example_input=X16)
    assert block_ops(new, "blocks.1") == [
        "blocks.1.proj", "blocks.1.proj_norm", "blocks.1.conv1", "blocks.1.bn2", "blocks.1.relu_1", "blocks.1.conv2",
        "blocks.1.conv2_norm", "blocks.1.add", "blocks.1.add_act"]
    acts = [n for n in new.graph.nodes if n.target is F.relu]
    assert [n.meta["rs_name"] for n in acts if n.meta["rs_name"].endswith(("add_act", "stem_act"))] == [
        "stem_act", "blocks.0.add_act", "blocks.1.add_act", "blocks.2.add_act"]  # same spelling, F.relu
    assert report.norms_added == ("blocks.0.conv2_norm", "blocks.1.conv2_norm", "blocks.1.proj_norm",
                                  "blocks.2.conv2_norm")
    assert report.steps[0].norms_removed == ("blocks.1.bn1", "blocks.2.bn1", "bn")
    # reference: the after-activation network written by hand with the converted model's own layers
    new.eval()

    def reference(x):
        x = F.relu(new.stem_norm(new.stem(x)))
        for b in (new.get_submodule(f"blocks.{i}") for i in range(3)):
            out = b.conv2_norm(b.conv2(F.relu(b.bn2(b.conv1(x)))))
            x = F.relu(out + (b.proj_norm(b.proj(x)) if hasattr(b, "proj_norm") else x))
        return new.fc(x.mean((2, 3)))

    torch.testing.assert_close(new(X16), reference(X16))
    train_step(new, X16)


# ----------------------------------------------------------------------------- round trips
def test_pre_after_pre_round_trip_keeps_structure():
    model = preact_bottleneck_net()
    after, _ = rs.to_after_activation(model, example_input=X16)
    back, report = rs.to_pre_activation(after, example_input=X16)
    assert structure(back, X16) == structure(model, X16)
    assert [r["to"] for r in recipe_of(back)["rewrites"]] == ["after-activation", "pre-activation"]
    assert report.steps[0].norms_moved == (("conv1_norm", "layer1.0.pre_norm",
                                            "leading layer1.0, before the split into two paths"),)


def test_after_pre_after_round_trip_keeps_structure():
    torch.manual_seed(0)
    tv_small = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=10)
    for model, x in ((tv_small, X64),
                     (CifarResNet(Bottleneck, (1, 1, 1), (16, 32, 64), (4, 8, 16), shortcut="B"), X16)):
        pre, _ = rs.to_pre_activation(model, example_input=x)
        back, _ = rs.to_after_activation(pre, example_input=x)
        assert structure(back, x) == structure(model, x), type(model).__name__


# ----------------------------------------------------------------------------- after -> pre and variants
def test_torchvision_resnet18_to_full_preactivation():
    model = torchvision.models.resnet18(num_classes=10)
    new, report = rs.to_pre_activation(model, example_input=X64)
    assert outside_ops(new) == ["conv1", "maxpool", "final_norm", "final_act", "avgpool", "fc"]
    assert block_ops(new, "layer1.0")[:3] == ["layer1.0.pre_norm", "layer1.0.pre_act", "layer1.0.conv1"]
    assert block_ops(new, "layer2.0") == [
        "layer2.0.pre_norm", "layer2.0.pre_act", "layer2.0.conv1", "layer2.0.bn1", "layer2.0.relu", "layer2.0.conv2",
        "layer2.0.downsample.0", "layer2.0.add"]
    proj = new.graph.find_nodes(op="call_module", target="layer2.0.downsample.0")[0]
    assert proj.args[0].target == "layer2.0.pre_act"  # projection shortcuts are also pre-activated
    add = next(n for n in new.graph.nodes if n.meta.get("rs_name") == "layer1.1.add")
    assert add.args[1].meta["rs_name"] == "layer1.0.add"  # identity shortcuts carry the raw sum
    assert report.norms_added == tuple(f"layer{s}.{i}.pre_norm" for s in range(1, 5) for i in range(2)
                                       if (s, i) != (1, 0)) + ("final_norm",)
    assert [new.get_submodule(f"layer{s}.0.pre_norm").num_features for s in range(1, 5)] == [64, 64, 128, 256]
    assert report.steps[0].norms_moved == (("bn1", "layer1.0.pre_norm",
                                            "leading layer1.0, before the split into two paths"),)
    assert report.steps[0].norms_removed == tuple(
        n for s in range(1, 5) for i in range(2)
        for n in [f"layer{s}.{i}.bn2"] + ([f"layer{s}.0.downsample.1"] if s > 1 and i == 0 else []))
    assert new.get_submodule("layer1.0.pre_act").inplace is False
    train_step(new, X64)


def small_after_net():
    torch.manual_seed(0)
    return CifarResNet(Bottleneck, (1, 1), (16, 32), (4, 8), shortcut="B")


@pytest.mark.parametrize("to, order", [
    ("bn-after-add", ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "shortcut.0", "shortcut.1", "add",
                      "bn3", "relu3"]),
    ("relu-before-add", ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3", "relu3", "shortcut.0",
                         "shortcut.1", "add"]),
    ("relu-only-preact", ["pre_act", "conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3", "shortcut.0",
                          "shortcut.1", "add"]),
])
def test_unit_variants_exact_order(to, order):
    model = small_after_net()
    new, report = rs.convert(model, to, example_input=X16)
    assert block_ops(new, "layer2.0") == [f"layer2.0.{m}" for m in order]
    assert report.norms_added == ()
    if to != "relu-only-preact":
        assert report.state_dict["unchanged"]  # the same modules, moved in the graph
    else:
        assert outside_ops(new) == ["stem.conv", "stem.bn", "final_act", "head.pool", "head.flatten", "head.fc"]
        assert block_ops(new, "layer1.0")[0] == "layer1.0.pre_act"
    assert report.target_sites() == report.target_sites(after=True)
    train_step_plain(new)


def train_step_plain(model):
    model.train()
    loss = F.cross_entropy(model(X16), torch.zeros(len(X16), dtype=torch.long))
    loss.backward()
    assert torch.isfinite(loss)


def test_variant_on_preactivation_model_converts_first():
    new, report = rs.convert(wide_resnet(10, 1), "relu-before-add", example_input=X16)
    assert [(s.rewrite, s.settings["to"]) for s in report.steps] == [
        ("convert", "after-activation"), ("convert", "relu-before-add")]
    assert block_ops(new, "layer2.0")[-4:] == ["layer2.0.add_act", "layer2.0.shortcut.0", "layer2.0.shortcut.0_norm",
                                               "layer2.0.add"]


def test_errors_are_one_line_surgery_errors():
    with pytest.raises(NoBlocksError, match=r"^convert: ResNet has no pre-activation blocks$"):
        rs.to_after_activation(meta(torchvision.models.resnet18), dry_run=True)
    with pytest.raises(NoBlocksError, match="pre-activation already"):
        rs.to_pre_activation(meta(rs.create_model, "wrn_52_1"), dry_run=True)
    with pytest.raises(SelectionError, match="unknown unit form 'sideways'"):
        rs.convert(nn.Linear(2, 2), "sideways")


# ----------------------------------------------------------------------------- erase, CLI, save/load
def test_erase_converts_preactivation_first():
    model = meta(rs.create_model, "wrn_52_1")
    _, report = rs.erase(model, proportion=0.5, dry_run=True)
    assert [s.rewrite for s in report.steps] == ["convert", "erase"]
    assert [c.site for c in report.steps[1].changes][:3] == ["layer1.0.add_act", "layer1.2.add_act", "layer1.4.add_act"]
    assert (report.target_sites(), report.target_sites(after=True)) == (49, 49 - 12)
    assert str(report).startswith("relu_surgery convert + erase: wrn_52_1")
    assert "New norms, untrained (convert)  26: layer1.0.conv2_norm" in str(report)
    _, star = rs.erase(model, location="first", blocks="1-2", dry_run=True)  # ER*: the relu after bn2
    assert [c.site for c in star.steps[1].changes] == ["layer1.0.relu_1", "layer1.1.relu_1"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_erase_resnetv2_50_converts_then_erases(capsys):
    code, out, err = run_cli(capsys, "erase", "resnetv2_50", "--proportion", "1.0", "--dry-run", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert [s["rewrite"] for s in data["steps"]] == ["convert", "erase"]
    assert len(data["steps"][0]["norms_added"]) == 20 and data["norms"]["removed"][-1] == "norm"
    assert [c["site"] for c in data["steps"][1]["changes"]][:2] == ["stages.0.blocks.0.add_act",
                                                                     "stages.0.blocks.1.add_act"]
    assert (data["sites_before"]["relu"], data["sites_after"]["relu"]) == (49, 33)


def test_cli_convert_save_load_and_errors(capsys, tmp_path):
    name = "relu_surgery.models.zoo.wide_resnet:wide_resnet"
    code, out, err = run_cli(capsys, "convert", name, "-a", "depth=10", "-a", "widen_factor=1", "--to",
                             "after-activation", "--input-size", "3,16,16", "--out", str(tmp_path / "c"))
    assert code == 0, err
    assert "New norms, untrained (convert)" in out and "layer2.0.shortcut.0_norm" in out
    loaded = rs.load(tmp_path / "c")
    assert block_ops(loaded, "layer1.0")[-2:] == ["layer1.0.add", "layer1.0.add_act"]
    recipe = json.loads((tmp_path / "c" / "recipe.json").read_text())
    assert recipe["rewrites"] == [{"rewrite": "convert", "to": "after-activation"}]
    code, out, err = run_cli(capsys, "convert", "cifar_resnet20", "--to", "after-activation")
    assert code == 2 and err.strip() == "error: convert: cifar_resnet20 has no pre-activation blocks"
    code, out, err = run_cli(capsys, "convert", "cifar_resnet20", "--to", "pre-activation", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["norms"]["moved"][0]["to"] == "layer1.0.pre_norm"


# ----------------------------------------------------------------------------- pre-activation blocks beyond plain units
class SqueezeExcite(nn.Module):
    """pool -> conv1x1 -> relu -> conv1x1 -> sigmoid: the gate of a squeeze-excitation block."""

    def __init__(self, chs):
        super().__init__()
        self.pool, self.fc1, self.fc2 = nn.AdaptiveAvgPool2d(1), nn.Conv2d(chs, chs // 4, 1), nn.Conv2d(chs // 4, chs, 1)

    def forward(self, x):
        return torch.sigmoid(self.fc2(F.relu(self.fc1(self.pool(x)))))


class PreActSEUnit(nn.Module):
    """A hand-written pre-activation basic unit with squeeze-excitation on its residual branch."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.se = SqueezeExcite(cout)
        self.shortcut = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x):
        out = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        out = out * self.se(out)
        return out + self.shortcut(x)


class PreActSENet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.layer1 = nn.Sequential(PreActSEUnit(8, 8), PreActSEUnit(8, 16, 2), PreActSEUnit(16, 16))
        self.bn, self.fc = nn.BatchNorm2d(16), nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.layer1(self.conv1(x)))).mean((2, 3)))


def test_preact_squeeze_excitation_unit_to_after_activation():
    torch.manual_seed(0)
    model = PreActSENet()
    assert [b.form for b in rs.find_blocks(model)] == ["pre-activation"] * 3
    new, report = rs.to_after_activation(model, example_input=X16)
    assert block_ops(new, "layer1.1") == [
        "layer1.1.conv1", "layer1.1.bn2", "layer1.1.relu_1", "layer1.1.conv2", "layer1.1.conv2_norm",
        "layer1.1.se.pool", "layer1.1.se.fc1", "layer1.1.se.relu", "layer1.1.se.fc2", "layer1.1.se.sigmoid",
        "layer1.1.mul", "layer1.1.shortcut.0", "layer1.1.shortcut.0_norm", "layer1.1.add", "layer1.1.add_act"]
    assert report.norms_added == ("layer1.0.conv2_norm", "layer1.1.conv2_norm", "layer1.1.shortcut.0_norm",
                                  "layer1.2.conv2_norm")
    assert report.steps[0].norms_moved == (("layer1.0.bn1", "conv1_norm", "after the stem conv conv1"),)
    assert report.steps[0].norms_removed == ("layer1.1.bn1", "layer1.2.bn1", "bn")
    assert report.warnings == [] and report.target_sites() == report.target_sites(after=True)
    # reference: the after-activation SE network written by hand with the converted model's own layers
    new.eval()

    def reference(x):
        x = F.relu(new.conv1_norm(new.conv1(x)))
        for i in range(3):
            b = new.get_submodule(f"layer1.{i}")
            out = b.conv2_norm(b.conv2(F.relu(b.bn2(b.conv1(x)))))
            out = out * torch.sigmoid(b.se.fc2(F.relu(b.se.fc1(b.se.pool(out)))))  # the gate reads the new norm
            shortcut = b.get_submodule("shortcut.0_norm")(b.get_submodule("shortcut.0")(x)) if i == 1 else x
            x = F.relu(out + shortcut)
        return new.fc(x.mean((2, 3)))

    torch.testing.assert_close(new(X16), reference(X16))
    train_step(new, X16)
    _, erased = rs.erase(model, proportion=1.0, example_input=X16, dry_run=True)  # EraseReLU converts it first
    assert [s.rewrite for s in erased.steps] == ["convert", "erase"]
    assert [c.site for c in erased.steps[1].changes] == ["layer1.0.add_act", "layer1.1.add_act", "layer1.2.add_act"]


def densenet(builder=torchvision.models.densenet121):
    return meta(builder)


def test_dense_layers_say_once_why_they_cannot_be_converted():
    assert DENSE_LAYER.startswith("dense layers have no residual sum; ")
    model = densenet()
    assert {b.form for b in rs.find_blocks(model)} == {"pre-activation"}
    message = f"convert: none of DenseNet's 58 pre-activation blocks can be converted to after-activation: {DENSE_LAYER}"
    with pytest.raises(NoBlocksError) as caught:
        rs.to_after_activation(model, dry_run=True)
    assert str(caught.value) == message and "has no pre-activation blocks" not in message
    _, report = rs.erase(model, proportion=1.0, dry_run=True)
    assert [s.rewrite for s in report.steps] == ["erase"] and report.changes == ()
    assert report.warnings[0] == (
        "block 1 (features.denseblock1.denselayer1, _DenseLayer) has no last activation: it is pre-activation but "
        f"cannot be converted to after-activation: {DENSE_LAYER}; nothing erased there")
    assert len(report.warnings) == 58 and all(DENSE_LAYER in w and "convert it" not in w for w in report.warnings)
    with pytest.raises(NoBlocksError, match=r"^convert: DenseNet has no after-activation residual blocks with a "
                                            r"norm after the last conv \(its blocks are pre-activation and cannot be "
                                            r"converted to after-activation: dense layers have no residual sum; "):
        rs.convert(model, "bn-after-add", dry_run=True)


class DenseLayer(nn.Module):
    """A hand-written dense layer (BN-ReLU-conv twice) whose output is concatenated with its input."""

    def __init__(self, cin, growth):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, 2 * growth, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(2 * growth), nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.cat([self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x)))))), x], 1)


def test_unconvertible_blocks_beside_convertible_ones_are_named_in_the_warnings():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), UserUnit(8, 8), DenseLayer(8, 4), nn.Flatten(),
                          nn.Linear(12 * 16 * 16, 10))
    _, report = rs.to_after_activation(model, example_input=X16, dry_run=True)
    assert report.warnings == [f"block 2 (2, DenseLayer) is pre-activation but cannot be converted to "
                               f"after-activation: {DENSE_LAYER}: left as is"]
    assert report.norms_added == ("1.conv2_norm",)
    _, erased = rs.erase(model, example_input=X16, dry_run=True)
    assert [s.rewrite for s in erased.steps] == ["convert", "erase"]
    assert [c.site for c in erased.steps[1].changes] == ["1.add_act"]
    assert erased.steps[1].warnings == (f"block 2 (2, DenseLayer) has no last activation: it is pre-activation but "
                                        f"cannot be converted to after-activation: {DENSE_LAYER}; nothing erased there",)


def test_cli_densenet_erase_and_convert_give_the_same_reason(capsys):
    code, out, err = run_cli(capsys, "convert", "densenet121", "--to", "after-activation", "--dry-run")
    assert code == 2 and out == ""
    assert err == ("error: convert: none of densenet121's 58 pre-activation blocks can be converted to "
                   f"after-activation: {DENSE_LAYER}\n")
    code, out, err = run_cli(capsys, "erase", "densenet121", "--proportion", "1.0", "--dry-run")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("error: the erase plan changes nothing: block 1 (features.denseblock1.denselayer1, "
                          "DenseLayer) has no last activation: it is pre-activation but cannot be converted to "
                          f"after-activation: {DENSE_LAYER}; nothing erased there (and 57 more like it); ")
