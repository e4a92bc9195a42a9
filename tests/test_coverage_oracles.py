"""The coverage sweep's oracles (bench/coverage.py) on hand-made inputs: no block discovery involved.

The found block lists and the blocks' sites are written by hand here, so these tests hold whatever
the discovery code finds.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from relu_surgery.graph.records import Block, Site
from relu_surgery.graph.tracing import trace

from .shared_data import one_thread  # noqa: F401 (fixture)

_PATH = Path(__file__).resolve().parents[1] / "bench" / "coverage.py"
_SPEC = importlib.util.spec_from_file_location("bench_coverage", _PATH)  # not "coverage": the package
cov = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(cov)

RESNET18 = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]


@pytest.fixture(scope="module")
def resnet18():
    import timm

    with torch.device("meta"):
        return timm.create_model("resnet18")


# --- stage oracle ---------------------------------------------------------------------------


def test_resnet18_stages_are_its_layers(resnet18):
    stages, why = cov.oracle_stages(resnet18)
    assert why == ""
    assert list(stages) == ["layer1", "layer2", "layer3", "layer4"]  # act1 (the stem) gives nothing
    assert [o for kids in stages.values() for o in kids] == RESNET18


def test_resnet18_explicit_blocks_equal(resnet18):
    stages, _ = cov.oracle_stages(resnet18)
    assert cov.compare_stages(stages, RESNET18, resnet18) == {"outcome": "equal"}
    # blocks outside the stages (a stem unit) do not count
    assert cov.compare_stages(stages, ["conv1", *RESNET18], resnet18)["outcome"] == "equal"


def test_inner_part_instead_of_block_disagrees(resnet18):
    stages, _ = cov.oracle_stages(resnet18)
    found = ["layer1.0.conv1", *RESNET18[1:]]
    result = cov.compare_stages(stages, found, resnet18)
    assert result["outcome"] == "disagree"
    assert "layer1.0 (only layer1.0.conv1)" in result["detail"]
    assert result["oracle"] == RESNET18 and result["found"] == found


def test_missing_block_disagrees(resnet18):
    stages, _ = cov.oracle_stages(resnet18)
    result = cov.compare_stages(stages, RESNET18[:-1], resnet18)
    assert result["outcome"] == "disagree" and "layer4.1 (not found)" in result["detail"]


def test_split_blocks_are_finer(resnet18):
    stages, _ = cov.oracle_stages(resnet18)
    found = ["layer1.0.conv1", "layer1.0.conv2", *RESNET18[1:]]
    rules = {"layer1.0.conv1": "residual", "layer1.0.conv2": "residual"}
    result = cov.compare_stages(stages, found, resnet18, rules)
    assert result["outcome"] == "finer"
    assert result["reason_class"] == "several residual units per stage child"  # conv1 + conv2: all its weights
    assert cov.compare_stages(stages, found, resnet18)["reason_class"] == "unclassified"  # not residual units
    # layer2.0 also has a downsample conv: two parts that leave it out are no documented split
    found = ["layer2.0.conv1", "layer2.0.conv2", *[b for b in RESNET18 if b != "layer2.0"]]
    rules = {"layer2.0.conv1": "residual", "layer2.0.conv2": "residual"}
    assert cov.compare_stages(stages, found, resnet18, rules)["reason_class"] == "unclassified"


def test_stage_as_one_block_is_coarser(resnet18):
    stages, _ = cov.oracle_stages(resnet18)
    found = ["layer1", *RESNET18[2:]]
    result = cov.compare_stages(stages, found, resnet18, {"layer1": "residual"})
    assert result["outcome"] == "coarser" and result["reason_class"] == "residual around the whole stage"
    assert "layer1.0 in layer1" in result["detail"]
    assert cov.compare_stages(stages, found, resnet18)["reason_class"] == "unclassified"


def test_csp_stage_as_one_block_is_coarser():
    import timm

    with torch.device("meta"):
        model = timm.create_model("cspresnet50")
    stages, _ = cov.oracle_stages(model)
    assert list(stages) == [f"stages.{i}.blocks" for i in range(4)]  # stem.conv1 gives nothing
    assert stages["stages.0.blocks"] == ["stages.0.blocks.0", "stages.0.blocks.1", "stages.0.blocks.2"]
    result = cov.compare_stages(stages, [f"stages.{i}" for i in range(4)], model)
    assert result["outcome"] == "coarser"
    assert result["reason_class"] == "cross-stage (CSP) region spans the stage"
    assert result["reason_class"] in cov.STAGE_REASONS


class Unit(nn.Module):
    def __init__(self, c=4):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class Mixer(nn.Module):  # a block-like module that is not a container
    def __init__(self):
        super().__init__()
        self.a, self.b = Unit(), Unit()

    def forward(self, x):
        return self.b(self.a(x))


class Branchy(nn.Module):  # HRNet-style stage child: parallel branches of blocks, and a fuse conv
    def __init__(self):
        super().__init__()
        self.branches = nn.ModuleList([nn.Sequential(Unit(), Unit()), nn.Sequential(Unit(), Unit())])
        self.fuse = nn.Conv2d(4, 4, 1)


class RegStage(nn.Module):
    def __init__(self, n):
        super().__init__()
        for i in range(n):
            self.add_module(f"b{i + 1}", Unit())


class Stage(nn.Module):
    def __init__(self):
        super().__init__()
        self.downsample = nn.Conv2d(4, 4, 2, stride=2)
        self.blocks = nn.Sequential(Unit(), Unit())


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.stages = nn.Sequential(Stage(), Stage())
        self.vit = nn.Sequential(Mixer(), Mixer(), Mixer())
        self.hr = nn.Sequential(Branchy())
        self.s1, self.s2 = RegStage(1), RegStage(2)
        self.nested = nn.Sequential(nn.Sequential(Unit(), Unit()), Unit())
        self.feature_info = [dict(module=m) for m in (
            "stem.2", "stages.0", "stages.1", "vit.1", "vit.2", "hr", "s1", "s2", "nested")]


def test_stage_rules_on_a_hand_made_model():
    stages, why = cov.oracle_stages(Toy())
    assert why == ""
    assert stages == {
        "stages.0.blocks": ["stages.0.blocks.0", "stages.0.blocks.1"],  # .blocks; the downsample is no block
        "stages.1.blocks": ["stages.1.blocks.0", "stages.1.blocks.1"],
        "vit": ["vit.0", "vit.1", "vit.2"],  # feature_info names two of its children: the parent is the stage
        "hr": ["hr.0"],
        "s1": ["s1.b1"], "s2": ["s2.b1", "s2.b2"],  # a stage module holding only blocks
        "nested": ["nested.0.0", "nested.0.1", "nested.1"],  # a container child stands for its children
    }


def test_parallel_branches_are_documented_finer():
    model = Toy()
    stages, _ = cov.oracle_stages(model)
    stages = {"hr": stages["hr"]}
    found = [f"hr.0.branches.{i}.{j}" for i in range(2) for j in range(2)]
    result = cov.compare_stages(stages, found, model, {f: "residual" for f in found})
    assert result["outcome"] == "finer" and result["reason_class"] == "parallel branches per stage child"


class RepUnit(nn.Module):
    """MobileOne-like: one class, a 3x3 + 1x1 version (two weight layers) or a 1x1-only one (one)."""

    def __init__(self, two: bool):
        super().__init__()
        self.kxk = nn.Conv2d(4, 4, 3, padding=1)
        self.scale = nn.Conv2d(4, 4, 1) if two else None
        self.act = nn.ReLU()


def test_children_of_a_block_class_are_blocks():
    stage = nn.Sequential(RepUnit(True), RepUnit(False), RepUnit(True), nn.Conv2d(4, 4, 1),
                          nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU()))
    names = [n for n, _ in cov._block_children("s", stage)]
    assert names == ["s.0", "s.1", "s.2"]  # the one-conv RepUnit too; not the plain conv or conv-act Sequential
    assert [n for n, _ in cov._block_children("s", nn.Sequential(RepUnit(False), RepUnit(False)))] == []


def test_an_erasure_that_changes_nothing_is_no_op_not_wrong():
    before = {"a": (0.0, 2.0), "b": (0.0, 2.0), "c": (-1.0, 2.0)}
    after = {"a": (0.0, 2.0), "b": (0.0, 3.0), "c": (-1.0, 2.0)}
    wrong, na = cov.check_rewrites([("a.act", "a"), ("b.act", "b"), ("c.act", "c")], before, after)
    assert wrong == [["b.act", "b", 0.0, 0.0], ["c.act", "c", -1.0, -1.0]]  # changed yet >= 0; was < 0 before
    assert na == [["a.act", "no-op erasure: the block output is unchanged (the ReLU's input was already >= 0)"]]


def test_no_feature_info_and_nothing_named():
    assert cov.oracle_stages(nn.Sequential(nn.Conv2d(3, 4, 3))) == ({}, "no feature_info")
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    net.feature_info = [dict(module="1")]
    stages, why = cov.oracle_stages(net)
    assert stages == {} and why.startswith("feature_info names no block containers (1")


def test_stage_oracle_row(resnet18):
    blocks = [Block(i, n, "BasicBlock", n.split(".")[0], ()) for i, n in enumerate(RESNET18, 1)]
    assert cov.stage_oracle(resnet18, "timm", blocks) == {"stage_oracle": "equal"}
    row = cov.stage_oracle(resnet18, "timm", blocks[1:])
    assert row["stage_oracle"] == "disagree" and row["stage_found_blocks"] == RESNET18[1:]
    assert cov.stage_oracle(resnet18, "torchvision", blocks)["stage_oracle"] == "n/a"


# --- sign oracle ----------------------------------------------------------------------------


class ReluEnd(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class BnEnd(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)

    def forward(self, x):
        return self.bn(self.conv(x))


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = ReluEnd(3, 8), BnEnd(8)

    def forward(self, x):
        return self.b(self.a(x)).mean((2, 3))


def _site(name, location="last"):
    return Site(name, "relu", "nn.ReLU", location, 1, name.replace(".", "_"))


RIGHT = [Block(1, "a", "ReluEnd", None, (_site("a.act"),)), Block(2, "b", "BnEnd", None, ())]
SWAPPED = [Block(1, "a", "ReluEnd", None, ()), Block(2, "b", "BnEnd", None, (_site("b.act"),))]


@pytest.fixture
def tiny(one_thread):
    torch.manual_seed(0)
    model = Tiny().eval()
    cov.randomize_norms(model)
    return model, torch.randn(1, 3, 16, 16)


def test_activation_family():
    conv = nn.Conv2d(3, 4, 3)
    assert cov.activation_family(nn.Sequential(conv, nn.ReLU())) == ("relu", "")
    assert cov.activation_family(nn.Sequential(conv, nn.ReLU6(), nn.Sigmoid())) == ("relu+gate", "")
    assert cov.activation_family(nn.Sequential(conv, nn.ReLU(), nn.GELU()))[0] is None
    assert cov.activation_family(nn.Sequential(nn.Linear(3, 3), nn.ReLU())) == (None, "not a CNN (no Conv2d)")
    assert cov.activation_family(nn.Sequential(conv, nn.Hardtanh(0.0, 6.0)))[0] == "relu"

    class Functional(nn.Module):
        def __init__(self, act):
            super().__init__()
            self.conv, self.act = nn.Conv2d(3, 4, 3), act

        def forward(self, x):
            return self.act(self.conv(x))

    for act, family in [(F.relu, "relu"), (lambda x: F.hardtanh(x, 0.0, 6.0), "relu"), (F.silu, None),
                        (lambda x: F.hardtanh(x), None), (torch.sigmoid, None)]:
        model = Functional(act)
        gm = torch.fx.symbolic_trace(model)
        assert cov.activation_family(model, [gm])[0] == family, act


def test_block_outputs_and_the_sign_rule(tiny):
    model, x = tiny
    outputs = cov.module_outputs(model, ["a", "b", "nope"], x)
    assert outputs["a"][0] == 0.0 and outputs["b"][0] < 0  # ReLU zeros; a randomised BN goes negative
    assert outputs["nope"] == "not a module (virtual block)"
    assert cov.check_signs(RIGHT, dict(outputs)) == ([], [], 2)
    contradictions, na, checked = cov.check_signs(SWAPPED, dict(outputs), lambda names: cov.module_outputs(
        model, names, x))
    assert checked == 2 and na == []
    assert [c[0] for c in contradictions] == ["b", "a"]  # b: a last ReLU, yet negative; a: none, yet >= 0
    assert contradictions[0][1].startswith(">= 0") and contradictions[1][1] == "some < 0 (no last site)"


def test_second_draw_clears_a_positive_affine(one_thread):
    class Affine(nn.Module):  # relu, then a learnable scalar affine: >= 0 only for some weights
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.scale, self.shift = nn.Parameter(torch.tensor(2.0)), nn.Parameter(torch.tensor(0.5))

        def forward(self, x):
            return F.relu(self.conv(x)) * self.scale + self.shift

    model, x = nn.Sequential(Affine()), torch.randn(1, 3, 8, 8)
    blocks = [Block(1, "0", "Affine", None, ())]
    outputs = cov.module_outputs(model, ["0"], x)
    assert outputs["0"][0] >= 0.5
    assert cov.check_signs(blocks, dict(outputs))[0]  # without a second draw: a contradiction
    before = [p.clone() for p in model.parameters()]
    assert cov.check_signs(blocks, dict(outputs), lambda n: cov._flipped_outputs(model, n, x))[0] == []
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))  # restored


def test_unit_named_after_its_first_layer_is_not_checked(tiny):
    model, x = tiny
    unit = [Block(1, "a.conv", "Conv2d", None, (_site("a.act"),))]  # VGG-style unit: conv -> relu
    outputs = cov.module_outputs(model, ["a.conv"], x)
    contradictions, na, checked = cov.check_signs(unit, outputs)
    assert (contradictions, checked) == ([], 0) and "outside module a.conv" in na[0][1]
    assert isinstance(outputs["a.conv"], str)  # so the rewrite check skips it too
    assert cov.check_rewrites([("a.act", "a.conv")], outputs, {"a.conv": (-1.0, 1.0)})[0] == []


def test_graph_outputs_match_hooks_and_see_an_erased_relu(tiny):
    model, x = tiny
    gm = trace(model).graph_module
    assert cov.graph_outputs(gm, ["a", "b"], x) == cov.module_outputs(model, ["a", "b"], x)
    relu = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == "a.act")
    relu.replace_all_uses_with(relu.args[0])  # erase a's ReLU by hand
    gm.graph.erase_node(relu)
    gm.recompile()
    before, after = cov.module_outputs(model, ["a"], x), cov.graph_outputs(gm, ["a"], x)
    assert after["a"][0] < 0
    assert cov.check_rewrites([("a.act", "a")], before, after) == ([], [])
    # erasing b's (non-existent) last activation changes nothing: a wrong rewrite
    wrong, na = cov.check_rewrites([("b.act", "b"), ("x", "gone")], cov.module_outputs(model, ["b"], x),
                                   cov.graph_outputs(gm, ["b"], x))
    assert [w[:2] for w in wrong] == [["b.act", "b"]] and na == [["x", "before: not among the sweep's blocks"]]


def test_materialize_fills_a_meta_model(one_thread):
    with torch.device("meta"):
        model = Tiny()
    cpu = cov._materialize(model, "timm", "unused")
    params = list(cpu.parameters())
    assert all(p.device.type == "cpu" and torch.isfinite(p).all() and p.abs().sum() > 0 for p in params)
    assert len({tuple(p.flatten()[:4].tolist()) for p in params if p.numel() >= 4}) == \
        sum(1 for p in params if p.numel() >= 4)  # no two parameters read the same noise
    cov.randomize_norms(cpu)
    assert (cpu.b.bn.running_var >= 0.5).all() and (cpu.b.bn.running_var <= 2).all()
    assert cpu.eval()(torch.randn(1, 3, 8, 8)).shape == (1, 8)


def test_summary_counts_and_prints(capsys):
    rows = [
        {"model": "m1", "source": "timm", "outcome": "traced", "seconds": 1.0, "stage_oracle": "equal",
         "sign_oracle": "ok", "sign_blocks_checked": 4, "sign_erased": 4, "sign_contradictions": [],
         "wrong_rewrites": [], "sign_s": 0.5},
        {"model": "m2", "source": "timm", "outcome": "traced", "seconds": 1.0, "stage_oracle": "finer",
         "reason_class": "parallel branches per stage child", "stage_oracle_detail": "x",
         "sign_oracle": "contradicts", "sign_blocks_checked": 2, "sign_erased": 1,
         "sign_contradictions": [["b", "some < 0 (no last site)", 0.0]], "wrong_rewrites": [["s", "b", 0.0, 0.0]],
         "sign_s": 0.25},
        {"model": "m3", "source": "timm", "outcome": "traced", "seconds": 1.0, "stage_oracle": "finer",
         "reason_class": "unclassified", "sign_oracle": "n/a", "sign_oracle_why": "activations gelu"},
        {"model": "m4", "source": "timm", "outcome": "traced", "seconds": 1.0, "stage_oracle": "disagree",
         "sign_oracle": "n/a", "sign_oracle_why": "skipped: 200M parameters > 150M"},
        {"model": "m5", "source": "torchvision", "outcome": "traced", "seconds": 1.0, "stage_oracle": "n/a",
         "stage_oracle_detail": "torchvision model (no feature_info)", "sign_oracle": "n/a",
         "sign_oracle_why": "activations gelu"},
    ]
    summary = cov.summarize(rows, 3.0)
    stage, sign = summary["oracles"]["stage"], summary["oracles"]["sign"]
    assert (stage["applied"], stage["equal"], stage["finer"], stage["disagree"]) == (4, 1, 2, 1)
    assert stage["equal_or_documented_pct"] == 50.0
    assert stage["disagree_models"] == ["m4"] and stage["undocumented_models"] == ["m3"]
    assert stage["not_applied"] == {"torchvision model": 1}
    assert (sign["applied"], sign["contradictions"], sign["wrong_rewrites"]) == (2, 1, 1)
    assert sign["contradicting_models"] == ["m2"] and sign["wrong_rewrite_models"] == ["m2"]
    assert sign["not_applied"] == {"activations gelu": 2, "skipped": 1}
    assert cov._documented({"reason_class": "parallel branches per stage child + residual around the whole stage"})
    assert not cov._documented({"reason_class": "parallel branches per stage child + unclassified"})
    cov.print_summary(summary, rows)
    out = capsys.readouterr().out
    assert "stage oracle (timm feature_info): applied to 4" in out and "disagree (1): m4" in out
    text = cov.dump_results({"m": 1}, summary, rows)
    import json

    assert json.loads(text)["models"] == rows and len(text.splitlines()) > len(rows)


def test_meta_builds_skip_initialisation_but_keep_the_structure():
    import timm

    with torch.device("meta"):
        plain = timm.create_model("resnet18")
    fast, device = cov._build("timm", "resnet18")
    assert device == "meta" and all(p.is_meta for p in fast.parameters())
    assert [(n, tuple(p.shape)) for n, p in fast.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in plain.named_parameters()]
    with cov._MetaInit():  # real tensors are initialised as usual
        w = torch.zeros(3).normal_()
    assert w.abs().sum() > 0


class _OneConvResidual(nn.Module):  # iFormer's RepCPE: x + depthwise conv-norm(x), one weight layer
    def __init__(self, ch=4):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1, groups=ch, bias=False)
        self.bn = nn.BatchNorm2d(ch)

    def forward(self, x):
        return x + self.bn(self.conv(x))


def test_a_one_layer_residual_child_is_block_like_a_downsample_is_not():
    assert cov._skips_input(_OneConvResidual()) and cov._block_like(_OneConvResidual())
    with torch.device("meta"):
        meta = _OneConvResidual()
    assert cov._skips_input(meta)  # built on meta: run on a CPU copy
    downsample = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    strided = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8))
    assert not cov._skips_input(downsample) and not cov._block_like(downsample)
    assert not cov._skips_input(strided)


def _mixer_layer(ch=4):  # ConvMixer: Sequential(Residual(depthwise conv, norm), pointwise conv, act, norm)
    return nn.Sequential(_OneConvResidual(ch), nn.Conv2d(ch, ch, 1), nn.ReLU(), nn.BatchNorm2d(ch))


def test_a_container_of_one_residual_and_bare_layers_is_one_oracle_block():
    net = nn.Module()
    net.stem = nn.Conv2d(3, 4, 3)
    net.blocks = nn.Sequential(_mixer_layer(), _mixer_layer(), _mixer_layer())
    net.feature_info = [{"module": f"blocks.{i}"} for i in range(3)]
    stages, why = cov.oracle_stages(net)
    assert stages == {"blocks": ["blocks.0", "blocks.1", "blocks.2"]} and why == ""
    assert cov._expand("b", _mixer_layer()) == ["b"]
    csat_like = nn.Sequential(nn.Conv2d(4, 4, 2, stride=2), _mixer_layer(), _mixer_layer())  # downsample, 2 blocks
    assert cov._expand("s", csat_like) == ["s.1", "s.2"]


def test_update_replaces_only_the_filtered_rows_and_keeps_the_sweep_wall(tmp_path, capsys):
    out = tmp_path / "coverage.json"
    assert cov.main(["--filter", "resnet18,resnet10t", "--no-sign", "--workers", "1", "--out", str(out),
                     "--note", "first"]) == 0
    first = json.loads(out.read_text())
    fresh = first["models"][0]
    stale = {**fresh, "stage_oracle": "disagree", "blocks": 0}
    first["models"][0] = stale
    out.write_text(json.dumps(first))
    assert cov.main(["--filter", stale["model"], "--no-sign", "--workers", "1", "--out", str(out), "--update"]) == 0
    second = json.loads(out.read_text())
    rows = {(r["source"], r["model"]): r for r in second["models"]}
    assert len(rows) == len(first["models"]) and rows[(stale["source"], stale["model"])]["blocks"] == fresh["blocks"] > 0
    assert rows[(stale["source"], stale["model"])]["stage_oracle"] == fresh["stage_oracle"] == "equal"
    assert second["summary"]["wall_seconds"] == first["summary"]["wall_seconds"]
    assert second["meta"]["notes"] == ["first"] and second["meta"]["updates"][0]["models"] == 1
    with pytest.raises(SystemExit):
        cov.main(["--update", "--out", str(tmp_path / "missing.json")])


def test_a_bare_downsample_beside_a_container_of_blocks_stays_a_stage():
    rdnet_like = nn.Sequential(nn.BatchNorm2d(4), nn.Conv2d(4, 4, 2, stride=2), nn.Sequential(_mixer_layer(), _mixer_layer()))
    assert cov._expand("s", rdnet_like) == ["s.2.0", "s.2.1"]
