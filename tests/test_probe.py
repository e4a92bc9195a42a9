"""Diagnostics: each measurement against a value computed by hand on a tiny network; plots and CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn

import relu_surgery as rs
from relu_surgery.cli import main
from relu_surgery.diagnostics import (ScalarResNet, activation_stats, conv_coherence, delta_value, filter_coherence, gradient_study, probe_inputs)
from relu_surgery.diagnostics.gradients import (activation_levels, autocorrelation, correlation_length, gradient_covariance, neighbour_correlation)

from .shared_data import DATA, needs_data



class FixedRes(nn.Module):
    """relu(x + conv1x1(x)) with a hand-written 2x2 conv weight."""

    def __init__(self, weight):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1, bias=False)
        self.relu = nn.ReLU()
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(weight, dtype=torch.float32).reshape(2, 2, 1, 1))

    def forward(self, x):
        return self.relu(x + self.conv(x))


class TinyResNet(nn.Module):
    """Block a swaps the channels (residual known), block b adds -2x; then pool + linear head."""

    def __init__(self):
        super().__init__()
        self.a = FixedRes([[0.0, 1.0], [1.0, 0.0]])
        self.b = FixedRes([[-2.0, 0.0], [0.0, -2.0]])
        self.pool, self.flat, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.b(self.a(x)))))


def tiny_resnet():
    """For the CLI (module:callable)."""
    return TinyResNet()


class DownBlock(nn.Module):
    """relu(shortcut(x) + conv2(conv(x))) with 2 -> 4 channels: x_l and x_{l+1} differ in shape."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 1, bias=False)
        self.conv2 = nn.Conv2d(4, 4, 1, bias=False)  # identity weights: two weight layers on the residual path
        self.shortcut = nn.Conv2d(2, 4, 1, bias=False)
        self.relu = nn.ReLU()
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, -1.0], [0.0, 1.0]]).reshape(4, 2, 1, 1))
            self.shortcut.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]).reshape(4, 2, 1, 1))
            self.conv2.weight.copy_(torch.eye(4).reshape(4, 4, 1, 1))

    def forward(self, x):
        return self.relu(self.shortcut(x) + self.conv2(self.conv(x)))


# x(:, 0, 0) = (1, 3), x(:, 0, 1) = (2, 4)
X = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])


def test_delta_by_hand_original_and_erased():
    model = TinyResNet()
    erased, _ = rs.erase(model, proportion=1.0)
    result = rs.probe(model, erased, X, gradient_study=False)
    original, rewritten = result.models
    # block a: residual = swapped channels (3, 1) and (4, 2), output stays positive
    delta_a = (math.sqrt(10) + math.sqrt(20)) / 2
    # block b: input (4, 4), (6, 6); relu(x - 2x) = 0, so x_l - x_{l+1} = x_l: (4*sqrt2 + 6*sqrt2) / 2
    assert [d.delta for d in original.deltas] == pytest.approx([delta_a, 5 * math.sqrt(2)])
    # after EraseReLU block b outputs -x: the difference is 2x
    assert [d.delta for d in rewritten.deltas] == pytest.approx([delta_a, 10 * math.sqrt(2)])
    assert [d.reference for d in original.deltas] == ["input", "input"]
    assert result.delta_rows()[1][:2] == (2, "b")


def test_delta_of_downsampling_block_is_against_its_shortcut():
    model = nn.Sequential(DownBlock())
    x = torch.tensor([[[[1.0]], [[2.0]]]])
    (probe,) = rs.probe(model, inputs=x, gradient_study=False).models
    # shortcut s = (1, 2, 3, 0), residual r = (1, 0, -2, 2), relu(s + r) = s + r: Delta = ||r|| = 3
    assert probe.deltas[0].delta == pytest.approx(3.0)
    assert probe.deltas[0].reference == "shortcut"
    assert probe.deltas[0].shape_in == (2, 1, 1) and probe.deltas[0].shape_out == (4, 1, 1)


