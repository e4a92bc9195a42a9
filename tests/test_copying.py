"""Private copies: copy-on-write tensors never let a rewritten model and its source share a write."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.fx as fx
import torch.nn as nn
import torchvision

import relu_surgery as rs
from relu_surgery.graph.copying import copy_on_write_available, private_copy


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_copy_on_write_is_used_where_torch_has_it():
    assert copy_on_write_available() == hasattr(torch, "_lazy_clone")


def test_training_the_copy_leaves_the_original_unchanged():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    before = _state(model)
    twin = private_copy(model).train()
    for optimizer in (torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, foreach=True),
                      torch.optim.AdamW(twin.parameters(), lr=0.1)):
        loss = twin(torch.randn(4, 3, 32, 32)).square().mean()  # train mode also writes BN running stats
        loss.backward()
        optimizer.step()
    assert _same(model, before)
    assert not torch.equal(twin.conv1.weight, before["conv1.weight"])
    assert not torch.equal(twin.bn1.running_mean, before["bn1.running_mean"])
    assert int(twin.bn1.num_batches_tracked) == 2 and int(model.bn1.num_batches_tracked) == 0


def test_writing_the_original_leaves_the_copy_unchanged():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    twin = private_copy(model)
    kept = _state(twin)
    with torch.no_grad():
        model[0].weight.mul_(2)
        model[1].running_var.fill_(7.0)
    model.load_state_dict({k: torch.zeros_like(v) for k, v in model.state_dict().items()})
    assert _same(twin, kept)


def test_copy_keeps_structure_ties_hooks_and_flags():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.BatchNorm1d(4))
    model[0].bias.requires_grad_(False)
    calls = []
    model[1].register_forward_hook(lambda m, i, o: calls.append(type(m).__name__))
    model.custom = {"note": [1, 2]}
    twin = private_copy(model).eval()
    assert twin[0] is twin[2] and twin[0] is not model[0]
    assert twin[0].weight is not model[0].weight and isinstance(twin[0].weight, nn.Parameter)
    assert twin[0].bias.requires_grad is False and twin[0].weight.requires_grad is True
    assert twin.custom == model.custom and twin.custom["note"] is not model.custom["note"]
    x = torch.randn(2, 4)
    assert torch.equal(twin(x), model.eval()(x))
    assert calls == ["ReLU", "ReLU"]  # the hook was copied and runs on the copy too
    assert [k for k, _ in twin.named_parameters()] == [k for k, _ in model.named_parameters()]


def test_graph_module_and_custom_deepcopy_classes_are_copied_by_their_own_protocol():
    gm = fx.symbolic_trace(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()))
    twin = private_copy(gm)
    assert isinstance(twin, fx.GraphModule) and twin.code == gm.code
    with torch.no_grad():
        twin.get_submodule("0").weight.zero_()
    assert gm.get_submodule("0").weight.abs().sum() > 0


def test_copy_matches_deepcopy_on_a_timm_model():
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet18", num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(private_copy(model).eval()(x), copy.deepcopy(model)(x))


def test_training_an_erased_model_leaves_the_callers_model_unchanged():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    before = _state(model)
    new, _ = rs.erase(model, proportion=1.0, check=False)
    optimizer = torch.optim.SGD(new.parameters(), lr=0.5)
    new.train()(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    assert _same(model, before)
    assert not torch.equal(new.state_dict()["fc.weight"], before["fc.weight"])


class _ViewingBuffers(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("full", torch.zeros(4))
        self.register_buffer("part", self.full[:2])
        self.full.tag = "kept"


def test_buffers_that_share_memory_still_share_it_in_the_copy():
    twin = private_copy(_ViewingBuffers())
    twin.full.fill_(3.0)
    assert twin.part.tolist() == [3.0, 3.0]  # as copy.deepcopy keeps it
    assert twin.full.tag == "kept"


def test_memory_torch_cannot_share_lazily_is_cloned():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1)).share_memory()
    model[2].register_buffer("table", torch.from_numpy(np.arange(3.0)))
    twin = private_copy(model)
    with torch.no_grad():
        twin[0].weight.zero_()
        twin[2].table.zero_()
    assert model[0].weight.abs().sum() > 0 and model[2].table.tolist() == [0.0, 1.0, 2.0]
    new, report = rs.swap(model, to="gelu", outside_blocks=True, example_input=torch.zeros(1, 3, 4, 4))
    assert report.sites_after == {"gelu": 1}
