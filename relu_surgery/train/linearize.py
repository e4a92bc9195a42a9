"""``relu_surgery.linearize``: meet a ReLU budget by uniform erasure, by stage, or with SNL's learned masks.

Three methods (the budget: an int is a ReLU count, a float in (0, 1) a fraction of the model's):

* ``uniform``: whole sites erased by the uniform rule (no data needed; with ``data`` the result is
  fine-tuned for ``data.epochs``).
* ``stage`` (DeepReDuce, Jha et al. 2021): whole stages linearized, least critical first. The
  order is ``order=`` or measured: for each stage a copy keeping only that stage's ReLUs is
  trained ``criticality_epochs`` on ``data`` (from the given weights); stages whose copy scores
  lowest are the least critical. The stage that would overshoot is thinned site by site. Then
  fine-tuned for ``data.epochs``.
* ``snl`` (Cho et al. 2022): every target site gets a trainable mask (per channel, or per pixel);
  ``mask_epochs`` of training with SNL's L1 penalty, its coefficient raised until the alive ReLUs
  reach the budget (:class:`~relu_surgery.surgery.linearize.snl.MaskPenalty`, a runner hook); the
  masks thresholded to exactly the budget and frozen (0/1 buffers); ``data.epochs`` of fine-tuning.

Every training phase is an ordinary runner run under ``out`` (``criticality/<stage>``, ``masks``,
``finetune``): a finished phase is reused, an interrupted one resumed. The result is an ordinary
rewritten model: ``rs.save`` / ``rs.load`` (the recipe rebuilds the masks' structure; their values
come from the weights), training, ``torch.compile`` and ``torch.export`` work as for every rewrite.

Example:
    >>> import relu_surgery as rs
    >>> from relu_surgery.train import TrainConfig
    >>> data = TrainConfig(dataset="fashion-mnist", data_dir="data/fashion-mnist", epochs=1, lr=0.01,
    ...                    limit_train=2048, limit_test=512)
    >>> model = rs.create_model("cifar_resnet20", in_chans=1)
    >>> new, report = linearize(model, 0.2, "snl", data=data, out="runs/snl20")   # doctest: +SKIP
    >>> report.relu_count.total_after == report.relu_count.total_before // 5         # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import SelectionError
from ..report.report import Report
from ..surgery.linearize.api import METHODS, linearize_sites, linearize_step
from ..surgery.linearize.masked import MaskedReLU
from ..surgery.linearize.snl import MaskPenalty, alive_relus, threshold_masks
from ..surgery.pipeline import run_rewrite
from .config import RUNTIME_FIELDS, TrainConfig

__all__ = ["linearize", "stage_order", "train_or_reuse", "data_example_input"]


def data_example_input(config: TrainConfig) -> torch.Tensor:
    """A zero input of the dataset's shape with a batch of one (the shape ReLUs are counted at).

    Example:
        >>> data_example_input(TrainConfig(dataset="cifar10", data_dir="data/cifar10")).shape
        torch.Size([1, 3, 32, 32])
        >>> data_example_input(TrainConfig(dataset="imagefolder", data_dir="data/imgs", image_size=64)).shape
        torch.Size([1, 3, 64, 64])
    """
    from ..data.datasets import get_dataset_spec  # noqa: PLC0415

    if config.dataset == "imagefolder":
        return torch.zeros(1, 3, config.image_size or 224, config.image_size or 224)
    spec = get_dataset_spec(config.dataset)
    return torch.zeros(1, spec.in_chans, spec.image_size, spec.image_size)


def _same_settings(run_dir: Path, config: TrainConfig) -> bool:
    path = run_dir / "config.json"
    if not path.is_file():
        return False
    saved = json.loads(path.read_text(encoding="utf-8")).get("train", {})
    return all(saved.get(k) == v for k, v in config.to_dict().items() if k not in RUNTIME_FIELDS)


def train_or_reuse(model: nn.Module, config: TrainConfig, run_dir, *, hooks=None, reporter=None,
                   model_info=None) -> dict[str, Any]:
    """Train ``model`` in place into ``run_dir``; reuse a finished run there, resume an interrupted one.

    A finished run's weights (``model.safetensors``) are loaded into ``model``. A directory holding
    a run with other settings is an error. Returns the run's ``result.json``.

    Example:
        >>> from relu_surgery.train.tiny import smoke_config, tiny_mlp
        >>> cfg, run = smoke_config(train=32, test=16), tempfile.mkdtemp() + "/run"
        >>> first = train_or_reuse(tiny_mlp(hidden=8, depth=1), cfg, run)        # trains (1 epoch)
        >>> again = tiny_mlp(hidden=8, depth=1)
        >>> train_or_reuse(again, cfg, run) == first                              # finished: weights loaded
        True
        >>> train_or_reuse(again, cfg.replace(epochs=2), run)
        Traceback (most recent call last):
            ...
        relu_surgery.train.errors.CheckpointError: ... holds a training run with other settings; ...
    """
    from .errors import CheckpointError  # noqa: PLC0415
    from .runner import run_training  # noqa: PLC0415

    run_dir = Path(run_dir)
    if (run_dir / "config.json").is_file() and not _same_settings(run_dir, config):
        raise CheckpointError(f"{run_dir} holds a training run with other settings; remove it or choose another --out")
    result = run_dir / "result.json"
    if result.is_file():
        from safetensors.torch import load_model  # noqa: PLC0415

        load_model(model, str(run_dir / "model.safetensors"), strict=True)
        if reporter is not None:
            reporter.message(f"reusing the finished run in {run_dir}")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        run_training(model, config, run_dir, resume=(run_dir / "checkpoint.pt").is_file(), hooks=hooks,
                     reporter=reporter, model_info=model_info)
    return json.loads(result.read_text(encoding="utf-8"))


@contextmanager
def _work_dir(out):
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        yield Path(out)
        return
    tmp = Path(tempfile.mkdtemp(prefix="relu-surgery-linearize-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stage_sites(model: nn.Module, x, kinds) -> dict[str, list[str]]:
    """Target sites per stage (names as the stage method groups them)."""
    from ..graph.relu_count import relu_count  # noqa: PLC0415
    from ..surgery.linearize.budget import site_groups  # noqa: PLC0415

    targets = [s for s in relu_count(model, x).sites if "all" in kinds or s.kind in kinds]
    return {g: [s.site for s in sites] for g, sites in site_groups(targets).items()}


def stage_order(model: nn.Module, data: TrainConfig, work, *, epochs: int = 1, example_input=None,
                activations=("relu",), reporter=None) -> tuple[list[str], str]:
    """DeepReDuce's ReLU criticality: stages ordered least critical first, and how that was measured.

    For each stage a copy of ``model`` keeping only that stage's ReLUs (every other target site
    linearized) is trained ``epochs`` on ``data`` into ``work/criticality/<stage>`` (reused when
    finished); its test accuracy is the stage's criticality. Returns ``(order, description)``.

    Example:
        >>> order, how = stage_order(model, data, "runs/crit", epochs=1)   # doctest: +SKIP
        >>> order                                                          # doctest: +SKIP
        ['layer1', 'stem', 'layer2', 'layer3']
    """
    from ..graph.activations import normalize_kinds  # noqa: PLC0415

    kinds = normalize_kinds(activations)
    x = example_input if example_input is not None else data_example_input(data)
    work = Path(work)
    groups = _stage_sites(model, x, kinds)
    scores = {}
    for name, keep in groups.items():
        others = [s for g, sites in groups.items() if g != name for s in sites]
        probe, _ = run_rewrite(model, [linearize_step("stage", sites=others, activations=kinds)], x, check=False)
        result = train_or_reuse(probe, data.replace(epochs=epochs), work / "criticality" / name.replace("/", "_"),
                                reporter=reporter)
        scores[name] = 100.0 - result["final"]["test_top1_err"]
    order = sorted(groups, key=lambda g: (scores[g], list(groups).index(g)))
    how = ("measured: test accuracy with only that stage's ReLUs after " + f"{epochs} epoch(s): "
           + ", ".join(f"{g} {scores[g]:.2f}%" for g in order))
    return order, how


def _mask_sites(gm: nn.Module) -> dict[str, MaskedReLU]:
    """Site name -> trainable masked activation, in graph order."""
    out = {}
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        module = gm.get_submodule(str(node.target))
        layer = module if isinstance(module, MaskedReLU) else getattr(module, "act", None)
        if isinstance(layer, MaskedReLU) and layer.trainable:
            out[node.meta.get("rs_name", node.name)] = layer
    return out


def _snl(model, budget, x, data, work, opts, reporter) -> tuple[nn.Module, Report]:
    kinds = opts["activations"]
    masked, first = run_rewrite(model, [linearize_step("snl", budget, granularity=opts["granularity"],
                                                       trainable=True, activations=kinds)], x)
    target = first.steps[0].settings["budget"]
    penalty = MaskPenalty(target, l1=opts["l1"], growth=opts["l1_growth"], every=opts["check_every"])
    train_or_reuse(masked, data.replace(epochs=opts["mask_epochs"] or data.epochs), work / "masks",
                   hooks=[penalty], reporter=reporter)
    masks = _mask_sites(masked)
    values = threshold_masks(masks, target)
    alive = alive_relus(masks.values())
    reason = (f"snl: every {'/'.join(sorted(kinds))} site masked (per-{opts['granularity']}), masks trained "
              f"{opts['mask_epochs'] or data.epochs} epoch(s) with L1 (final coefficient {penalty.l1:.3g}, "
              f"{alive:,} ReLUs alive at the end), thresholded to exactly {target:,} ReLUs and frozen; "
              f"then fine-tuned {data.epochs} epoch(s) with the masks frozen")
    shapes = {site: list(v.shape) for site, v in values.items()}
    frozen, report = run_rewrite(model, [linearize_step("snl", target, granularity=opts["granularity"], masks=shapes,
                                                        values=values, reason=reason, activations=kinds)], x)
    state = {k: v for k, v in masked.state_dict().items() if not k.endswith(".alpha")}
    missing, unexpected = frozen.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith(".mask") for k in missing):
        raise SelectionError(f"trained weights do not fit the frozen model: {unexpected[:2] or missing[:2]}")
    return frozen, report


def linearize(model: nn.Module, budget, method: str = "uniform", *, data: TrainConfig | None = None, out=None,
              order=None, granularity: str = "channel", mask_epochs: int | None = None, criticality_epochs: int = 1,
              l1: float = 1e-4, l1_growth: float = 2.0, check_every: int = 0, activations=("relu",),
              example_input=None, reporter=None, order_source: str = "given") -> tuple[nn.Module, Report]:
    """Linearize ``model`` to ``budget`` ReLUs with ``method``; returns ``(new_model, report)``.

    ``data`` (a :class:`TrainConfig`: dataset, schedule, ``epochs`` of fine-tuning) is required by
    ``snl`` and by ``stage`` without ``order``; ``out`` keeps the training phases (default: a
    temporary directory). See the module docstring for the methods; the report's
    ``relu_count`` lists the ReLUs kept per site. ``order_source`` says in the report where a given
    ``order`` came from (e.g. the description :func:`stage_order` returns).

    Example:
        >>> import relu_surgery as rs
        >>> new, report = linearize(rs.create_model("cifar_resnet18"), 100_000, "uniform")
        >>> report.relu_count.total_after <= 100_000
        True
    """
    from ..graph.activations import normalize_kinds  # noqa: PLC0415

    if method not in METHODS:
        raise SelectionError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if data is None and (method == "snl" or (method == "stage" and not order)):
        raise SelectionError(f"{method} trains on data: give a dataset (data=TrainConfig(...), --dataset/--data-dir)"
                             + ("" if method == "snl" else " or a stage order (order=[...], --order)"))
    kinds = normalize_kinds(activations)
    x = example_input if example_input is not None else (data_example_input(data) if data is not None else None)
    if data is None:
        return linearize_sites(model, budget, method, order=order, activations=kinds, example_input=x)
    with _work_dir(out) as work:
        if method == "snl":
            opts = {"granularity": granularity, "mask_epochs": mask_epochs, "l1": l1, "l1_growth": l1_growth,
                    "check_every": check_every, "activations": kinds}
            new, report = _snl(model, budget, x, data, work, opts, reporter)
        else:
            how = order_source
            if method == "stage" and not order:
                order, how = stage_order(model, data, work, epochs=criticality_epochs, example_input=x,
                                         activations=kinds, reporter=reporter)
            step = linearize_step(method, budget, order=order, order_source=how, activations=kinds)
            new, report = run_rewrite(model, [step], x)
        train_or_reuse(new, data, work / "finetune", reporter=reporter)
    return new, report

