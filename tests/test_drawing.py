"""The --graph drawing: written in every format, names the changed nodes, one panel per distinct change."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

import relu_surgery as rs
from relu_surgery.cli import main
from relu_surgery.diagnostics import ScalarResNet
from relu_surgery.report.drawing import DrawingError, change_patterns, draw_report
from relu_surgery.report.tables import changes_table, summary_table


class Block(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU()
        self.down = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        return self.relu2(self.down(x) + self.conv2(self.relu1(self.conv1(x))))


class SmallNet(nn.Module):
    """Four blocks, the third one widening (a projection shortcut: another structure)."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(Block(4, 4), Block(4, 4), Block(4, 8), Block(8, 8))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))

    def forward(self, x):
        return self.head(self.blocks(x))


def small_net():
    return SmallNet()


X = torch.randn(1, 4, 6, 6)


@pytest.fixture(scope="module")
def erase_report():
    return rs.erase(SmallNet(), proportion=1.0, example_input=X)[1]


def test_patterns_group_blocks_by_structure_and_change(erase_report):
    patterns = change_patterns(erase_report)
    assert [p.blocks for p in patterns] == [[1, 2, 4], [3]]
    assert patterns[0].key[2] == (("<b>.relu2", "nn.ReLU", "Identity"),)


def test_svg_names_the_changed_nodes(erase_report, tmp_path):
    svg = draw_report(erase_report, tmp_path / "er.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    # text stays text: the removed site by its full name (caption) and in the panels; both panels drawn
    assert "removed: blocks.0.relu2" in svg and "removed: blocks.2.relu2" in svg
    assert "A: block 1 blocks.0 (Block), same change in 3 blocks - BEFORE" in svg
    assert "B: block 3 blocks.2 (Block) - AFTER" in svg
    assert "All 4 blocks: 4 changed" in svg


def test_png_and_html_are_written(erase_report, tmp_path):
    png = draw_report(erase_report, tmp_path / "er.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    page = draw_report(erase_report, tmp_path / "er.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "http" not in page.split("<svg")[0]
    assert "<code>blocks.3.relu2</code>" in page and "Identity (erased)" in page


def test_unknown_suffix_is_a_user_error(erase_report, tmp_path):
    with pytest.raises(DrawingError, match=r"\.svg, \.png or \.html"):
        draw_report(erase_report, tmp_path / "er.pdf")


def test_fifty_blocks_draw_one_representative(tmp_path):
    _, report = rs.erase(ScalarResNet(50, 4), proportion=0.5, example_input=torch.zeros(2, 1))
    patterns = change_patterns(report)
    assert len(patterns) == 1 and patterns[0].blocks == list(range(1, 50, 2))
    svg = draw_report(report, tmp_path / "er50.svg").read_text()
    assert "All 50 blocks: 25 changed" in svg and "same change in 25 blocks" in svg
    assert "removed: blocks.0.relu2" in svg and svg.count("BEFORE") == 1


def test_crelu_marks_the_changed_site(tmp_path):
    _, report = rs.crelu(SmallNet(), blocks="1", example_input=X)
    svg = draw_report(report, tmp_path / "crelu.svg").read_text()
    # the site becomes CReLU in place; its consumer conv2 is widened (a reshaped weight): both marked changed
    assert "changed: blocks.0.conv2, blocks.0.relu1" in svg and "CHANGED" in svg and "REMOVED" not in svg


def test_cli_graph_option(tmp_path, capsys):
    target = tmp_path / "g.html"
    assert main(["erase", "tests.test_drawing:small_net", "--input-size", "4,6,6", "-p", "0.5",
                 "--graph", str(target), "--json"]) == 0
    assert "<code>blocks.0.relu2</code>" in target.read_text()
    capsys.readouterr()
    assert main(["erase", "tests.test_drawing:small_net", "--graph", str(tmp_path / "g.pdf")]) == 2
    assert "--graph" in capsys.readouterr().err


def test_notebook_view_and_html_page_share_their_tables(tmp_path):
    _, report = rs.erase(rs.create_model("cifar_resnet20"), proportion=0.5)
    page = draw_report(report, tmp_path / "er20.html").read_text()
    notebook = report._repr_html_()
    assert notebook.startswith("<h3>relu_surgery erase: <code>cifar_resnet20</code></h3><table><tr><th>Blocks found")
    for table in (summary_table(report), changes_table(report)):
        assert table in notebook and table in page
    assert changes_table(report).count("<tr>") == 1 + 5
    assert report.to_json() == json.dumps(report.to_dict(), indent=2)
    assert json.loads(report.to_json())["changes"][0]["site"] == "layer1.0.relu2"
