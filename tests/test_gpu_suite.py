"""``bench/gpu_suite.py``: its ``--smoke`` path end to end on the CPU, and its budget logic (no timing is asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import gpu_suite  # noqa: E402

from .shared_data import DATA, needs_data, one_thread  # noqa: E402, F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")  # one intra-op thread: steady on shared CPUs
STEPS = ("throughput", "inference", "resnet56")


def _smoke(tmp_path: Path, *extra: str) -> dict[str, dict]:
    argv = ["--smoke", "--out", str(tmp_path), "--data-dir", str(DATA), *extra]
    assert gpu_suite.main(argv) == 0
    docs = {step: json.loads((tmp_path / f"gpu_suite_smoke_{step}.json").read_text()) for step in STEPS}
    for number, (step, doc) in enumerate(docs.items(), 1):
        assert doc["benchmark"] == f"gpu_suite_{step}" and doc["step"] == number and doc["smoke"] is True
        assert "--smoke" in doc["command"] and doc["machine"]["torch"] == torch.__version__
        assert doc["machine"]["description"] and doc["settings"]["device"] == "cpu"
        assert set(doc["budget"]) >= {"total_s", "step_ends_at_s", "started_at_s", "ended_at_s"}
    return docs


@needs_data
def test_smoke_run_writes_every_step(tmp_path, capsys):
    docs = _smoke(tmp_path)
    assert all(d["status"] == "done" and d["cut_short"] is False and d["reason"] is None for d in docs.values())

    rows = docs["throughput"]["rows"]
    assert [(r["setting"], r["batch_size"]) for r in rows] == [(s, b) for s in gpu_suite.SETTINGS for b in (4, 8)]
    for r in rows:
        assert r["status"] == "done" and r["runner_samples_per_s"] > 0 and r["hand_samples_per_s"] > 0
        assert r["ratio"] == pytest.approx(r["runner_samples_per_s"] / r["hand_samples_per_s"], abs=2e-3)
        assert {k: r[k] for k in ("amp", "channels_last", "compile")} == gpu_suite.SETTINGS[r["setting"]]
    assert docs["throughput"]["settings"]["model"] == "cifar_resnet20"
    assert docs["throughput"]["settings"]["train_config"]["compile_backend"] == "eager"
    targets = docs["throughput"]["targets"]
    assert len(targets["runner_vs_hand"]["pairs"]) == 8 and isinstance(targets["runner_vs_hand"]["met"], bool)
    assert set(targets["best_vs_fp32"]["per_batch"]) == {"4", "8"} and isinstance(targets["best_vs_fp32"]["met"], bool)

    inference = docs["inference"]
    assert [(r["rewrite"], r["batch"]) for r in inference["rows"]] == [(w, 2) for w in ("original", "erase", "crelu")]
    assert [c["status"] for c in inference["cases"]] == ["done"]
    assert inference["rows"][2]["mac_ratio"] > 1.2 and inference["rows"][1]["mac_ratio"] == 1.0

    study = docs["resnet56"]
    assert [(r["variant"], r["seed"], r["status"]) for r in study["rows"]] == [
        (v, s, "done") for s in (0, 1) for v in ("original", "erase", "prelu_sum")]
    assert study["plan"]["epochs"] == 1 and study["plan"]["seeds"] == [0, 1]
    assert set(study["plan"]["probe"]) >= {"step_s", "eval_s", "epoch_s", "overhead_s"}
    assert set(study["results"]) == {"original", "erase", "prelu_sum"}
    assert study["results"]["prelu_sum"]["params"] > study["results"]["original"]["params"]
    assert study["surgery"]["erase"]["sites_changed"] == study["surgery"]["prelu_sum"]["sites_changed"] == 9
    assert study["settings"]["train_config"]["epochs"] == 1

    out = capsys.readouterr().out
    assert "== summary" in out and "runner/s" in out and "test err %" in out and "(>= 3x: " in out


@needs_data
def test_tiny_budget_skips_the_later_steps_and_keeps_every_json(tmp_path):
    # 6 s: step 1 starts (it must end by 2.7 s) and is stopped by its deadline; steps 2 and 3 must end by
    # 3.0 s (3 s are kept for the summary), too little for their first measurement (1 s)
    # (on a loaded machine loading the data can eat step 1's share before its first row: then it is skipped)
    docs = _smoke(tmp_path, "--budget-s", "6")
    first = docs["throughput"]
    assert first["status"] in ("cut_short", "skipped") and first["cut_short"] is True
    assert len(first["rows"]) == 8 and any(r["status"] in ("cut", "skipped") for r in first["rows"])
    assert all(r["reason"] for r in first["rows"] if r["status"] != "done")
    for step in ("inference", "resnet56"):
        assert docs[step]["status"] == "skipped" and docs[step]["cut_short"] is True
        assert docs[step]["reason"].startswith("skipped for the budget")
    assert docs["inference"]["rows"] == [] and docs["inference"]["cases"][0]["status"] == "skipped"
    assert {r["status"] for r in docs["resnet56"]["rows"]} == {"skipped"} and len(docs["resnet56"]["rows"]) == 6


def test_epoch_plan_fits_the_runs_in_what_is_left():
    assert gpu_suite.plan_epochs(100.0, 6, 2.0, 1.0, 164, safety=1.0) == 7  # (100/6 - 1) / 2 = 7.8
    assert gpu_suite.plan_epochs(1e6, 6, 2.0, 1.0, 164) == 164 and gpu_suite.plan_epochs(5.0, 6, 2.0, 1.0, 164) == 0
    probe = {"epoch_s": 10.0, "overhead_s": 2.0}
    assert gpu_suite.plan_runs(500.0, [0, 1], 3, probe, 164) == (7, [0, 1], None)
    assert gpu_suite.plan_runs(50.0, [0, 1], 3, probe, 164) == (1, [0], "shortened for the budget: 1 of 2 seeds")
    epochs, seeds, reason = gpu_suite.plan_runs(20.0, [0, 1], 3, probe, 164)
    assert (epochs, seeds) == (0, []) and reason.startswith("skipped for the budget")


def test_step_status_and_targets():
    done, skipped = {"status": "done"}, {"status": "skipped", "reason": "skipped for the budget: x"}
    assert gpu_suite.step_status([done, done], None) == ("done", False, None)
    assert gpu_suite.step_status([skipped, skipped], None) == ("skipped", True, skipped["reason"])
    assert gpu_suite.step_status([done, skipped], None)[:2] == ("cut_short", True)
    assert gpu_suite.step_status([{"status": "cut", "reason": "r"}, skipped], None)[:2] == ("cut_short", True)
    assert gpu_suite.step_status([], "ValueError: x") == ("failed", False, "ValueError: x")
    rows = [{"setting": s, "batch_size": 128, "status": "done", "runner_samples_per_s": v, "ratio": q}
            for s, v, q in (("fp32", 100.0, 0.99), ("bf16", 250.0, 0.97), ("bf16_cl_compile", 320.0, 0.90))]
    targets = gpu_suite.throughput_targets(rows + [{"setting": "bf16_cl", "batch_size": 128, "status": "skipped"}])
    assert [p["met"] for p in targets["runner_vs_hand"]["pairs"]] == [True, True, False]
    assert targets["runner_vs_hand"]["met"] is False
    best = {"best_setting": "bf16_cl_compile", "speedup": 3.2, "met": True}
    assert targets["best_vs_fp32"]["per_batch"]["128"] == best
    assert targets["best_vs_fp32"]["met"] is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_device_is_one_line_and_exit_2(tmp_path, capsys):
    assert gpu_suite.main(["--device", "cuda", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sees no CUDA device" in err and not list(tmp_path.iterdir())