def test_delta_value_formula():
    # two positions, channel vectors (3, 4) and (0, 0): norms 5 and 0, mean 2.5
    assert delta_value(torch.zeros(1, 2, 1, 2), torch.tensor([[[[3.0, 0.0]], [[4.0, 0.0]]]])) == 2.5


def test_last_activation_by_hand():
    model = TinyResNet()
    erased, _ = rs.erase(model, proportion=1.0)
    original, rewritten = rs.probe(model, erased, X, gradient_study=False).models
    # original: the last ReLU (b.relu) outputs relu(-x) = 0 everywhere
    assert (original.last.node, original.last.kind) == ("b.relu", "relu")
    assert (original.last.nonzero_ratio, original.last.mean, original.last.std) == (0.0, 0.0, 0.0)
    # erased: the head reads b's add = -x_b = -(4, 4), -(6, 6): entries -4, -6, -4, -6
    assert (rewritten.last.node, rewritten.last.kind) == ("b.add", "merge")
    assert rewritten.last.nonzero_ratio == 1.0 and rewritten.last.positive_ratio == 0.0
    assert rewritten.last.mean == pytest.approx(-5.0) and rewritten.last.std == pytest.approx(1.0)


def test_activation_stats_by_hand():
    s = activation_stats(torch.tensor([[0.0, 0.0], [2.0, 3.0]]))
    # mean 5/4; population variance ((1.25)^2 * 2 + 0.75^2 + 1.75^2) / 4 = 1.6875
    assert (s.mean, s.nonzero_ratio, s.positive_ratio) == (1.25, 0.5, 0.5)
    assert s.std == pytest.approx(math.sqrt(1.6875))


def test_filter_coherence_by_hand():
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-3.0, -4.0]])
    # |cos| pairs: (1,2) 0, (1,3) 3/5, (2,3) 4/5
    assert filter_coherence(rows) == pytest.approx(0.8)
    conv = nn.Conv2d(2, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(rows.reshape(3, 2, 1, 1))
    assert [(c.name, c.filters, c.mu) for c in conv_coherence(nn.Sequential(conv))] == [("0", 3, pytest.approx(0.8))]


def test_grouped_conv_coherence_compares_within_groups_only():
    conv = nn.Conv2d(4, 4, 1, groups=2, bias=False)
    # group 1: (1, 0), (0, 1) -> 0; group 2: (1, 0), (0.6, 0.8) -> 0.6; across groups (1, 0)/(1, 0) would be 1
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]).reshape(4, 2, 1, 1))
    assert conv_coherence(conv)[0].mu == pytest.approx(0.6)


def test_zero_padded_filters_keep_coherence():
    # CReLU's preserving init makes a consumer's filters [W, 0]: the zeros change no inner product or norm
    weight = torch.randn(3, 4, 1, 1, generator=torch.Generator().manual_seed(0))
    doubled = torch.cat([weight, torch.zeros_like(weight)], dim=1)
    assert filter_coherence(doubled) == pytest.approx(filter_coherence(weight))


def test_gradient_study_helpers_by_hand():
    assert gradient_covariance(torch.tensor([1.0, 2.0, 3.0])).tolist() == [[1.0, 0.0, -1.0], [0.0, 0.0, 0.0],
                                                                          [-1.0, 0.0, 1.0]]
    assert neighbour_correlation(torch.tensor([1.0, -1.0, 1.0, -1.0])) == pytest.approx(-1.0)
    assert autocorrelation(torch.tensor([1.0, 2.0, 4.0, 8.0]), 1) == pytest.approx(1.0)
    assert correlation_length(torch.tensor([1.0, -1.0, 1.0, -1.0]), spacing=0.5) == 0.5
    levels = activation_levels(torch.tensor([[1.0, -1.0], [2.0, -2.0], [-1.0, -3.0], [0.5, -1.0]]))
    assert levels.tolist() == [0.75, 0.0]


