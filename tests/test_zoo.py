"""The papers' model zoo: names, parameter counts, structure, traceability, forward/backward.

Big models are only ever built on the meta device (no memory, no compute); real forward+backward
passes use the cheap models or cheap options of the big ones.
"""

from __future__ import annotations

import doctest
import functools
import importlib
import operator

import pytest
import torch
import torch.fx as fx
import torch.nn as nn

from relu_surgery.models.zoo import create_zoo_model, get_zoo_entry, list_zoo_models
from relu_surgery.models.zoo._layers import ZeroPadShortcut
from relu_surgery.models.zoo.inception import InceptionModule
from relu_surgery.models.zoo.mlp import MLPUnit
from relu_surgery.models.zoo.preact_resnet import PreActBasicBlock, PreActBottleneck
from relu_surgery.models.zoo.resnet import BasicBlock, Bottleneck
from relu_surgery.models.zoo.stacked import ResidualModule, VGGModule

# name -> (paper count in millions or None, exact count we build with 10 classes, 3 channels)
PARAMS = {
    "cifar_resnet20": (0.27, 269_722),
    "cifar_resnet32": (0.46, 464_154),
    "cifar_resnet44": (0.66, 658_586),
    "cifar_resnet56": (0.85, 853_018),
    "cifar_resnet110": (1.7, 1_727_962),
    "cifar_resnet1202": (19.4, 19_421_274),
    "cifar_resnet164": (1.7, 1_704_154),
    "cifar_resnet1001": (10.2, 10_328_602),
    "cifar_resnet18": (11.2, 11_173_962),  # the private-inference papers' CIFAR ResNet-18
    "preact_resnet110": (1.7, 1_730_522),
    "preact_resnet164": (1.7, 1_703_258),
    "preact_resnet1001": (10.2, 10_327_706),
    "wrn_28_10": (36.5, 36_479_194),
    "wrn_40_4": (8.9, 8_949_210),
    "wrn_52_1": (None, 758_362),
    "wrn_52_10": (None, 75_204_314),
    "resnext29_8x64d": (34.4, 34_426_698),
    "resnext29_16x64d": (68.1, 68_155_210),
    "vgg_style31": (None, 464_154),
    "residual_style31": (None, 466_906),
    "mlp12": (None, 10_827_010),
    "inception_v2_cifar": (None, 9_268_554),
}
EXPECTED_NAMES = set(PARAMS)
AFTER_ACTIVATION = {n for n in PARAMS if not n.startswith(("preact_", "wrn_"))}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny batches gain nothing from intra-op threads, and a busy 2-core box makes them spin."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.lru_cache(maxsize=None)
def meta_model(name: str) -> nn.Module:
    """Default-configured model on the meta device, built once per test session."""
    with torch.device("meta"):
        return create_zoo_model(name)


@functools.lru_cache(maxsize=None)
def traced(name: str) -> fx.GraphModule:
    return fx.symbolic_trace(meta_model(name))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count(model: nn.Module, cls: type) -> int:
    return sum(type(m) is cls for m in model.modules())


def module_calls(gm: fx.GraphModule) -> list[str]:
    return [n.target for n in gm.graph.nodes if n.op == "call_module"]


# --------------------------------------------------------------------------- registry


def test_registered_names_are_exactly_the_papers_models():
    assert set(list_zoo_models()) == EXPECTED_NAMES


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_entry_metadata_and_docstring(name):
    entry = get_zoo_entry(name)
    assert entry.input_size == ((1, 28, 28) if name == "mlp12" else (3, 32, 32))
    assert entry.description and entry.paper
    assert ">>>" in entry.fn.__doc__  # every public builder carries an example


# --------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_parameter_count(name):
    paper_m, exact = PARAMS[name]
    got = n_params(meta_model(name))
    assert got == exact
    if paper_m is not None:
        assert abs(got / 1e6 - paper_m) <= 0.02 * paper_m, f"{name}: {got / 1e6:.3f}M vs paper {paper_m}M"


