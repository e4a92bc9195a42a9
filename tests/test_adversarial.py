"""Adversarial cases (issue 15): opening a saved directory runs no code, --force deletes only what
relu_surgery wrote, one writer per output, atomic replacement, no-op rewrites, one-line user errors,
litter and modes, and models as users hand them over. Training cases: test_adversarial_train.py.

Each test states what must (or must not) happen: exit codes, key phrases, files that exist or not.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import relu_surgery as rs
from relu_surgery.cli import main
from relu_surgery.errors import SurgeryError

SRC = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys; from relu_surgery.cli import main; sys.exit(main())"]
SAVE_FILES = ["recipe.json", "report.json", "report.md", "report.txt", "weights.safetensors"]


def run(capsys, *argv):
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> bool:
    """stderr is exactly one ``error: ...`` line, no traceback, no Python exception name."""
    names = ("Traceback", "KeyError", "TypeError", "UnicodeDecodeError", "RecursionError", "ZeroDivisionError",
             "RuntimeError", "OSError", "FileExistsError", "ValueError")
    return err.startswith("error: ") and err.count("\n") == 1 and not any(n in err for n in names)


def env(**extra: str) -> dict[str, str]:
    out = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """One saved EraseReLU of cifar_resnet20 (copy it before changing it)."""
    new, report = rs.erase(rs.create_model("cifar_resnet20"), proportion=0.5)
    return rs.save(new, tmp_path_factory.mktemp("saved") / "er20", report)


def copy_of(saved: Path, tmp_path: Path, name: str = "er20") -> Path:
    return Path(shutil.copytree(saved, tmp_path / name))


def edit_recipe(directory: Path, change) -> None:
    path = directory / "recipe.json"
    recipe = json.loads(path.read_text())
    change(recipe)
    path.write_text(json.dumps(recipe))


# ---------------------------------------------------------------- 1. loading runs no code by default

def test_recipe_naming_user_code_is_refused_and_runs_nothing(capsys, saved, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = copy_of(saved, tmp_path, "evil")
    marker = tmp_path / "PWNED"
    edit_recipe(evil, lambda r: r.update(source={"name": "os:system", "kwargs": {"command": f"touch {marker}"}}))
    for command in ("inspect", "erase"):
        code, _, err = run(capsys, command, evil)
        assert code == 2 and one_line_error(err), err
        assert "--trust-code" in err and "os:system" in err
    with pytest.raises(SurgeryError, match="trust_code=True"):
        rs.load(evil)
    assert not marker.exists()


def test_trust_code_opts_in_to_a_user_module(capsys, tmp_path, monkeypatch):
    (tmp_path / "usernets.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        def build(width=4):
            return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 2))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    model = rs.create_model("usernets:build", width=6)
    new, report = rs.erase(model, proportion=1.0)
    out = rs.save(new, tmp_path / "mine", report)
    with pytest.raises(SurgeryError, match="usernets:build"):
        rs.load(out)
    assert rs.load(out, trust_code=True).code == new.code
    code, _, err = run(capsys, "inspect", out, "--trust-code", "--json")
    assert code == 0, err


def test_payload_shipped_in_the_directory_is_not_importable(capsys, saved, tmp_path, monkeypatch):
    evil = copy_of(saved, tmp_path, "evil")
    marker = tmp_path / "PWNED"
    (evil / "payload.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef build():\n    return None\n")
    edit_recipe(evil, lambda r: r.update(source={"name": "payload:build", "kwargs": {}}))
    monkeypatch.chdir(evil)
    monkeypatch.delitem(sys.modules, "payload", raising=False)
    path_before = list(sys.path)
    code, _, err = run(capsys, "inspect", ".", "--trust-code")
    assert code == 2 and one_line_error(err), err
    assert not marker.exists() and sys.path == path_before


def test_builder_argument_that_reads_a_pickle_needs_trust(capsys, tmp_path):
    new, report = rs.erase(rs.create_model("timm:resnet18", num_classes=4), proportion=1.0, check=False)
    out = rs.save(new, tmp_path / "r18", report)
    edit_recipe(out, lambda r: r["source"]["kwargs"].update(checkpoint_path=str(tmp_path / "evil.pth")))
    code, _, err = run(capsys, "inspect", out)
    assert code == 2 and one_line_error(err) and "checkpoint_path" in err and "--trust-code" in err


def test_pretrained_config_overlay_needs_trust_only_when_it_names_a_file(capsys, tmp_path):
    from relu_surgery.models.recipe import check_trust  # noqa: PLC0415

    check_trust("timm:resnet18", {"pretrained_cfg_overlay": {"input_size": [3, 32, 32]}, "pretrained": False},
                trust_code=False, where="recipe.json")  # shapes only: nothing is read
    new, report = rs.erase(rs.create_model("timm:resnet18", num_classes=4), proportion=1.0, check=False)
    out = rs.save(new, tmp_path / "r18", report)
    edit_recipe(out, lambda r: r["source"]["kwargs"].update(pretrained_cfg_overlay={"file": str(tmp_path / "x.pth")}))
    code, _, err = run(capsys, "inspect", out)
    assert code == 2 and one_line_error(err) and "pretrained_cfg_overlay" in err and "--trust-code" in err


def test_recipe_from_a_newer_release_is_refused(capsys, saved, tmp_path):
    d = copy_of(saved, tmp_path)
    edit_recipe(d, lambda r: r.update(version="99.0.0"))
    code, _, err = run(capsys, "inspect", d)
    assert code == 2 and one_line_error(err) and "99.0.0" in err and "newer" in err


def _deep(d: Path) -> None:
    (d / "recipe.json").write_text('{"tool": "relu_surgery", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")


MALFORMED = {
    "no source": lambda d: edit_recipe(d, lambda r: r.pop("source")),
    "unknown setting": lambda d: edit_recipe(d, lambda r: r["rewrites"][0].update(bogus=1)),
    "wrong type": lambda d: edit_recipe(d, lambda r: r["rewrites"][0].update(activations=5)),
    "rewrites not a list": lambda d: edit_recipe(d, lambda r: r.update(rewrites={"rewrite": "erase"})),
    "unknown rewrite": lambda d: edit_recipe(d, lambda r: r["rewrites"][0].update(rewrite="explode")),
    "kwargs not a dict": lambda d: edit_recipe(d, lambda r: r["source"].update(kwargs=[1, 2])),
    "not utf-8": lambda d: (d / "recipe.json").write_bytes(b"\xff\xfe\x00garbage"),
    "too deep": _deep,
    "not an object": lambda d: (d / "recipe.json").write_text("[1, 2, 3]"),
    "own directory": lambda d: edit_recipe(d, lambda r: r["source"].update(name=str(d), source="directory")),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_recipe_is_one_line_exit_2(capsys, saved, tmp_path, case):
    d = copy_of(saved, tmp_path)
    MALFORMED[case](d)
    code, out, err = run(capsys, "inspect", d)
    assert code == 2 and one_line_error(err), err
    assert "recipe.json" in err and out == ""


# ---------------------------------------------------------------- 2. --force deletes only a previous save

def test_force_refuses_a_folder_with_foreign_files(capsys, tmp_path):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    (folder / "recipe.json").write_text(json.dumps({"tool": "relu_surgery"}))
    code, _, err = run(capsys, "erase", "cifar_resnet20", "--out", folder, "--force")
    assert code == 2 and one_line_error(err) and "thesis.tex" in err and "did not write" in err
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_force_refuses_the_current_folder_and_the_weights_folder(capsys, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("keep")
    monkeypatch.chdir(home)
    code, _, err = run(capsys, "erase", "cifar_resnet20", "--no-check", "--out", ".", "--force")
    assert code == 2 and one_line_error(err) and (home / "notes.txt").is_file()
    code, _, err = run(capsys, "erase", "cifar_resnet20", "--no-check", "--out", "sub/..", "--force")
    assert code == 2 and (home / "notes.txt").is_file()
    torch.save(rs.create_model("cifar_resnet20").state_dict(), home / "w.pt")
    code, _, err = run(capsys, "erase", "cifar_resnet20", "--no-check", "--weights", home / "w.pt", "--out", home,
                       "--force")
    assert code == 2 and one_line_error(err) and (home / "w.pt").is_file()


def test_force_refuses_a_symlink(capsys, saved, tmp_path):
    target = copy_of(saved, tmp_path)
    link = tmp_path / "link"
    link.symlink_to(target)
    code, _, err = run(capsys, "erase", "cifar_resnet20", "--out", link, "--force")
    assert code == 2 and one_line_error(err) and "symbolic link" in err
    assert sorted(p.name for p in target.iterdir()) == SAVE_FILES


def test_force_replaces_a_previous_save(capsys, saved, tmp_path):
    d = copy_of(saved, tmp_path)
    before = json.loads((d / "recipe.json").read_text())["rewrites"][0]["proportion"]
    code, _, err = run(capsys, "erase", "cifar_resnet20", "-p", "1.0", "--out", d, "--force")
    assert code == 0, err
    assert (before, json.loads((d / "recipe.json").read_text())["rewrites"][0]["proportion"]) == (0.5, 1.0)
    assert sorted(p.name for p in d.iterdir()) == SAVE_FILES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["er20"]  # no temporaries, no lock file left


# ---------------------------------------------------------------- 3. one writer per output directory

HOLDER = textwrap.dedent("""
    import sys, time
    from relu_surgery.locks import output_lock
    with output_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_second_writer_fails_at_once_naming_the_holder(capsys, tmp_path):
    out = tmp_path / "shared"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = run(capsys, "erase", "cifar_resnet20", "--out", out)
        assert code == 2 and one_line_error(err), err
        assert f"pid {holder.pid}" in err and "another" in err
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    code, _, err = run(capsys, "erase", "cifar_resnet20", "--out", out)  # the lock went with its holder
    assert code == 0, err