def test_gradient_study_small():
    study = gradient_study(depths=(2, 3), points=100, width=16, seed=3)
    assert [(r.depth, r.variant) for r in study.runs] == [(2, "ReLU"), (2, "EraseReLU"), (3, "ReLU"), (3, "EraseReLU")]
    run = study.runs[0]
    assert run.gradients.shape == (100,) and run.covariance.shape == (100, 100) and run.levels.shape == (16,)
    assert torch.allclose(run.covariance, run.covariance.T)
    assert float(run.inputs[0]) == -2.0 and float(run.inputs[-1]) == 2.0
    # the first network is reproducible from the seed; its gradients match central differences
    net = ScalarResNet(2, 16, torch.Generator().manual_seed(3)).double().eval()
    x = run.inputs.double().reshape(-1, 1)[::10]
    h = 1e-5
    with torch.no_grad():
        numeric = ((net(x + h) - net(x - h)) / (2 * h)).reshape(-1)
    assert torch.allclose(run.gradients[::10].double(), numeric, rtol=1e-3, atol=1e-3)
    assert set(study.to_dict()["runs"][0]) >= {"neighbour_correlation", "correlation_length", "bimodal_fraction"}


def test_erase_twin_of_the_scalar_network_is_what_erase_makes():
    net = ScalarResNet(3, 8, torch.Generator().manual_seed(0)).eval()
    twin = ScalarResNet(3, 8, torch.Generator(), erased=True).eval()
    twin.load_state_dict(net.state_dict())
    erased, report = rs.erase(net, proportion=1.0, example_input=torch.zeros(2, 1))
    assert [c.site for c in report.changes] == [f"blocks.{i}.relu2" for i in range(3)]
    x = torch.linspace(-2, 2, 50).reshape(-1, 1)
    assert torch.allclose(erased.eval()(x), twin(x), atol=1e-6)


def test_probe_writes_json_and_readable_plots(tmp_path):
    model = TinyResNet()
    erased, _ = rs.erase(model, proportion=0.5)
    result = rs.probe(model, erased, torch.rand(4, 2, 4, 4), out=tmp_path, depths=(2,), points=40, width=8)
    names = {"delta.png", "last_activation.png", "coherence.png", "gradient_study.png", "probe.json"}
    assert names <= {p.name for p in tmp_path.iterdir()}
    for png in names - {"probe.json"}:
        data = (tmp_path / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    saved = json.loads((tmp_path / "probe.json").read_text())
    assert [m["label"] for m in saved["models"]] == ["TinyResNet", "TinyResNet + erase"]
    assert saved["gradient_study"]["points"] == 40 and len(saved["models"][0]["coherence"]) == 2
    assert set(result.plots) == {"delta", "last_activation", "coherence", "gradient_study"}


def test_probe_cli_json(tmp_path, capsys):
    code = main(["probe", "tests.test_probe:tiny_resnet", "--input-size", "2,4,4", "--samples", "3", "--depths", "2",
                 "--points", "20", "--width", "4", "--json", "--out", str(tmp_path / "p")])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert [len(m["deltas"]) for m in out["models"]] == [2, 2]
    assert out["inputs"]["shape"] == [3, 2, 4, 4]
    assert (tmp_path / "p" / "delta.png").is_file()


def test_probe_cli_tables_and_errors(capsys):
    code = main(["probe", "tests.test_probe:tiny_resnet", "--input-size", "2,4,4", "--samples", "2",
                 "--no-gradient-study", "--rewrite", "none"])
    text = capsys.readouterr().out
    assert code == 0 and "Per-block input/output difference Delta" in text and "b.relu" in text
    assert main(["probe", "tests.test_probe:tiny_resnet", "--dataset", "mnist", "--no-gradient-study"]) == 2
    assert "needs a data directory" in capsys.readouterr().err


@needs_data
def test_probe_inputs_from_real_data():
    x = probe_inputs("mnist", DATA / "mnist", count=4)
    assert x.shape == (4, 1, 28, 28)
    # normalised with MNIST's mean/std: background pixels (0) map to -0.1307 / 0.3081
    assert float(x.min()) == pytest.approx(-0.1307 / 0.3081, abs=1e-4)
    images = probe_inputs("images", DATA / "cifar10-samples", count=3)
    assert images.shape == (3, 3, 32, 32)
