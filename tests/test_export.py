"""Export: ONNX parity (onnxruntime against PyTorch) and torch.export .pt2 round trips of rewritten
models, the one-line error naming a node that cannot be exported, and the export command's exit codes."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

import relu_surgery as rs
from relu_surgery.cli import main
from relu_surgery.models.export import ExportError, export

from .shared_data import one_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")  # one intra-op thread: steady on shared CPUs


class HistogramHead(nn.Module):
    """A conv followed by torch.histc, which the ONNX exporter does not support."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return torch.histc(self.conv(x), bins=8)


def histogram_head():
    """For the CLI (module:callable)."""
    return HistogramHead()


REWRITES = {
    "erase": lambda m: rs.erase(m, proportion=1.0, check=False),
    "erase-first": lambda m: rs.erase(m, location="first", check=False),
    "crelu": lambda m: rs.crelu(m, check=False),
    "crelu-random": lambda m: rs.crelu(m, init="random", check=False),
    "normprop": lambda m: rs.normprop(m, variant="normprop", check=False),
    "normprop2": lambda m: rs.normprop(m, variant="normprop2", check=False),
    "normprop3": lambda m: rs.normprop(m, variant="normprop3", check=False),
    "plain": lambda m: rs.normprop(m, variant="plain", check=False),
    "prelu": lambda m: rs.swap(m, to="prelu", location="last", check=False),
    "gelu": lambda m: rs.swap(m, to="gelu", check=False),
    "silu": lambda m: rs.swap(m, to="silu", check=False),
    "leaky_relu": lambda m: rs.swap(m, to="leaky_relu", check=False),
    "pre-activation": lambda m: rs.convert(m, "pre-activation", check=False),
    "bn-after-add": lambda m: rs.convert(m, "bn-after-add", check=False),
    "relu-before-add": lambda m: rs.convert(m, "relu-before-add", check=False),
    "relu-only-preact": lambda m: rs.convert(m, "relu-only-preact", check=False),
    "erase+fold": lambda m: rs.fold(rs.erase(m, proportion=1.0, check=False)[0]),
}


def _rewritten(name: str, source: str = "cifar_resnet20") -> nn.Module:
    return REWRITES[name](rs.create_model(source))[0]


@pytest.mark.parametrize("name", ["erase", "crelu", "normprop"])
def test_onnx_matches_pytorch_on_rewritten_zoo_models(name, tmp_path):
    model = _rewritten(name)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    done = export(model, tmp_path / f"{name}.onnx", "onnx", example_input=x)
    assert done.checked_with.startswith("onnxruntime") and done.output_shape == (2, 10)
    assert done.relative < 1e-5 and (tmp_path / f"{name}.onnx").stat().st_size > 100_000


def test_folded_mbconv_exports_to_onnx_and_pt2(tmp_path):
    from .test_fold import _calibrate_norms  # noqa: PLC0415

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),  # an erased MBConv: border term
                        nn.Conv2d(8, 48, 1), nn.BatchNorm2d(48), nn.Conv2d(48, 48, 3, padding=1, groups=48),
                        nn.BatchNorm2d(48), nn.Conv2d(48, 8, 1), nn.BatchNorm2d(8))
    x = torch.randn(1, 3, 16, 16)
    folded, report = rs.fold(_calibrate_norms(net, (3, 16, 16)), example_input=x)
    assert "BorderConv" in {type(m).__name__ for m in folded.modules()}
    for fmt in ("onnx", "pt2"):
        done = export(folded, tmp_path / f"mb.{fmt}", fmt, example_input=x)
        assert done.relative < 1e-5, fmt


def test_pt2_round_trip(tmp_path):
    model = _rewritten("erase+fold")
    done = export(model, tmp_path / "m.pt2", "pt2")
    assert done.checked_with == "torch.export.load" and done.max_abs_diff == 0.0
    loaded = torch.export.load(str(tmp_path / "m.pt2")).module()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x), atol=0, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
@pytest.mark.parametrize("name", list(REWRITES))
def test_every_rewrite_exports(name, fmt, tmp_path):
    source = "preact_resnet110" if name == "erase" and fmt == "onnx" else "cifar_resnet20"
    done = export(_rewritten(name, source), tmp_path / f"m.{fmt}", fmt)
    assert done.relative < 1e-5


def test_an_unsupported_node_is_named_in_one_line(tmp_path):
    with pytest.raises(ExportError) as info:
        export(HistogramHead(), tmp_path / "h.onnx", "onnx", example_input=torch.randn(1, 3, 8, 8))
    message = str(info.value)
    assert message.startswith("cannot export to onnx: node histc (histc): ") and "\n" not in message
    assert "'aten::histc'" in message and not (tmp_path / "h.onnx").exists()


def test_export_command_exit_codes(capsys, tmp_path):
    assert main(["erase", "cifar_resnet20", "--no-check", "--out", str(tmp_path / "er")]) == 0
    capsys.readouterr()
    code = main(["export", str(tmp_path / "er"), "--format", "onnx", "--fold", "--out", str(tmp_path / "er.onnx"),
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["format"] == "onnx" and data["relative"] < 1e-5 and data["fold"]["layers_after"] == 20
    assert main(["export", str(tmp_path / "er"), "--format", "onnx", "--out", str(tmp_path / "er.onnx")]) == 2
    assert "exists (use --force" in capsys.readouterr().err
    assert main(["export", "cifar_resnet20", "--format", "tflite", "--out", str(tmp_path / "x")]) == 2
    capsys.readouterr()
    code = main(["export", "tests.test_export:histogram_head", "--format", "onnx", "--input-size", "3,8,8",
                 "--out", str(tmp_path / "h.onnx")])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: cannot export to onnx: node histc (histc)") and err.count("\n") == 1
