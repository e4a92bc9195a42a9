"""Adversarial cases of ``relu-surgery train`` (issue 15): nonsense hyperparameters, a diverging run,
valid metrics files, no-op rewrites, one writer per run directory, resume of hostile run folders."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from relu_surgery.train.command import train_command
from relu_surgery.train.config import TrainConfig
from relu_surgery.train.metrics import write_metrics

from .shared_data import DATA, needs_data, one_thread  # noqa: F401 (fixture)

pytestmark = [needs_data, pytest.mark.usefixtures("one_thread")]
SRC = Path(__file__).resolve().parents[1]
TINY = "relu_surgery.train.tiny:tiny_cnn"


def fashion(out: Path, *extra) -> list[str]:
    return ["--dataset", "fashion-mnist", "--data-dir", str(DATA / "fashion-mnist"), "--out", str(out),
            "--batch-size", "32", "--lr", "0.05", "--limit-train", "64", "--limit-test", "32",
            "--device", "cpu", "--no-progress", *map(str, extra)]


def invoke(args: list[str]):
    return CliRunner().invoke(train_command, [str(a) for a in args])


def one_line(result) -> bool:
    return result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def strict_json(text: str):
    """json.loads that refuses NaN / Infinity (what other JSON readers do)."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("option, value, phrase", [
    ("--lr", "inf", "learning rate"), ("--lr", "nan", "learning rate"), ("--gamma", "nan", "gamma"),
    ("--gamma", "-1", "gamma"), ("--momentum", "inf", "momentum"), ("--warmup-lr", "nan", "warm-up"),
    ("--label-smoothing", "nan", "label smoothing"),
])
def test_nonsense_hyperparameters_are_refused(tmp_path, option, value, phrase):
    result = invoke([TINY, *fashion(tmp_path / "run"), option, value])
    assert result.exit_code == 2 and one_line(result) and phrase in result.stderr, result.output
    assert not (tmp_path / "run").exists()
    field = option.lstrip("-").replace("-", "_")
    with pytest.raises(Exception, match=phrase):
        TrainConfig(dataset="mnist", **{field: float(value)})


class _GoesNaN(nn.Module):
    """A tiny classifier whose output turns NaN from its third training-mode forward pass on."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1):
        super().__init__()
        self.fc = nn.Linear(in_chans * 28 * 28, num_classes)
        self.calls = 0

    def forward(self, x):
        out = self.fc(x.flatten(1))
        if self.training:
            self.calls += 1
            if self.calls >= 3:
                out = out * float("nan")
        return out


def goes_nan(num_classes: int = 10, in_chans: int = 1) -> nn.Module:
    """For the CLI (module:callable)."""
    return _GoesNaN(num_classes, in_chans)


def test_non_finite_loss_stops_the_run_naming_epoch_and_step(tmp_path):
    run = tmp_path / "run"
    result = invoke(["tests.test_adversarial_train:goes_nan", "--epochs", "3", *fashion(run)])
    assert result.exit_code == 2 and one_line(result), result.output
    assert "non-finite" in result.stderr and "epoch 2, step 1" in result.stderr  # 2 steps per epoch
    rows = [strict_json(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]
    assert not (run / "result.json").exists()


def test_metrics_and_json_files_stay_valid_json(tmp_path):
    row = {"epoch": 1, "step": 2, "lr": 0.1, "train_loss": 0.5, "train_acc": 50.0, "test_loss": math.nan,
           "test_acc": 10.0, "test_top1_err": 90.0, "test_top5_err": math.inf, "samples_per_s": 1.0,
           "train_seconds": 1.0, "eval_seconds": 1.0, "epoch_seconds": 2.0}
    write_metrics([row], tmp_path)
    assert strict_json((tmp_path / "metrics.jsonl").read_text())["test_loss"] is None
    from relu_surgery.atomic import atomic_write_json  # what config.json, result.json and compare.json use

    atomic_write_json({"x": math.nan, "y": [math.inf, 1.0]}, tmp_path / "r.json")
    assert strict_json((tmp_path / "r.json").read_text()) == {"x": None, "y": [None, 1.0]}


def test_rewrite_that_changes_nothing_refuses_before_training(tmp_path):
    for extra in ([], ["--compare"]):
        out = tmp_path / f"run{len(extra)}"
        result = invoke([TINY, "--erase", "1", "--location", "99", *extra, *fashion(out)])
        assert result.exit_code == 2 and one_line(result), result.output
        assert "changes nothing" in result.stderr and "location 99" in result.stderr
        assert not out.exists()


HOLDER = textwrap.dedent("""
    import sys, time
    from relu_surgery.locks import output_lock
    with output_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_second_training_writer_fails_at_once_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = invoke([TINY, *fashion(run)])
        assert result.exit_code == 2 and one_line(result), result.output
        assert f"pid {holder.pid}" in result.stderr
        assert not run.exists() or not any(run.iterdir())
    finally:
        holder.kill()
        holder.wait()


def _crafted_run(tmp_path: Path, source: str, checkpoint: bytes | None = None) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    config = TrainConfig(dataset="fashion-mnist", data_dir=str(DATA / "fashion-mnist"), batch_size=32,
                         limit_train=64, limit_test=32, device="cpu", progress=False)
    spec = {"source": source, "args": {}, "pretrained": False, "weights": None, "rewrites": []}
    (run / "config.json").write_text(json.dumps({"train": config.to_dict(), "model": {"spec": spec}}))
    if checkpoint is not None:
        (run / "checkpoint.pt").write_bytes(checkpoint)
    return run


def test_garbage_checkpoint_on_resume_is_one_line(tmp_path):
    run = _crafted_run(tmp_path, TINY, os.urandom(512))
    result = invoke(["--resume", run])
    assert result.exit_code == 2 and one_line(result), result.output
    assert "checkpoint.pt" in result.stderr and "weights_only" not in result.stderr


def test_malicious_checkpoint_on_resume_runs_nothing(tmp_path):
    import io

    buffer = io.BytesIO()
    torch.save({"format": "relu_surgery.train/1", "obj": subprocess.Popen}, buffer)
    run = _crafted_run(tmp_path, TINY, buffer.getvalue())
    result = invoke(["--resume", run])
    assert result.exit_code == 2 and one_line(result), result.output
    assert "will likely succeed" not in result.stderr and "weights_only" not in result.stderr


def test_resume_of_a_run_naming_user_code_needs_trust(tmp_path, monkeypatch):
    run = _crafted_run(tmp_path, "payload:build", b"")
    marker = tmp_path / "PWNED"
    (run / "payload.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef build(**kw):\n    return None\n")
    monkeypatch.chdir(run)
    monkeypatch.delitem(sys.modules, "payload", raising=False)
    result = invoke(["--resume", "."])
    assert result.exit_code == 2 and one_line(result) and "--trust-code" in result.stderr, result.output
    assert not marker.exists()
