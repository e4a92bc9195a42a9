"""Models whose root cannot be traced: rewritten inside the largest parts that can (issue 16)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

import relu_surgery as rs
from relu_surgery.graph.provenance import recipe_of
from relu_surgery.cli import main
from relu_surgery.graph.example_inputs import describe_input, example_input_for
from relu_surgery.graph.part_analysis import analyze_parts
from relu_surgery.graph.parts import find_parts, walk

from .shared_data import one_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


class Res(nn.Module):
    """A residual block; ``last_relu=False`` is the hand-written EraseReLU of it."""

    def __init__(self, c: int, last_relu: bool = True):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu, self.last_relu = nn.ReLU(), last_relu

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + x
        return self.relu(out) if self.last_relu else out


class Stage(nn.Module):
    """A stage whose own forward branches on values: it stays Python, its blocks are traced alone."""

    def __init__(self, c: int, n: int, erased=()):
        super().__init__()
        self.blocks = nn.ModuleList(Res(c, i not in erased) for i in range(n))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x if bool(torch.isfinite(x).all()) else torch.nan_to_num(x)


class Net(nn.Module):
    """Root forward with data-dependent control flow and a ``child.forward(x)`` call; stage2 is defined
    before stage1 but runs after it, so module order and execution order differ."""

    def __init__(self, erased1=(), erased2=()):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.stage2 = nn.Sequential(*(Res(8, i not in erased2) for i in range(3)))
        self.stage1 = Stage(8, 2, erased1)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stage1.forward(self.stem(x))
        x = self.stage2(x) if x.mean() > 0 else -self.stage2(x)
        return self.head(x.mean((2, 3)))


def test_parts_of_a_user_model_and_their_reasons():
    tree = find_parts(Net())
    rows = [(p.path or "(root)", p.is_traced, p.reason.split(":")[0]) for p in walk(tree)]
    assert rows == [("(root)", False, "TraceError"), ("stem", True, ""), ("stage2", True, ""),
                    ("stage1", False, "TraceError"), ("stage1.blocks", False, "no forward of its own (its parent "
                                                                            "calls its items or methods)"),
                    ("stage1.blocks.0", True, ""), ("stage1.blocks.1", True, ""), ("head", True, "")]


def test_user_model_blocks_in_execution_order_and_erase_matches_a_hand_written_reference():
    torch.manual_seed(0)
    model = Net().eval()
    x = torch.randn(2, 3, 16, 16)
    blocks = rs.find_blocks(model, x)
    assert [(b.index, b.name, b.type) for b in blocks] == [
        (1, "stage1.blocks.0", "Res"), (2, "stage1.blocks.1", "Res"),
        (3, "stage2.0", "Res"), (4, "stage2.1", "Res"), (5, "stage2.2", "Res")]  # the stem's unit does not count
    assert [s.name for b in blocks for s in b.last_sites][:3] == [
        "stage1.blocks.0.relu_1", "stage1.blocks.1.relu_1", "stage2.0.relu_1"]
    new, report = rs.erase(model, proportion=0.5, example_input=x)
    assert [c.site for c in report.changes] == ["stage1.blocks.0.relu_1", "stage2.0.relu_1", "stage2.2.relu_1"]
    assert report.selected == (1, 3, 5) and report.state_dict["unchanged"]
    assert type(new).__name__ == "Net" and type(new.stage1).__name__ == "Stage"  # Python parents, kept
    assert isinstance(new.stage1.blocks[0], torch.fx.GraphModule) and isinstance(new.stage2, torch.fx.GraphModule)
    assert not isinstance(new.stage1.blocks[1], torch.fx.GraphModule)  # unchanged parts are not swapped
    reference = Net(erased1=(0,), erased2=(0, 2)).eval()
    reference.load_state_dict(model.state_dict())
    new.eval()
    with torch.no_grad():
        for sign in (1.0, -1.0):  # both branches of the root's data-dependent `if`
            inputs = sign * torch.rand(2, 3, 16, 16) + 0.1 * torch.randn(2, 3, 16, 16)
            assert (new(inputs) - reference(inputs)).abs().max().item() < 1e-6
    assert report.partial["order"].startswith("execution order: forward hooks on the example input (cpu device)")
    assert report.forward_check["finite"] and report.forward_check["input_shape"] == "tensor (2, 3, 16, 16)"


def test_rewrites_chain_on_installed_parts_and_replay_from_a_save(tmp_path):
    torch.manual_seed(0)
    model = rs.create_model("tests.test_partial:Net")  # the recipe can rebuild it (user code: trust_code)
    x = torch.randn(2, 3, 16, 16)
    erased, _ = rs.erase(model, proportion=0.5, example_input=x)
    swapped, report = rs.swap(erased, to="prelu", location="first", example_input=x)
    assert [c.site for c in report.changes] == [f"{b}.relu" for b in (
        "stage1.blocks.0", "stage1.blocks.1", "stage2.0", "stage2.1", "stage2.2")]
    assert [r["rewrite"] for r in recipe_of(swapped)["rewrites"]] == ["erase", "swap"]
    back = rs.load(rs.save(swapped, tmp_path / "chain", report), trust_code=True)
    assert list(back.state_dict()) == list(swapped.state_dict())
    swapped.eval(), back.eval()
    with torch.no_grad():
        assert torch.equal(back(x), swapped(x))


def test_rule_precedence_is_decided_across_parts():
    with torch.device("meta"):
        model = rs.create_model("tv:fasterrcnn_resnet50_fpn")
    pa = analyze_parts(model)
    holding = {p.path: len(p.blocks) for p in pa.parts if p.blocks}
    assert holding == {"backbone": 16}  # the FPN sums (no activation, no shortcut), box_head and RPN units do not count
    assert [b.type for b in pa.blocks].count("Bottleneck") == 16
    traced = [p.path for p in walk(pa.tree) if p.is_traced]
    assert traced[:2] == ["backbone", "rpn.head.conv"] and "roi_heads.box_head" in traced


def test_example_inputs_follow_the_models_convention():
    import torchvision

    raft = torchvision.models.optical_flow.raft_small()
    assert describe_input(example_input_for(raft)) == "tuple of 2 tensors (1, 3, 224, 224), (1, 3, 224, 224)"
    with torch.device("meta"):
        detector = rs.create_model("tv:ssdlite320_mobilenet_v3_large")
    assert describe_input(example_input_for(detector)) == "list of 1 image (3, 224, 224)"
    pa = analyze_parts(detector, torch.zeros(2, 3, 64, 64, device="meta"))  # --input-size: a batch -> images
    assert pa.summary()["input"] == "list of 2 images (3, 64, 64), (3, 64, 64)"


def test_raft_blocks_over_its_three_traced_encoders():
    import torchvision

    pa = analyze_parts(torchvision.models.optical_flow.raft_small())
    assert {p["path"]: p["traced"] for p in pa.summary()["parts"]} == {
        "": False, "feature_encoder": True, "context_encoder": True, "corr_block": False, "update_block": True}
    assert [b.name.split(".")[0] for b in pa.blocks] == ["feature_encoder"] * 6 + ["context_encoder"] * 6 + [
        "update_block"] * 2


_DETECTOR = {"min_size": 64, "max_size": 80, "rpn_pre_nms_top_n_test": 20, "rpn_post_nms_top_n_test": 20,
             "box_detections_per_img": 10}
_IMAGES = [torch.rand(3, 128, 160, generator=torch.Generator().manual_seed(1)),
           torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(2))]


@pytest.fixture(scope="module")
def erased_detector():
    torch.manual_seed(0)
    model = rs.create_model("tv:fasterrcnn_resnet50_fpn", **_DETECTOR)  # random weights, weights_backbone=None
    new, report = rs.erase(model, proportion=1.0, example_input=_IMAGES)
    return model, new, report


def test_fasterrcnn_erase_removes_the_16_bottleneck_relus(erased_detector):
    model, new, report = erased_detector
    expected = [f"backbone.body.layer{s}.{i}.relu_2" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3)) for i in range(n)]
    assert [c.site for c in report.changes] == expected
    assert report.state_dict["unchanged"] and report.target_sites() - report.target_sites(after=True) == 16
    parts = {p["path"]: p for p in report.partial["parts"]}
    assert parts["backbone"]["traced"] and parts["backbone"]["blocks"] == 16
    assert not parts[""]["traced"] and parts[""]["reason"] == "TraceError: Proxy object cannot be iterated"
    assert report.partial["input"] == "list of 2 images (3, 128, 160), (3, 96, 128)"
    assert report.forward_check["finite"] and report.forward_check["outputs"].startswith("[0]['boxes'] (")
    assert list(new.state_dict()) == list(model.state_dict())
    assert type(new).__name__ == "FasterRCNN" and isinstance(new.backbone, torch.fx.GraphModule)
    assert type(model.backbone).__name__ == "BackboneWithFPN"  # the caller's model is untouched


def test_fasterrcnn_erased_returns_detections_and_saves_and_loads(erased_detector, tmp_path):
    _, new, report = erased_detector
    new.eval()
    with torch.no_grad():
        out = new(_IMAGES)
    assert len(out) == 2 and all(set(o) == {"boxes", "labels", "scores"} for o in out)
    assert all(o["boxes"].shape[1:] == (4,) and o["boxes"].shape[0] == o["scores"].shape[0] for o in out)
    back = rs.load(rs.save(new, tmp_path / "det", report))
    assert list(back.state_dict()) == list(new.state_dict())
    back.eval()
    with torch.no_grad():
        again = back(_IMAGES)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(out, again) for k in a)


def test_cli_erase_fasterrcnn_lists_its_parts(capsys):
    code = main(["erase", "fasterrcnn_resnet50_fpn", "--proportion", "1.0", "--no-check", "--markdown"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = dict(line.strip("|").split(" | ", 1) for line in out.splitlines() if line.startswith("| ") and " | " in line)
    rows = {k.strip(): v.strip(" |") for k, v in rows.items()}
    assert rows["Sites changed (erase)"] == "16" and rows["relu sites"] == "52 -> 36"
    assert rows["Traced parts"].startswith("8: backbone (BackboneWithFPN, 16 blocks), rpn.head.conv (Sequential), ")
    assert rows["Stayed Python"] == (
        "7: (root) FasterRCNN, transform, rpn, rpn.anchor_generator, rpn.head, roi_heads (TraceError: Proxy object "
        "cannot be iterated); roi_heads.box_predictor (TraceError: symbolically traced variables cannot be used as "
        "inputs to control flow)")
    assert rows["Example input"] == "list of 1 image (3, 224, 224)"