def test_seed002_width_and_plain_variants_change_counts_as_expected():
    with torch.device("meta"):
        base = n_params(create_zoo_model("cifar_resnet110"))
        double = n_params(create_zoo_model("cifar_resnet110", widths=(32, 64, 128)))
        crelu10 = create_zoo_model("cifar_resnet110", widths=(12, 24, 48))
        plain = create_zoo_model("cifar_resnet110", norm="none")
        plain_nb = create_zoo_model("cifar_resnet110", norm="none", bias=False)
    assert 3.9 < double / base < 4.0  # conv weights scale with width^2, BN/fc linearly
    assert crelu10.layer3[0].conv1.out_channels == 48 and crelu10.stem.conv.out_channels == 12
    assert count(plain, nn.BatchNorm2d) == 0 and count(plain_nb, nn.BatchNorm2d) == 0
    convs = [m for m in plain.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 109 and all(c.bias is not None for c in convs)
    assert all(m.bias is None for m in plain_nb.modules() if isinstance(m, nn.Conv2d))
    assert all(m.bias is None for m in meta_model("cifar_resnet110").modules() if isinstance(m, nn.Conv2d))


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize("name, cls, n", [
    ("cifar_resnet20", BasicBlock, 9), ("cifar_resnet32", BasicBlock, 15),
    ("cifar_resnet44", BasicBlock, 21), ("cifar_resnet56", BasicBlock, 27),
    ("cifar_resnet110", BasicBlock, 54), ("cifar_resnet1202", BasicBlock, 600),
    ("cifar_resnet164", Bottleneck, 54), ("cifar_resnet1001", Bottleneck, 333),
    ("preact_resnet110", PreActBasicBlock, 54), ("preact_resnet164", PreActBottleneck, 54),
    ("preact_resnet1001", PreActBottleneck, 333),
    ("wrn_28_10", PreActBasicBlock, 12), ("wrn_40_4", PreActBasicBlock, 18),
    ("wrn_52_1", PreActBasicBlock, 24), ("wrn_52_10", PreActBasicBlock, 24),
    ("resnext29_8x64d", Bottleneck, 9), ("resnext29_16x64d", Bottleneck, 9),
    ("vgg_style31", VGGModule, 30), ("residual_style31", ResidualModule, 30),
    ("mlp12", MLPUnit, 11), ("inception_v2_cifar", InceptionModule, 30),
])
def test_block_counts(name, cls, n):
    assert count(meta_model(name), cls) == n


def test_cifar_resnet_shortcuts():
    r110, r164 = meta_model("cifar_resnet110"), meta_model("cifar_resnet164")
    # option A: two parameter-free zero-padding shortcuts, no 1x1 convs at all
    assert count(r110, ZeroPadShortcut) == 2
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in r110.modules())
    # bottleneck: conv+BN projections at the first unit of each stage (16->64, 64->128, 128->256)
    projections = [b.shortcut for b in r164.modules() if isinstance(b, Bottleneck) and b.shortcut is not None]
    assert [(p[0].in_channels, p[0].out_channels, p[0].stride) for p in projections] == [
        (16, 64, (1, 1)), (64, 128, (2, 2)), (128, 256, (2, 2))]
    assert all(isinstance(p[1], nn.BatchNorm2d) for p in projections)
    with torch.device("meta"):
        r20b = create_zoo_model("cifar_resnet20", shortcut="B")
    assert count(r20b, ZeroPadShortcut) == 0 and n_params(r20b) == 269_722 + 16 * 32 + 32 * 64 + 2 * (32 + 64)


def test_resnext_units():
    for name, card in (("resnext29_8x64d", 8), ("resnext29_16x64d", 16)):
        m = meta_model(name)
        units = [b for b in m.modules() if isinstance(b, Bottleneck)]
        assert [b.conv2.groups for b in units] == [card] * 9
        assert [b.conv2.in_channels for b in units[::3]] == [card * 64, card * 128, card * 256]
        assert [b.conv3.out_channels for b in units[::3]] == [256, 512, 1024]
        assert m.stem.conv.out_channels == 64 and m.head.fc.in_features == 1024


