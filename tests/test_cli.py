"""The relu-surgery CLI: outputs, exit codes and one-line errors (never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from relu_surgery.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_erase_prints_report(capsys):
    code, out, err = run(capsys, "erase", "tv:resnet18", "--proportion", "0.5")
    assert code == 0, err
    assert "relu_surgery erase: tv:resnet18" in out
    assert "17 -> 13" in out
    assert "unchanged (strict load" in out
    assert "shapes checked without computing values: input (1, 3, 224, 224)" in out


def test_no_check_skips_the_forward_passes(capsys):
    code, out, err = run(capsys, "erase", "tv:resnet18", "--proportion", "0.5", "--no-check")
    assert code == 0, err
    assert "17 -> 13" in out and "not run (check=False)" in out and "checked: input" not in out
    code, out, _ = run(capsys, "swap", "tv:resnet18", "--to", "prelu", "--no-check", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["forward_check"] == {"input_shape": [1, 3, 224, 224], "skipped": "check=False"}
    assert data["macs_before"] is None and len(data["changes"]) == 16  # both sites of 8 blocks


def test_erase_json_and_dry_run(capsys):
    code, out, _ = run(capsys, "erase", "tv:resnet18", "--json", "--dry-run", "--location", "first")
    assert code == 0
    data = json.loads(out)
    assert data["changes"][0] == {"block": 1, "site": "layer1.0.relu", "before": "nn.ReLU",
                                  "after": "Identity (erased)"}
    assert data["macs_after"] is None and len(data["changes"]) == 8


def test_erase_markdown_code_diff_and_out(capsys, tmp_path):
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "erase", "tv:resnet18", "-a", "num_classes=10", "--blocks", "1,layer4.*",
                         "--markdown", "--code-diff", "--out", str(out_dir))
    assert code == 0, err
    assert out.startswith("# relu_surgery erase: `tv:resnet18`")
    assert "| 1 | `layer1.0.relu_1` | nn.ReLU | Identity (erased) |" in out
    assert "--- tv:resnet18 (before)" in out
    assert (out_dir / "weights.safetensors").is_file() and "saved to" in err
    # an existing non-empty --out is refused, nothing is overwritten
    mtime = (out_dir / "recipe.json").stat().st_mtime_ns
    code, _, err = run(capsys, "erase", "tv:resnet18", "--out", str(out_dir))
    assert code == 2 and err.startswith("error: output directory") and "--force" in err
    assert (out_dir / "recipe.json").stat().st_mtime_ns == mtime
    # a saved directory is a model name too
    code, out, err = run(capsys, "inspect", str(out_dir), "--json")
    assert code == 0, err
    assert len(json.loads(out)["blocks"]) == 8


def test_inspect_json(capsys):
    code, out, _ = run(capsys, "inspect", "timm:resnet18", "--json")
    assert code == 0
    data = json.loads(out)
    assert [b["name"] for b in data["blocks"]][:2] == ["layer1.0", "layer1.1"]
    assert data["blocks"][0]["sites"] == [
        {"name": "layer1.0.act1", "kind": "relu", "spelling": "nn.ReLU", "location": "first", "index": 1,
         "composite": None, "channels": None},
        {"name": "layer1.0.act2", "kind": "relu", "spelling": "nn.ReLU", "location": "last", "index": 2,
         "composite": None, "channels": None},
    ]
    assert data["sites"] == {"relu": 17}


def test_unknown_model_suggests_close_matches(capsys):
    code, out, err = run(capsys, "erase", "resnet15")
    assert code == 2 and out == ""
    assert err == ("error: unknown model 'resnet15'; did you mean: "
                   "resnet152, resnet152s, resnet152d, resnet152c, resnet50?\n")


def test_bad_proportion(capsys):
    code, _, err = run(capsys, "erase", "tv:resnet18", "--proportion", "1.5")
    assert (code, err) == (2, "error: proportion must be in (0, 1], got 1.5\n")
    code, _, err = run(capsys, "erase", "tv:resnet18", "--proportion", "0")
    assert (code, err) == (2, "error: proportion must be in (0, 1], got 0.0\n")


def test_no_blocks_found(capsys):
    code, _, err = run(capsys, "erase", "torch.nn:Linear", "-a", "in_features=4", "-a", "out_features=2")
    assert code == 2
    assert err.startswith("error: no blocks found in Linear: name them with")


def test_unreadable_and_mismatched_weights(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    code, _, err = run(capsys, "erase", "tv:resnet18", "--weights", str(bad), "--out", str(tmp_path / "o"))
    assert code == 2 and err.startswith(f"error: cannot read weights file {bad}")
    assert not (tmp_path / "o").exists()
    small = tmp_path / "small.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, small)
    code, _, err = run(capsys, "erase", "tv:resnet18", "--weights", str(small))
    assert code == 2 and "small.pt does not fit the model:" in err and "missing" in err
    code, _, err = run(capsys, "erase", "tv:resnet18", "--weights", str(tmp_path / "nope.safetensors"))
    assert code == 2 and "weights file not found" in err


def test_unsafe_pickle_is_refused(capsys, tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "obj": subprocess.Popen}, evil)
    code, _, err = run(capsys, "erase", "tv:resnet18", "--weights", str(evil))
    assert code == 2 and err.startswith("error: cannot read weights file")


def test_console_script_exit_code_and_no_traceback():
    proc = subprocess.run([sys.executable, "-c", "import sys; from relu_surgery.cli import main; sys.exit(main())",
                           "erase", "tv:resnet18", "--location", "sideways"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == "error: location must be last, first, all or a site number, got 'sideways'\n"
    assert "Traceback" not in proc.stderr


def test_models_lists_sources(capsys):
    code, out, _ = run(capsys, "models", "--source", "zoo", "--json")
    assert code == 0
    names = [m["name"] for m in json.loads(out)]
    assert "cifar_resnet110" in names and all(m["source"] == "zoo" for m in json.loads(out))


def test_torchvision_detection_builders_do_not_download(capsys):
    # fcn_resnet50 would fetch a pretrained backbone by default; without --pretrained nothing is fetched
    code, out, err = run(capsys, "inspect", "tv:fcn_resnet50", "--json")
    assert code == 0, err
    assert len(json.loads(out)["blocks"]) == 16


def test_untraceable_root_is_traced_in_parts(capsys):
    code, out, err = run(capsys, "inspect", "tv:ssdlite320_mobilenet_v3_large", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert len(doc["blocks"]) == 14 and doc["blocks"][0]["name"] == "backbone.features.0.1"
    assert {p["path"]: p["traced"] for p in doc["partial"]["parts"]}["backbone"] is True


def test_untraceable_root_without_blocks_is_one_line(capsys):
    code, out, err = run(capsys, "erase", "torchvision.models.detection.anchor_utils:AnchorGenerator")
    assert code == 2 and out == ""
    assert err.startswith("error: no blocks found in AnchorGenerator: it is traced in parts (TraceError: Proxy "
                          "object cannot be iterated) and its traced parts (none) hold no blocks")
    assert err.count("\n") == 1