# ---------------------------------------------------------------- 7. atomic replacement, litter, modes

@pytest.mark.parametrize("mode", ["exchange", "renames"])
def test_kill_during_a_force_replacement_leaves_old_or_new(capsys, saved, tmp_path, mode):
    d = copy_of(saved, tmp_path)
    proc = subprocess.run([*CLI, "erase", "cifar_resnet20", "-p", "1.0", "--no-check", "--out", str(d), "--force"],
                          env=env(RELU_SURGERY_TEST_KILL_REPLACE=mode), capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert any(p.name.startswith(".er20.") for p in tmp_path.iterdir())  # the killed write's leftovers
    loaded = rs.load(d)  # old (p=0.5) or new (p=1.0), never absent
    proportion = json.loads((d / "recipe.json").read_text())["rewrites"][0]["proportion"]
    assert proportion == (1.0 if mode == "exchange" else 0.5)
    assert loaded.code.count("relu") > 0
    code, _, err = run(capsys, "erase", "cifar_resnet20", "--out", d, "--force")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["er20"]  # the next write cleaned up


def test_a_save_replaced_while_it_is_read_is_read_again(saved, tmp_path, monkeypatch):
    import relu_surgery.models.saving as saving

    d = copy_of(saved, tmp_path)
    newer, report = rs.erase(rs.create_model("cifar_resnet20"), proportion=1.0, check=False)
    real, calls = saving._load_weights, []

    def replaced_midway(model, weights):  # another process replaces the save between recipe and weights
        if not calls:
            rs.save(newer, d, report, force=True)
        calls.append(weights)
        real(model, weights)

    monkeypatch.setattr(saving, "_load_weights", replaced_midway)
    loaded = rs.load(d)
    assert len(calls) == 2 and loaded.code == newer.code  # the recipe and weights of one save, never a mix


def test_stale_temporaries_are_removed_by_the_next_write(capsys, saved, tmp_path):
    copy_of(saved, tmp_path)
    for name in (".er20.tmp-99999999-dead", ".er20.old-99999999-beef"):  # killed writes of er20
        (tmp_path / name).mkdir()
        (tmp_path / name / "weights.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / ".other.tmp-1-abcd").mkdir()  # another output's
    code, _, err = run(capsys, "erase", "cifar_resnet20", "--out", tmp_path / "er20", "--force")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-1-abcd", "er20"]


def test_stale_file_temporaries_are_removed_by_the_next_write(tmp_path):
    from relu_surgery.train.metrics import write_metrics

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for name in ("metrics.csv", "metrics.jsonl"):
        (tmp_path / f".{name}.tmp-{int(dead.stdout)}-abcd").write_text("half")  # a killed writer's
    write_metrics([{"epoch": 1}], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "metrics.jsonl"]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saved_files_follow_the_umask(tmp_path, umask):
    new, report = rs.erase(rs.create_model("cifar_resnet20"), proportion=0.5, check=False)
    previous = os.umask(umask)
    try:
        out = rs.save(new, tmp_path / "er20", report)
    finally:
        os.umask(previous)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    assert {(p.name, p.stat().st_mode & 0o777) for p in out.iterdir()} == {(n, 0o666 & ~umask) for n in SAVE_FILES}


def test_long_directory_name_and_output_under_a_file(capsys, tmp_path):
    long_name = tmp_path / ("d" * 250)
    for extra in ((), ("--force",)):
        code, _, err = run(capsys, "erase", "cifar_resnet20", "--no-check", "--out", long_name, *extra)
        assert code == 0, err
    assert sorted(p.name for p in long_name.iterdir()) == SAVE_FILES
    code, _, err = run(capsys, "erase", "cifar_resnet20", "--no-check", "--out", tmp_path / ("e" * 300))
    assert code == 2 and one_line_error(err) and "too long" in err
    (tmp_path / "afile").write_text("x")
    code, _, err = run(capsys, "erase", "cifar_resnet20", "--no-check", "--out", tmp_path / "afile" / "sub")
    assert code == 2 and one_line_error(err) and "afile" in err and "not a directory" in err


# ---------------------------------------------------------------- 4. rewrites that change nothing

EMPTY = {
    "erase --location 99": (["erase", "cifar_resnet20", "--location", "99"], "location 99"),
    "normprop mlp12": (["normprop", "mlp12"], "conv->BatchNorm"),
    "swap without gelu sites": (["swap", "cifar_resnet20", "--to", "gelu", "--activations", "gelu"], "gelu"),
}


@pytest.mark.parametrize("case", sorted(EMPTY))
def test_a_plan_that_changes_nothing_is_an_error(capsys, tmp_path, case):
    argv, reason = EMPTY[case]
    code, out, err = run(capsys, *argv, "--out", tmp_path / "o")
    assert code == 2 and one_line_error(err), err
    assert "changes nothing" in err and reason in err and "--allow-empty" in err
    assert not (tmp_path / "o").exists() and out == ""
    code, _, err = run(capsys, *argv, "--allow-empty", "--json")
    assert code == 0, err


def test_invalid_ranges_and_site_numbers_are_refused_while_parsing(capsys):
    # "no_such_model" would be reported if the model were built first: the option is refused before
    for option, value, phrase in (("--blocks", "5-2", "5-2"), ("--blocks", "0", "1-based"),
                                  ("--location", "0", "1-based"), ("--location", "1.5", "site number")):
        code, _, err = run(capsys, "erase", "no_such_model", option, value)
        assert code == 2 and one_line_error(err) and phrase in err and "no_such_model" not in err, err


# ---------------------------------------------------------------- 5. every user error: exit 2, one line

def test_negative_input_size(capsys):
    code, _, err = run(capsys, "erase", "cifar_resnet20", "--input-size=-3,32,32")
    assert code == 2 and one_line_error(err) and "--input-size" in err


def test_tiny_proportion_picks_one_block(capsys):
    assert rs.uniform_indices(10, 1e-9) == [0]
    code, out, err = run(capsys, "erase", "cifar_resnet20", "--proportion", "1e-9", "--json")
    assert code == 0, err
    assert [c["block"] for c in json.loads(out)["changes"]] == [1]


def test_non_finite_weights_are_not_blamed_on_the_rewrite(capsys, tmp_path):
    model = rs.create_model("cifar_resnet20")
    with torch.no_grad():
        model.stem.conv.weight[0, 0, 0, 0] = float("nan")
    torch.save(model.state_dict(), tmp_path / "nan.pt")
    code, _, err = run(capsys, "erase", "cifar_resnet20", "--weights", tmp_path / "nan.pt")
    assert code == 2 and one_line_error(err), err
    assert "before the rewrite" in err and "stem.conv.weight" in err


def test_state_dict_mismatch_on_load_names_the_key(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    d = copy_of(saved, tmp_path)
    state = load_file(str(d / "weights.safetensors"))
    state.pop("head.fc.bias")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(d / "weights.safetensors"))
    with pytest.raises(SurgeryError) as info:
        rs.load(d)
    assert "head.fc.bias" in str(info.value) and "extra.weight" in str(info.value)


@pytest.mark.parametrize("content", ["random", "pickle"])
def test_torch_advice_to_disable_weights_only_is_not_passed_on(capsys, tmp_path, content):
    bad = tmp_path / "bad.pt"
    if content == "random":
        bad.write_bytes(os.urandom(256))
    else:
        torch.save({"w": torch.zeros(1), "obj": subprocess.Popen}, bad)
    code, _, err = run(capsys, "erase", "cifar_resnet20", "--weights", bad)
    assert code == 2 and one_line_error(err), err
    assert "weights_only" not in err and "will likely succeed" not in err and "can still be loaded" not in err


# ---------------------------------------------------------------- 8. models as users hand them over

def test_data_parallel_wrapper_is_unwrapped_and_said(tmp_path):
    new, report = rs.erase(nn.DataParallel(rs.create_model("cifar_resnet20")), proportion=0.5)
    assert len(report.changes) == 5
    assert any("nn.DataParallel" in w and "unwrapped" in w for w in report.warnings)
    assert rs.load(rs.save(new, tmp_path / "dp", report)).code == new.code


def test_distributed_data_parallel_wrapper_is_unwrapped(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        wrapped = nn.parallel.DistributedDataParallel(rs.create_model("cifar_resnet20"))
        _, report = rs.erase(wrapped, proportion=1.0)
    finally:
        dist.destroy_process_group()
    assert len(report.changes) == 9
    assert any("DistributedDataParallel" in w and "unwrapped" in w for w in report.warnings)


class _Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


@pytest.mark.parametrize("make", [lambda: rs.create_model("cifar_resnet20"), _Mlp], ids=["zoo", "custom"])
def test_half_precision_model_gets_a_half_precision_example_input(make):
    new, report = rs.erase(make().half(), proportion=1.0, check="full")
    assert report.changes and report.forward_check["finite"] is True
    assert next(new.parameters()).dtype == torch.float16


def test_meta_device_model_gets_a_structural_report():
    new, report = rs.erase(rs.create_model("cifar_resnet20").to("meta"), proportion=0.5)
    assert len(report.changes) == 5 and report.macs_before is None
    assert "meta" in report.forward_check["skipped"]
    assert any("meta device" in w and "skipped" in w for w in report.warnings)


def test_weights_with_module_prefix_and_nested_state_dict(capsys, tmp_path):
    state = rs.create_model("cifar_resnet20").state_dict()
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ddp.pt")
    code, _, err = run(capsys, "erase", "cifar_resnet20", "--weights", tmp_path / "ddp.pt", "--json")
    assert code == 0, err
    partial = {k: v for k, v in state.items() if not k.startswith("layer1.")}
    torch.save({"model": partial}, tmp_path / "partial.pt")
    code, _, err = run(capsys, "erase", "cifar_resnet20", "--weights", tmp_path / "partial.pt")
    assert code == 2 and one_line_error(err)
    assert "layer1.0.conv1.weight" in err and "layer1.0.bn1.weight" in err


# ---------------------------------------------------------------- a dataset file runs no code either

class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED_CIFAR",))


@pytest.mark.parametrize("payload", ["code", "objects"])
def test_cifar_reader_admits_only_plain_arrays(tmp_path, monkeypatch, payload):
    import pickle

    import numpy as np

    from relu_surgery.data.readers import read_cifar_batch
    from relu_surgery.errors import DatasetError

    monkeypatch.chdir(tmp_path)
    data = _Boom() if payload == "code" else np.array([["a"] * 3072], dtype=object)
    (tmp_path / "batch").write_bytes(pickle.dumps({"data": data, "labels": [0]}))
    with pytest.raises(DatasetError, match="batch"):
        read_cifar_batch(tmp_path / "batch", "labels")
    assert not (tmp_path / "PWNED_CIFAR").exists()
