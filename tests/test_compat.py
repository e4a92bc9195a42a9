"""relu_surgery/_compat.py: each private corner of torch it wraps still exists and behaves as relied on.

If one of these fails after an upgrade, the library under _compat changed: fix _compat, nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.fx as fx
import torch.nn as nn

from relu_surgery import _compat

PACKAGE = Path(__file__).resolve().parents[1] / "relu_surgery"
PRIVATE = re.compile(r"[\w)\]]\.(_modules|_parameters|_buffers|_lazy_clone|_cdata|_base|_version|_rename|_fx)\b"
                     r"|\b(_BatchNorm|_InstanceNorm|_DropoutNd)\b|import _fx\b|__click_params__")


def test_private_base_classes_are_the_bases_of_the_public_ones():
    assert issubclass(nn.BatchNorm2d, _compat.BatchNormBase) and issubclass(nn.SyncBatchNorm, _compat.BatchNormBase)
    assert issubclass(nn.InstanceNorm2d, _compat.InstanceNormBase)
    assert all(issubclass(c, _compat.DropoutBase) for c in (nn.Dropout, nn.Dropout2d, nn.AlphaDropout))
    assert not issubclass(nn.LayerNorm, _compat.BatchNormBase)


def test_module_state_holds_its_children_and_tensors_under_the_keys_copying_uses():
    layer = nn.Sequential(nn.BatchNorm2d(2))
    state = layer[0].__getstate__()
    assert set(state) >= {_compat.MODULE_CHILDREN, *_compat.MODULE_TENSORS}
    assert set(state["_parameters"]) == {"weight", "bias"} and "running_mean" in state["_buffers"]
    assert _compat.children(layer) is layer.__dict__[_compat.MODULE_CHILDREN]
    assert list(_compat.children(layer)) == ["0"]


def test_copy_on_write_clone_shares_memory_until_written():
    assert _compat.lazy_clone is torch._lazy_clone
    a = torch.arange(4.0)
    b = _compat.lazy_clone(a)
    assert b is not a and torch.equal(a, b)
    b.add_(1)
    assert torch.equal(a, torch.arange(4.0)) and torch.equal(b, torch.arange(1.0, 5.0))


def test_storage_key_view_and_version():
    t = torch.zeros(6)
    assert _compat.storage_key(t) == _compat.storage_key(t[2:]) != _compat.storage_key(torch.zeros(6))
    assert (_compat.is_view(t), _compat.is_view(t.view(2, 3))) == (False, True)
    before = _compat.tensor_version(t)
    t.mul_(2)
    assert _compat.tensor_version(t) == before + 1


def test_shallow_copy_has_tables_of_its_own():
    bn = nn.BatchNorm2d(3)
    twin = _compat.shallow_copy(bn)
    twin.extra = nn.ReLU()
    twin.weight = nn.Parameter(torch.zeros(3))
    assert not hasattr(bn, "extra") and bn.weight is not twin.weight and twin.bias is bn.bias


def test_rename_node_renames_the_variable_of_the_generated_code():
    assert callable(getattr(fx.Node, "_rename", None))
    gm = fx.symbolic_trace(nn.Sequential(nn.ReLU()))
    _compat.rename_node(list(gm.graph.nodes)[1], "my_act")
    gm.recompile()
    assert "my_act = " in gm.code


def test_timm_notrace_lists_are_public():
    from timm.layers import get_notrace_functions, get_notrace_modules

    assert isinstance(get_notrace_modules(), (list, tuple, set)) and isinstance(get_notrace_functions(), (list, tuple, set))


def test_no_module_outside_compat_touches_these_privates():
    offenders = [f"{p.relative_to(PACKAGE)}:{i}" for p in sorted(PACKAGE.rglob("*.py")) if p.name != "_compat.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if PRIVATE.search(line)]
    assert offenders == []
