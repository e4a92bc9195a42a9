"""The papers' training recipes as named presets.

| preset | source | recipe |
| --- | --- | --- |
| paper-cifar | seed 003 appendix (and seed 000, which follows it) | SGD m=0.9, lr 0.1, wd 1e-4, batch 128, 164 epochs (= 64k iterations), /10 at 50% and 75% (= 32k/48k), lr 0.01 for the first 400 iterations |
| paper-cifar-wrn | Wide ResNets | as paper-cifar with weight decay 5e-4, no warm-up |
| paper-svhn | seed 000 Sec. 4.1 (/255, no augmentation) with the usual SVHN schedule of its references | batch 64, 40 epochs, lr 0.1, /10 at 50%/75%, wd 1e-4 |
| paper-imagenet | seed 000 Sec. 4.3, seed 003 appendix | batch 256, 120 epochs, lr 0.1, /10 every 30 epochs, wd 1e-4 |

The warm-up of seed 003 ("for all CIFAR experiments") was needed by the 110/1001-layer nets; pass
``--warmup-iters 0`` to leave it out.

Example:
    >>> from relu_surgery.train.presets import preset_values
    >>> preset_values("paper-cifar")["epochs"]
    164
"""

from __future__ import annotations

from typing import Any

from .errors import TrainConfigError

__all__ = ["PRESETS", "preset_values", "list_presets"]

_SGD = {"lr": 0.1, "momentum": 0.9, "nesterov": False, "schedule": "step", "gamma": 0.1}

PRESETS: dict[str, dict[str, Any]] = {
    "paper-cifar": {
        **_SGD, "epochs": 164, "batch_size": 128, "weight_decay": 1e-4,
        "milestones": (0.5, 0.75), "milestone_unit": "fraction",
        "warmup_iters": 400, "warmup_lr": 0.01, "augment": True,
    },
    "paper-cifar-wrn": {
        **_SGD, "epochs": 164, "batch_size": 128, "weight_decay": 5e-4,
        "milestones": (0.5, 0.75), "milestone_unit": "fraction", "warmup_iters": 0, "augment": True,
    },
    "paper-svhn": {
        **_SGD, "epochs": 40, "batch_size": 64, "weight_decay": 1e-4,
        "milestones": (0.5, 0.75), "milestone_unit": "fraction", "warmup_iters": 0, "augment": False,
    },
    "paper-imagenet": {
        **_SGD, "epochs": 120, "batch_size": 256, "weight_decay": 1e-4,
        "milestones": (30, 60, 90), "milestone_unit": "epoch", "warmup_iters": 0,
        "augment": True, "image_size": 224,
    },
}


def list_presets() -> list[str]:
    """Names of the presets, sorted.

    Example:
        >>> "paper-cifar" in list_presets()
        True
    """
    return sorted(PRESETS)


def preset_values(name: str) -> dict[str, Any]:
    """The settings of preset ``name`` (a copy), ready for ``TrainConfig(**values, ...)``.

    Example:
        >>> preset_values("paper-imagenet")["milestones"]
        (30, 60, 90)
    """
    if name not in PRESETS:
        raise TrainConfigError(f"unknown preset {name!r}; choose one of {', '.join(list_presets())}")
    return {**PRESETS[name], "preset": name}
