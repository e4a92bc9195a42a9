"""``relu-surgery train`` from the command line: one-line errors, kill + resume, DDP, rewrites.

Subprocesses run with one thread (as does this module), so a run killed in a child process and
resumed here computes bit for bit what an uninterrupted run computes.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import relu_surgery
from relu_surgery.train.checkpoint import load_checkpoint
from relu_surgery.train.command import train_command
from relu_surgery.train.metrics import numeric_view, read_metrics
from relu_surgery.train.runner import KILL_ENV

from .shared_data import DATA, needs_data, one_thread  # noqa: F401 (fixture)

pytestmark = [needs_data, pytest.mark.usefixtures("one_thread")]
SRC = Path(__file__).resolve().parents[1]
TINY = "relu_surgery.train.tiny:tiny_cnn"




def _fashion_args(out: Path, *extra: str) -> list[str]:
    return ["--dataset", "fashion-mnist", "--data-dir", str(DATA / "fashion-mnist"), "--out", str(out),
            "--batch-size", "32", "--lr", "0.05", "--limit-train", "256", "--limit-test", "128",
            "--device", "cpu", "--no-progress", *extra]


def _invoke(args: list[str]):
    return CliRunner().invoke(train_command, args, catch_exceptions=False)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return env


def test_cli_trains_a_module_callable_model(tmp_path):
    result = _invoke([TINY, "-a", "width=4", "--epochs", "2", "--json", *_fashion_args(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["final"]["epoch"] == 2 and out["run_dir"] == str(tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["spec"] == {"source": TINY, "args": {"width": 4}, "pretrained": False, "weights": None,
                                       "rewrites": []}
    assert config["train"]["batch_size"] == 32 and config["data"]["in_chans"] == 1
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2]


@pytest.mark.parametrize("args, message", [
    (["--data-dir", "{tmp}/nowhere"], "error: fashion-mnist data directory {tmp}/nowhere does not exist"),
    (["--data-dir", "{tmp}"], "error: no Fashion-MNIST files found (looked in {tmp}"),
    (["--data-dir", "{tmp}/corrupt"], "t10k-images-idx3-ubyte.gz: cannot be read, the file is corrupt"),
    (["--location", "first"], "error: --location needs --erase PROPORTION"),
    (["--epochs", "1", "--batch-size", "1000"], "error: batch size 1000 is larger than the 256 training samples"),
    (["--rewrite", "save"], "error: unknown rewrite 'save'; known: "),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for gz in (DATA / "fashion-mnist").glob("*.gz"):
        (corrupt / gz.name).write_bytes(gz.read_bytes()[:4096] if gz.name.startswith("t10k-images") else gz.read_bytes())
    full = [TINY] + _fashion_args(tmp_path / "run") + [a.format(tmp=tmp_path) for a in args]
    result = CliRunner().invoke(train_command, full)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and message.format(tmp=tmp_path) in result.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_cli_usage_errors(tmp_path):
    result = CliRunner().invoke(train_command, [TINY, "--dataset", "imagenet21k", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "Invalid value for '--dataset'" in result.stderr
    result = CliRunner().invoke(train_command, [TINY, "--dataset", "mnist"])
    assert result.exit_code == 2 and result.stderr == "error: missing --out (or pass --resume RUN_DIR)\n"
    result = CliRunner().invoke(train_command, ["--resume", str(tmp_path / "none")])
    assert result.exit_code == 2 and result.stderr.startswith("error: cannot resume")
    result = CliRunner().invoke(train_command, ["no_such_model_anywhere"] + _fashion_args(tmp_path / "r"))
    assert result.exit_code == 2 and "no_such_model_anywhere" in result.stderr and result.stderr.count("\n") == 1


def test_kill_mid_epoch_and_resume_matches_uninterrupted(tmp_path):
    args = ["-a", "width=4", "--epochs", "2", "--augment", "--save-every-steps", "2"]
    reference = _invoke([TINY, *args, *_fashion_args(tmp_path / "ref")])
    assert reference.exit_code == 0, reference.output
    cmd = [sys.executable, "-m", "relu_surgery.train", TINY, *args, *_fashion_args(tmp_path / "cut")]
    child = subprocess.run(cmd, env=_env(**{KILL_ENV: "11"}), capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    state = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")  # 8 steps/epoch, saved every 2, killed after 11
    assert state["position"] == {"epoch": 1, "step": 2, "global_step": 10}
    assert len(read_metrics(tmp_path / "cut")) == 1 and not (tmp_path / "cut" / "result.json").exists()
    again = _invoke(["--resume", str(tmp_path / "cut"), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert numeric_view(read_metrics(tmp_path / "cut")) == numeric_view(read_metrics(tmp_path / "ref"))
    final = {k: torch.load(tmp_path / d / "checkpoint.pt", weights_only=True)["model"] for k, d in
             (("ref", "ref"), ("cut", "cut"))}
    assert all(torch.equal(final["ref"][k], final["cut"][k]) for k in final["ref"])
    refused = CliRunner().invoke(train_command, ["--resume", str(tmp_path / "cut"), "--lr", "0.5"])
    assert refused.exit_code == 2 and "these cannot change: lr" in refused.stderr


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built")
def test_ddp_two_gloo_processes_match_one_process(tmp_path):
    args = [TINY, "-a", "width=4", "-a", "norm=false", "--epochs", "1", "--augment"]
    single = _invoke([*args, *_fashion_args(tmp_path / "one")])
    assert single.exit_code == 0, single.output
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "relu_surgery.train", *args, *_fashion_args(tmp_path / "two")]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["environment"]["world_size"] == 2
    one, two = read_metrics(tmp_path / "one")[0], read_metrics(tmp_path / "two")[0]
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-5)
    assert two["test_loss"] == pytest.approx(one["test_loss"], rel=1e-5)
    assert abs(two["test_top1_err"] - one["test_top1_err"]) <= 100 / 128  # at most one borderline sample
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)


def _write_cifar10(root: Path) -> Path:
    from PIL import Image

    pngs = sorted((DATA / "cifar10-samples").glob("cifar10_*.png"))
    data = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in pngs]).transpose(0, 3, 1, 2).reshape(20, -1)
    labels = [int(p.stem.split("_")[-1]) for p in pngs]
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    parts = {f"data_batch_{i + 1}": slice(4 * i, 4 * i + 4) for i in range(5)} | {"test_batch": slice(0, 20)}
    for name, part in parts.items():
        with open(folder / name, "wb") as handle:
            pickle.dump({"labels": labels[part], "data": data[part]}, handle, protocol=2)
    return root


def _cifar_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--dataset", "cifar10", "--data-dir", str(root), "--out", str(out), "--epochs", "1",
            "--batch-size", "10", "--lr", "0.02", "--device", "cpu", "--no-progress", *extra]


def test_erase_on_a_zoo_model_and_saved_rewrite_dir(tmp_path):
    root = _write_cifar10(tmp_path / "data")
    result = _invoke(["cifar_resnet20", "--erase", "0.5", *_cifar_args(root, tmp_path / "er50")])
    assert result.exit_code == 0, result.output
    spec = json.loads((tmp_path / "er50" / "config.json").read_text())["model"]["spec"]
    assert spec["rewrites"] == [{"name": "erase", "kwargs": {"proportion": 0.5, "location": "last"}}]
    model = relu_surgery.create_model("cifar_resnet20", num_classes=10)
    new_model, report = relu_surgery.erase(model, proportion=0.5)
    relu_surgery.save(new_model, tmp_path / "saved", report)
    result = _invoke([str(tmp_path / "saved"), *_cifar_args(root, tmp_path / "from_dir")])
    assert result.exit_code == 0, result.output
    assert "done: test top-1 error" in result.stdout


def test_compare_and_sweep_from_the_cli(tmp_path):
    tiny = [TINY, "-a", "width=4", "--epochs", "1"]
    result = _invoke([*tiny, "--erase", "1.0", "--compare", "--seeds", "2", *_fashion_args(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    assert "original" in result.stdout and "rewritten" in result.stdout and "±" in result.stdout
    table = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert len(table["original"]["errors"]) == 2 and table["rewritten"]["params"] == table["original"]["params"]
    assert table["difference"] == pytest.approx(table["rewritten"]["err_mean"] - table["original"]["err_mean"])
    assert table["original"]["errors"] != table["rewritten"]["errors"]  # the rewrite changed the network
    result = _invoke([*tiny, "--sweep", "proportion=0.5,1.0", "--sweep", "location=last,first", "--json",
                      *_fashion_args(tmp_path / "sweep")])
    assert result.exit_code == 0, result.output
    sweep = json.loads(result.stdout.strip().splitlines()[-1])
    assert [p["settings"] for p in sweep["points"]] == [
        {"proportion": 0.5, "location": "last"}, {"proportion": 0.5, "location": "first"},
        {"proportion": 1.0, "location": "last"}, {"proportion": 1.0, "location": "first"}]
    assert sweep["baseline"]["errors"] == table["original"]["errors"][:1]  # same seed, same data order
    assert sweep["points"][2]["errors"] == table["rewritten"]["errors"][:1]
    assert (tmp_path / "sweep" / "sweep.png").is_file()
    point = json.loads((tmp_path / "sweep" / "proportion=0.5,location=first" / "seed0" / "config.json").read_text())
    assert point["model"]["spec"]["rewrites"] == [{"name": "erase", "kwargs": {"proportion": 0.5, "location": "first"}}]
