"""ReLU counts and budgets: exact counts, shape propagation, budget arithmetic, uniform/stage/SNL, hooks, CLI."""

from __future__ import annotations

import doctest
import importlib
import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import relu_surgery as rs
from relu_surgery.cli import main
from relu_surgery.errors import SelectionError
from relu_surgery.graph.relu_count import relu_count, shape_pass
from relu_surgery.graph.shapes import propagate_shapes, real_pass
from relu_surgery.graph.tracing import trace
from relu_surgery.surgery.layers import CReLU
from relu_surgery.surgery.linearize import (MaskedReLU, fewest_uniform, linearize_sites, resolve_budget,
                                            uniform_pick)
from relu_surgery.surgery.linearize.snl import MaskPenalty, threshold_masks
from relu_surgery.train import TrainConfig, run_training

from .shared_data import DATA, needs_data, one_thread  # noqa: F401 (fixture)

X28 = torch.zeros(1, 1, 28, 28)


def small_resnet(in_chans=1):
    return rs.create_model("cifar_resnet20", in_chans=in_chans, widths=(4, 8, 16))


class Hand(nn.Module):
    """Every spelling of ReLU, hand-countable at a 1x2x6x6 input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)      # 3x6x6
        self.act = nn.ReLU()                           # 108
        self.down = nn.Conv2d(3, 4, 2, stride=2)       # 4x3x3
        self.crelu = CReLU()                           # 2 x 36 = 72
        self.fc = nn.Linear(8 * 9, 5)

    def forward(self, x):
        x = self.act(self.conv(x))
        y = F.relu(self.down(x))                       # 36
        z = self.crelu(y.relu_())                      # 36 (in place) + 72
        return torch.relu(self.fc(z.flatten(1)))       # 5


def gelu_net():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.GELU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))


# ----------------------------------------------------------------------------- counting


def test_cifar_resnet18_counts_the_private_inference_papers_557056_relus():
    count = relu_count(rs.create_model("cifar_resnet18"))
    assert count.total == 557_056
    assert count.input_shape == (1, 3, 32, 32)
    assert count.per_stage() == {"stem": 65_536, "layer1": 262_144, "layer2": 131_072, "layer3": 65_536,
                                 "layer4": 32_768}
    assert [s.relus for s in count.sites[:3]] == [65_536] * 3 and len(count.sites) == 17


def test_hand_computed_counts_per_site_every_spelling():
    count = relu_count(Hand(), torch.zeros(1, 2, 6, 6), blocks=[])
    assert [(s.kind, s.shape, s.relus) for s in count.sites] == [
        ("relu", (3, 6, 6), 108), ("relu", (4, 3, 3), 36), ("relu", (4, 3, 3), 36), ("crelu", (8, 3, 3), 72),
        ("relu", (5,), 5)]
    assert count.total == 257
    assert all(s.stage == "stem" and s.block is None for s in count.sites)


def test_counts_are_per_sample_and_shared_modules_count_per_call():
    import torchvision

    model = torchvision.models.resnet18()
    one, four = relu_count(model, torch.zeros(1, 3, 64, 64)), relu_count(model, torch.zeros(4, 3, 64, 64))
    assert one.total == four.total
    names = [s.site for s in one.sites]
    assert names[:4] == ["relu", "layer1.0.relu", "layer1.0.relu_1", "layer1.1.relu"]
    # stem 64x32x32 (after the stride-2 conv), then layer1 at 64x16x16 (after the max-pool)
    assert one.sites[0].relus == 64 * 32 * 32 and one.sites[1].relus == 64 * 16 * 16
    assert one.per_block()["layer1.0"] == 2 * 64 * 16 * 16


def test_composite_norm_act_layer_counts_its_activation():
    from timm.layers import BatchNormAct2d

    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), BatchNormAct2d(3), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    count = relu_count(net, torch.zeros(1, 1, 4, 4), blocks=[])
    assert [(s.kind, s.relus) for s in count.sites] == [("relu", 48)]


@pytest.mark.parametrize("name,size", [("tv:resnet18", 64), ("cifar_resnet20", 32), ("mlp12", 28),
                                       ("inception_v2_cifar", 32), ("tv:squeezenet1_0", 64),
                                       ("timm:efficientnet_b0", 64), ("tv:densenet121", 64), ("wrn_52_1", 32)])
def test_shape_propagation_matches_a_real_pass(name, size, one_thread):
    model = rs.create_model(name).eval()
    x = torch.randn(1, 784) if name == "mlp12" else torch.randn(1, 3, size, size)
    gm = trace(model).graph_module
    fast, real = propagate_shapes(gm, x), real_pass(gm, x)
    assert fast.mode == "meta" and real.mode == "real"
    assert fast.shapes == real.shapes
    assert fast.macs == real.macs and fast.output_shape == real.output_shape


def test_value_dependent_shapes_fall_back_to_a_real_pass():
    class Gate(nn.Module):
        def forward(self, x):
            return torch.relu(x[x > 0])  # the shape depends on the values

    gm = torch.fx.symbolic_trace(nn.Sequential(nn.Linear(3, 3), Gate()))
    assert shape_pass(gm, torch.zeros(4, 3)).mode == "real"


# ----------------------------------------------------------------------------- reports and the check


def test_every_report_counts_relus_before_and_after():
    new, report = rs.erase(small_resnet(), proportion=1.0, example_input=X28)
    data = json.loads(report.to_json())["relu_count"]
    # stem 4x28x28 + stage 1 6 x 4x28x28 + stage 2 6 x 8x14x14 + stage 3 6 x 16x7x7
    assert data["before"] == 3136 + 6 * 3136 + 6 * 1568 + 6 * 784 == 36064
    assert data["after"] == 36064 - 3 * 3136 - 3 * 1568 - 3 * 784
    erased = {c.site for c in report.changes}
    assert {s["site"] for s in data["sites"] if s["after"] == 0} == erased
    assert [g["stage"] for g in data["stages"]] == ["stem", "layer1", "layer2", "layer3"]
    assert "ReLUs" in dict(report.summary_lines()) and "## ReLU count" in report.to_markdown()


def test_default_check_propagates_shapes_full_check_runs_values():
    model = small_resnet()
    _, quick = rs.erase(model, proportion=0.5, example_input=X28)
    _, full = rs.erase(model, proportion=0.5, example_input=X28, check="full")
    assert quick.forward_check["pass"] == "meta" and quick.forward_check["finite"] is None
    assert full.forward_check["pass"] == "real" and full.forward_check["finite"] is True
    assert quick.macs_before == full.macs_before and quick.macs_after == full.macs_after
    assert quick.relu_count.to_dict() == full.relu_count.to_dict()
    assert "finiteness not checked" in dict(quick.summary_lines())["Forward pass"]


def test_function_preserving_rewrite_runs_real_passes_and_compares():
    _, report = rs.crelu(small_resnet(3), example_input=torch.randn(1, 3, 32, 32))
    assert report.forward_check["pass"] == "real" and report.forward_check["max_abs_diff"] < 1e-4


# ----------------------------------------------------------------------------- budget arithmetic


def test_budget_arithmetic_and_errors():
    assert resolve_budget(0.5, 557_056) == 278_528 and resolve_budget("0.05", 1000) == 50
    assert resolve_budget(1000, 1000) == 1000 and resolve_budget("123", 1000) == 123
    for bad, words in [(0, "positive"), (-5, "positive"), (1001, "larger"), (1.5, r"\(0, 1\)"), ("x", "count"),
                       (0.0001, "rounds to 0")]:
        with pytest.raises(SelectionError, match=words):
            resolve_budget(bad, 1000)


def test_uniform_rule_picks_the_fewest_sites():
    assert uniform_pick(10, 3) == [0, 3, 6]
    counts = [5, 1, 7, 2, 9, 3, 4]
    for need in range(1, sum(counts) + 1):
        picked = fewest_uniform(counts, need)
        assert sum(counts[i] for i in picked) >= need
        assert all(sum(counts[i] for i in uniform_pick(len(counts), k)) < need for k in range(len(picked)))
    assert fewest_uniform(counts, sum(counts) + 1) is None


@pytest.mark.parametrize("budget", [0.5, 0.2, 0.05, 20_000])
def test_uniform_linearize_meets_the_budget_with_the_fewest_sites(budget):
    model = small_resnet()
    new, report = linearize_sites(model, budget, "uniform", example_input=X28)
    tally = report.relu_count
    target = resolve_budget(budget, tally.total_before)
    assert tally.total_after <= target
    erased = len(report.changes)
    sizes = [s.relus for s in relu_count(model, X28).sites]
    fewer = uniform_pick(len(sizes), erased - 1)
    assert tally.total_before - sum(sizes[i] for i in fewer) > target  # one site fewer would not do
    assert "site-granular" in report.steps[0].selection_reason


def test_stage_linearize_with_a_given_order_erases_whole_stages_then_thins():
    # 36,064 ReLUs: stem 3,136, layer1 18,816, layer2 9,408, layer3 4,704; budget 0.6 -> 21,638
    new, report = linearize_sites(small_resnet(), 0.6, "stage", order=["layer3", "layer2", "layer1", "stem"],
                                  example_input=X28)
    erased = {c.site for c in report.changes}
    assert {f"layer3.{b}.relu{i}" for b in range(3) for i in (1, 2)} <= erased    # whole: 31,360 left
    assert {f"layer2.{b}.relu{i}" for b in range(3) for i in (1, 2)} <= erased    # whole: 21,952 left
    assert len(erased) == 13 and report.relu_count.total_after == 21952 - 3136  # layer1 thinned by one site
    reason = report.steps[0].selection_reason
    assert "layer3 > layer2 > layer1 > stem (given)" in reason
    assert "linearized whole: layer3 (4,704), layer2 (9,408); stage layer1 thinned: 1 of 6" in reason
    with pytest.raises(SelectionError, match="unknown stage"):
        linearize_sites(small_resnet(), 0.5, "stage", order=["layer9"], example_input=X28)


def test_linearized_model_saves_and_loads(tmp_path):
    new, report = linearize_sites(small_resnet(), 0.2, "uniform", example_input=X28)
    loaded = rs.load(rs.save(new, tmp_path / "u", report))
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(loaded.eval()(x), new.eval()(x))
    assert json.loads((tmp_path / "u" / "recipe.json").read_text())["rewrites"][0]["sites"]


# ----------------------------------------------------------------------------- SNL pieces


@pytest.mark.parametrize("granularity", ["channel", "pixel"])
def test_snl_threshold_keeps_exactly_the_budget(granularity):
    gen = torch.Generator().manual_seed(0)
    layers = {}
    for name, shape in [("a", (4, 8, 8)), ("b", (8, 4, 4)), ("c", (16, 2, 2))]:
        mask = (shape[0], 1, 1) if granularity == "channel" else shape
        layers[name] = MaskedReLU(mask, trainable=True, site_shape=shape)
        with torch.no_grad():
            layers[name].alpha.copy_(torch.rand(mask, generator=gen))
    total = 256 + 128 + 64
    for budget in (1, 5, 63, 64, 100, 257, 400, total):
        masks = threshold_masks(layers, budget)
        kept = sum(int(torch.broadcast_to(m, layers[n].site_shape).sum()) for n, m in masks.items())
        assert kept == budget
        assert sum(tuple(m.shape) != layers[n].alpha.shape for n, m in masks.items()) <= 1  # one partial site at most


def test_snl_threshold_prefers_the_highest_alpha():
    layer = MaskedReLU((4, 1, 1), trainable=True, site_shape=(4, 2, 2))
    with torch.no_grad():
        layer.alpha.copy_(torch.tensor([0.1, 0.9, 0.5, 0.7]).reshape(4, 1, 1))
    assert threshold_masks({"s": layer}, 8)["s"].flatten().tolist() == [0.0, 1.0, 0.0, 1.0]


def test_masked_relu_is_the_snl_function():
    x = torch.randn(3, 2, 4, 4)
    layer = MaskedReLU((2, 1, 1))
    layer.mask[0] = 0.0
    expected = torch.cat([x[:, :1], F.relu(x[:, 1:])], dim=1)
    assert torch.equal(layer(x), expected)
    soft = MaskedReLU((2, 1, 1), trainable=True)
    with torch.no_grad():
        soft.alpha.fill_(0.25)
    assert torch.allclose(soft(x), 0.25 * F.relu(x) + 0.75 * x)


def test_mask_penalty_raises_its_coefficient_until_the_budget_is_met():
    net = nn.Sequential(MaskedReLU((4,), trainable=True, site_shape=(4,)))
    hook = MaskPenalty(budget=2, l1=1.0, growth=3.0)
    assert hook.epoch_end(net, 0, {})["l1"] == 3.0        # 4 alive > 2: raised
    with torch.no_grad():
        net[0].alpha[:3] = 0.0
    assert hook.epoch_end(net, 1, {}) == {"relus_alive": 1, "relu_budget": 2, "l1": 3.0}
    restored = MaskPenalty(budget=2)
    restored.load_state_dict(hook.state_dict())
    assert restored.l1 == 3.0


# ----------------------------------------------------------------------------- runner hook, SNL end to end


class _Probe:
    def __init__(self):
        self.steps, self.epochs = [], []

    def extra_loss(self, model, step):
        self.steps.append(step)
        return 0.0 * sum(p.sum() for p in model.parameters())

    def epoch_end(self, model, epoch, row):
        self.epochs.append(epoch)
        return {"probe_epoch": epoch}

    def state_dict(self):
        return {"seen": len(self.steps)}


def _data(**overrides) -> TrainConfig:
    base = dict(dataset="fashion-mnist", data_dir=str(DATA / "fashion-mnist") if DATA else None, epochs=1,
                batch_size=32, lr=0.02, limit_train=128, limit_test=64, progress=False, device="cpu")
    return TrainConfig(**{**base, **overrides})


@needs_data
def test_runner_hook_gets_every_step_and_epoch(tmp_path, one_thread):
    from relu_surgery.train.checkpoint import load_checkpoint

    hook = _Probe()
    result = run_training(small_resnet(), _data(epochs=2), tmp_path / "r", hooks=[hook])
    assert hook.steps == list(range(8)) and hook.epochs == [0, 1]
    assert [r["probe_epoch"] for r in result.history] == [0, 1]
    assert load_checkpoint(tmp_path / "r" / "checkpoint.pt")["hooks"] == [{"seen": 8}]


@needs_data
def test_snl_end_to_end_exact_budget_save_load_compile_export(tmp_path, one_thread):
    model = small_resnet()
    new, report = rs.linearize(model, 0.1, "snl", data=_data(), out=tmp_path / "w", mask_epochs=1,
                               l1=0.01, check_every=1)
    assert report.relu_count.total_after == math.floor(0.1 * 36064)        # exactly the budget
    kept = {s["site"]: s["after"] for s in report.relu_count.to_dict()["sites"]}
    assert len(kept) == 19 and sum(kept.values()) == 3606
    assert (tmp_path / "w" / "masks" / "result.json").is_file() and (tmp_path / "w" / "finetune" / "result.json").is_file()
    assert all(not n.endswith(".alpha") for n, _ in new.named_parameters())
    assert sum(n.endswith(".mask") for n, _ in new.named_buffers()) == 19
    saved = rs.save(new, tmp_path / "snl", report)
    from safetensors.torch import load_file

    assert sum(k.endswith(".mask") for k in load_file(str(saved / "weights.safetensors"))) == 19
    loaded = rs.load(saved).eval()
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(loaded(x), new.cpu().eval()(x))
    assert relu_count(loaded, X28).total == 3606
    assert torch.allclose(torch.compile(loaded, backend="eager")(x), loaded(x))
    assert torch.allclose(torch.export.export(loaded, (x,)).module()(x), loaded(x))


# ----------------------------------------------------------------------------- CLI


def _run(capsys, *argv):
    code = main(list(argv))
    return code, *capsys.readouterr()


@pytest.mark.parametrize("budget,words", [("200000", "larger than"), ("0", "positive"), ("-3", "positive"),
                                          ("1.5", "(0, 1)")])
def test_cli_budget_errors_exit_2(capsys, budget, words):
    code, out, err = _run(capsys, "linearize", "cifar_resnet20", "--budget", budget)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_cli_model_without_relus_and_snl_without_data_exit_2(capsys):
    code, _, err = _run(capsys, "linearize", "tests.test_budgets:gelu_net", "--budget", "0.5")
    assert code == 2 and "no ReLU-family sites" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "linearize", "cifar_resnet20", "--budget", "0.5", "--method", "snl")
    assert code == 2 and "--dataset" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "linearize", "cifar_resnet20", "--budget", "0.5", "--method", "stage")
    assert code == 2 and "stage order" in err


def test_cli_linearize_uniform_json_and_inspect_counts(capsys):
    code, out, _ = _run(capsys, "linearize", "cifar_resnet18", "--budget", "0.5", "--json")
    data = json.loads(out)["relu_count"]
    assert code == 0 and data["before"] == 557_056 and data["after"] <= 278_528
    code, out, _ = _run(capsys, "inspect", "cifar_resnet18", "--json")
    assert code == 0 and json.loads(out)["relu_count"]["total"] == 557_056
    code, out, _ = _run(capsys, "inspect", "cifar_resnet18")
    assert "557,056" in out


# ----------------------------------------------------------------------------- docstrings


@pytest.mark.parametrize("name", ["graph.shapes", "graph.relu_count", "report.relu_counts", "surgery.checking",
                                  "surgery.linearize.budget", "surgery.linearize.methods", "surgery.linearize.masked",
                                  "surgery.linearize.snl", "surgery.linearize.actions", "surgery.linearize.api",
                                  "train.hooks", "models.zoo.pi_resnet"])
def test_docstring_examples(name):
    module = importlib.import_module(f"relu_surgery.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
