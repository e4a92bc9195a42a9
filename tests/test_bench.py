"""The benchmark scripts' measuring functions, on small models (no timing is asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import inference_cost  # noqa: E402
import surgery_speed  # noqa: E402

from .shared_data import DATA, one_thread  # noqa: E402, F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")  # one intra-op thread: steady on shared CPUs


class _CReLUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        return torch.cat([y.relu(), (-y).relu()], dim=1)


def test_inference_cost_rows_for_a_cifar_resnet():
    rows = inference_cost.measure_case("cifar_resnet20", (3, 32, 32), batch=2, device="cpu", repeats=1)
    by = {r["rewrite"]: r for r in rows}
    assert list(by) == inference_cost.REWRITES
    assert by["original"]["latency_ratio"] == by["original"]["median_ratio"] == 1.0
    assert by["erase"]["mac_ratio"] == by["traced"]["mac_ratio"] == 1.0
    assert by["erase"]["params"] == by["original"]["params"] == 269_722  # the zoo's ResNet-20 (0.27M in He et al.)
    assert by["crelu"]["mac_ratio"] > 1.2 and by["crelu"]["params"] > by["original"]["params"]
    assert by["crelu"]["crelu_ops_ms"] > 0 and by["original"]["crelu_ops_ms"] == 0
    assert all(r["latency_ms"] <= r["median_ms"] for r in rows)


def test_op_breakdown_separates_mac_kernels_from_crelu_ops():
    split = inference_cost.op_breakdown(_CReLUNet().eval(), torch.randn(1, 3, 16, 16))
    assert set(split) == {"mac_ms", "crelu_ops_ms", "other_ms"}
    assert split["mac_ms"] > 0 and split["crelu_ops_ms"] > 0


def test_surgery_speed_row():
    row = surgery_speed.time_model("cifar_resnet20", repeats=1)
    assert (row["blocks"], row["changes"], row["input"]) == (9, 9, [1, 3, 32, 32])
    for key in ("analyze", "surgery", "checked"):
        seconds, ratio = row[f"{key}_s"], row[f"{key}_ratio"]
        assert seconds > 0 and abs(ratio - seconds / row["bare_trace_s"]) <= 0.01 + 0.01 * ratio


def test_reproduction_reuses_runs_recorded_before_a_new_config_field(tmp_path):
    import json

    import reproduce_mlp  # noqa: PLC0415
    from relu_surgery.train import TrainConfig  # noqa: PLC0415

    config = TrainConfig(dataset="mnist", epochs=12, lr=0.1)
    saved = config.to_dict()
    saved.pop("label_smoothing")  # as if the run predates that field: it trained with the default
    (tmp_path / "config.json").write_text(json.dumps({"train": saved}))
    assert reproduce_mlp._same_settings(tmp_path, config)
    assert not reproduce_mlp._same_settings(tmp_path, config.replace(label_smoothing=0.1))
    assert not reproduce_mlp._same_settings(tmp_path, config.replace(epochs=13))


def _result_json(path, config, **settings):
    import json  # noqa: PLC0415

    runs = [{"seed": 0, "test_top1_err": 9.0}, {"seed": 1, "test_top1_err": 8.0}]
    path.write_text(json.dumps({"settings": {"train_config": config.to_dict(), **settings},
                                "results": {"cifar_resnet20": {"original": {"runs": runs}}}}))
    return str(path)


def test_merge_refuses_other_settings_in_one_line_with_status_2(tmp_path, capsys):
    import reproduce_mlp  # noqa: PLC0415
    from relu_surgery.train import TrainConfig  # noqa: PLC0415

    config = TrainConfig(dataset="fashion-mnist", epochs=15, lr=0.1, seed=0)
    path = _result_json(tmp_path / "old.json", config, stacked_proportion=0.5)
    doc = reproduce_mlp.earlier_result(path, config.replace(seed=2, device="cuda"), {"stacked_proportion": 0.5})
    assert reproduce_mlp.merged(doc["results"]["cifar_resnet20"]["original"]["runs"], path, [1, 2]) == [
        {"seed": 0, "test_top1_err": 9.0, "merged_from": path, "reused": True}]
    for config_now, settings, named in [(config.replace(epochs=12), {"stacked_proportion": 0.5}, "epochs"),
                                        (config, {"stacked_proportion": 1.0}, "stacked_proportion")]:
        with pytest.raises(SystemExit) as exit_:
            reproduce_mlp.earlier_result(path, config_now, settings)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"other settings ({named})" in err
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_:
        reproduce_mlp.earlier_result(str(tmp_path / "bad.json"), config, {})
    assert exit_.value.code == 2 and "not a result JSON" in capsys.readouterr().err


@pytest.mark.skipif(DATA is None, reason="shared/data (real datasets) not found")
def test_resnet_reproduction_merges_a_seed_trained_by_an_earlier_invocation(tmp_path, monkeypatch):
    import json  # noqa: PLC0415

    import reproduce_resnet  # noqa: PLC0415

    def invoke(seed, out, *extra, variants=("original", "erase")):
        argv = ["reproduce_resnet.py", "--size", "smoke", "--models", "cifar_resnet20", "--variants", *variants,
                "--seeds", str(seed), "--train-limit", "32", "--test-limit", "32", "--batch-size", "16",
                "--data-dir", str(DATA), "--work-dir", str(tmp_path / f"work{seed}"), "--out", str(out), *extra]
        monkeypatch.setattr(sys, "argv", argv)
        reproduce_resnet.main()
        return json.loads(out.read_text())

    first = invoke(0, tmp_path / "seed0.json")
    both = invoke(1, tmp_path / "both.json", "--merge", str(tmp_path / "seed0.json"), variants=("original",))
    assert both["settings"]["seeds"] == [0, 1] and both["runs_merged"] == 2
    assert both["settings"]["variants"] == ["original", "erase"]  # erase is not trained now: its seed 0 is kept
    cells = both["results"]["cifar_resnet20"]
    assert [[r["seed"] for r in cells[v]["runs"]] for v in ("original", "erase")] == [[0, 1], [0]]
    for variant in ("original", "erase"):
        runs, old = cells[variant]["runs"], first["results"]["cifar_resnet20"][variant]["runs"][0]
        assert runs[0]["merged_from"] == str(tmp_path / "seed0.json")
        assert runs[0]["test_top1_err"] == old["test_top1_err"]
    assert "merged_from" not in cells["original"]["runs"][1]
    errs = [r["test_top1_err"] for r in cells["original"]["runs"]]
    assert cells["original"]["test_err_mean"] == pytest.approx(sum(errs) / 2)
    assert f"| {cells['erase']['test_err_mean']:.2f} (1 seed) |" in both["table_markdown"]
    assert (tmp_path / "both.png").stat().st_size > 0  # the plot draws variants with different seed counts
    with pytest.raises(SystemExit) as exit_:  # another epoch count: refused before anything trains
        invoke(2, tmp_path / "x.json", "--epochs", "2", "--merge", str(tmp_path / "seed0.json"))
    assert exit_.value.code == 2 and not (tmp_path / "x.json").exists() and not (tmp_path / "work2").exists()


def test_snl_step_row_times_plain_and_masked_steps():
    import snl_step

    row = snl_step.measure("cifar_resnet20", "channel", rounds=1, steps=2, batch=4)
    assert row["steps_timed"] == 2 and row["plain_step_s"] > 0 and row["snl_step_s"] > 0
    assert abs(row["ratio"] - row["snl_step_s"] / row["plain_step_s"]) <= 0.01 * row["ratio"] + 0.002


def test_linearize_bench_summary_rows_and_table():
    import linearize

    runs = [{"method": m, "fraction": 0.5, "seed": s, "budget": 50, "relus": r, "relus_before": 100,
             "test_acc": a + s} for m, r, a in (("uniform", 40, 80.0), ("snl", 50, 85.0)) for s in (0, 1)]
    bases = [{"final": {"test_acc": 90.0}}, {"final": {"test_acc": 92.0}}]
    rows = linearize.summarize(runs, bases, [{"final": {"test_acc": 93.0}}] * 2)
    assert [(r["method"], r["relus"], r["acc_mean"]) for r in rows] == [
        ("original (base)", 100, 91.0), ("original (base + post)", 100, 93.0), ("uniform", 40, 80.5),
        ("snl", 50, 85.5)]
    text = linearize.table(rows)
    assert "| snl | 50% | 50 | 50 | 85.50 ± 0.71 | 85.00, 86.00 |" in text