def test_stacked31_has_31_weighted_layers():
    vgg, res = meta_model("vgg_style31"), meta_model("residual_style31")
    assert count(vgg, nn.Conv2d) == 31 and count(vgg, nn.ReLU) == 31 and count(vgg, nn.Linear) == 1
    convs3 = [m for m in res.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    convs1 = [m for m in res.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(convs3) == 31 and len(convs1) == 2  # + the two stride-2 projections
    for net in (vgg, res):
        assert [len(net.layer1), len(net.layer2), len(net.layer3)] == [10, 10, 10]
        assert [net.layer2[0].conv.stride, net.layer3[0].conv.stride] == [(2, 2), (2, 2)]
        assert [net.layer1[-1].conv.out_channels, net.layer2[-1].conv.out_channels,
                net.layer3[-1].conv.out_channels] == [16, 32, 64]
    with torch.device("meta"):
        shallow = create_zoo_model("vgg_style31", depth=5)
    assert count(shallow, VGGModule) == 15 and count(shallow, nn.Conv2d) == 16


def test_mlp12_structure():
    m = meta_model("mlp12")
    linears = [x for x in m.modules() if isinstance(x, nn.Linear)]
    assert len(linears) == 12 and linears[0].in_features == 784
    assert [x.out_features for x in linears] == [1000] * 11 + [10]
    assert count(m, nn.BatchNorm1d) == 11 and count(m, nn.ReLU) == 11
    assert [d.p for d in m.modules() if isinstance(d, nn.Dropout)] == [0.5] * 11
    with torch.device("meta"):
        rgb = create_zoo_model("mlp12", in_chans=3, input_size=(32, 32), dropout=0.2)
    assert rgb.layers[0].fc.in_features == 3072 and rgb.layers[5].dropout.p == 0.2


def test_inception_v2_cifar_structure():
    m = meta_model("inception_v2_cifar")
    assert m.stem.conv.out_channels == 64
    mods = [x for x in m.modules() if isinstance(x, InceptionModule)]
    assert all(type(x).__name__.startswith("Inception") for x in mods)
    assert [x.out_chs for x in mods[::10]] == [192, 384, 768]  # 12 x base 16, 32, 64
    first = mods[0]
    widths = [first.branch1x1.conv.out_channels, first.branch3x3[-1].conv.out_channels,
              first.branch3x3dbl[-1].conv.out_channels, first.branch_pool[-1].conv.out_channels]
    assert widths == [16, 128, 32, 16]  # 1 : 8 : 2 : 1
    kernels = [u.conv.kernel_size[0] for u in first.branch3x3dbl]
    assert kernels == [1, 3, 3]  # 5x5 replaced by two 3x3
    assert count(m, nn.MaxPool2d) == 2 and m.head.fc.in_features == 768


def test_preact_first_and_last_unit_follow_seed003_appendix():
    m = meta_model("preact_resnet164")
    assert isinstance(m.conv1, nn.Conv2d) and isinstance(m.layer1[0], PreActBottleneck)
    calls = module_calls(traced("preact_resnet164"))
    assert calls[:2] == ["conv1", "layer1.0.bn1"]  # the first unit follows the stem conv directly
    assert calls[-5:] == ["bn_final", "relu_final", "head.pool", "head.flatten", "head.fc"]  # extra BN+ReLU
    flags = [b.preact_shortcut for b in m.modules() if isinstance(b, PreActBottleneck)]
    assert flags == ([True] + [False] * 17) * 3
    p110 = meta_model("preact_resnet110")
    # the network's first unit splits after its BN-ReLU even though its shortcut is the identity
    assert p110.layer1[0].shortcut is None and p110.layer1[0].preact_shortcut is True
    assert p110.layer1[1].preact_shortcut is False and p110.layer2[0].preact_shortcut is True
    assert [tuple(p110.layer2[0].shortcut[0].weight.shape)] == [(32, 16, 1, 1)]  # bare conv, no BN
    assert len(p110.layer2[0].shortcut) == 1


def test_wrn_widths_and_dropout():
    m = meta_model("wrn_28_10")
    assert [m.layer1[0].conv1.out_channels, m.layer2[0].conv1.out_channels,
            m.layer3[0].conv1.out_channels] == [160, 320, 640]
    assert count(m, nn.Dropout) == 0
    with torch.device("meta"):
        d = create_zoo_model("wrn_52_1", dropout=0.4)
    assert [x.p for x in d.modules() if isinstance(x, nn.Dropout)] == [0.4] * 24
    calls = module_calls(fx.symbolic_trace(d.layer1[1]))
    assert calls == ["bn1", "relu", "conv1", "bn2", "relu", "dropout", "conv2"]


# --------------------------------------------------------------------------- block form (for the core)


@pytest.mark.parametrize("block, expected", [
    (BasicBlock(16, 16), ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2"]),
    (BasicBlock(16, 32, stride=2, shortcut="B"),
     ["conv1", "bn1", "relu1", "conv2", "bn2", "shortcut.0", "shortcut.1", "relu2"]),
    (Bottleneck(64, 64), ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3", "relu3"]),
    (PreActBasicBlock(16, 16), ["bn1", "relu", "conv1", "bn2", "relu", "conv2"]),
    (PreActBottleneck(16, 64, mid_chs=16),
     ["bn1", "relu", "conv1", "bn2", "relu", "conv2", "bn3", "relu", "conv3", "shortcut.0"]),
    (ResidualModule(16, 32, stride=2), ["conv", "bn", "shortcut.0", "shortcut.1", "relu"]),
])
def test_residual_blocks_own_one_add_in_the_documented_order(block, expected):
    gm = fx.symbolic_trace(block)
    gm.graph.lint()
    assert module_calls(gm) == expected
    adds = [n for n in gm.graph.nodes if n.op == "call_function" and n.target in (operator.add, torch.add)]
    assert len(adds) == 1
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    if expected[-1].startswith("relu"):  # after-activation: ReLU right after the addition
        assert out.op == "call_module" and out.args[0] is adds[0]
    else:  # pre-activation: the addition is the output
        assert out is adds[0]


# ReLU call sites in the traced graph: stem + per-unit sites (+ the pre-activation nets' final one)
RELU_SITES = {
    "cifar_resnet20": 19, "cifar_resnet32": 31, "cifar_resnet44": 43, "cifar_resnet56": 55,
    "cifar_resnet110": 109, "cifar_resnet1202": 1201, "cifar_resnet164": 163, "cifar_resnet1001": 1000,
    "cifar_resnet18": 17,
    "preact_resnet110": 109, "preact_resnet164": 163, "preact_resnet1001": 1000,
    "wrn_28_10": 25, "wrn_40_4": 37, "wrn_52_1": 49, "wrn_52_10": 49,
    "resnext29_8x64d": 28, "resnext29_16x64d": 28, "vgg_style31": 31, "residual_style31": 31,
    "mlp12": 11, "inception_v2_cifar": 1 + 30 * 7,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_traceable_with_relu_modules_only(name):
    gm = traced(name)
    gm.graph.lint()
    nodes = list(gm.graph.nodes)
    functional = (torch.relu, torch.nn.functional.relu)
    assert not [n for n in nodes if n.op == "call_function" and n.target in functional]
    assert not [n for n in nodes if n.op == "call_method" and n.target in ("relu", "relu_")]
    relu_calls = [n.target for n in nodes
                  if n.op == "call_module" and isinstance(gm.get_submodule(n.target), nn.ReLU)]
    assert len(relu_calls) == RELU_SITES[name]
    if name in AFTER_ACTIVATION:  # one nn.ReLU module per call site
        assert len(set(relu_calls)) == len(relu_calls) == count(meta_model(name), nn.ReLU)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_meta_forward_shape(name):
    x = torch.empty(2, *get_zoo_entry(name).input_size, device="meta")
    assert meta_model(name).eval()(x).shape == (2, 10)  # eval: BN on meta is cheaper


# --------------------------------------------------------------------------- real forward + backward


CHEAP = [
    ("cifar_resnet20", {}),
    ("cifar_resnet20", {"norm": "none", "bias": False}),
    ("cifar_resnet20", {"widths": (12, 24, 48), "shortcut": "B"}),
    ("cifar_resnet164", {}),
    ("preact_resnet110", {}),
    ("wrn_52_1", {"dropout": 0.3}),
    ("resnext29_8x64d", {"base_width": 4, "widen_factor": 1}),
    ("vgg_style31", {}),
    ("residual_style31", {}),
    ("inception_v2_cifar", {"depth": 2}),
    ("mlp12", {}),
]


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("name, options", CHEAP,
                         ids=[f"{n}-{'-'.join(map(str, o.values()))}" for n, o in CHEAP])
def test_forward_backward(name, options, in_chans):
    torch.manual_seed(0)
    model = create_zoo_model(name, num_classes=7, in_chans=in_chans, **options)
    spatial = (28, 28) if name == "mlp12" else (32, 32)
    out = model(torch.randn(2, in_chans, *spatial))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    gm = fx.symbolic_trace(model)
    x = torch.randn(2, in_chans, *spatial)
    torch.testing.assert_close(gm(x), model(x))


def test_bad_options_raise_clear_errors():
    with pytest.raises(ValueError, match="norm"):
        create_zoo_model("cifar_resnet20", norm="gn")
    with pytest.raises(ValueError, match="shortcut"):
        create_zoo_model("cifar_resnet20", shortcut="C")
    with pytest.raises(ValueError, match="option-A"):
        create_zoo_model("cifar_resnet20", widths=(64, 32, 16))
    with pytest.raises(TypeError):
        create_zoo_model("vgg_style31", norm="bn")  # no such option for this family


# --------------------------------------------------------------------------- docstring examples


@pytest.mark.parametrize("module", ["_layers", "_registry", "resnet", "preact_resnet", "wide_resnet",
                                    "resnext", "stacked", "mlp", "inception"])
def test_docstring_examples_run(module):
    mod = importlib.import_module(f"relu_surgery.models.zoo.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_every_zoo_model_plans_erase_and_inspects():
    """Each zoo model gets an EraseReLU plan with changes (pre-activation ones after conversion)."""
    import relu_surgery as rs

    for name in list_zoo_models():
        with torch.device("meta"):
            model = rs.create_model(name)
        _, report = rs.erase(model, proportion=1.0, dry_run=True)
        steps = [s.rewrite for s in report.steps]
        expected = ["convert", "erase"] if name.startswith(("preact_", "wrn_")) else ["erase"]
        assert steps == expected, name
        assert len(report.changes) > 0 and report.steps[-1].changes, name
